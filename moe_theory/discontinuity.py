"""Discontinuities of top-k routing: orders, strata, jumps, tube volumes and Brownian first hits.

The book's chapter "Discontinuities of sparse MoE" (``book/discontinuity.md``) runs on this module;
Brownian first hits are in :mod:`moe_theory.discontinuity_hitting`, the smoothed router of Tran Huu
et al. and the small training comparison in :mod:`moe_theory.discontinuity_smooth`.

Notation (book/notation.md): gate logits ``g(x) = W x + b`` with rows ``w_i``, sorted
``g_(1) >= ... >= g_(N)``, routing gap ``delta_k = g_(k) - g_(k+1)``; the switching set is
``Sigma = {delta_k = 0}``; a point of ``Sigma`` has *order* ``r`` when ``r + 1`` logits tie at the
``k``-th value across the cut (places ``k`` and ``k + 1``). Source: Tran Huu et al., *Geometric and
Stochastic Analysis of Discontinuities in Sparse Mixture-of-Experts*, ICML 2026 (arXiv:2606.19036);
the statements here are the book's reconstruction for linear gates.
"""

from __future__ import annotations

import itertools

import numpy as np

from ._validation import check_array, check_choice, check_k, check_positive_int, check_positive_real, \
    check_real, check_rng

__all__ = [
    "near_order_thresholds", "discontinuity_order", "switching_segments", "order2_points",
    "distance_to_segments", "moe_output", "jump_across_surface", "tube_probabilities",
    "euclidean_tube_fractions", "tube_slopes", "loglog_slope",
]


def _logits(logits, k):
    g = check_array("logits", logits, min_ndim=1)
    return g, check_k(k, g.shape[-1], n_name="logits.shape[-1]")


def _router(W, b):
    W = check_array("W", W, ndim=2)
    b = check_array("b", b, shape=(W.shape[0],), ndim=1)
    return W, b


# ------------------------------------------------------------------ orders
def near_order_thresholds(logits, k):
    r"""The smallest tolerance at which each order ``r = 1..N-1`` is reached.

    .. math::

        e_r(g) = \min_{\max(1, k-r+1) \le j \le k}
                 \big(g_{(j)} - g_{(j+r)}\big),

    the spread of the tightest block of ``r + 1`` consecutive sorted
    logits that covers places ``k`` and ``k + 1``. ``e_r`` is nondecreasing
    in ``r`` and ``e_1 = delta_k``. For ``k = N`` there is no cut: every
    ``e_r`` is ``inf``.

    Parameters
    ----------
    logits : array_like, shape (..., N)
    k : int, ``1 <= k <= N``

    Returns
    -------
    numpy.ndarray, shape (..., N - 1)

    Examples
    --------
    >>> near_order_thresholds([3.0, 1.0, 0.9, 0.0], 2)
    array([0.1, 1. , 3. ])
    """
    g, k = _logits(logits, k)
    N = g.shape[-1]
    s = -np.sort(-g, axis=-1)                       # (..., N) descending
    out = np.full(g.shape[:-1] + (max(N - 1, 0),), np.inf)
    if k == N:
        return out
    for r in range(1, N):
        starts = range(max(1, k - r + 1), min(k, N - r) + 1)   # 1-based j
        spreads = [s[..., j - 1] - s[..., j + r - 1] for j in starts]
        out[..., r - 1] = np.min(np.stack(spreads, 0), 0)
    return out


def discontinuity_order(logits, k, tol=0.0):
    r"""Order of the discontinuity of top-``k`` routing at each logit vector (0 off ``Sigma``).

    With ``tol = 0`` this is the exact order: ``r`` when exactly ``r + 1`` logits tie at
    ``g_(k)`` and the tied block covers places ``k`` and ``k + 1`` (ties wholly inside or outside
    the top ``k`` do not count). With ``tol > 0`` it is the *near-order* ``r_tol``, the largest
    ``r`` with :func:`near_order_thresholds` ``e_r <= tol``; ``{r_tol >= r}`` is a thickening of
    the order-``r`` set, measured in logit differences.

    Parameters
    ----------
    logits : array_like, shape (..., N)
        Gate logits ``g``.
    k : int
        Number of active experts, ``1 <= k <= N``.
    tol : float
        Nonnegative tolerance (0: exact ties only).

    Returns
    -------
    numpy.ndarray of int, shape (...)

    Examples
    --------
    >>> discontinuity_order([[3.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0], [2.0, 2.0, 1.0, 0.0]], 2)
    array([1, 2, 0])
    """
    tol = check_real("tol", tol, minimum=0.0)
    return (near_order_thresholds(logits, k) <= tol).sum(-1)


