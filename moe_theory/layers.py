"""Routers and the Mixture-of-Experts layer.

Notation (the book's notation page): ``N`` experts, ``k`` active, gate logits
``g(x) = W x + b``, router probabilities ``p = softmax(g)``, active set ``S_k(g)`` = the
indices of the ``k`` largest logits, **ties broken by the smaller index**.

The layer computes

.. math::  y(x) = \\sum_{i \\in S_k(g(x))} \\pi_i(x)\\, E_i(x),

where ``E_i`` is expert ``i`` (a 2-layer MLP) and ``pi`` are the routing weights
(softmax over the selected logits by default, as in Mixtral).

Two computations of the same function are kept:

* :meth:`MoE.forward_reference` loops over experts and is the test oracle;
* :meth:`MoE.forward` uses a vectorised dispatch (see its ``dispatch`` argument).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._validation import (check_bool, check_choice, check_dtype, check_k, check_positive_int,
                          check_real, check_tensor)
from .device import resolve_device

__all__ = [
    "topk_route",
    "Routing",
    "SoftmaxRouter",
    "TopKRouter",
    "NoisyTopKRouter",
    "MoE",
    "load_balancing_loss",
]


def topk_route(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and values of the ``k`` largest logits, ties broken by the smaller index.

    ``torch.topk`` leaves the order of ties unspecified; a *stable* descending sort
    keeps equal logits in index order, so the active set is a function of ``g`` alone.

    Parameters
    ----------
    logits : torch.Tensor, shape (..., N)
        Gate logits ``g``.
    k : int
        Number of active experts, ``1 <= k <= N``.

    Returns
    -------
    indices : torch.LongTensor, shape (..., k)
        ``S_k(g)`` listed from the largest logit down.
    values : torch.Tensor, shape (..., k)
        ``g_(1) >= ... >= g_(k)``.

    Examples
    --------
    >>> topk_route(torch.tensor([1.0, 3.0, 3.0, 0.0]), 2)[0]
    tensor([1, 2])
    """
    logits = check_tensor("logits", logits, min_ndim=1)
    k = check_k(k, logits.shape[-1], n_name="logits.shape[-1]")
    values, indices = torch.sort(logits, dim=-1, descending=True, stable=True)
    return indices[..., :k], values[..., :k]


@dataclass
class Routing:
    """What a router decided for a batch of tokens (all tensors flattened to ``T`` tokens).

    Attributes
    ----------
    indices : LongTensor (T, k)
        Active experts per token, largest logit first.
    weights : Tensor (T, k)
        Routing weights ``pi_i`` of the active experts.
    logits : Tensor (T, N)
        Gate logits ``g`` (after noise, for the noisy router).
    probs : Tensor (T, N)
        ``p = softmax(g)``.
    load : Tensor (N,)
        Number of tokens each expert received (kept tokens, after any capacity limit).
    """

    indices: torch.Tensor
    weights: torch.Tensor
    logits: torch.Tensor
    probs: torch.Tensor
    load: torch.Tensor

    @property
    def n_experts(self) -> int:
        return self.logits.shape[-1]

    @property
    def k(self) -> int:
        return self.indices.shape[-1]

    def combine_matrix(self) -> torch.Tensor:
        """Dense ``(T, N)`` matrix of routing weights (zero off the active set)."""
        dense = torch.zeros_like(self.logits)
        return dense.scatter(-1, self.indices, self.weights)

    def load_fraction(self) -> torch.Tensor:
        """Fraction of routed (token, slot) pairs each expert received; sums to 1."""
        total = self.load.sum().clamp_min(1)
        return self.load / total


