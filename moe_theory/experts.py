"""The experts of an MoE layer: ``N`` small networks, their weights stacked on a first axis.

Expert ``i`` is a map ``E_i`` from ``D`` inputs to ``O`` outputs through a hidden layer of width
``H`` (the book's ``m``). Two kinds, one module each:

* :class:`MLPExperts`: ``E_i(x) = W2_i sigma(W1_i x + b1_i) + b2_i``;
* :class:`SwiGLUExperts`: ``E_i(x) = W2_i (silu(W1_i x) * (W3_i x))``, Mixtral's expert
  (Jiang et al., 2024), without biases.

Both store expert ``i``'s first layer in row ``i`` of one ``(N, gates * H, D)`` tensor ``first``
and its second layer in ``w2 (N, O, H)``, so that the layer's fast paths
(:mod:`moe_theory._dispatch`) run all experts with a few batched matmuls; calling the module
with ``(i, x)`` evaluates expert ``i`` alone, the way the reference loop does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._validation import check_choice, check_positive_int

__all__ = ["MLPExperts", "SwiGLUExperts"]

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}


class _StackedExperts(nn.Module):
    """What both kinds share: sizes, initialisation and the second layer ``w2 (N, O, H)``."""

    gates = 1  # rows of the first layer per hidden unit (SwiGLU: 2, gate and up)

    def __init__(self, n_experts: int, d_model: int, d_hidden: int, d_out: int, device, dtype):
        super().__init__()
        self.n_experts = check_positive_int("n_experts", n_experts)
        self.d_model = check_positive_int("d_model", d_model)
        self.d_hidden = check_positive_int("d_hidden", d_hidden)
        self.d_out = check_positive_int("d_out", d_out)
        self._factory = {"device": device, "dtype": dtype}

    def _stack(self, *shape: int) -> nn.Parameter:
        return nn.Parameter(torch.empty(self.n_experts, *shape, **self._factory))

    def reset_parameters(self) -> None:
        """Each layer of each expert as :class:`torch.nn.Linear` does: uniform, ``1/sqrt(fan_in)``."""
        pairs = ((self.first, self.first_bias, self.d_model), (self.w2, self.second_bias, self.d_hidden))
        for w, b, fan_in in pairs:
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(w, -bound, bound)
            if b is not None:
                nn.init.uniform_(b, -bound, bound)

    def forward(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """``E_i(x)`` for tokens ``x`` of shape (T, D): the output, (T, O)."""
        h = x @ self.first[i].T  # (T, gates * H)
        if self.first_bias is not None:
            h = h + self.first_bias[i]
        y = self.hidden(h) @ self.w2[i].T  # (T, O)
        return y if self.second_bias is None else y + self.second_bias[i]

    def extra_repr(self) -> str:
        return (f"n_experts={self.n_experts}, d_model={self.d_model}, d_hidden={self.d_hidden}, "
                f"d_out={self.d_out}")


class MLPExperts(_StackedExperts):
    """``N`` two-layer MLPs ``E_i(x) = W2_i sigma(W1_i x + b1_i) + b2_i``.

    Parameters: ``w1 (N, H, D)``, ``b1 (N, H)``, ``w2 (N, O, H)``, ``b2 (N, O)``;
    ``activation`` is ``sigma``, one of ``"relu"``, ``"gelu"``, ``"tanh"``.
    """

    def __init__(self, n_experts: int, d_model: int, d_hidden: int, d_out: int, activation: str = "relu", *,
                 device=None, dtype=None):
        super().__init__(n_experts, d_model, d_hidden, d_out, device, dtype)
        self.activation = check_choice("activation", activation, tuple(_ACTIVATIONS))
        self.w1 = self._stack(d_hidden, d_model)  # expert i: x -> W1_i x + b1_i
        self.b1 = self._stack(d_hidden)
        self.w2 = self._stack(d_out, d_hidden)
        self.b2 = self._stack(d_out)
        self.reset_parameters()

    first = property(lambda self: self.w1, doc="First layer of every expert, (N, H, D).")
    first_bias = property(lambda self: self.b1, doc="Its bias, (N, H).")
    second_bias = property(lambda self: self.b2, doc="Bias of the second layer, (N, O).")

    def hidden(self, h: torch.Tensor) -> torch.Tensor:
        """``sigma(h)``: the hidden units from the first layer's output (..., H)."""
        return _ACTIVATIONS[self.activation](h)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", activation={self.activation!r}"


class SwiGLUExperts(_StackedExperts):
    """``N`` SwiGLU blocks ``E_i(x) = W2_i (silu(W1_i x) * (W3_i x))`` (no biases, as in Mixtral).

    Parameters: ``w13 (N, 2H, D)``, whose rows ``:H`` are ``W1`` (the gate) and rows ``H:`` are
    ``W3`` (the up projection), and ``w2 (N, O, H)``.
    """

    gates = 2
    first_bias = second_bias = None

    def __init__(self, n_experts: int, d_model: int, d_hidden: int, d_out: int, *, device=None, dtype=None):
        super().__init__(n_experts, d_model, d_hidden, d_out, device, dtype)
        self.w13 = self._stack(2 * d_hidden, d_model)  # [W1_i; W3_i]: gate, up
        self.w2 = self._stack(d_out, d_hidden)
        self.reset_parameters()

    first = property(lambda self: self.w13, doc="First layer of every expert, (N, 2H, D).")

    def hidden(self, gu: torch.Tensor) -> torch.Tensor:
        """``silu(gate) * up`` from the first layer's output ``[gate, up]`` (..., 2H)."""
        gate, up = gu.split(self.d_hidden, dim=-1)
        return F.silu(gate) * up