# ------------------------------------------------------------------ exact strata in the plane
def _box(box):
    box = check_array("box", box, shape=(4,), ndim=1)
    if not (box[0] < box[1] and box[2] < box[3]):
        raise ValueError(f"box must be (xmin, xmax, ymin, ymax) with xmin < xmax and ymin < ymax, got {box}")
    return box


def switching_segments(W, b, k, box=(-3.0, 3.0, -3.0, 3.0)):
    """The order-1 set of a planar router, exactly: the segments where a pair holds places k, k+1.

    Each line ``g_i = g_j`` is clipped to the box and cut at its crossings with the other experts'
    logits; a piece belongs to ``Sigma_1`` when exactly ``k - 1`` logits lie above ``g_i = g_j``.

    Returns
    -------
    list of (i, j, p, q)
        Expert pair ``i < j`` and the segment's end points ``p, q`` (arrays of shape (2,)).
    """
    W, b = _router(W, b)
    if W.shape[1] != 2:
        raise ValueError(f"W must have shape (N, 2) for a planar router, got shape {W.shape}")
    k = check_k(k, W.shape[0], n_name="N")
    box = _box(box)
    segs = []
    for a, c in itertools.combinations(range(W.shape[0]), 2):
        n, off = W[a] - W[c], b[a] - b[c]
        if np.linalg.norm(n) < 1e-12:
            continue
        p0, v = -off * n / (n @ n), np.array([-n[1], n[0]]) / np.linalg.norm(n)   # line p0 + t v
        lo, hi = -np.inf, np.inf
        for dim, (mn, mx) in enumerate(((box[0], box[1]), (box[2], box[3]))):
            if abs(v[dim]) < 1e-15:
                if not mn <= p0[dim] <= mx:
                    lo, hi = 1.0, 0.0
                continue
            t1, t2 = sorted(((mn - p0[dim]) / v[dim], (mx - p0[dim]) / v[dim]))
            lo, hi = max(lo, t1), min(hi, t2)
        if lo >= hi:
            continue
        base, slope = p0 @ W.T + b, v @ W.T                      # g(p0 + t v) = base + t slope
        cuts = [lo, hi] + [t for t in (-(base - base[a]) / np.where(slope == slope[a], np.nan, slope - slope[a]))
                           if np.isfinite(t) and lo < t < hi]
        cuts = np.sort(cuts)
        for t0, t1 in zip(cuts[:-1], cuts[1:]):
            gm = base + 0.5 * (t0 + t1) * slope
            if np.sum(np.delete(gm, [a, c]) > gm[a]) == k - 1:
                if segs and segs[-1][:2] == (a, c) and np.allclose(segs[-1][3], p0 + t0 * v):
                    segs[-1] = (a, c, segs[-1][2], p0 + t1 * v)     # merge with the previous piece
                else:
                    segs.append((a, c, p0 + t0 * v, p0 + t1 * v))
    return segs


def order2_points(W, b, k, box=(-3.0, 3.0, -3.0, 3.0)):
    """The order-2 points of a planar router: triple ties whose block covers places k and k+1.

    Returns
    -------
    points : numpy.ndarray, shape (M, 2)
    triples : list of tuple
    """
    W, b = _router(W, b)
    if W.shape[1] != 2:
        raise ValueError(f"W must have shape (N, 2) for a planar router, got shape {W.shape}")
    k = check_k(k, W.shape[0], n_name="N")
    box = _box(box)
    pts, triples = [], []
    for i, j, l in itertools.combinations(range(W.shape[0]), 3):
        A = np.stack([W[i] - W[j], W[i] - W[l]])
        if abs(np.linalg.det(A)) < 1e-12:
            continue
        x = np.linalg.solve(A, -np.array([b[i] - b[j], b[i] - b[l]]))
        if not (box[0] <= x[0] <= box[1] and box[2] <= x[1] <= box[3]):
            continue
        g = W @ x + b
        above = int(np.sum(np.delete(g, [i, j, l]) > g[i] + 1e-9 * (1 + abs(g[i]))))
        if k - 2 <= above <= k - 1:                             # the tied block covers places k, k+1
            pts.append(x)
            triples.append((i, j, l))
    return np.array(pts).reshape(-1, 2), triples


def distance_to_segments(x, segments):
    """Euclidean distance from each point of ``x`` (shape (M, 2)) to a union of segments."""
    x = check_array("x", x, shape=(2,), ndim=2)
    best = np.full(x.shape[0], np.inf)
    for seg in segments:
        p, q = np.asarray(seg[-2], float), np.asarray(seg[-1], float)
        v = q - p
        t = np.clip(((x - p) @ v) / max(v @ v, 1e-300), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(x - p - t[:, None] * v, axis=1))
    return best


