"""Routing regions in input space: exact enumeration by linear programming, Monte Carlo,
effective capacity on manifolds, and the dense ReLU comparison.

A router ``g(x) = W x + b`` (``W`` of shape ``(N, D)``) cuts ``R^D`` into the routing regions

    R_S = {x : (w_i - w_j) . x + b_i - b_j > 0 for all i in S, j not in S},   |S| = k,

open convex polyhedra, the pull-back of the normal fan of the hypersimplex. ``rho_k(W, b)`` is
the number of non-empty ones. Everything here takes an optional affine chart ``x = A z + c``
(``A`` of shape ``(D, d)``): the router restricted to the chart is ``(W A, W c + b)``.

**Degenerate routers.** Experts whose restricted logit functions are identical (equal rows of
``[W A, W c + b]`` up to a relative ``1e-12``) tie at every input. The router breaks the tie by
index, so such a *tie group* behaves as one unit whose members enter the active set lowest index
first: ``S`` is realised iff each group meets ``S`` in a prefix of the group, at most one group
is split, and the group-level inequalities hold strictly (a split group sits exactly at the
threshold). Without this rule a router with two identical rows would have no regions at all.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from ._validation import (check_array, check_bool, check_choice, check_int, check_k, check_positive_int,
                          check_positive_real, check_rng, check_seed)

__all__ = [
    "RegionCertificate", "region_lp", "realizable_topk_sets", "active_set_ids", "MonteCarloRegions",
    "monte_carlo_topk_sets", "arrangement_cell_count", "ordering_count", "relu_layer_regions",
    "relu_activation_patterns", "lee_voronoi_count", "EffectiveCapacity", "effective_capacity",
    "random_flat", "trig_curve", "perturbation_resilience", "flat_capacity_table",
]

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
    if not out and (partial is None or not full):  # one region: the whole chart
        z = np.zeros(d)
        return RegionCertificate(tuple(S), True, 1.0, z)
    # variables (z (d), tau, s): maximise s subject to
    #   g_i(z) >= tau + s (i full),  g_j(z) <= tau - s (j out),  g_p(z) = tau (p partial),  s <= 1
    rows, rhs = [], []
    for i in full:
        rows.append(np.r_[-Wn[i], 1.0, 1.0]); rhs.append(bn[i])
    for j in out:
        rows.append(np.r_[Wn[j], -1.0, 1.0]); rhs.append(-bn[j])
    A_eq = b_eq = None
    if partial is not None:
        A_eq, b_eq = np.r_[Wn[partial], -1.0, 0.0][None, :], [-bn[partial]]
    cost = np.zeros(d + 2); cost[-1] = -1.0
    res = linprog(cost, A_ub=np.array(rows), b_ub=np.array(rhs), A_eq=A_eq, b_eq=b_eq,
                  bounds=[(None, None)] * (d + 1) + [(None, 1.0)], method="highs")
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
    With ``(W, b)`` divided by its largest entry, solve (HiGHS, free ``z`` and ``tau``)

    .. math:: \\max s \\ \\text{s.t.}\\ g_i(z) \\ge \\tau + s\\ (i\\in S),\\quad
              g_j(z) \\le \\tau - s\\ (j\\notin S),\\quad s \\le 1 .

    ``R_S`` is non-empty iff ``s^* > 0``; the cap keeps the LP bounded when ``R_S`` is an
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


def active_set_ids(W, b, k: int, points) -> np.ndarray:
    """Lexicographic rank (in ``itertools.combinations(range(N), k)``) of ``S_k(g(x))`` at each point.

    ``points`` has shape (T, D); ties broken by index (tie groups as in the module notes).

    Examples
    --------
    >>> active_set_ids([[1.0], [-1.0], [0.0]], [0.0, 0.0, 0.5], 2, [[2.0], [-2.0]]).tolist()
    [1, 2]
    """
    Wn, bn, k, _ = _router(W, b, k)
    X = check_array("points", points, ndim=2)
    if X.shape[1] != Wn.shape[1]:
        raise ValueError(f"points must have shape (T, D) = (T, {Wn.shape[1]}), got shape {X.shape}")
    sets, _ = _sets_at(X, Wn, bn, _tie_groups(Wn, bn), k)
    rank = {S: r for r, S in enumerate(itertools.combinations(range(Wn.shape[0]), k))}
    return np.array([rank[tuple(s)] for s in sets.tolist()], dtype=int)


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


# ----------------------------------------------------------------------------- arrangements
def _canon(H):
    """Normalise affine hyperplanes a.z = beta (rows [a, beta]) and drop duplicates."""
    a = H[:, :-1]
    nrm = np.linalg.norm(a, axis=1)
    H = H[nrm > 1e-12] / nrm[nrm > 1e-12, None]
    first = np.argmax(np.abs(H[:, :-1]) > 1e-9, axis=1)
    H = H * np.sign(H[np.arange(len(H)), first])[:, None]
    _, idx = np.unique(np.round(H, 9), axis=0, return_index=True)
    return H[np.sort(idx)]


def _cells(H, d):
    if len(H) == 0 or d == 0:
        return 1
    if d == 1:  # points on a line
        return 1 + len(np.unique(np.round(H[:, 1] / H[:, 0], 9)))
    a, beta = H[0, :-1], H[0, -1]
    x0 = a * beta  # |a| = 1
    basis = np.linalg.svd(a[None, :])[2][1:].T  # (d, d-1), orthonormal basis of a^perp
    rest = H[1:]
    restricted = np.column_stack([rest[:, :-1] @ basis, rest[:, -1] - rest[:, :-1] @ x0])
    return _cells(rest, d) + _cells(_canon(restricted), d - 1)


def arrangement_cell_count(normals, offsets) -> int:
    """Number of cells of the affine arrangement ``{z : a_i . z = beta_i}`` in ``R^d``, exactly.

    Parameters
    ----------
    normals : array (m, d); offsets : array (m,)

    Notes
    -----
    Deletion-restriction, ``r(A) = r(A - H) + r(A^H)``, valid for any arrangement (parallel
    or coincident hyperplanes included; duplicates are merged). An independent check on the LP
    counts; its cost grows like ``sum_{j < d} C(m, j)``.

    Examples
    --------
    >>> arrangement_cell_count([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [0.0, 0.0, 1.0])
    7
    """
    a = check_array("normals", normals, ndim=2)
    beta = check_array("offsets", offsets, ndim=1)
    if beta.shape != (a.shape[0],):
        raise ValueError(f"offsets must have shape (m,) = ({a.shape[0]},), got shape {beta.shape}")
    return int(_cells(_canon(np.column_stack([a, beta])), a.shape[1]))


def ordering_count(W, b, A=None, c=None) -> int:
    """Number of orderings of the logits met on ``R^D`` (or the chart): cells of the walls ``g_i = g_j``.

    Equal to :func:`moe_theory.tropical.braid_section_count` ``(N, d)`` for a generic router;
    an upper bound on ``rho_k`` for every ``k``.

    Examples
    --------
    >>> ordering_count([[1.0], [2.0], [3.0]], [0.0, 1.0, 0.0])
    4
    """
    Wn, bn, _, _ = _router(W, b, None, A, c)
    i, j = np.triu_indices(len(Wn), 1)
    return arrangement_cell_count(Wn[i] - Wn[j], bn[j] - bn[i])


def relu_layer_regions(W1, b1, A=None, c=None) -> int:
    """Linear regions of one ReLU layer ``x -> relu(W1 x + b1)`` on ``R^D`` or a chart, exactly.

    These are the cells of the arrangement of the ``m`` hyperplanes ``w_u . x + b_u = 0``:
    ``sum_{j <= d} C(m, j)`` in general position (Zaslavsky), counted here by
    :func:`arrangement_cell_count`.

    Examples
    --------
    >>> relu_layer_regions([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [0.0, 0.0, 1.0])
    7
    """
    Wn, bn, _, _ = _router(W1, b1, None, A, c)
    return arrangement_cell_count(Wn, -bn)


def relu_activation_patterns(layers, points) -> tuple[int, int]:
    """Activation patterns of a ReLU net ``[(W1, b1), (W2, b2), ...]`` met at ordered ``points``.

    Returns ``(distinct patterns, pieces along the sequence)``; both are lower bounds for the
    set the points sample (pieces: 1 + changes between consecutive points, for a curve).

    Examples
    --------
    >>> relu_activation_patterns([([[1.0], [-1.0]], [0.0, -1.0])], [[-2.0], [-0.5], [0.5], [2.0]])
    (3, 3)
    """
    H = check_array("points", points, ndim=2)
    pats = []
    for li, (Wl, bl) in enumerate(layers):
        Wl = check_array(f"layers[{li}][0]", Wl, ndim=2)
        bl = check_array(f"layers[{li}][1]", bl, ndim=1)
        if Wl.shape[1] != H.shape[1] or bl.shape != (Wl.shape[0],):
            raise ValueError(f"layers[{li}] must be (W, b) with W of shape (m, {H.shape[1]}) and b of shape (m,), "
                             f"got shapes {Wl.shape} and {bl.shape}")
        pre = H @ Wl.T + bl  # (T, m)
        pats.append(pre > 0)
        H = np.maximum(pre, 0.0)
    P = np.concatenate(pats, axis=1)
    return len(np.unique(P, axis=0)), 1 + int(np.any(P[1:] != P[:-1], axis=1).sum())


def lee_voronoi_count(sites, k: int) -> int:
    """Lee's count of order-k Voronoi regions of planar sites in general position.

    ``(2k - 1) N - (k^2 - 1) - sum_{i < k} nu_i`` with ``nu_i`` the number of ``i``-sets of the
    sites (``nu_0 = 0``), computed by k-set duality as ``rho_i`` of the bias-free router with
    rows the sites. It is ``k (N - k) + 1`` for sites in convex position.

    Examples
    --------
    >>> sq = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [0.7, 0.7]]
    >>> lee_voronoi_count(sq, 2)   # convex position: k(N - k) + 1
    7
    """
    sites = check_array("sites", sites, ndim=2)
    if sites.shape[1] != 2:
        raise ValueError(f"sites must have shape (N, 2), got shape {sites.shape}")
    N = len(sites)
    k = check_k(k, N, n_name="N (number of sites)")
    nu = sum(len(realizable_topk_sets(sites, np.zeros(N), i)) for i in range(1, k))
    return (2 * k - 1) * N - (k * k - 1) - nu


# ----------------------------------------------------------------------------- capacity
@dataclass
class EffectiveCapacity:
    """Routing regions met by a data manifold (:func:`effective_capacity`).

    Attributes
    ----------
    ec_set : int
        Distinct active sets met, ``#{S : R_S meets M}``.
    ec_piece : int
        Connected pieces of ``M`` minus the walls (for a flat: ``= ec_set``; for an ordered
        curve sample: ``1 +`` the number of changes).
    ec_mass : float
        ``exp(entropy)`` of the fraction of points per set (nan for an exact flat count).
    exact : bool
        True for a flat chart (LP); False for a sample (lower bounds).
    sets : list of tuple
    """

    ec_set: int
    ec_piece: int
    ec_mass: float
    exact: bool
    sets: list = field(repr=False)


def effective_capacity(W, b, k: int, *, A=None, c=None, points=None, closed: bool = False) -> EffectiveCapacity:
    """Effective capacity of a router on a flat chart (exactly) or on sampled points.

    Parameters
    ----------
    W, b, k
        The router and the number of active experts.
    A, c : arrays, optional
        A flat ``M = {A z + c}``: counted exactly by LP.
    points : array (T, D), optional
        Samples of ``M`` (for ``ec_piece``: consecutive points of a curve).
    closed : bool
        The curve is closed (its last point is followed by its first).

    Notes
    -----
    ``EC_set(M) = #{S : R_S ∩ M ≠ ∅}`` (the definition this book uses; Su et al.,
    arXiv:2602.03204, name effective capacity but their exact definition is not known to us).
    On a flat, ``EC_set = EC_piece = rho_k(W A, W c + b)``. On a sample both are lower bounds.
    ``EC_mass = exp H(p)``, ``p_S`` the fraction of points routed to ``S``.

    Examples
    --------
    >>> ec = effective_capacity(np.eye(3), np.zeros(3), 1, A=[[1.0], [0.0], [0.0]])
    >>> ec.ec_set, ec.exact
    (2, True)
    """
    check_bool("closed", closed)
    if points is None:
        if A is None:
            raise ValueError("effective_capacity needs a flat chart A (and c) or sample points, got neither")
        sets = realizable_topk_sets(W, b, k, A, c)
        return EffectiveCapacity(len(sets), len(sets), float("nan"), True, sets)
    if A is not None or c is not None:
        raise ValueError("effective_capacity takes either a chart (A, c) or points, not both")
    Wn, bn, k, _ = _router(W, b, k)
    X = check_array("points", points, ndim=2)
    if X.shape[1] != Wn.shape[1]:
        raise ValueError(f"points must have shape (T, D) = (T, {Wn.shape[1]}), got shape {X.shape}")
    S, _ = _sets_at(X, Wn, bn, _tie_groups(Wn, bn), k)
    uniq, counts = np.unique(S, axis=0, return_counts=True)
    p = counts / counts.sum()
    changes = int(np.any(S[1:] != S[:-1], axis=1).sum())
    if closed:
        changes += int(np.any(S[0] != S[-1]))
    pieces = max(changes, 1) if closed else changes + 1
    return EffectiveCapacity(len(uniq), pieces, float(np.exp(-(p * np.log(p)).sum())), False,
                             [tuple(s) for s in uniq.tolist()])


def random_flat(D: int, d: int, *, seed) -> tuple[np.ndarray, np.ndarray]:
    """A random ``d``-flat of ``R^D``: ``A`` (D, d) with orthonormal columns and ``c ~ N(0, I_D)``.

    Examples
    --------
    >>> A, c = random_flat(5, 2, seed=0); A.shape, c.shape
    ((5, 2), (5,))
    """
    D = check_positive_int("D", D)
    d = check_int("d", d, minimum=1, maximum=D)
    rng = check_rng(seed, name="seed")
    A = np.linalg.qr(rng.standard_normal((D, d)))[0]
    return A, rng.standard_normal(D)


def trig_curve(D: int, Q: int, n_points: int, *, seed) -> np.ndarray:
    """A closed random trigonometric curve of degree ``Q`` in ``R^D``, sampled at ``n_points``.

    ``gamma(t) = sum_{q=1}^{Q} (a_q cos(q t) + b_q sin(q t)) / sqrt(Q)``, ``a_q, b_q ~ N(0, I_D)``.
    Each wall ``g_i = g_j`` meets it at most ``2 Q`` times.

    Examples
    --------
    >>> trig_curve(3, 2, 10, seed=0).shape
    (10, 3)
    """
    D = check_positive_int("D", D)
    Q = check_positive_int("Q", Q)
    n = check_positive_int("n_points", n_points)
    rng = check_rng(seed, name="seed")
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)[:, None]  # (n, 1)
    q = np.arange(1, Q + 1)[None, :]
    C, S = rng.standard_normal((Q, D)), rng.standard_normal((Q, D))
    return (np.cos(q * t) @ C + np.sin(q * t) @ S) / math.sqrt(Q)


def perturbation_resilience(W, b, k: int, *, A, c, sigma: float, n_trials: int, seed) -> dict:
    """How the regions a flat meets survive ``W -> W + sigma * std(W) * noise``.

    Returns the mean Jaccard index ``|F ∩ F'| / |F ∪ F'|`` of the realised families before and
    after, the mean ratio of the counts, and the base count. Exact (LP) on every trial.

    Examples
    --------
    >>> A, c = random_flat(3, 2, seed=1)
    >>> r = perturbation_resilience(np.eye(3), np.zeros(3), 1, A=A, c=c, sigma=0.0, n_trials=1, seed=0)
    >>> r["jaccard"]
    1.0
    """
    W = check_array("W", W, ndim=2)
    sigma = float(check_positive_real("sigma", sigma)) if sigma else 0.0
    n_trials = check_positive_int("n_trials", n_trials)
    rng = check_rng(seed, name="seed")
    base = set(realizable_topk_sets(W, b, k, A, c))
    jac, ratio = [], []
    for _ in range(n_trials):
        Wp = W + sigma * W.std() * rng.standard_normal(W.shape)
        new = set(realizable_topk_sets(Wp, b, k, A, c))
        jac.append(len(base & new) / len(base | new))
        ratio.append(len(new) / len(base))
    return {"jaccard": float(np.mean(jac)), "count_ratio": float(np.mean(ratio)), "base_count": len(base)}


def flat_capacity_table(N: int, k: int, D: int, dims, *, n_flats: int, seed) -> list[dict]:
    """Router vs one ReLU layer of width ``m = N`` (same parameter count ``N (D + 1)``) on random flats.

    For each ``d`` in ``dims``: mean over ``n_flats`` random ``d``-flats of the exact router count
    ``EC`` and of the exact ReLU region count, and their ratios to the ambient counts on ``R^D``.

    Examples
    --------
    >>> rows = flat_capacity_table(4, 2, 3, [1], n_flats=1, seed=0); sorted(rows[0])[:3]
    ['d', 'dense_ambient', 'dense_regions']
    """
    N, D = check_positive_int("N", N), check_positive_int("D", D)
    n_flats = check_positive_int("n_flats", n_flats)
    rng = check_rng(seed, name="seed")
    W, b = rng.standard_normal((N, D)), rng.standard_normal(N)
    W1, b1 = rng.standard_normal((N, D)), rng.standard_normal(N)
    moe_amb = len(realizable_topk_sets(W, b, k))
    dense_amb = relu_layer_regions(W1, b1)
    rows = []
    for d in dims:
        ec, dense = [], []
        for _ in range(n_flats):
            A, c = random_flat(D, d, seed=rng)
            ec.append(len(realizable_topk_sets(W, b, k, A, c)))
            dense.append(relu_layer_regions(W1, b1, A, c))
        rows.append({"d": int(d), "moe_ec": float(np.mean(ec)), "moe_ambient": moe_amb,
                     "r_moe": float(np.mean(ec)) / moe_amb, "dense_regions": float(np.mean(dense)),
                     "dense_ambient": dense_amb, "r_dense": float(np.mean(dense)) / dense_amb})
    return rows
