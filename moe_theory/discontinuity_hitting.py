"""Brownian paths and the switching set of top-k routing: first hits, their order, erfc bounds.

Part of the chapter "Discontinuities of sparse MoE" (see :mod:`moe_theory.discontinuity` for the
orders, strata and tubes used here). Model: ``X_s = x0 + B_s`` with ``B`` a standard Brownian motion
in ``R^D`` and ``t_hit`` the first time ``X`` reaches ``Sigma = {delta_k = 0}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import erfc

from ._validation import check_array, check_k, check_positive_int, check_positive_real, check_rng
from .discontinuity import _router, near_order_thresholds

__all__ = ["first_hits", "HittingResult", "hitting_cdf_bounds"]


@dataclass
class HittingResult:
    """First hits of ``Sigma`` by Brownian paths ``X_s = x0 + B_s`` (see :func:`first_hits`).

    ``times[p]`` is ``inf`` for a path still in its starting cell at ``t_max`` (censored);
    ``near_orders[p, j]`` is the near-order at tolerance ``tols[j]`` at the hit point
    (``-1`` for censored paths).
    """
    times: np.ndarray
    points: np.ndarray
    gaps: np.ndarray
    near_orders: np.ndarray
    tols: tuple
    dt: float
    t_max: float

    def share_at_least(self, r, j):
        """Share of hits (uncensored paths) with near-order ``>= r`` at ``tols[j]``, and its std. error."""
        hit = np.isfinite(self.times)
        p = float(np.mean(self.near_orders[hit, j] >= r))
        return p, math.sqrt(p * (1 - p) / max(hit.sum(), 1))


def first_hits(W, b, k, x0, *, n_paths=1000, dt=1e-3, t_max=1.0, tols=(0.04, 0.02, 0.01, 0.005), seed=0,
               n_bisect=50):
    r"""First hits of the switching set by Brownian paths, by Euler–Maruyama steps and bisection.

    Paths ``X_{s+dt} = X_s + sqrt(dt) xi`` (exact for Brownian motion at the grid times) start at
    ``x0`` in the open cell ``R_A``, ``A = S_k(g(x0))``. At the first step that leaves the cell, the
    crossing is located on the straight step by bisecting ``min_{i in A} g_i - max_{j notin A} g_j``;
    its near-order at each tolerance is recorded. Crossings between grid points that return to the
    cell are missed (a bias of order ``sqrt(dt)`` in the hitting time): halve ``dt`` to check.

    Returns
    -------
    HittingResult
    """
    W, b = _router(W, b)
    k = check_k(k, W.shape[0], n_name="N")
    if k == W.shape[0]:
        raise ValueError(f"k must be < N (= {W.shape[0]}) for a switching set to exist, got k={k}")
    x0 = check_array("x0", x0, shape=(W.shape[1],), ndim=1)
    n_paths, n_bisect = check_positive_int("n_paths", n_paths), check_positive_int("n_bisect", n_bisect)
    dt, t_max = check_positive_real("dt", dt), check_positive_real("t_max", t_max)
    tols = tuple(check_positive_real("tols", t) for t in tols)
    rng = check_rng(seed, name="seed")
    g0 = W @ x0 + b
    A = np.zeros(W.shape[0], bool)
    A[np.argsort(-g0, kind="stable")[:k]] = True
    if near_order_thresholds(g0, k)[0] <= 0:
        raise ValueError("x0 must not lie on the switching set (delta_k(g(x0)) = 0)")

    def margin(x):                                            # > 0 exactly in the starting cell
        g = x @ W.T + b                                       # (M, N)
        return g[:, A].min(-1) - g[:, ~A].max(-1)

    D, n_steps = W.shape[1], int(math.ceil(t_max / dt))
    x = np.tile(x0, (n_paths, 1))                             # (P, D)
    alive = np.arange(n_paths)
    times, points = np.full(n_paths, np.inf), np.full((n_paths, D), np.nan)
    for step in range(n_steps):
        new = x[alive] + math.sqrt(dt) * rng.standard_normal((len(alive), D))
        out = margin(new) <= 0
        if out.any():
            p, lo, hi = alive[out], x[alive[out]], new[out]
            s_lo, s_hi = np.zeros(len(p)), np.ones(len(p))
            for _ in range(n_bisect):                         # margin(lo + s (hi - lo)) changes sign in [s_lo, s_hi]
                s = 0.5 * (s_lo + s_hi)
                inside = margin(lo + s[:, None] * (hi - lo)) > 0
                s_lo, s_hi = np.where(inside, s, s_lo), np.where(inside, s_hi, s)
            times[p] = (step + s_hi) * dt
            points[p] = lo + s_hi[:, None] * (hi - lo)
        x[alive] = new
        alive = alive[~out]
        if not len(alive):
            break
    hit = np.isfinite(times)
    orders = np.full((n_paths, len(tols)), -1)
    gaps = np.full(n_paths, np.nan)
    if hit.any():
        e = near_order_thresholds(points[hit] @ W.T + b, k)
        gaps[hit] = e[:, 0]
        orders[hit] = np.stack([(e <= t).sum(-1) for t in tols], -1)
    return HittingResult(times, points, gaps, orders, tols, dt, t_max)


def hitting_cdf_bounds(W, b, k, x0, t):
    r"""Reflection-principle bounds on ``P(s_hit <= s)`` for ``X_s = x0 + B_s``, at the times ``s = t``.

    With :math:`\operatorname{dist}_{ij} = (g_i - g_j)(x_0)/|w_i - w_j|` for ``i`` in the active set and ``j`` not,

    .. math:: \max_{ij} \operatorname{erfc}\Big(\frac{\operatorname{dist}_{ij}}{\sqrt{2s}}\Big) \le P(s_{\rm hit} \le s)
              \le \min\Big\{1, \sum_{ij} \operatorname{erfc}\Big(\frac{\operatorname{dist}_{ij}}{\sqrt{2s}}\Big)\Big\}.

    Returns
    -------
    lower, upper : numpy.ndarray, shape of ``t``

    Notes
    -----
    Reflection principle for the 1-D Brownian motion normal to each wall, and a union bound;
    see the chapter's proposition ``prop-disc-hit-bounds``.

    Examples
    --------
    >>> W, b = np.array([[1.0, 0.0], [-1.0, 0.0]]), np.zeros(2)   # one wall, x_1 = 0
    >>> lo, hi = hitting_cdf_bounds(W, b, 1, np.array([0.3, 0.0]), np.array([0.5]))
    >>> bool(np.isclose(lo[0], hi[0]))
    True
    """
    W, b = _router(W, b)
    k = check_k(k, W.shape[0], n_name="N")
    x0 = check_array("x0", x0, shape=(W.shape[1],), ndim=1)
    t = check_array("t", t)
    if np.any(t <= 0):
        raise ValueError(f"t must contain only positive times, got min(t)={t.min()}")
    g = W @ x0 + b
    order = np.argsort(-g, kind="stable")
    d = np.array([(g[i] - g[j]) / np.linalg.norm(W[i] - W[j]) for i in order[:k] for j in order[k:]
                  if np.linalg.norm(W[i] - W[j]) > 0])
    terms = erfc(d[:, None] / np.sqrt(2 * t.reshape(1, -1)))     # (pairs, len(t))
    return terms.max(0).reshape(t.shape), np.minimum(1.0, terms.sum(0)).reshape(t.shape)
