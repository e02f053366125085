"""Routers and the Mixture-of-Experts layer.

Notation (the book's notation page): ``N`` experts, ``k`` active, gate logits
``g(x) = W x + b``, router probabilities ``p = softmax(g)``, active set ``S_k(g)`` = the
indices of the ``k`` largest logits, **ties broken by the smaller index**.

The layer computes

.. math::  y(x) = \\sum_{i \\in S_k(g(x))} \\pi_i(x)\\, E_i(x),

where ``E_i`` is expert ``i`` (a 2-layer MLP, or a SwiGLU block as in Mixtral) and ``pi``
are the routing weights (softmax over the selected logits by default, as in Mixtral).

Two computations of the same function are kept:

* :meth:`MoE.forward_reference` loops over experts and is the test oracle;
* :meth:`MoE.forward` uses a vectorised dispatch with no Python loop over experts
  (see its ``dispatch`` argument: dense, padded batched matmul, or tokens sorted by
  expert with a grouped matmul).
"""

from __future__ import annotations

import math
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._validation import (check_bool, check_choice, check_dtype, check_k, check_positive_int,
                          check_positive_real, check_tensor)
from ._dispatch import (_block_layout, _BlockSwiGLU, _grouped_mm_supported, _padding_levels, _Plan,
                        _slot_major_weights)
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

    ``torch.topk`` leaves the order of ties unspecified; the result here is that of a
    *stable* descending sort, which keeps equal logits in index order, so the active set
    is a function of ``g`` alone.

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
        ``g_(1) >= ... >= g_(k)`` (differentiable in ``logits``).

    Notes
    -----
    A full sort costs ``O(N log N)`` per token and is slow on CPU for ``N = 64``. For
    ``k <= 4`` the indices are found by ``k`` rounds of "first index of the largest remaining
    logit" (:func:`torch.max` and :func:`numpy.argmax`, used on CPU, return the first maximal
    index), which is the stable order exactly; for larger ``k`` by :func:`torch.topk` on
    ``k + 1`` entries when these are all distinct (checked), and by the stable sort when they
    are not.

    Examples
    --------
    >>> topk_route(torch.tensor([1.0, 3.0, 3.0, 0.0]), 2)[0]
    tensor([1, 2])
    """
    logits = check_tensor("logits", logits, min_ndim=1)
    k = check_k(k, logits.shape[-1], n_name="logits.shape[-1]")
    return _topk_route(logits, k)


_ITERATIVE_TOPK_MAX_K = 4


def _topk_indices(g: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of :func:`topk_route` (no validation, no gradient)."""
    N = g.shape[-1]
    if k < N and g.numel():
        # k rounds of "first index of the largest remaining logit", masking each pick with -inf:
        # exactly the stable descending order, unless a later round's maximum is itself -inf
        # (then the mask is ambiguous, and the stable sort below decides).
        if k <= _ITERATIVE_TOPK_MAX_K and g.device.type == "cpu" and g.dtype in (torch.float32, torch.float64):
            # In NumPy: np.argmax also returns the first maximal index, and on CPU it is about
            # twice as fast as torch.max with indices over a short last axis.
            # The picks are masked in place and restored bit for bit afterwards (no copy of g).
            flat = g.numpy().reshape(-1, N)  # a view of g, or a copy if g's strides need one
            if not flat.flags.c_contiguous:  # e.g. overlapping rows (as_strided views): mask a copy
                flat = flat.copy()
            rows = np.arange(flat.shape[0])
            picked, saved, ambiguous = [flat.argmax(-1)], [], False
            try:
                for _ in range(k - 1):
                    saved.append(flat[rows, picked[-1]])
                    flat[rows, picked[-1]] = -np.inf
                    picked.append(flat.argmax(-1))
                    if np.isneginf(flat[rows, picked[-1]]).any():
                        ambiguous = True
                        break
            finally:
                for index, value in zip(reversed(picked[:len(saved)]), reversed(saved)):
                    flat[rows, index] = value
            if not ambiguous:
                return torch.from_numpy(np.stack(picked, -1).reshape(*g.shape[:-1], k))
        elif k <= _ITERATIVE_TOPK_MAX_K:
            picked, rest, ambiguous = [], g, False
            for j in range(k):
                value, index = rest.max(dim=-1, keepdim=True)
                picked.append(index)
                if j > 0:
                    ambiguous = ambiguous or bool(torch.isneginf(value).any())
                if j + 1 < k:
                    rest = rest.scatter(-1, index, -math.inf)
            if not ambiguous:
                return torch.cat(picked, -1) if k > 1 else picked[0]
        values, indices = torch.topk(g, k + 1, dim=-1, largest=True, sorted=True)
        if not bool((values[..., 1:] == values[..., :-1]).any()):  # k + 1 distinct: no tie to break
            return indices[..., :k]
    return torch.sort(g, dim=-1, descending=True, stable=True)[1][..., :k]