# ------------------------------------------------------------------ jumps
def moe_output(logits, expert_outputs, k, weighting="renormalized"):
    r"""Top-``k`` MoE output ``y = sum_{i in S_k} pi_i E_i`` from logits and all experts' outputs.

    ``weighting="renormalized"`` is top-k then softmax (TK-SM, :math:`\pi_i = e^{g_i}/\sum_{S_k}
    e^{g_j}`); ``"softmax"`` keeps the full softmax's entries (SM-TK, no renormalisation). Ties are
    broken by the smaller index (a stable sort), as everywhere in the book.

    Parameters
    ----------
    logits : array_like, shape (T, N)
    expert_outputs : array_like, shape (T, N, D_out)
    """
    g, k = _logits(logits, k)
    E = check_array("expert_outputs", expert_outputs, ndim=g.ndim + 1)
    if E.shape[:-1] != g.shape:
        raise ValueError(f"expert_outputs must have shape {g.shape + ('D_out',)}, got shape {E.shape}")
    weighting = check_choice("weighting", weighting, ("renormalized", "softmax"))
    idx = np.argsort(-g, axis=-1, kind="stable")[..., :k]       # (T, k) S_k(g)
    e = np.exp(g - g.max(-1, keepdims=True))                     # (T, N)
    mask = np.zeros_like(g, dtype=bool)
    np.put_along_axis(mask, idx, True, -1)
    pi = np.where(mask, e, 0.0) / (np.where(mask, e, 0.0) if weighting == "renormalized" else e).sum(-1, keepdims=True)
    return np.einsum("...n,...nd->...d", pi, E)                  # (T, D_out)


def jump_across_surface(logits_fn, experts_fn, x_minus, x_plus, k, *, weighting="renormalized", n_bisect=80):
    r"""Locate the first change of active set on a segment and measure the output's jump there.

    Bisects ``[x_minus, x_plus]`` for the point ``x*`` where ``S_k`` leaves ``S_k(g(x_minus))``, then
    returns the measured jump ``y(x+) - y(x-)`` between the final bracketing points and the closed
    form of the book (order 1): ``pi_* (E_j(x*) - E_i(x*))``, where ``i`` leaves, ``j`` enters and

    .. math:: \pi_* = \frac{e^{g_{(k)}}}{\sum_{l \in \mathcal A_0} e^{g_l} + e^{g_{(k)}}} \ \text{(TK-SM)},
              \qquad \pi_* = \frac{e^{g_{(k)}}}{\sum_{l \le N} e^{g_l}} \ \text{(SM-TK)},

    with ``A_0`` the ``k - 1`` experts above the tie.

    Parameters
    ----------
    logits_fn, experts_fn : callable
        ``x (M, D) -> g (M, N)`` and ``x (M, D) -> E (M, N, D_out)``.
    x_minus, x_plus : array_like, shape (D,)
        End points with different active sets.

    Returns
    -------
    dict with ``point``, ``measured``, ``predicted``, ``pair`` (i, j) and ``pi_star``.
    """
    weighting = check_choice("weighting", weighting, ("renormalized", "softmax"))
    n_bisect = check_positive_int("n_bisect", n_bisect)
    lo, hi = check_array("x_minus", x_minus, ndim=1), check_array("x_plus", x_plus, shape=(len(x_minus),), ndim=1)
    N = np.asarray(logits_fn(lo[None])).shape[-1]
    k = check_k(k, N, n_name="N")

    def active(x):
        return frozenset(np.argsort(-np.asarray(logits_fn(x[None]))[0], kind="stable")[:k].tolist())

    start = active(lo)
    if active(hi) == start:
        raise ValueError("x_minus and x_plus must have different active sets (the segment must cross Sigma)")
    for _ in range(n_bisect):
        mid = 0.5 * (lo + hi)
        if active(mid) == start:
            lo = mid
        else:
            hi = mid
    y = [moe_output(logits_fn(x[None]), experts_fn(x[None]), k, weighting)[0] for x in (lo, hi)]
    out_, in_ = start - active(hi), active(hi) - start
    if len(out_) != 1:
        raise ValueError(f"the crossing is not of order 1 ({len(out_)} experts swap at once)")
    a, b_ = next(iter(out_)), next(iter(in_))
    x_star = 0.5 * (lo + hi)
    g = np.asarray(logits_fn(x_star[None]))[0]
    E = np.asarray(experts_fn(x_star[None]))[0]
    above = [j for j in start if j != a]
    gk = 0.5 * (g[a] + g[b_])
    denom = np.exp(g).sum() if weighting == "softmax" else np.exp(g[above]).sum() + np.exp(gk)
    pi_star = np.exp(gk) / denom
    return {"point": x_star, "measured": y[1] - y[0], "predicted": pi_star * (E[b_] - E[a]),
            "pair": (a, b_), "pi_star": float(pi_star)}


