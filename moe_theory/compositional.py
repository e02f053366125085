"""Deep MoE and compositional sparsity: ``N^L`` routing paths from ``L N`` experts.

Notation (the book's notation page): a deep MoE has ``L`` layers of ``N`` experts each
(Wang and E write ``E`` for ``N``), top-1 routing, gate logits ``g = W h + b`` of the current
state ``h``; the *routing code* of an input is the sequence ``(j_1, ..., j_L)`` of experts it
visits, one of ``N^L`` paths.

This module holds what the chapter *computes exactly*:

* the **zigzag MoE** on the line (one layer with ``N`` affine experts computes
  ``z_N(x) = arccos(cos(pi N x)) / pi``, ``L`` layers compute ``z_{N^L}``), random stacks of
  affine-gated affine experts, and an **exact piece counter** for them (interval
  propagation, no grid);
* counters of routing paths and of linear pieces of sampled 1-D functions;
* **compositionally sparse targets** on ``[0, N]^L`` (Wang and E 2025, Eq. 4) and the
  **exact deep MoE** that represents them with ``L`` layers of ``N`` ReLU experts
  (:func:`build_compositional_moe`);
* the best ``P``-piece least-squares fit on the line (what a one-layer MoE with ``P`` affine
  experts can do at best).

The trained deep MoEs of Experiment II live in :mod:`moe_theory.compositional_train`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._validation import (check_array, check_choice, check_int, check_positive_int, check_rng)

__all__ = ["FAMILIES", "subfunction", "CompositionalTarget", "cell_index", "AffineStack", "zigzag_moe",
           "zigzag_closed_form", "piecewise_to_moe", "telgarsky_sawtooth", "random_affine_stack", "affine_stack_forward", "exact_affine_pieces",
           "count_routing_paths", "count_linear_pieces", "best_piecewise_fit", "build_compositional_moe",
           "grid_midpoints"]

#: Sub-function families on the unit interval ``[i - 1, i]`` of cell ``i`` (``i = 1..N``).
FAMILIES = ("p", "q", "hat", "zero")


def subfunction(family: str, i: int, z):
    """Sub-function ``i`` of a family, evaluated at ``z`` (numpy array or torch tensor).

    Notes
    -----
    On its unit interval ``[i - 1, i]``:

    * ``p_i(z) = i (z - i + 1)^2 (z - i)^2``: zero value and zero slope at both ends, so the
      ``p``-pieces join into a :math:`C^1` function (its second derivative jumps);
    * ``q_i(z) = i (z - i + 1)(i - z)``: zero at both ends with slopes ``+i`` and ``-i``, so the
      ``q``-pieces join with kinks (only :math:`C^0`);
    * ``hat_i(z) = i min(z - i + 1, i - z)``: piecewise linear (for exact representation);
    * ``zero_i(z) = 0``: a coordinate that does not matter (the first stage of a curriculum).

    The ``p`` family is the one recoverable from the caption of Wang and E's Fig. 3; the ``q``
    and ``hat`` families are this book's choices.
    """
    family = check_choice("family", family, FAMILIES)
    i = check_positive_int("i", i)
    a, b = z - (i - 1), i - z
    if family == "p":
        return i * a ** 2 * b ** 2
    if family == "q":
        return i * a * b
    if family == "zero":
        return 0 * z
    return i * (torch.minimum(a, b) if isinstance(z, torch.Tensor) else np.minimum(a, b))


def cell_index(x, n_experts: int):
    """Index ``i_l in {1..N}`` of the unit interval ``[i - 1, i]`` holding each coordinate ``x_l``.

    Interfaces belong to the left cell (``x_l = i`` lies in cell ``i``), as the smaller index wins
    a tie of the Voronoi gate (:func:`build_compositional_moe`); ``x_l = 0`` lies in cell 1.
    Works on numpy arrays (returns ints) and torch tensors (returns a LongTensor).
    """
    N = check_positive_int("n_experts", n_experts)
    if isinstance(x, torch.Tensor):
        return torch.clamp(torch.ceil(x), 1, N).long()
    return np.clip(np.ceil(x), 1, N).astype(int)


@dataclass(frozen=True)
class CompositionalTarget:
    """A compositionally sparse target on ``[0, N]^L`` (Wang and E 2025, Eq. 4, summed).

    ``f(x) = sum_l f_{l, i_l}(x_l)`` where ``i_l`` is the cell of ``x_l`` (:func:`cell_index`)
    and ``f_{l, i}`` is sub-function ``i`` of ``families[l]``. The target has ``L N``
    sub-functions but ``N^L`` pieces: one per unit cube, each a different combination.

    Parameters
    ----------
    n_experts : int
        ``N``, the number of cells per coordinate (and experts per layer of the exact MoE).
    families : tuple of str
        One family of :data:`FAMILIES` per coordinate; its length is ``L``. Experiment II uses
        ``("p", "q")``.

    Examples
    --------
    >>> f = CompositionalTarget(3, ("p", "q"))
    >>> f(np.array([[0.5, 0.5], [2.5, 1.5]])).round(4)
    array([0.3125, 0.6875])
    """

    n_experts: int = 3
    families: tuple = ("p", "q")

    def __post_init__(self):
        check_positive_int("n_experts", self.n_experts)
        if isinstance(self.families, str) or len(self.families) < 1:
            raise ValueError(f"families must be a non-empty tuple of names from {FAMILIES}, got {self.families!r}")
        for fam in self.families:
            check_choice("families entry", fam, FAMILIES)
        object.__setattr__(self, "families", tuple(self.families))

    @property
    def L(self) -> int:
        """Number of coordinates (layers of the exact MoE)."""
        return len(self.families)

    @property
    def n_pieces(self) -> int:
        """``N^L``: the number of unit cubes, each with its own formula."""
        return self.n_experts ** self.L

    def _check_points(self, x):
        if isinstance(x, torch.Tensor):
            if x.ndim < 1 or x.shape[-1] != self.L:
                raise ValueError(f"x must have shape (..., {self.L}) (one column per coordinate), "
                                 f"got shape {tuple(x.shape)}")
            return x
        x = check_array("x", x, min_ndim=1)
        if x.shape[-1] != self.L:
            raise ValueError(f"x must have shape (..., {self.L}) (one column per coordinate), got shape {x.shape}")
        if np.any(x < 0) or np.any(x > self.n_experts):
            raise ValueError(f"x must lie in the domain [0, {self.n_experts}]^{self.L}, "
                             f"got values in [{x.min():g}, {x.max():g}]")
        return x

    def subfunction_values(self, x):
        """``f_{l, i_l}(x_l)`` for every coordinate, shape ``(..., L)``."""
        x = self._check_points(x)
        idx = cell_index(x, self.n_experts)
        cols = []
        for l, fam in enumerate(self.families):
            z = x[..., l]
            val = 0 * z
            for i in range(1, self.n_experts + 1):
                mask = idx[..., l] == i
                val = val + (mask * subfunction(fam, i, z) if isinstance(z, torch.Tensor)
                             else np.where(mask, subfunction(fam, i, z), 0.0))
            cols.append(val)
        return torch.stack(cols, -1) if isinstance(x, torch.Tensor) else np.stack(cols, -1)

    def __call__(self, x):
        """``f(x)``, shape ``(...)`` for ``x`` of shape ``(..., L)`` (numpy or torch)."""
        return self.subfunction_values(x).sum(-1)

    def cells(self, x):
        """Cell indices ``(i_1, ..., i_L)`` (1-based) of each point, shape ``(..., L)``."""
        return cell_index(self._check_points(x), self.n_experts)


def grid_midpoints(n_side: int, L: int, hi: float):
    """The ``n_side^L`` midpoints of a regular grid on ``[0, hi]^L``, shape ``(n_side^L, L)``.

    With ``n_side`` a multiple of ``hi`` no point lies on an interface ``x_l = i``.
    """
    n_side = check_positive_int("n_side", n_side)
    L = check_positive_int("L", L)
    t = (np.arange(n_side) + 0.5) * hi / n_side
    return np.stack(np.meshgrid(*([t] * L), indexing="ij"), -1).reshape(-1, L)


# ----------------------------------------------------------------------------- stacks of affine experts on the line
@dataclass(frozen=True)
class AffineStack:
    """``L`` MoE layers on the line, each with ``N`` affine gate logits and ``N`` affine experts.

    Layer ``l`` maps a scalar ``h`` to ``E_j(h) = a[l, j] h + c[l, j]`` with
    ``j = argmax_i (w[l, i] h + b[l, i])`` (smaller index on ties), weight 1 (top-1).
    All four arrays have shape ``(L, N)``.
    """

    w: np.ndarray
    b: np.ndarray
    a: np.ndarray
    c: np.ndarray

    def __post_init__(self):
        arrs = [check_array(n, getattr(self, n), ndim=2) for n in ("w", "b", "a", "c")]
        if len({x.shape for x in arrs}) != 1:
            raise ValueError(f"w, b, a and c must have the same shape (L, N), got "
                             f"{[x.shape for x in arrs]}")
        for n, x in zip("wbac", arrs):
            object.__setattr__(self, n, x)

    @property
    def L(self) -> int:
        return self.w.shape[0]

    @property
    def N(self) -> int:
        return self.w.shape[1]


def zigzag_moe(N: int, L: int) -> AffineStack:
    """The zigzag MoE: ``L`` identical layers of ``N`` affine experts folding ``[0, 1]``.

    Notes
    -----
    Gate ``g_i(h) = c_i h - c_i^2 / 2`` with ``c_i = (i - 1/2) / N`` (``i = 1..N``)
    routes ``h`` to its nearest centre, i.e. to the cell ``[(i-1)/N, i/N]``; expert ``i``
    is ``N h - (i - 1)`` for odd ``i`` and ``i - N h`` for even ``i``. One layer computes
    ``z_N(h) = arccos(cos(pi N h)) / pi``; since ``z_a o z_b = z_{ab}``, ``L`` layers
    compute ``z_{N^L}`` (:func:`zigzag_closed_form`). ``N = 2``: Telgarsky's tent map.
    """
    N = check_positive_int("N", N)
    L = check_positive_int("L", L)
    i = np.arange(1, N + 1)
    c = (i - 0.5) / N  # Voronoi centres
    slope = np.where(i % 2 == 1, N, -N).astype(float)
    icpt = np.where(i % 2 == 1, -(i - 1), i).astype(float)
    rep = lambda v: np.tile(v, (L, 1))  # noqa: E731  (L, N): the same layer L times
    return AffineStack(rep(c), rep(-c ** 2 / 2), rep(slope), rep(icpt))


def piecewise_to_moe(breaks, slopes, intercepts) -> AffineStack:
    """A one-layer :class:`AffineStack` computing a given ``P``-piece affine function on the line.

    Piece ``i`` (``0 <= i < P``) is ``slopes[i] x + intercepts[i]`` on
    ``(breaks[i-1], breaks[i]]`` (``breaks``: ``P - 1`` increasing numbers). The gate lines
    ``g_i = i x + b_i`` with ``b_{i+1} = b_i - breaks[i]`` have increasing slopes and meet
    consecutively at the breaks, so their maximum is convex and line ``i`` wins exactly on
    piece ``i`` (ties at a break go to the smaller index, the left piece).
    """
    slopes = check_array("slopes", slopes, ndim=1)
    intercepts = check_array("intercepts", intercepts, ndim=1)
    P = slopes.size
    breaks = check_array("breaks", breaks, ndim=1) if P > 1 else np.zeros(0)
    if intercepts.size != P or breaks.size != P - 1:
        raise ValueError(f"a function with P = {P} pieces needs {P} intercepts and {P - 1} breaks, "
                         f"got {intercepts.size} intercepts and {breaks.size} breaks")
    if np.any(np.diff(breaks) <= 0):
        raise ValueError("breaks must be strictly increasing")
    b = -np.r_[0.0, np.cumsum(breaks)]
    return AffineStack(np.arange(P, dtype=float)[None], b[None], slopes[None], intercepts[None])


def zigzag_closed_form(x, n: int) -> np.ndarray:
    """``z_n(x) = arccos(cos(pi n x)) / pi``: the piecewise-linear zigzag with ``n`` pieces on ``[0, 1]``.

    Evaluated as the equal triangle wave ``1 - |1 - (n x mod 2)|``: ``arccos`` near ``+-1`` loses
    half the digits (an error of order ``sqrt(machine eps)`` ~ 1e-8 next to the kinks).
    """
    n = check_positive_int("n", n)
    x = check_array("x", x)
    u = np.mod(n * x, 2.0)  # in [0, 2): cos(pi n x) = cos(pi u)
    return 1.0 - np.abs(1.0 - u)


def telgarsky_sawtooth(x, L: int) -> np.ndarray:
    """Telgarsky's dense ReLU network: ``L`` hidden layers of 2 units computing the tent map ``L`` times.

    Each layer maps ``h -> 2 relu(h) - 4 relu(h - 1/2)``, which on ``[0, 1]`` is the tent map
    ``t(h) = 2 min(h, 1 - h)`` (Telgarsky 2016); ``L`` layers give ``z_{2^L}`` with ``2^L`` pieces
    from ``2 L`` units. The zigzag MoE with ``N = 2`` (:func:`zigzag_moe`) computes the same map.
    """
    L = check_positive_int("L", L)
    h = check_array("x", x)
    for _ in range(L):
        h = 2 * np.maximum(h, 0) - 4 * np.maximum(h - 0.5, 0)  # 2 ReLU units
    return h


def random_affine_stack(N: int, L: int, *, rng) -> AffineStack:
    """A random :class:`AffineStack` (standard normal gates and experts), for counting experiments."""
    N = check_positive_int("N", N)
    L = check_positive_int("L", L)
    rng = check_rng(rng)
    w, b, a, c = (rng.standard_normal((L, N)) for _ in range(4))
    return AffineStack(w, b, a, c)


def affine_stack_forward(stack: AffineStack, x):
    """Output ``y`` (shape ``(T,)``) and routing codes (``(T, L)``, 0-based) of an :class:`AffineStack`."""
    if not isinstance(stack, AffineStack):
        raise TypeError(f"stack must be an AffineStack, got {type(stack).__name__}")
    h = check_array("x", x, ndim=1).copy()
    codes = np.empty((h.size, stack.L), dtype=int)
    for l in range(stack.L):
        j = np.argmax(h[:, None] * stack.w[l] + stack.b[l], axis=1)  # (T,): first maximum on ties
        codes[:, l] = j
        h = stack.a[l, j] * h + stack.c[l, j]
    return h, codes


def _envelope(w, b, u0, u1):
    """Intervals of ``[u0, u1]`` on which each line ``w_i u + b_i`` is the strict maximum (in order)."""
    out, u = [], u0
    while True:
        val = w * u + b
        top = np.flatnonzero(val >= val.max() - 1e-12 * (1 + abs(val.max())))
        i = top[np.argmax(w[top])] if u1 > u0 else top[0]  # the line that wins just right of u
        later = [(b[i] - b[k]) / (w[k] - w[i]) for k in range(len(w)) if w[k] > w[i]]
        later = [v for v in later if v > u * (1 + 1e-12) + 1e-300 and v > u]
        nxt = min(later, default=np.inf)
        if nxt >= u1:
            out.append((u, u1, int(i)))
            return out
        out.append((u, nxt, int(i)))
        u = nxt


def exact_affine_pieces(stack: AffineStack, lo: float = 0.0, hi: float = 1.0) -> list[tuple]:
    """Every maximal interval of ``[lo, hi]`` with one routing code, found without a grid.

    Returns a list of ``(x0, x1, slope, intercept, code)``, in order, on which the stack is the
    affine map ``slope x + intercept`` and routes by ``code`` (a tuple of 0-based experts).

    Notes
    -----
    Interval propagation: on each current piece the state ``h = alpha x + beta`` is affine, hence
    monotone, so the next gate's upper envelope (at most ``N`` intervals in ``h``) pulls back to
    at most ``N`` sub-intervals. Hence at most ``N^L`` pieces (the chapter's
    ``prop-comp-affine-stack-bound``). Breakpoints are computed in floating point.
    """
    if not isinstance(stack, AffineStack):
        raise TypeError(f"stack must be an AffineStack, got {type(stack).__name__}")
    if not hi > lo:
        raise ValueError(f"hi must be > lo, got lo={lo}, hi={hi}")
    pieces = [(float(lo), float(hi), 1.0, 0.0, ())]
    for l in range(stack.L):
        new = []
        for x0, x1, al, be, code in pieces:
            u0, u1 = al * x0 + be, al * x1 + be
            if al == 0:
                j = int(np.argmax(stack.w[l] * u0 + stack.b[l]))
                new.append((x0, x1, stack.a[l, j] * al, stack.a[l, j] * be + stack.c[l, j], code + (j,)))
                continue
            segs = _envelope(stack.w[l], stack.b[l], min(u0, u1), max(u0, u1))
            xs = [((s0 - be) / al, (s1 - be) / al, j) for s0, s1, j in segs]
            if al < 0:
                xs = [(q1, q0, j) for q0, q1, j in reversed(xs)]
            xs[0] = (x0,) + xs[0][1:]
            xs[-1] = (xs[-1][0], x1, xs[-1][2])
            for q0, q1, j in xs:
                if q1 > q0:
                    new.append((q0, q1, stack.a[l, j] * al, stack.a[l, j] * be + stack.c[l, j], code + (j,)))
        pieces = new
    return pieces


def count_routing_paths(codes) -> int:
    """Number of distinct routing codes (rows of ``codes``, shape ``(T, L)``)."""
    codes = check_array("codes", codes, ndim=2, dtype=int)
    return int(len(np.unique(codes, axis=0)))


def count_linear_pieces(x, y, *, rtol: float = 1e-6) -> int:
    """Number of linear pieces of a sampled 1-D function: 1 + number of slope changes.

    ``x`` must be strictly increasing. A slope change counts when consecutive finite-difference
    slopes differ by more than ``rtol * (1 + max |slope|)``. A breakpoint strictly inside a
    grid cell changes two consecutive slopes but is counted once (a run of changes counts once).
    Exact only when the grid is fine enough to put two points on every piece.
    """
    x = check_array("x", x, ndim=1)
    y = check_array("y", y, ndim=1)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"x and y must have the same length >= 2, got {x.size} and {y.size}")
    if np.any(np.diff(x) <= 0):
        raise ValueError("x must be strictly increasing")
    s = np.diff(y) / np.diff(x)
    change = np.abs(np.diff(s)) > rtol * (1 + np.abs(s).max())
    starts = change & ~np.r_[False, change[:-1]]  # a run of changes is one breakpoint
    return int(1 + starts.sum())


def best_piecewise_fit(x, y, n_pieces: int, *, n_candidates: int = 256):
    """Least-squares fit of ``y(x)`` by a function with ``n_pieces`` affine pieces (jumps allowed).

    This is what a one-layer MoE with ``n_pieces`` affine experts and a linear gate can do on
    the line at best (the chapter's ``prop-comp-one-layer-segments``), up to breakpoints
    restricted to ``n_candidates`` equally spaced sample indices. Dynamic programming over the
    candidates with prefix sums (``O(n_pieces * n_candidates^2)``).

    Returns
    -------
    mse : float
    fit : ndarray, the fitted values at ``x``
    breaks : list of int, the sample indices where new pieces start
    """
    x = check_array("x", x, ndim=1)
    y = check_array("y", y, ndim=1)
    P = check_positive_int("n_pieces", n_pieces)
    n_candidates = check_int("n_candidates", n_candidates, minimum=2)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    n = x.size
    cand = np.unique(np.linspace(0, n, min(n_candidates, n) + 1).round().astype(int))
    S = [np.r_[0.0, np.cumsum(v)] for v in (np.ones(n), x, y, x * x, x * y, y * y)]
    a, b = np.meshgrid(cand, cand, indexing="ij")
    s0, sx, sy, sxx, sxy, syy = (s[b] - s[a] for s in S)
    with np.errstate(divide="ignore", invalid="ignore"):
        vx = sxx - sx ** 2 / s0
        cov = sxy - sx * sy / s0
        sse = syy - sy ** 2 / s0 - np.where(vx > 1e-15 * (1 + sxx), cov ** 2 / vx, 0.0)
    cost = np.where(b > a, np.maximum(sse, 0.0), np.inf)  # cost[i, k]: one piece on samples cand[i]:cand[k]
    K = len(cand)
    best = np.full((P + 1, K), np.inf)
    arg = np.zeros((P + 1, K), dtype=int)
    best[0, 0] = 0.0
    for p in range(1, P + 1):
        tot = best[p - 1][:, None] + cost  # (K, K)
        arg[p] = np.argmin(tot, 0)
        best[p] = tot[arg[p], np.arange(K)]
    p = int(np.argmin(best[:, -1]))  # fewer pieces may already be optimal
    k, bounds = K - 1, [K - 1]
    while p > 0:
        k = arg[p, k]
        bounds.append(k)
        p -= 1
    idx = [cand[i] for i in reversed(bounds)]
    fit = np.empty(n)
    for s, e in zip(idx[:-1], idx[1:]):
        coef = np.polyfit(x[s:e], y[s:e], 1) if e - s > 1 else np.array([0.0, y[s]])
        fit[s:e] = np.polyval(coef, x[s:e])
    return float(np.mean((fit - y) ** 2)), fit, idx[1:-1]


# ----------------------------------------------------------------------------- the exact deep MoE for Eq.-4 targets
def build_compositional_moe(target: CompositionalTarget, m: int, *, device=None,
                            dtype=torch.float64):
    """A deep MoE, ``L`` layers of ``N`` ReLU experts, representing ``target`` exactly.

    Parameters
    ----------
    target : CompositionalTarget
        ``f(x) = sum_l f_{l, i_l}(x_l)`` on ``[0, N]^L``.
    m : int
        Spline units per expert: expert ``j`` of layer ``l`` interpolates ``f_{l, j}``
        linearly at the ``m + 1`` equispaced knots of ``[j - 1, j]``.

    Returns
    -------
    DeepMoEPopulation
        One member, ``weighting="renormalized"`` (``pi = 1``), state widths
        ``(L, L, L - 1, ..., 2, 1)``, expert width ``m + L + 1``.

    Notes
    -----
    ``h^(0) = x``, ``h^(l) = (a_l, x_{l+1}, ..., x_L)``, ``a_l = sum_{k<=l} s_{k,i_k}(x_k)``.
    Layer ``l``'s gate is the Voronoi gate of ``x_l``: ``g_j = c_j x_l - c_j^2 / 2`` with
    ``c_j = j - 1/2`` picks the cell ``i_l`` (ties: smaller index). Expert ``j`` adds the
    spline ``hat f_{l,j}(vartheta) = f_{l,j}(j-1) + sum_n (beta_n - beta_{n-1}) relu(vartheta - vartheta_n)`` to
    the accumulator and copies the rest: ``a = relu(a) - relu(-a)``, ``x_c = relu(x_c)``.
    """
    from .compositional_train import DeepMoEPopulation, StackSpec

    if not isinstance(target, CompositionalTarget):
        raise TypeError(f"target must be a CompositionalTarget, got {type(target).__name__}")
    m = check_positive_int("m", m)
    N, L = target.n_experts, target.L
    dims = (L,) + tuple(L - l + 1 for l in range(1, L + 1))
    spec = StackSpec(dims, (N,) * L, m + L + 1)
    model = DeepMoEPopulation(spec, [0], weighting="renormalized", device=device, dtype=dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for l in range(1, L + 1):
            pos = 0 if l == 1 else 1  # where x_l sits in h^(l-1)
            for j in range(1, N + 1):
                c = j - 0.5
                model.gate_w[l - 1][0, j - 1, pos] = c  # g_j = c_j x_l - c_j^2 / 2
                model.gate_b[l - 1][0, j - 1] = -c * c / 2
                t = (j - 1) + np.arange(m + 1) / m  # the m + 1 knots
                s = np.asarray(subfunction(target.families[l - 1], j, t), dtype=float)
                sigma = np.diff(s) * m  # slopes on the m segments
                w1, b1 = model.w1[l - 1][0, j - 1], model.b1[l - 1][0, j - 1]
                w2, b2 = model.w2[l - 1][0, j - 1], model.b2[l - 1][0, j - 1]
                w1[:m, pos] = 1.0  # units relu(x_l - t_k)
                b1[:m] = torch.as_tensor(-t[:m])
                w2[0, :m] = torch.as_tensor(np.diff(np.r_[0.0, sigma]))
                b2[0] = float(s[0])
                u = m
                if l > 1:  # carry a_{l-1} (index 0), any sign: relu(a) - relu(-a)
                    w1[u, 0], w1[u + 1, 0], w2[0, u], w2[0, u + 1] = 1.0, -1.0, 1.0, -1.0
                    u += 2
                for cc in range(l + 1, L + 1):  # carry x_c >= 0 as relu(x_c)
                    w1[u, cc - 1 if l == 1 else cc - l + 1] = 1.0
                    w2[cc - l, u] = 1.0
                    u += 1
    return model