class _LinearGate(nn.Module):
    """``g(x) = x W^T + b`` with ``W`` of shape (N, d_model)."""

    def __init__(self, d_model: int, n_experts: int, bias: bool, device, dtype):
        super().__init__()
        self.d_model = check_positive_int("d_model", d_model)
        self.n_experts = check_positive_int("n_experts", n_experts)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(n_experts, d_model, **factory))
        self.bias = nn.Parameter(torch.empty(n_experts, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)  # (T, N)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_experts={self.n_experts}, bias={self.bias is not None}"


class SoftmaxRouter(_LinearGate):
    """Dense softmax gating: every expert is active with weight ``p_i = softmax(g)_i``."""

    def __init__(self, d_model: int, n_experts: int, *, bias: bool = True, device=None, dtype=None):
        super().__init__(d_model, n_experts, bias, device, dtype)
        self.k = n_experts

    def forward(self, x: torch.Tensor) -> Routing:
        g = self.logits(x)  # (T, N)
        p = torch.softmax(g, dim=-1)
        T, N = g.shape
        indices = torch.arange(N, device=g.device).expand(T, N)
        load = torch.full((N,), float(T), device=g.device, dtype=g.dtype)
        return Routing(indices, p, g, p, load)


class TopKRouter(_LinearGate):
    """Top-k gating with stable tie-breaking by index.

    Parameters
    ----------
    d_model, n_experts, k : int
        Input width ``D``, number of experts ``N`` and active experts ``k``.
    weighting : {"renormalized", "softmax"}
        ``"renormalized"`` (Mixtral): ``pi_i = exp(g_i) / sum_{j in S} exp(g_j)``, weights sum
        to 1 (for ``k = 1`` the weight is exactly 1 and the gate gets no gradient);
        ``"softmax"`` (Switch Transformer): ``pi_i = p_i`` of the full softmax, so the gate
        is trained even for ``k = 1``.
    bias : bool
        Whether the gate has a bias ``b``.
    """

    def __init__(self, d_model: int, n_experts: int, k: int, *, weighting: str = "renormalized",
                 bias: bool = True, device=None, dtype=None):
        super().__init__(d_model, n_experts, bias, device, dtype)
        self.k = check_k(k, self.n_experts)
        self.weighting = check_choice("weighting", weighting, ("renormalized", "softmax"))

    def _route_logits(self, g: torch.Tensor) -> Routing:
        indices, top = topk_route(g, self.k)  # (T, k)
        p = torch.softmax(g, dim=-1)  # (T, N)
        if self.weighting == "renormalized":
            weights = torch.softmax(top, dim=-1)  # (T, k)
        else:
            weights = p.gather(-1, indices)  # (T, k)
        load = torch.bincount(indices.reshape(-1), minlength=self.n_experts).to(g.dtype)
        return Routing(indices, weights, g, p, load)

    def forward(self, x: torch.Tensor) -> Routing:
        return self._route_logits(self.logits(x))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", k={self.k}, weighting={self.weighting!r}"


class NoisyTopKRouter(TopKRouter):
    """Noisy Top-k gating (Shazeer et al., 2017).

    In training mode the logits are ``g(x) + eps * softplus(x W_noise^T)`` with
    ``eps ~ N(0, I)`` drawn from ``generator`` (so a seeded generator gives the same
    routing); in eval mode no noise is added.
    """

    def __init__(self, d_model: int, n_experts: int, k: int, *, weighting: str = "renormalized",
                 bias: bool = True, generator: torch.Generator | None = None, device=None, dtype=None):
        super().__init__(d_model, n_experts, k, weighting=weighting, bias=bias, device=device, dtype=dtype)
        self.noise_weight = nn.Parameter(torch.zeros(n_experts, d_model, device=device, dtype=dtype))
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.generator = generator

    def forward(self, x: torch.Tensor) -> Routing:
        g = self.logits(x)  # (T, N)
        if self.training:
            scale = F.softplus(F.linear(x, self.noise_weight))  # (T, N)
            gen_device = self.generator.device if self.generator is not None else g.device
            eps = torch.randn(g.shape, generator=self.generator, device=gen_device, dtype=g.dtype)
            g = g + eps.to(g.device) * scale
        return self._route_logits(g)


_ROUTERS = ("topk", "softmax", "noisy_topk")
_DISPATCH = ("dense", "loop")


class MoE(nn.Module):
    """A Mixture-of-Experts layer whose experts are 2-layer MLPs.

    ``y(x) = sum_{i in S_k(g(x))} pi_i(x) E_i(x)`` with
    ``E_i(x) = W2_i act(W1_i x + b1_i) + b2_i``.

    Parameters
    ----------
    d_model : int
        Input width (the ambient dimension ``D`` in the theory chapters).
    d_hidden : int
        Hidden width of every expert.
    n_experts : int
        Number of experts ``N``.
    k : int
        Active experts per token, ``1 <= k <= N`` (ignored by the softmax router, which uses all).
    router : {"topk", "softmax", "noisy_topk"}
        Gating rule (see :class:`TopKRouter`, :class:`SoftmaxRouter`, :class:`NoisyTopKRouter`).
    d_out : int, optional
        Output width; defaults to ``d_model`` so the output has the input's shape.
    activation : {"relu", "gelu", "tanh"}
        Expert nonlinearity.
    weighting : {"renormalized", "softmax"}
        Routing weights of the top-k routers.
    dispatch : {"dense", "loop"}
        ``"dense"`` evaluates every expert on every token with batched matmuls and
        combines with the sparse weight matrix (fast for the small widths of the theory
        chapters); ``"loop"`` is :meth:`forward_reference`.
    generator : torch.Generator, optional
        Noise source of the noisy router.
    device, dtype
        Factory arguments, as in :mod:`torch.nn`.

    Examples
    --------
    >>> layer = MoE(8, 16, n_experts=4, k=2, device="cpu")
    >>> y, routing = layer(torch.randn(5, 8), return_routing=True)
    >>> y.shape, routing.indices.shape, int(routing.load.sum())
    (torch.Size([5, 8]), torch.Size([5, 2]), 10)
    """

    def __init__(self, d_model: int, d_hidden: int, n_experts: int, k: int = 1, *, router: str = "topk",
                 d_out: int | None = None, activation: str = "relu", weighting: str = "renormalized",
                 dispatch: str = "dense", generator: torch.Generator | None = None,
                 device=None, dtype=None):
        super().__init__()
        self.d_model = check_positive_int("d_model", d_model)
        self.d_hidden = check_positive_int("d_hidden", d_hidden)
        self.n_experts = check_positive_int("n_experts", n_experts)
        self.d_out = self.d_model if d_out is None else check_positive_int("d_out", d_out)
        self.router_kind = check_choice("router", router, _ROUTERS)
        self.activation = check_choice("activation", activation, ("relu", "gelu", "tanh"))
        self.dispatch = check_choice("dispatch", dispatch, _DISPATCH)
        dtype = check_dtype("dtype", dtype)
        device = resolve_device(device)
        factory = {"device": device, "dtype": dtype}
        if router == "softmax":
            self.k = self.n_experts
            self.router = SoftmaxRouter(d_model, n_experts, **factory)
        else:
            self.k = check_k(k, self.n_experts)
            cls = TopKRouter if router == "topk" else NoisyTopKRouter
            extra = {"generator": generator} if router == "noisy_topk" else {}
            self.router = cls(d_model, n_experts, self.k, weighting=weighting, **extra, **factory)
        N, H, D, O = self.n_experts, self.d_hidden, self.d_model, self.d_out
        self.w1 = nn.Parameter(torch.empty(N, H, D, **factory))  # expert i: x -> W1_i x + b1_i
        self.b1 = nn.Parameter(torch.empty(N, H, **factory))
        self.w2 = nn.Parameter(torch.empty(N, O, H, **factory))
        self.b2 = nn.Parameter(torch.empty(N, O, **factory))
        self.last_routing: Routing | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise each expert like a pair of :class:`torch.nn.Linear` layers."""
        for w, b, fan_in in ((self.w1, self.b1, self.d_model), (self.w2, self.b2, self.d_hidden)):
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)
        self.router.reset_parameters()

    def _act(self, h: torch.Tensor) -> torch.Tensor:
        return {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}[self.activation](h)

    def expert(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Output of expert ``i`` on tokens ``x`` of shape (T, d_model)."""
        h = self._act(x @ self.w1[i].T + self.b1[i])  # (T, H)
        return h @ self.w2[i].T + self.b2[i]  # (T, O)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        x = check_tensor("x", x, shape=(self.d_model,), min_ndim=1)
        if x.device.type != self.w1.device.type:
            raise ValueError(f"x must be on the layer's device ({self.w1.device}), got x on {x.device}")
        return x

    def forward(self, x: torch.Tensor, return_routing: bool = False):
        """Apply the layer.

        Parameters
        ----------
        x : torch.Tensor, shape (..., d_model)
        return_routing : bool
            Also return the :class:`Routing` (it is kept in ``self.last_routing`` too).

        Returns
        -------
        y : torch.Tensor, shape (..., d_out)
        routing : Routing, only if ``return_routing``
        """
        return_routing = check_bool("return_routing", return_routing)
        if self.dispatch == "loop":
            return self.forward_reference(x, return_routing=return_routing)
        x = self._check_input(x)
        lead = x.shape[:-1]
        xt = x.reshape(-1, self.d_model)  # (T, D)
        routing = self.router(xt)
        combine = routing.combine_matrix()  # (T, N)
        h = self._act(torch.einsum("td,nhd->nth", xt, self.w1) + self.b1[:, None, :])  # (N, T, H)
        out = torch.einsum("nth,noh->nto", h, self.w2) + self.b2[:, None, :]  # (N, T, O)
        y = torch.einsum("tn,nto->to", combine, out)  # (T, O)
        self.last_routing = routing
        y = y.reshape(*lead, self.d_out)
        return (y, routing) if return_routing else y

    def forward_reference(self, x: torch.Tensor, return_routing: bool = False):
        """The reference computation: a plain loop over experts (the test oracle)."""
        x = self._check_input(x)
        lead = x.shape[:-1]
        xt = x.reshape(-1, self.d_model)  # (T, D)
        routing = self.router(xt)
        y = xt.new_zeros(xt.shape[0], self.d_out)  # (T, O)
        for i in range(self.n_experts):
            token, slot = torch.nonzero(routing.indices == i, as_tuple=True)
            if token.numel() == 0:
                continue
            w = routing.weights[token, slot][:, None]  # (T_i, 1)
            y = y.index_add(0, token, w * self.expert(i, xt[token]))
        self.last_routing = routing
        y = y.reshape(*lead, self.d_out)
        return (y, routing) if return_routing else y

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_hidden={self.d_hidden}, n_experts={self.n_experts}, k={self.k}, "
                f"d_out={self.d_out}, router={self.router_kind!r}, activation={self.activation!r}, "
                f"dispatch={self.dispatch!r}")


def load_balancing_loss(routing: Routing) -> torch.Tensor:
    """Switch-Transformer auxiliary loss ``N * sum_i f_i P_i``.

    ``f_i`` is the fraction of routed (token, slot) pairs sent to expert ``i`` and ``P_i``
    the mean router probability of expert ``i``. It equals 1 under perfect balance and
    grows to ``N`` when all tokens go to one expert (Fedus et al., 2021).
    """
    if not isinstance(routing, Routing):
        raise TypeError(f"routing must be a Routing, got {type(routing).__name__}")
    f = torch.bincount(routing.indices.reshape(-1), minlength=routing.n_experts).to(routing.probs.dtype)
    f = f / f.sum()
    P = routing.probs.mean(dim=0)  # (N,)
    return routing.n_experts * torch.sum(f * P)