# ------------------------------------------------------------------ tube volumes
def _uniform_box(n, D, half_width, rng):
    return rng.uniform(-half_width, half_width, size=(n, D))


def tube_probabilities(W, b, k, eps, *, n_points=200_000, half_width=2.0, seed=0):
    r"""Monte-Carlo ``P(r_eps(X) >= r)`` for ``X`` uniform on ``[-h, h]^D``, for every ``r`` and ``eps``.

    Thresholds :func:`near_order_thresholds` are computed once and sorted, so all tolerances cost
    one ``searchsorted``. ``{r_eps >= r}`` lies between Euclidean tubes of radii ``c_1 eps`` and
    ``c_2 eps`` around the order-``>= r`` set, so it has the same exponent ``eps^r``.

    Returns
    -------
    numpy.ndarray, shape (len(eps), N - 1)
    """
    W, b = _router(W, b)
    eps = check_array("eps", eps, ndim=1)
    if np.any(eps <= 0):
        raise ValueError(f"eps must contain only positive tolerances, got min(eps)={eps.min()}")
    n_points = check_positive_int("n_points", n_points)
    half_width = check_positive_real("half_width", half_width)
    rng = check_rng(seed, name="seed")
    x = _uniform_box(n_points, W.shape[1], half_width, rng)      # (n, D)
    e = near_order_thresholds(x @ W.T + b, k)                    # (n, N - 1)
    e.sort(axis=0)
    return np.stack([np.searchsorted(e[:, r], eps, side="right") for r in range(e.shape[1])], -1) / n_points


def euclidean_tube_fractions(W, b, k, eps, *, n_points=200_000, half_width=2.0, seed=0):
    """Fractions of the planar box within Euclidean distance ``eps`` of ``Sigma_1`` and of ``Sigma_2``.

    Distances are to the exact strata (:func:`switching_segments`, :func:`order2_points`).

    Returns
    -------
    frac : numpy.ndarray, shape (len(eps), 2)
    length : float
        Total length of ``Sigma_1`` in the box.
    n2 : int
        Number of order-2 points in the box.
    """
    W, b = _router(W, b)
    eps = check_array("eps", eps, ndim=1)
    if np.any(eps <= 0):
        raise ValueError(f"eps must contain only positive radii, got min(eps)={eps.min()}")
    half_width = check_positive_real("half_width", half_width)
    box = (-half_width, half_width, -half_width, half_width)
    segs = switching_segments(W, b, k, box)
    pts, _ = order2_points(W, b, k, box)
    rng = check_rng(seed, name="seed")
    x = _uniform_box(check_positive_int("n_points", n_points), 2, half_width, rng)
    d1 = np.sort(distance_to_segments(x, segs))
    d2 = np.sort(np.min(np.linalg.norm(x[:, None] - pts[None], axis=-1), 1) if len(pts) else np.full(len(x), np.inf))
    frac = np.stack([np.searchsorted(d, eps, side="right") / len(x) for d in (d1, d2)], -1)
    return frac, float(sum(np.linalg.norm(s[3] - s[2]) for s in segs)), len(pts)


def tube_slopes(W, b, k, eps, *, n_points=200_000, half_width=2.0, seed=0, min_hits=100):
    """Fitted log-log slope of ``P(r_eps >= r)`` against ``eps`` for each order ``r``.

    Only tolerances with at least ``min_hits`` sample points in the tube enter the fit.

    Returns
    -------
    list of (r, slope, n_eps_used); slope is ``nan`` when fewer than 3 tolerances qualify.
    """
    min_hits = check_positive_int("min_hits", min_hits)
    n_points = check_positive_int("n_points", n_points)
    P = tube_probabilities(W, b, k, eps, n_points=n_points, half_width=half_width, seed=seed)
    eps = np.asarray(eps, float)
    out = []
    for r in range(1, P.shape[1] + 1):
        ok = P[:, r - 1] * n_points >= min_hits
        out.append((r, loglog_slope(eps[ok], P[ok, r - 1]) if ok.sum() >= 3 else float("nan"), int(ok.sum())))
    return out


def loglog_slope(eps, values):
    """Least-squares slope of ``log values`` against ``log eps`` (the fitted order)."""
    eps, values = check_array("eps", eps, ndim=1), check_array("values", values, shape=(len(eps),), ndim=1)
    if np.any(eps <= 0) or np.any(values <= 0):
        raise ValueError("eps and values must be positive for a log-log fit")
    return float(np.polyfit(np.log(eps), np.log(values), 1)[0])
