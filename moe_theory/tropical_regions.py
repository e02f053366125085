"""Routing regions in input space: exact enumeration by linear programming, and Monte Carlo.

A router ``g(x) = W x + b`` (``W`` of shape ``(N, D)``) cuts ``R^D`` into the routing regions

    R_S = {x : (w_i - w_j) . x + b_i - b_j > 0 for all i in S, j not in S},   |S| = k,

open convex polyhedra, the pull-back of the normal fan of the hypersimplex. ``n_k(W, b)`` is
the number of non-empty ones. Everything here takes an optional affine chart ``x = A z + c``
(``A`` of shape ``(D, d)``): the router restricted to the chart is ``(W A, W c + b)``.

**Degenerate routers.** Experts whose restricted logit functions are identical (equal rows of
``[W A, W c + b]`` up to a relative ``1e-12``) tie at every input. The router breaks the tie by
index, so such a *tie group* behaves as one unit whose members enter the active set lowest index
first: ``S`` is realised iff each group meets ``S`` in a prefix of the group, at most one group
is split, and the group-level inequalities hold strictly (a split group sits exactly at the
threshold). Without this rule a router with two identical rows would have no regions at all.

Counting formulas for arrangements, and the regions a data manifold meets, are in
:mod:`moe_theory.tropical_capacity`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from ._validation import (check_array, check_bool, check_choice, check_int, check_k, check_positive_int,
                          check_positive_real, check_rng)

__all__ = ["RegionCertificate", "region_lp", "realizable_topk_sets", "topk_sets_at", "active_set_ids",
           "MonteCarloRegions", "monte_carlo_topk_sets"]

_GROUP_RTOL = 1e-12


# ----------------------------------------------------------------------------- validation
def _router(W, b, k=None, A=None, c=None):
    """Validate and restrict: returns (Wr (N, d), br (N,), k, scale); Wr, br divided by scale."""
    W = check_array("W", W, ndim=2)
    N, D = W.shape
    if N < 1 or D < 1:
        raise ValueError(f"W must have shape (N, D) with N >= 1 and D >= 1, got shape {W.shape}")
    b = np.zeros(N) if b is None else check_array("b", b, ndim=1)
    if b.shape != (N,):
        raise ValueError(f"b must have shape (N,) = ({N},) to match W of shape {W.shape}, got shape {b.shape}")
    if k is not None:
        k = check_k(k, N, n_name="N (rows of W)")
    if A is None and c is not None:
        A = np.eye(D)
    if A is not None:
        A = check_array("A", A, ndim=2)
        if A.shape[0] != D or A.shape[1] < 1:
            raise ValueError(f"A must have shape (D, d) = ({D}, d) with d >= 1 to match W of shape {W.shape}, "
                             f"got shape {A.shape}")
        c = np.zeros(D) if c is None else check_array("c", c, ndim=1)
        if c.shape != (D,):
            raise ValueError(f"c must have shape (D,) = ({D},) to match W of shape {W.shape}, got shape {c.shape}")
        W, b = W @ A, W @ c + b  # restricted router (N, d), (N,)
    scale = max(float(np.abs(W).max()), float(np.abs(b).max()))
    scale = scale if scale > 0 else 1.0
    return W / scale, b / scale, k, scale


def _tie_groups(W, b) -> np.ndarray:
    """Group id per expert: experts with identical (w_i, b_i) share the id of the smallest index."""
    R = np.column_stack([W, b])
    N = len(R)
    gid = np.arange(N)
    for i in range(N):
        if gid[i] != i:
            continue
        same = np.all(np.abs(R[i + 1:] - R[i]) <= _GROUP_RTOL, axis=1)
        gid[i + 1:][same & (gid[i + 1:] == np.arange(i + 1, N))] = i
    return gid


def _split(S, gid):
    """(full reps, partial rep or None, out reps) at group level, or None if S is not tie-consistent."""
    S = set(S)
    full, out, partial = [], [], []
    for g in np.unique(gid):
        members = np.flatnonzero(gid == g)
        taken = [m in S for m in members]
        n_in = sum(taken)
        if n_in and not all(taken[:n_in]) or any(taken[n_in:]):
            return None  # S takes a later member of a tie group before an earlier one
        (full if n_in == len(members) else out if n_in == 0 else partial).append(int(g))
    if len(partial) > 1:
        return None
    return full, (partial[0] if partial else None), out


# ----------------------------------------------------------------------------- one region
@dataclass
class RegionCertificate:
    """Outcome of :func:`region_lp` for one set ``S``.

    Attributes
    ----------
    S : tuple of int
    realizable : bool
        ``R_S`` has non-empty interior (in the chart, if one was given).
    margin : float
        Optimal ``s`` of the capped LP, in units of the largest router entry (``<= 1``).
    witness : numpy array or None
        A point ``z`` of the chart (``x`` if no chart) where the router picks ``S`` with gap ``>= margin``.
    """

    S: tuple
    realizable: bool
    margin: float
    witness: np.ndarray | None = field(default=None, repr=False)


def _lp(Wn, bn, S, gid, tol):
    N, d = Wn.shape
    parts = _split(S, gid)
    if parts is None:
        return RegionCertificate(tuple(S), False, 0.0, None)
    full, partial, out = parts
    if not out and (partial is None or not full):  # one region: the chart
        z = np.zeros(d)
        return RegionCertificate(tuple(S), True, 1.0, z)
    # variables (z (d), theta, s): maximise s subject to
    #   g_i(z) >= theta + s (i full),  g_j(z) <= theta - s (j out),
    #   g_p(z) = theta (p partial),  s <= 1
    rows, rhs = [], []
    for i in full:
        rows.append(np.r_[-Wn[i], 1.0, 1.0]); rhs.append(bn[i])
    for j in out:
        rows.append(np.r_[Wn[j], -1.0, 1.0]); rhs.append(-bn[j])
    A_eq = b_eq = None
    if partial is not None:
        A_eq, b_eq = np.r_[Wn[partial], -1.0, 0.0][None, :], [-bn[partial]]
    cost = np.zeros(d + 2); cost[-1] = -1.0
    bounds = [(None, None)] * (d + 1) + [(None, 1.0)]
    res = linprog(cost, A_ub=np.array(rows), b_ub=np.array(rhs), A_eq=A_eq,
                  b_eq=b_eq, bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"linprog failed on S={tuple(S)}: {res.message}")
    s, z = float(res.x[-1]), res.x[:d]
    ok = s > tol and _certify(Wn, bn, S, gid, z, s)
    return RegionCertificate(tuple(S), bool(ok), s, z if ok else None)


def _certify(Wn, bn, S, gid, z, s) -> bool:
    """Check that the router picks S at z with group-level gap >= s / 2."""
    g = Wn @ z + bn  # (N,)
    order = np.argsort(-g[gid], kind="stable")
    if tuple(sorted(order[: len(S)].tolist())) != tuple(sorted(S)):
        return False
    return _group_gap(g[None, :], gid, len(S))[0] >= 0.5 * s


def region_lp(W, b, S, *, A=None, c=None, tol: float = 1e-7) -> RegionCertificate:
    """Decide by linear programming whether the routing region ``R_S`` has non-empty interior.

    Parameters
    ----------
    W : array (N, D); b : array (N,)
        The router ``g(x) = W x + b``.
    S : iterable of int
        A set of ``k`` experts.
    A : array (D, d), optional; c : array (D,), optional
        Restrict to the affine chart ``x = A z + c``.
    tol : float
        Scale-relative margin below which the region counts as empty.

    Returns
    -------
    RegionCertificate

    Notes
    -----
    With ``(W, b)`` divided by its largest entry, solve (HiGHS, free ``z`` and threshold
    :math:`\\bar g`, the book's notation; ``theta`` and ``s`` in the code)

    .. math:: \\max \\varepsilon \\ \\text{s.t.}\\ g_i(z) \\ge \\bar g + \\varepsilon\\ (i\\in S),\\quad
              g_j(z) \\le \\bar g - \\varepsilon\\ (j\\notin S),\\quad \\varepsilon \\le 1 .

    ``R_S`` is non-empty iff ``eps^* > 0``; the cap keeps the LP bounded when ``R_S`` is an
    unbounded cone, and free ``z`` avoids the far regions a box would silently lose. The
    optimal point is then checked directly: the router must pick ``S`` there.

    Examples
    --------
    >>> region_lp([[1.0], [-1.0], [0.0]], [0.0, 0.0, -1.0], (2,)).realizable
    False
    """
    Wn, bn, _, _ = _router(W, b, None, A, c)
    S = tuple(sorted(int(i) for i in S))
    N = Wn.shape[0]
    if not S or len(set(S)) != len(S) or S[0] < 0 or S[-1] >= N:
        raise ValueError(f"S must be a non-empty set of distinct indices in 0..{N - 1}, got S={S}")
    return _lp(Wn, bn, S, _tie_groups(Wn, bn), check_positive_real("tol", tol))


# ----------------------------------------------------------------------------- all regions
def _group_gap(G, gid, k):
    """Group-aware routing gap for logits G (T, N): distance to the nearest wall that changes S."""
    reps = np.unique(gid)
    U = G[:, reps]  # (T, n_groups)
    mult = np.array([(gid == r).sum() for r in reps])
    order = np.argsort(-U, axis=1, kind="stable")
    Us = np.take_along_axis(U, order, 1)
    cum = np.cumsum(mult[order], axis=1)
    p = np.argmax(cum >= k, axis=1)  # threshold group position (T,)
    t = np.arange(len(G))
    inf = np.full(len(G), np.inf)
    above = np.where(p > 0, Us[t, np.maximum(p - 1, 0)] - Us[t, p], inf)
    below = np.where(p + 1 < Us.shape[1], Us[t, p] - Us[t, np.minimum(p + 1, Us.shape[1] - 1)], inf)
    split = cum[t, p] > k
    return np.where(split, np.minimum(above, below), below)


def _sets_at(Z, Wn, bn, gid, k):
    """Active sets (T, k) sorted, and group-aware gaps (T,), at chart points Z (T, d)."""
    G = Z @ Wn.T + bn  # (T, N)
    order = np.argsort(-G[:, gid], axis=1, kind="stable")[:, :k]
    return np.sort(order, axis=1), _group_gap(G, gid, k)


def realizable_topk_sets(W, b, k: int, A=None, c=None, *, method: str = "auto", tol: float = 1e-7,
                         n_probe: int = 512, return_certificates: bool = False):
    """The exact list of k-subsets whose routing region has non-empty interior.

    Parameters
    ----------
    W : array (N, D); b : array (N,)
        The router ``g(x) = W x + b``.
    k : int
        ``1 <= k <= N``.
    A : array (D, d), optional; c : array (D,), optional
        Restrict to the affine subspace ``x = A z + c``.
    method : {"auto", "brute", "bfs"}
        ``"brute"`` decides every one of the ``C(N, k)`` sets; ``"bfs"`` explores single swaps
        ``S -> S - {i} + {j}`` out of the regions already found; ``"auto"`` is brute force when
        ``C(N, k) <= 5000``, BFS beyond.
    tol : float
        Scale-relative LP margin below which a region counts as empty (see :func:`region_lp`).
    n_probe : int
        Random chart points tried first; a set met there with a positive gap is certified by
        that point and needs no LP. The answer does not depend on the probes, only the time.
    return_certificates : bool
        Also return ``{S: RegionCertificate}``.

    Returns
    -------
    list of tuple of int
        Sorted index tuples, in lexicographic order; ``len`` is ``rho_k`` (of the restriction).

    Notes
    -----
    Brute force is exact. BFS is exact whenever the regions are connected through walls that
    change the active set by a single swap, which holds for routers in general position; it can
    miss regions when many walls meet in a common face (e.g. a bias-free router on a line, where
    all walls meet at 0 and the two regions differ by many swaps). Cost: about 3 ms per LP.

    Examples
    --------
    >>> W = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]
    >>> realizable_topk_sets(W, [0.0] * 4, 2)
    [(0, 1), (0, 3), (1, 2), (2, 3)]
    """
    Wn, bn, k, _ = _router(W, b, k, A, c)
    method = check_choice("method", method, ("auto", "brute", "bfs"))
    tol = check_positive_real("tol", tol)
    n_probe = check_int("n_probe", n_probe, minimum=0)
    check_bool("return_certificates", return_certificates)
    N, d = Wn.shape
    gid = _tie_groups(Wn, bn)
    # probes: a fixed seed (the answer is exact whatever the probes find), several length scales
    rng = np.random.default_rng(20260201)
    Z = rng.standard_normal((n_probe + 1, d)) * 10.0 ** rng.uniform(-1, 2, (n_probe + 1, 1))
    Z[0] = 0.0
    sets, gaps = _sets_at(Z, Wn, bn, gid, k)
    cert: dict[tuple, RegionCertificate] = {}
    for z, s, gap in zip(Z, map(tuple, sets.tolist()), gaps):
        if gap > 4 * tol and (s not in cert or cert[s].margin < gap / 2):
            cert[s] = RegionCertificate(s, True, float(min(gap / 2, 1.0)), z)
    if method == "auto":
        method = "brute" if math.comb(N, k) <= 5000 else "bfs"
    if method == "brute":
        for S in itertools.combinations(range(N), k):
            if S not in cert:
                cert[S] = _lp(Wn, bn, S, gid, tol)
    else:
        if not cert:  # nothing probed: start from the set at z = 0 if realizable, else the largest
            for S in itertools.combinations(range(N), k):
                cert[S] = _lp(Wn, bn, S, gid, tol)
                if cert[S].realizable:
                    break
        frontier = [S for S, r in cert.items() if r.realizable]
        while frontier:
            S = frontier.pop()
            outside = [j for j in range(N) if j not in S]
            for i, j in itertools.product(S, outside):
                T = tuple(sorted(set(S) - {i} | {j}))
                if T not in cert:
                    cert[T] = _lp(Wn, bn, T, gid, tol)
                    if cert[T].realizable:
                        frontier.append(T)
    found = sorted(S for S, r in cert.items() if r.realizable)
    return (found, {S: cert[S] for S in found}) if return_certificates else found


def topk_sets_at(W, b, k: int, points) -> np.ndarray:
    """The active set ``S_k(g(x))`` at each of ``points`` (T, D), sorted: (T, k).

    Ties broken by index (tie groups as in the module notes).

    Examples
    --------
    >>> topk_sets_at([[1.0], [-1.0], [0.0]], [0.0, 0.0, 0.5], 2, [[2.0], [-2.0]]).tolist()
    [[0, 2], [1, 2]]
    """
    Wn, bn, k, _ = _router(W, b, k)
    X = check_array("points", points, ndim=2)
    if X.shape[1] != Wn.shape[1]:
        raise ValueError(f"points must have shape (T, D) = (T, {Wn.shape[1]}), got shape {X.shape}")
    return _sets_at(X, Wn, bn, _tie_groups(Wn, bn), k)[0]


def active_set_ids(indices, n_experts: int) -> np.ndarray:
    """Rank of each row's active set in the lexicographic list of the ``k``-subsets of ``range(N)``.

    ``indices`` (..., k) lists each row's active experts in any order (a router's
    ``Routing.indices``, or :func:`topk_sets_at`); the ranks follow
    ``itertools.combinations(range(n_experts), k)``. Returns an int array of shape (...).

    Examples
    --------
    >>> active_set_ids([[0, 1], [1, 0], [2, 3], [0, 3]], 4).tolist()
    [0, 0, 5, 2]
    """
    n_experts = check_positive_int("n_experts", n_experts)
    indices = np.sort(np.asarray(indices), axis=-1)
    k = check_k(indices.shape[-1], n_experts, name="indices.shape[-1]")
    lookup = {s: i for i, s in enumerate(itertools.combinations(range(n_experts), k))}
    return np.array([lookup[tuple(row)] for row in indices.reshape(-1, k)], dtype=int).reshape(indices.shape[:-1])


# ----------------------------------------------------------------------------- Monte Carlo
@dataclass
class MonteCarloRegions:
    """Regions met by random inputs (:func:`monte_carlo_topk_sets`).

    Attributes
    ----------
    sets : list of tuple
        Sets met with a positive gap, lexicographic (a subset of the exact answer).
    probabilities : dict
        ``S -> `` fraction of samples routed to ``S`` (an estimate of ``mu(R_S)``).
    stderr : dict
        ``S -> sqrt(p (1 - p) / n)``.
    n_samples : int
    n_on_wall : int
        Samples within the tolerance of a wall (not counted).
    """

    sets: list
    probabilities: dict
    stderr: dict
    n_samples: int
    n_on_wall: int

    @property
    def count(self) -> int:
        return len(self.sets)


def monte_carlo_topk_sets(W, b, k: int, *, n_samples: int, seed, A=None, c=None, scale: float = 1.0,
                          sampler=None, tol: float = 1e-7) -> MonteCarloRegions:
    """Estimate the realised regions and their probabilities from random inputs.

    Parameters
    ----------
    W, b, k, A, c
        As in :func:`realizable_topk_sets`.
    n_samples : int
    seed : int or numpy.random.Generator
    scale : float
        Inputs are ``z = scale * N(0, I_d)`` (``d = D`` without a chart) ...
    sampler : callable, optional
        ... unless ``sampler(rng, n)`` returns an ``(n, d)`` array of chart points.

    Returns
    -------
    MonteCarloRegions

    Notes
    -----
    Every set reported is met at a sample point with gap ``> 4 tol`` (relative), so it is
    realizable: the Monte-Carlo set is always a subset of the exact one, and misses regions of
    small probability (it is a lower bound on ``rho_k``).

    Examples
    --------
    >>> mc = monte_carlo_topk_sets([[1.0], [-1.0]], [0.0, 0.0], 1, n_samples=1000, seed=0)
    >>> mc.sets, round(mc.probabilities[(0,)], 1)
    ([(0,), (1,)], 0.5)
    """
    Wn, bn, k, _ = _router(W, b, k, A, c)
    n = check_positive_int("n_samples", n_samples)
    rng = check_rng(seed, name="seed")
    scale = check_positive_real("scale", scale)
    d = Wn.shape[1]
    if sampler is None:
        Z = scale * rng.standard_normal((n, d))
    else:
        Z = check_array("sampler(rng, n)", sampler(rng, n), ndim=2)
        if Z.shape != (n, d):
            raise ValueError(f"sampler(rng, n) must return shape (n, d) = ({n}, {d}), got shape {Z.shape}")
    sets, gaps = _sets_at(Z, Wn, bn, _tie_groups(Wn, bn), k)
    keep = gaps > 4 * check_positive_real("tol", tol)
    uniq, counts = np.unique(sets[keep], axis=0, return_counts=True)
    probs = {tuple(s): float(c / n) for s, c in zip(uniq.tolist(), counts)}
    err = {S: math.sqrt(p * (1 - p) / n) for S, p in probs.items()}
    return MonteCarloRegions(sorted(probs), probs, err, n, int((~keep).sum()))
