"""Routers and the Mixture-of-Experts layer, read top to bottom.

Notation (the book's notation page): ``N`` experts, ``k`` active, gate logits
``g(x) = W x + b``, router probabilities ``p = softmax(g)``, active set ``S_k(g)`` = the indices
of the ``k`` largest logits, **ties broken by the smaller index**. The layer computes

.. math::  y(x) = \\sum_{i \\in S_k(g(x))} \\pi_i(x)\\, E_i(x),

in three steps: **route** (a router gives each token its active set and routing weights
``pi``, a :class:`Routing`), **dispatch** (each expert ``E_i`` gets the tokens routed to it;
the experts are the modules of :mod:`moe_theory.experts`) and **combine** (each token sums its
experts' outputs, weighted by ``pi``). :meth:`MoE.forward_reference` does exactly this, one
expert at a time; :meth:`MoE.forward` computes the same function with no Python loop over
experts, by the strategies of the private module :mod:`moe_theory._dispatch`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._kernels import fast_topk_indices
from ._validation import (check_bool, check_choice, check_dtype, check_k, check_positive_int,
                          check_positive_real, check_tensor)
from .device import resolve_device
from .experts import MLPExperts, SwiGLUExperts

__all__ = ["topk_route", "routing_weights", "Routing", "SoftmaxRouter", "TopKRouter", "NoisyTopKRouter",
           "MoE", "load_balancing_loss"]


def topk_route(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """The active set ``S_k(g)`` of logits ``g`` (..., N), ``1 <= k <= N``.

    Returns the indices (..., k), ``S_k(g)`` from the largest logit down, and
    the values ``g_(1) >= ... >= g_(k)`` (differentiable in ``logits``). A
    *stable* descending sort keeps equal logits in index order, so ties go to
    the smaller index and the active set is a function of ``g`` alone
    (:func:`torch.topk` leaves the order of ties unspecified). The routers get
    the same indices without sorting (``_kernels.fast_topk_indices``, tested).

    >>> topk_route(torch.tensor([1.0, 3.0, 3.0, 0.0]), 2)[0]
    tensor([1, 2])
    """
    logits = check_tensor("logits", logits, min_ndim=1)
    k = check_k(k, logits.shape[-1], n_name="logits.shape[-1]")
    g = logits.detach()
    order = torch.sort(g, dim=-1, descending=True, stable=True).indices
    indices = order[..., :k]  # (..., k): largest first, ties in index order
    values = logits.gather(-1, indices)  # (..., k)
    return indices, values


_WEIGHTINGS = ("renormalized", "softmax")


def routing_weights(logits: torch.Tensor, indices: torch.Tensor, weighting: str,
                    probs: torch.Tensor | None = None) -> torch.Tensor:
    """Routing weights ``pi`` of the active experts ``indices`` (T, k), from the logits (T, N).

    ``"renormalized"`` (Mixtral): ``pi_i = exp(g_i) / sum_{j in S_k(g)} exp(g_j)``, a softmax over
    the selected logits (for ``k = 1`` exactly 1, with no gradient to the gate);
    ``"softmax"`` (Switch Transformer): ``pi_i = p_i``, the full softmax's entry (``probs`` if
    given). Returns (T, k), computed slot-major ((k, T), faster on CPU) and transposed.
    """
    if weighting == "renormalized" and indices.shape[-1] == 1:
        return torch.softmax(logits.gather(-1, indices), dim=-1)  # (T, 1), all ones
    if weighting == "renormalized":
        top = logits.gather(-1, indices).t().contiguous()  # (k, T); row 0: the largest logit
        e = torch.exp(top - top[:1].detach())  # exponents <= 0: no overflow
        return (e / e.sum(0)).t()  # (T, k)
    p = torch.softmax(logits, dim=-1) if probs is None else probs  # (T, N)
    return p.gather(-1, indices).t().contiguous().t()  # (T, k)


class Routing:
    """What a router decided for ``T`` tokens; immutable (:meth:`replace` gives a changed copy).

    Attributes: ``indices`` (T, k), the active experts, largest logit first; ``weights`` (T, k),
    their routing weights ``pi_i`` (when given as ``None``, computed from ``logits`` by the
    ``weighting`` rule of :func:`routing_weights` on first access); ``logits`` (T, N), the gate
    logits ``g`` (after noise, for the noisy router); ``probs`` (T, N), ``p = softmax(g)`` (computed
    on first access when ``None``); ``load`` (N,), the tokens each expert received (kept ones,
    under a capacity limit); ``kept`` (T, k), which (token, slot) assignments were served, or
    ``None`` (no capacity limit: all); a dropped slot contributes nothing to the output.
    """

    __slots__ = ("indices", "logits", "load", "kept", "weighting", "_weights", "_probs")

    def __init__(self, indices: torch.Tensor, weights: torch.Tensor | None, logits: torch.Tensor,
                 probs: torch.Tensor | None, load: torch.Tensor, kept: torch.Tensor | None = None,
                 weighting: str | None = None):
        if weights is None and weighting not in _WEIGHTINGS:
            raise ValueError(f"weighting must be one of {_WEIGHTINGS} when weights is None, got {weighting!r}")
        for name, value in (("indices", indices), ("logits", logits), ("load", load), ("kept", kept),
                            ("weighting", weighting), ("_weights", weights), ("_probs", probs)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"Routing is immutable: use routing.replace({name}=...)")

    def replace(self, **changes) -> Routing:
        """A copy with some of ``logits``, ``load``, ``kept`` changed (new logits: weights recomputed)."""
        new = {"indices": self.indices, "weights": self._weights, "logits": self.logits, "probs": self._probs,
               "load": self.load, "kept": self.kept, "weighting": self.weighting}
        if "logits" in changes:
            new["weights"] = new["probs"] = None
        return Routing(**{**new, **changes})

    @property
    def weights(self) -> torch.Tensor:
        if self._weights is None:  # computed once, on first access
            object.__setattr__(self, "_weights", routing_weights(self.logits, self.indices, self.weighting,
                                                                 self._probs))
        return self._weights

    @property
    def probs(self) -> torch.Tensor:
        if self._probs is None:
            object.__setattr__(self, "_probs", torch.softmax(self.logits, dim=-1))
        return self._probs

    def __repr__(self) -> str:
        return (f"Routing(T={self.indices.shape[0]}, k={self.k}, n_experts={self.n_experts}, "
                f"load={self.load.tolist()}, capacity_limited={self.kept is not None})")

    n_experts = property(lambda self: self.logits.shape[-1], doc="Number of experts ``N``.")
    k = property(lambda self: self.indices.shape[-1], doc="Active experts per token.")

    def combine_matrix(self) -> torch.Tensor:
        """Dense ``(T, N)`` matrix of routing weights (zero off the active set and on dropped slots)."""
        weights = self.weights if self.kept is None else self.weights * self.kept.to(self.weights.dtype)
        return torch.zeros_like(self.logits).scatter(-1, self.indices, weights)

    def load_fraction(self) -> torch.Tensor:
        """Fraction of routed (token, slot) pairs each expert received; sums to 1."""
        return self.load / self.load.sum().clamp_min(1)


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
        return Routing(indices, p, g, p, load, weighting="softmax")


class TopKRouter(_LinearGate):
    """Top-k gating with stable tie-breaking by index.

    Parameters
    ----------
    d_model, n_experts, k : int
        Input width ``D``, number of experts ``N`` and active experts ``k``.
    weighting : {"renormalized", "softmax"}
        The routing weights (:func:`routing_weights`): ``"renormalized"`` (Mixtral) weights sum
        to 1 (for ``k = 1`` the weight is exactly 1 and the gate gets no gradient);
        ``"softmax"`` (Switch Transformer) uses ``p_i``, so the gate is trained even for ``k = 1``.
    bias : bool
        Whether the gate has a bias ``b``.
    """

    def __init__(self, d_model: int, n_experts: int, k: int, *, weighting: str = "renormalized",
                 bias: bool = True, device=None, dtype=None):
        super().__init__(d_model, n_experts, bias, device, dtype)
        self.k = check_k(k, self.n_experts)
        self.weighting = check_choice("weighting", weighting, _WEIGHTINGS)

    def route(self, g: torch.Tensor) -> Routing:
        """The routing of tokens with logits ``g`` (T, N): ``S_k(g)`` and, on first access, ``pi``."""
        with torch.no_grad():
            indices = fast_topk_indices(g.detach(), self.k)  # (T, k): topk_route(g, k)'s indices
        load = torch.bincount(indices.reshape(-1), minlength=self.n_experts).to(g.dtype)  # (N,)
        return Routing(indices, None, g, None, load, weighting=self.weighting)

    def forward(self, x: torch.Tensor) -> Routing:
        return self.route(self.logits(x))

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
        return self.route(g)


_ROUTERS = {"topk": TopKRouter, "softmax": SoftmaxRouter, "noisy_topk": NoisyTopKRouter}
_DISPATCH = ("auto", "sorted", "padded", "dense", "loop")
_EXPERTS = ("mlp", "swiglu")


class MoE(nn.Module):
    """A Mixture-of-Experts layer ``y(x) = sum_{i in S_k(g(x))} pi_i(x) E_i(x)``.

    Parameters
    ----------
    d_model, d_hidden, n_experts, k : int
        Input width (the theory chapters' ``D``), hidden width of every expert (``m``), number of
        experts ``N``, active experts per token ``1 <= k <= N`` (the softmax router uses all).
    router : {"topk", "softmax", "noisy_topk"}
        Gating rule (see :class:`TopKRouter`, :class:`SoftmaxRouter`, :class:`NoisyTopKRouter`).
    d_out : int, optional
        Output width; defaults to ``d_model`` so the output has the input's shape.
    activation : {"relu", "gelu", "tanh"}
        Nonlinearity ``sigma`` of the MLP experts (the SwiGLU expert always uses silu).
    weighting : {"renormalized", "softmax"}
        Routing weights of the top-k routers (:func:`routing_weights`).
    dispatch : {"auto", "sorted", "padded", "dense", "loop"}
        How :meth:`forward` computes the layer: ``"loop"`` is :meth:`forward_reference`; the
        others (:mod:`moe_theory._dispatch`) have no Python loop over experts and give the same
        numbers up to rounding (on CPU, the same bits from run to run); ``"auto"`` picks one.
    expert : {"mlp", "swiglu"}
        :class:`~moe_theory.experts.MLPExperts` or :class:`~moe_theory.experts.SwiGLUExperts`
        (Mixtral's expert), the module ``layer.experts``; its parameters are also readable as
        ``layer.w1, layer.b1, layer.w2, layer.b2`` (MLP) or ``layer.w13, layer.w2`` (SwiGLU).
    capacity_factor : float, optional
        Off (``None``) by default. Otherwise each expert serves at most ``C = ceil(capacity_factor
        * T * k / N)`` assignments per call, slot by slot (every first choice before any second
        choice), tokens in order within a slot; the rest are **dropped**: that slot contributes
        zero (the other weights are not renormalised); ``Routing.kept`` marks the served ones.
    router_bias : bool
        Whether the gate is ``g(x) = W x + b`` (default) or ``g(x) = W x`` (the manifold chapter).
    generator : torch.Generator, optional
        Noise source of the noisy router.
    device, dtype
        Factory arguments, as in :mod:`torch.nn` (``device=None``: CPU).

    Examples
    --------
    >>> layer = MoE(8, 16, n_experts=4, k=2, device="cpu")
    >>> y, routing = layer(torch.randn(5, 8), return_routing=True)
    >>> y.shape, routing.indices.shape, int(routing.load.sum())
    (torch.Size([5, 8]), torch.Size([5, 2]), 10)
    >>> swiglu = MoE(8, 16, n_experts=4, k=2, expert="swiglu", capacity_factor=1.0, device="cpu")
    >>> swiglu(torch.randn(5, 8)).shape
    torch.Size([5, 8])
    """

    def __init__(self, d_model: int, d_hidden: int, n_experts: int, k: int = 1, *, router: str = "topk",
                 d_out: int | None = None, activation: str = "relu", weighting: str = "renormalized",
                 dispatch: str = "auto", expert: str = "mlp", capacity_factor: float | None = None,
                 router_bias: bool = True, generator: torch.Generator | None = None, device=None, dtype=None):
        super().__init__()
        self.d_model = check_positive_int("d_model", d_model)
        self.d_hidden = check_positive_int("d_hidden", d_hidden)
        self.n_experts = check_positive_int("n_experts", n_experts)
        self.d_out = self.d_model if d_out is None else check_positive_int("d_out", d_out)
        self.router_kind = check_choice("router", router, tuple(_ROUTERS))
        self.activation = check_choice("activation", activation, ("relu", "gelu", "tanh"))
        self.dispatch = check_choice("dispatch", dispatch, _DISPATCH)
        self.expert_kind = check_choice("expert", expert, _EXPERTS)
        self.capacity_factor = None if capacity_factor is None else check_positive_real(
            "capacity_factor", capacity_factor)
        router_bias = check_bool("router_bias", router_bias)
        device = None if device is None else resolve_device(device)  # None: torch's default, the CPU
        factory = {"device": device, "dtype": check_dtype("dtype", dtype)}
        self.k = self.n_experts if router == "softmax" else check_k(k, self.n_experts)
        if router == "softmax":
            gate = SoftmaxRouter(d_model, n_experts, bias=router_bias, **factory)
        else:
            extra = {"generator": generator} if router == "noisy_topk" else {}
            gate = _ROUTERS[router](d_model, n_experts, self.k, weighting=weighting, bias=router_bias, **extra,
                                    **factory)
        N, H, D, O = self.n_experts, self.d_hidden, self.d_model, self.d_out
        if expert == "mlp":
            self.experts = MLPExperts(N, D, H, O, activation, **factory)
        else:
            self.experts = SwiGLUExperts(N, D, H, O, **factory)
        self.router = gate  # registered after the experts: parameters in the order of earlier versions
        self.router.reset_parameters()  # ... and random draws in their order too: same seed, same layer
        self.last_routing: Routing | None = None
        self.last_dispatch: str | None = None

    # The experts' parameters, read-only, under the names of earlier versions (layer.w1, ...).
    w1 = property(lambda self: self.experts.w1, doc="``experts.w1`` (MLP experts).")
    b1 = property(lambda self: self.experts.b1, doc="``experts.b1`` (MLP experts).")
    w2 = property(lambda self: self.experts.w2, doc="``experts.w2``.")
    b2 = property(lambda self: self.experts.b2, doc="``experts.b2`` (MLP experts).")
    w13 = property(lambda self: self.experts.w13, doc="``experts.w13`` (SwiGLU experts).")

    def reset_parameters(self) -> None:
        """Initialise the experts (as :class:`torch.nn.Linear` layers) and the router."""
        self.experts.reset_parameters()
        self.router.reset_parameters()

    def expert(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """``E_i(x)``: expert ``i`` on tokens ``x`` of shape (T, d_model); (T, d_out)."""
        return self.experts(i, x)

    def capacity(self, n_tokens: int) -> int | None:
        """Per-expert capacity ``ceil(capacity_factor * T * k / N)`` for ``T`` tokens (``None`` if off)."""
        if self.capacity_factor is None:
            return None
        return max(1, math.ceil(self.capacity_factor * n_tokens * self.k / self.n_experts - 1e-9))

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        x = check_tensor("x", x, shape=(self.d_model,), min_ndim=1)
        if x.device.type != self.experts.w2.device.type:
            raise ValueError(f"x must be on the layer's device ({self.experts.w2.device}), got x on {x.device}")
        return x

    def forward(self, x: torch.Tensor, return_routing: bool = False):
        """``y(x)`` for ``x`` (..., d_model): (..., d_out), and the :class:`Routing` if ``return_routing``.

        The function of :meth:`forward_reference`, computed by the strategy ``dispatch``; the
        routing and the strategy used are kept in ``last_routing`` and ``last_dispatch``.
        """
        if self.dispatch == "loop":
            return self.forward_reference(x, return_routing)
        return_routing = check_bool("return_routing", return_routing)
        x = self._check_input(x)
        from ._dispatch import fast_forward  # the same function, no Python loop over experts

        y, routing, self.last_dispatch = fast_forward(self, x.reshape(-1, self.d_model))
        self.last_routing = routing
        y = y.reshape(*x.shape[:-1], self.d_out)
        return (y, routing) if return_routing else y

    def forward_reference(self, x: torch.Tensor, return_routing: bool = False):
        """The layer, one expert at a time: route, dispatch, combine (the oracle).

        With a capacity ``C``, expert ``i`` serves the first ``C`` of its
        assignments listed slot by slot, tokens in order within a slot.
        """
        return_routing = check_bool("return_routing", return_routing)
        x = self._check_input(x)
        xt = x.reshape(-1, self.d_model)  # (T, D): the tokens
        routing = self.router(xt)  # route: S_k(g(x_t)) and pi(x_t), every token t
        capacity = self.capacity(xt.shape[0])
        kept = torch.ones_like(routing.indices, dtype=torch.bool)  # (T, k)
        y = xt.new_zeros(xt.shape[0], self.d_out)  # (T, O)
        for i in range(self.n_experts):
            # dispatch: the (token, slot) pairs routed to expert i, slot by slot
            slot, token = torch.nonzero(routing.indices.T == i, as_tuple=True)
            if capacity is not None:  # expert i serves its first C pairs only
                kept[token[capacity:], slot[capacity:]] = False
                slot, token = slot[:capacity], token[:capacity]
            if token.numel() == 0:
                continue
            w = routing.weights[token, slot][:, None]  # (T_i, 1): pi_i(x_t)
            # combine: y_t += pi_i(x_t) E_i(x_t)
            y = y.index_add(0, token, w * self.experts(i, xt[token]))
        if capacity is not None:
            load = torch.bincount(routing.indices[kept], minlength=self.n_experts)
            load = load.to(routing.weights.dtype)  # (N,): served pairs
            routing = routing.replace(kept=kept, load=load)
        self.last_routing, self.last_dispatch = routing, "loop"
        y = y.reshape(*x.shape[:-1], self.d_out)
        return (y, routing) if return_routing else y

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_hidden={self.d_hidden}, n_experts={self.n_experts}, k={self.k}, "
                f"d_out={self.d_out}, router={self.router_kind!r}, expert={self.expert_kind!r}, "
                f"activation={self.activation!r}, dispatch={self.dispatch!r}, "
                f"capacity_factor={self.capacity_factor}")


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