def _topk_route(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        indices = _topk_indices(logits.detach(), k)
    return indices, logits.gather(-1, indices)


_WEIGHTINGS = ("renormalized", "softmax")


def _routing_weights(logits: torch.Tensor, indices: torch.Tensor, weighting: str,
                     probs: torch.Tensor | None = None) -> torch.Tensor:
    """``pi`` of the active experts: softmax over the selected logits, or the full softmax's entries."""
    if weighting == "renormalized" and indices.shape[-1] == 1:  # exactly 1, with no gradient to the gate
        return torch.softmax(logits.gather(-1, indices), dim=-1)
    return _slot_major_weights(logits, indices, weighting, probs).t()  # (T, k), a view


class Routing:
    """What a router decided for a batch of tokens (all tensors flattened to ``T`` tokens).

    Attributes
    ----------
    indices : LongTensor (T, k)
        Active experts per token, largest logit first.
    weights : Tensor (T, k)
        Routing weights ``pi_i`` of the active experts (computed from ``logits`` by the
        ``weighting`` rule on first access when given as ``None``, as the top-k routers do).
    logits : Tensor (T, N)
        Gate logits ``g`` (after noise, for the noisy router).
    probs : Tensor (T, N)
        ``p = softmax(g)`` (computed from ``logits`` on first access when given as ``None``).
    load : Tensor (N,)
        Number of tokens each expert received (kept tokens, after any capacity limit).
    kept : BoolTensor (T, k), optional
        Which (token, slot) assignments were served; ``None`` when no capacity limit was
        applied (all kept). A dropped slot contributes nothing to the output.
    weighting : {"renormalized", "softmax"}, optional
        The rule that gives ``weights`` from ``logits`` (see :class:`TopKRouter`); required
        when ``weights`` is ``None``.
    """

    def __init__(self, indices: torch.Tensor, weights: torch.Tensor | None, logits: torch.Tensor,
                 probs: torch.Tensor | None, load: torch.Tensor, kept: torch.Tensor | None = None,
                 weighting: str | None = None):
        if weights is None and weighting not in _WEIGHTINGS:
            raise ValueError(f"weighting must be one of {_WEIGHTINGS} when weights is None, got {weighting!r}")
        self.indices, self.logits, self.load, self.kept = indices, logits, load, kept
        self.weighting = weighting
        self._weights, self._probs = weights, probs

    @property
    def weights(self) -> torch.Tensor:
        """Routing weights (computed from ``logits`` by the ``weighting`` rule on first access when not given)."""
        if self._weights is None:
            self._weights = _routing_weights(self.logits, self.indices, self.weighting, self._probs)
        return self._weights

    @weights.setter
    def weights(self, value: torch.Tensor) -> None:
        self._weights = value

    @property
    def probs(self) -> torch.Tensor:
        if self._probs is None:
            self._probs = torch.softmax(self.logits, dim=-1)
        return self._probs

    @probs.setter
    def probs(self, value: torch.Tensor) -> None:
        self._probs = value

    def __repr__(self) -> str:
        return (f"Routing(T={self.indices.shape[0]}, k={self.k}, n_experts={self.n_experts}, "
                f"load={self.load.tolist()}, capacity_limited={self.kept is not None})")

    @property
    def n_experts(self) -> int:
        return self.logits.shape[-1]

    @property
    def k(self) -> int:
        return self.indices.shape[-1]

    def combine_matrix(self) -> torch.Tensor:
        """Dense ``(T, N)`` matrix of routing weights (zero off the active set and on dropped slots)."""
        weights = self.weights if self.kept is None else self.weights * self.kept.to(self.weights.dtype)
        dense = torch.zeros_like(self.logits)
        return dense.scatter(-1, self.indices, weights)

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
        return Routing(indices, p, g, p, load, weighting="softmax")


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
        self.weighting = check_choice("weighting", weighting, _WEIGHTINGS)

    def _route_logits(self, g: torch.Tensor) -> Routing:
        with torch.no_grad():
            indices = _topk_indices(g.detach(), self.k)  # (T, k)
        # The weights are formed on first access (Routing.weights): the layer's fast path for
        # small SwiGLU experts computes them, and their gradient, inside its own kernel.
        load = torch.bincount(indices.reshape(-1), minlength=self.n_experts).to(g.dtype)
        return Routing(indices, None, g, None, load, weighting=self.weighting)

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
_DISPATCH = ("auto", "sorted", "padded", "dense", "loop")
_EXPERTS = ("mlp", "swiglu")

# Size thresholds of dispatch="auto" (measured on a 2-core CPU, see benchmarks/README.md).
_DENSE_MAX_MACS = 1 << 21   # dense if T * N * (expert MACs per token) is at most this ...
_SORTED_MIN_WIDTH = 128     # ... sorted (grouped matmul) for experts at least this wide, else padded.


_BLOCK_ROWS = 32  # padded SwiGLU path: rows per block (each expert's load rounded up to a multiple)
_BLOCK_MAX_EXPERT_MACS = 1 << 15  # ... used for experts of at most this many MACs per token, else levels


class MoE(nn.Module):
    """A Mixture-of-Experts layer whose experts are 2-layer MLPs or SwiGLU blocks.

    ``y(x) = sum_{i in S_k(g(x))} pi_i(x) E_i(x)`` with, for ``expert="mlp"``,
    ``E_i(x) = W2_i act(W1_i x + b1_i) + b2_i`` and, for ``expert="swiglu"`` (Mixtral's
    expert, no biases), ``E_i(x) = W2_i (silu(W1_i x) * (W3_i x))``.

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
        Nonlinearity of the MLP experts (the SwiGLU expert always uses silu).
    weighting : {"renormalized", "softmax"}
        Routing weights of the top-k routers.
    dispatch : {"auto", "sorted", "padded", "dense", "loop"}
        How :meth:`forward` computes the same function (all but ``"loop"`` have no Python loop
        over experts; all give the same numbers up to rounding):

        * ``"dense"``: every expert on every token as two large matmuls, combined with the
          sparse ``(T, N)`` weight matrix. It does ``N / k`` times the useful arithmetic, so
          it only wins for tiny layers, or when ``k = N``.
        * ``"padded"``: assignments grouped by expert (stable sort) into an ``(N, C, d)``
          buffer, ``C`` = the largest load (or the capacity), then one batched matmul
          (:func:`torch.bmm`) per expert layer. With uneven loads the ranks above a threshold
          go to up to two more, smaller levels that hold only the experts loaded that far
          (their weights gathered), thresholds chosen to minimise padded rows
          (:func:`_padding_levels`). Wins for small widths. Small SwiGLU experts
          (``d_hidden * (2 d_model + d_out) <= 2**15`` MACs per token) use a finer layout
          instead: each expert's rows rounded up to blocks of 32 (``_BLOCK_ROWS``), one
          :func:`torch.bmm` per layer over all blocks (each block's expert weights gathered),
          in one custom autograd function (``moe_theory._dispatch._BlockSwiGLU``) whose
          backward is written out (gathers instead of scatters, one layout for forward and
          backward) and which also forms the routing weights from the logits and, for the
          linear top-k gates, does the gate's backward too (sparsely: its gradient has ``k``
          nonzeros per token), so the whole layer is one autograd node, its logits an output
          of it; for wide experts gathering weights per block costs more than the levels'
          padding.
          On CPU the index bookkeeping of the padded and sorted paths (the stable sort by
          expert, ranks, block rows) runs in NumPy, elsewhere in torch; both give the same
          integers.
        * ``"sorted"``: assignments sorted by expert into a ragged ``(T k, d)`` array and one
          grouped matmul (:func:`torch.nn.functional.grouped_mm`) per expert layer; no
          padding. Where ``grouped_mm`` cannot run (float64, CPU widths not a multiple of
          16 bytes, CUDA without bfloat16) the ragged groups go through the padded kernel.
        * ``"loop"``: :meth:`forward_reference`.
        * ``"auto"`` (default): ``"dense"`` if ``k = N`` or ``T * N * (MACs of one expert
          per token) <= 2**21``; otherwise ``"sorted"`` if every width (``d_model``,
          ``d_hidden``, ``d_out``) is at least 128 and ``grouped_mm`` runs (there its
          per-expert overhead is small next to the matmuls and it wastes nothing on
          padding); otherwise ``"padded"`` (at small widths one batched matmul per level
          beats a grouped matmul's per-expert calls, even with the padding). Measured on a
          2-core CPU: ``benchmarks/RESULTS.md``.
    expert : {"mlp", "swiglu"}
        Expert kind. The MLP has parameters ``w1 (N, H, D)``, ``b1 (N, H)``, ``w2 (N, O, H)``,
        ``b2 (N, O)``; the SwiGLU has ``w13 (N, 2H, D)`` (rows ``:H`` are ``W1``, the gate,
        rows ``H:`` are ``W3``, the up projection) and ``w2 (N, O, H)``.
    capacity_factor : float, optional
        Off (``None``) by default. Otherwise each expert serves at most
        ``C = ceil(capacity_factor * T * k / N)`` assignments per call; assignments are served
        slot by slot (every token's first choice before any second choice) and, within a slot,
        in token order; the rest are **dropped**: that slot contributes zero (the other
        weights are not renormalised). ``Routing.load`` then counts kept assignments and
        ``Routing.kept`` marks them.
    router_bias : bool
        Whether the gate has a bias, ``g(x) = W x + b`` (default) or ``g(x) = W x``, the
        bias-free gate of the manifold chapter's construction.
    generator : torch.Generator, optional
        Noise source of the noisy router.
    device, dtype
        Factory arguments, as in :mod:`torch.nn`.

    Notes
    -----
    On CPU every path is deterministic: the same parameters and input give the same bits
    (gathers and sums in a fixed order; no atomic scatter).

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
        self.router_kind = check_choice("router", router, _ROUTERS)
        self.activation = check_choice("activation", activation, ("relu", "gelu", "tanh"))
        self.dispatch = check_choice("dispatch", dispatch, _DISPATCH)
        self.expert_kind = check_choice("expert", expert, _EXPERTS)
        self.capacity_factor = None if capacity_factor is None else check_positive_real(
            "capacity_factor", capacity_factor)
        router_bias = check_bool("router_bias", router_bias)
        dtype = check_dtype("dtype", dtype)
        device = resolve_device(device)
        factory = {"device": device, "dtype": dtype}
        if router == "softmax":
            self.k = self.n_experts
            self.router = SoftmaxRouter(d_model, n_experts, bias=router_bias, **factory)
        else:
            self.k = check_k(k, self.n_experts)
            cls = TopKRouter if router == "topk" else NoisyTopKRouter
            extra = {"generator": generator} if router == "noisy_topk" else {}
            self.router = cls(d_model, n_experts, self.k, weighting=weighting, bias=router_bias, **extra, **factory)
        N, H, D, O = self.n_experts, self.d_hidden, self.d_model, self.d_out
        if self.expert_kind == "mlp":
            self.w1 = nn.Parameter(torch.empty(N, H, D, **factory))  # expert i: x -> W1_i x + b1_i
            self.b1 = nn.Parameter(torch.empty(N, H, **factory))
            self.w2 = nn.Parameter(torch.empty(N, O, H, **factory))
            self.b2 = nn.Parameter(torch.empty(N, O, **factory))
        else:
            self.w13 = nn.Parameter(torch.empty(N, 2 * H, D, **factory))  # [W1_i; W3_i]: gate, up
            self.w2 = nn.Parameter(torch.empty(N, O, H, **factory))
        self.last_routing: Routing | None = None
        self.last_dispatch: str | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise each expert like :class:`torch.nn.Linear` layers (uniform, bound ``1/sqrt(fan_in)``)."""
        if self.expert_kind == "mlp":
            pairs = ((self.w1, self.b1, self.d_model), (self.w2, self.b2, self.d_hidden))
        else:
            pairs = ((self.w13, None, self.d_model), (self.w2, None, self.d_hidden))
        for w, b, fan_in in pairs:
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(w, -bound, bound)
            if b is not None:
                nn.init.uniform_(b, -bound, bound)
        self.router.reset_parameters()

    def _act(self, h: torch.Tensor) -> torch.Tensor:
        return {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}[self.activation](h)

    def _swiglu(self, gu: torch.Tensor) -> torch.Tensor:
        gate, up = gu.split(self.d_hidden, dim=-1)
        return F.silu(gate) * up

    def expert(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Output of expert ``i`` on tokens ``x`` of shape (T, d_model)."""
        if self.expert_kind == "swiglu":
            return self._swiglu(x @ self.w13[i].T) @ self.w2[i].T  # (T, O)
        h = self._act(x @ self.w1[i].T + self.b1[i])  # (T, H)
        return h @ self.w2[i].T + self.b2[i]  # (T, O)

    def capacity(self, n_tokens: int) -> int | None:
        """Per-expert capacity ``ceil(capacity_factor * T * k / N)`` for ``T`` tokens (``None`` if off)."""
        if self.capacity_factor is None:
            return None
        return max(1, math.ceil(self.capacity_factor * n_tokens * self.k / self.n_experts - 1e-9))

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        x = check_tensor("x", x, shape=(self.d_model,), min_ndim=1)
        if x.device.type != self.w2.device.type:
            raise ValueError(f"x must be on the layer's device ({self.w2.device}), got x on {x.device}")
        return x

    # ----------------------------------------------------------------- strategies
    def choose_dispatch(self, routing: Routing) -> str:
        """The strategy ``dispatch="auto"`` uses for this routing (see the class docstring)."""
        return self._auto_strategy(routing.indices.shape[0], routing.k)

    def _auto_strategy(self, T: int, k: int) -> str:
        N, H, D, O = self.n_experts, self.d_hidden, self.d_model, self.d_out
        gates = 2 if self.expert_kind == "swiglu" else 1
        if k == N or T * N * (D * gates * H + H * O) <= _DENSE_MAX_MACS:
            return "dense"
        widths = (D, gates * H, H, O)
        weights = (self.w13 if self.expert_kind == "swiglu" else self.w1, self.w2)
        if min(D, H, O) >= _SORTED_MIN_WIDTH and _grouped_mm_supported(self.w2, weights, widths):
            return "sorted"
        return "padded"

    def _forward_dense(self, xt: torch.Tensor, routing: Routing) -> torch.Tensor:
        T, N, H, O = xt.shape[0], self.n_experts, self.d_hidden, self.d_out
        c = routing.combine_matrix()  # (T, N), zero off the (kept) active set
        if self.expert_kind == "swiglu":
            gu = F.linear(xt, self.w13.reshape(N * 2 * H, self.d_model)).view(T, N, 2 * H)
            h = self._swiglu(gu)  # (T, N, H)
        else:
            h = self._act(F.linear(xt, self.w1.reshape(N * H, self.d_model), self.b1.reshape(N * H)))
            h = h.view(T, N, H)
        hc = (h * c[:, :, None]).reshape(T, N * H)
        y = F.linear(hc, self.w2.permute(1, 0, 2).reshape(O, N * H))  # sum_i c_i W2_i h_i
        if self.expert_kind == "mlp":
            y = y + c @ self.b2
        return y

    def _experts_padded(self, xp: torch.Tensor, experts: torch.Tensor | None = None) -> torch.Tensor:
        """Experts on a padded batch: xp (n, C, D) -> (n, C, O), one bmm per layer.

        ``experts`` (n,) names the experts of the batch rows (default: all N, in order).
        """
        def pick(p):
            return p if experts is None else p.index_select(0, experts)
        w2 = pick(self.w2).transpose(1, 2)
        if self.expert_kind == "swiglu":
            return torch.bmm(self._swiglu(torch.bmm(xp, pick(self.w13).transpose(1, 2))), w2)
        h = self._act(torch.baddbmm(pick(self.b1)[:, None, :], xp, pick(self.w1).transpose(1, 2)))
        return torch.baddbmm(pick(self.b2)[:, None, :], h, w2)

    def _uses_blocks(self) -> bool:
        """Whether the padded path takes the block layout (small SwiGLU experts) rather than levels."""
        macs = self.d_hidden * (2 * self.d_model + self.d_out)  # one SwiGLU expert, per token
        return self.expert_kind == "swiglu" and macs <= _BLOCK_MAX_EXPERT_MACS

    def _forward_blocks(self, xt: torch.Tensor, routing: Routing, plan: _Plan, fused: bool) -> torch.Tensor:
        """Padded path of the SwiGLU expert: each expert's rows rounded up to blocks of ``_BLOCK_ROWS``.

        ``fused``: the logits in ``routing`` were computed without gradient by the linear gate, and
        the kernel does the gate's backward too (``routing.logits`` becomes its differentiable
        logits output); otherwise the gradient flows into ``routing.logits`` (noisy gate in training,
        softmax gate).
        """
        q = _BLOCK_ROWS
        lay = _block_layout(plan, q)
        kept = None if plan.kept is None else plan.kept.to(xt.dtype)
        gate_w, gate_b = (self.router.weight, self.router.bias) if fused else (None, None)
        y, logits = _BlockSwiGLU.apply(xt, gate_w, gate_b, routing.logits, self.w13, self.w2, routing.indices,
                                       plan.e_q, kept, lay["src"], lay["pos"], lay["row_q"], lay["bexp"],
                                       routing.weighting, q)
        if fused:
            routing.logits = logits
        return y

    def _forward_padded(self, xt: torch.Tensor, routing: Routing, plan: _Plan, fused: bool = False) -> torch.Tensor:
        if self._uses_blocks():
            return self._forward_blocks(xt, routing, plan, fused)
        N, D = self.n_experts, self.d_model
        loads = plan.counts.tolist()
        thresholds = _padding_levels(loads, xt.shape[0] * plan.k)
        # Level l holds ranks [t_l, t_{l+1}) of every expert whose load exceeds t_l, as a
        # (n_l, t_{l+1} - t_l, D) block; level 0 holds all N experts, so it needs no weight gather.
        members, bases, rows = [], [], 0
        table = torch.full((len(thresholds) - 1, N), -1, dtype=torch.long)  # row of (level, expert)
        for lvl, (lo, hi) in enumerate(zip(thresholds[:-1], thresholds[1:])):
            experts = list(range(N)) if lvl == 0 else [i for i in range(N) if loads[i] > lo]
            members.append(experts)
            table[lvl, experts] = rows + (hi - lo) * torch.arange(len(experts))
            bases.append(rows)
            rows += len(experts) * (hi - lo)
        dev = xt.device
        rank = plan.rank
        keep = plan.keep_sorted
        if len(thresholds) > 2:
            t_inner = torch.tensor(thresholds[1:-1], device=dev)
            level = torch.bucketize(rank, t_inner, right=True)
            lows = torch.tensor(thresholds[:-1], device=dev)
            slot = table.to(dev)[level, plan.e_sorted] + rank - lows.index_select(0, level)
        else:
            slot = table.to(dev)[0].index_select(0, plan.e_sorted) + rank
        if keep is not None:
            slot = torch.where(keep, slot, torch.zeros_like(slot))
        # Buffer row r reads token src[r]; padding rows read token 0 and are never read back,
        # so they get zero gradient. Each level gathers its own block (no slicing of one buffer).
        src = torch.zeros(rows, dtype=torch.long, device=dev)
        if keep is None:
            src.index_copy_(0, slot, plan.token_sorted)
        else:
            src.index_copy_(0, slot[keep], plan.token_sorted[keep])
        outs = []
        for lvl, experts in enumerate(members):
            cap = thresholds[lvl + 1] - thresholds[lvl]
            block = xt.index_select(0, src[bases[lvl]:bases[lvl] + len(experts) * cap]).view(len(experts), cap, D)
            idx = None if lvl == 0 else torch.tensor(experts, device=dev)
            outs.append(self._experts_padded(block, idx).reshape(-1, self.d_out))
        outp = outs[0] if len(outs) == 1 else torch.cat(outs)
        pos_q = torch.empty_like(slot).index_copy_(0, plan.order, slot)  # buffer row of assignment q
        return plan.combine(outp.index_select(0, pos_q), routing.weights)

    def _forward_sorted(self, xt: torch.Tensor, routing: Routing, plan: _Plan) -> torch.Tensor:
        order, tok, e_sorted = plan.order, plan.token_sorted, plan.e_sorted
        if plan.keep_sorted is not None:
            order, tok, e_sorted = order[plan.keep_sorted], tok[plan.keep_sorted], e_sorted[plan.keep_sorted]
        xs = xt.index_select(0, tok)  # (S_kept, D), grouped by expert
        offs = torch.cumsum(plan.counts, 0).to(torch.int32)
        gates = 2 if self.expert_kind == "swiglu" else 1
        w_first = self.w13 if self.expert_kind == "swiglu" else self.w1
        widths = (self.d_model, gates * self.d_hidden, self.d_hidden, self.d_out)
        if _grouped_mm_supported(xs, (w_first, self.w2), widths):
            def gmm(a, w):
                return F.grouped_mm(a, w.transpose(1, 2), offs=offs)
        else:
            gmm = self._ragged_bmm(plan, e_sorted, xs.shape[0])
        if self.expert_kind == "swiglu":
            out = gmm(self._swiglu(gmm(xs, self.w13)), self.w2)
        else:
            h = self._act(gmm(xs, self.w1) + self.b1.index_select(0, e_sorted))
            out = gmm(h, self.w2) + self.b2.index_select(0, e_sorted)
        # Back to q order (a permutation; dropped assignments read row 0 and get weight 0).
        pos_q = torch.zeros(plan.S, dtype=torch.long, device=xt.device)
        pos_q[order] = torch.arange(order.shape[0], device=xt.device)
        return plan.combine(out.index_select(0, pos_q), routing.weights)

    def _ragged_bmm(self, plan: _Plan, e_sorted: torch.Tensor, rows: int):
        """Grouped matmul of ragged groups through a padded bmm (where grouped_mm cannot run)."""
        N = self.n_experts
        C = max(1, int(plan.counts.max()))
        starts = torch.cumsum(plan.counts, 0) - plan.counts
        rank = torch.arange(rows, device=e_sorted.device) - starts.index_select(0, e_sorted)
        dst = e_sorted * C + rank  # padded row of each ragged row

        def gmm(a, w):
            buf = a.new_zeros(N * C, a.shape[1]).index_copy(0, dst, a).view(N, C, -1)
            return torch.bmm(buf, w.transpose(1, 2)).reshape(N * C, -1).index_select(0, dst)
        return gmm

    def forward(self, x: torch.Tensor, return_routing: bool = False):
        """Apply the layer (vectorised; the strategy is set by ``dispatch``).

        Parameters
        ----------
        x : torch.Tensor, shape (..., d_model)
        return_routing : bool
            Also return the :class:`Routing` (it is kept in ``self.last_routing`` too; the
            strategy used is kept in ``self.last_dispatch``).

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
        T = xt.shape[0]
        strategy = self.dispatch if T else "dense"  # an empty batch: nothing to dispatch
        if strategy == "auto":
            strategy = self._auto_strategy(T, self.k)
        # The block kernel also does the gate's backward when the gate is a plain linear map; it
        # routes on logits computed here without gradient and hands back differentiable ones.
        fused = strategy == "padded" and self._uses_blocks() and (
            type(self.router) is TopKRouter or (type(self.router) is NoisyTopKRouter and not self.router.training))
        if fused:
            with torch.no_grad():
                routing = self.router._route_logits(self.router.logits(xt))
        else:
            routing = self.router(xt)
        capacity = self.capacity(T)
        plan = None
        if capacity is not None or strategy in ("sorted", "padded"):
            plan = _Plan(routing.indices, self.n_experts, capacity)
            if capacity is not None:
                routing.kept = plan.kept
                routing.load = plan.counts.to(routing.logits.dtype)
        if strategy == "dense":
            y = self._forward_dense(xt, routing)
        elif strategy == "padded":
            y = self._forward_padded(xt, routing, plan, fused)
        else:
            y = self._forward_sorted(xt, routing, plan)
        self.last_routing, self.last_dispatch = routing, strategy
        y = y.reshape(*lead, self.d_out)
        return (y, routing) if return_routing else y

    def forward_reference(self, x: torch.Tensor, return_routing: bool = False):
        """The reference computation: a plain loop over experts (the test oracle).

        With a capacity, expert ``i`` serves the first ``C`` of its assignments listed slot by
        slot, tokens in order within a slot (see ``capacity_factor``).
        """
        return_routing = check_bool("return_routing", return_routing)
        x = self._check_input(x)
        lead = x.shape[:-1]
        xt = x.reshape(-1, self.d_model)  # (T, D)
        routing = self.router(xt)
        capacity = self.capacity(xt.shape[0])
        kept = torch.ones_like(routing.indices, dtype=torch.bool)
        y = xt.new_zeros(xt.shape[0], self.d_out)  # (T, O)
        for i in range(self.n_experts):
            slot, token = torch.nonzero(routing.indices.T == i, as_tuple=True)  # slot-major order
            if capacity is not None:
                kept[token[capacity:], slot[capacity:]] = False
                slot, token = slot[:capacity], token[:capacity]
            if token.numel() == 0:
                continue
            w = routing.weights[token, slot][:, None]  # (T_i, 1)
            y = y.index_add(0, token, w * self.expert(i, xt[token]))
        if capacity is not None:
            routing.kept = kept
            routing.load = torch.stack([(routing.indices == i)[kept].sum() for i in range(self.n_experts)]).to(
                routing.weights.dtype)
        self.last_routing, self.last_dispatch = routing, "loop"
        y = y.reshape(*lead, self.d_out)
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
