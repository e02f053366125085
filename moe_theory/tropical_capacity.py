"""Counting routing regions and what a data manifold meets: arrangements, capacity, the ReLU comparison.

* :func:`arrangement_cell_count`, :func:`ordering_count`, :func:`relu_layer_regions`: exact cell
  counts of hyperplane arrangements (the orderings of the logits; one ReLU layer's regions);
* :func:`relu_activation_patterns`: the activation patterns a ReLU net meets along sampled points;
* :func:`lee_voronoi_count`: Lee's count of order-``k`` Voronoi regions;
* :func:`effective_capacity`: the routing regions a flat (exactly) or a sampled manifold meets,
  on :func:`random_flat` flats and :func:`trig_curve` curves; :func:`perturbation_resilience`.

The regions themselves are enumerated by :mod:`moe_theory.tropical_regions`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._validation import check_array, check_bool, check_int, check_k, check_positive_int, check_positive_real, check_rng
from .tropical_regions import _router, _sets_at, _tie_groups, realizable_topk_sets

__all__ = ["arrangement_cell_count", "ordering_count", "relu_layer_regions", "relu_activation_patterns",
           "lee_voronoi_count", "EffectiveCapacity", "effective_capacity", "random_flat", "trig_curve",
           "perturbation_resilience"]


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


def relu_activation_patterns(layers, points, *, closed: bool = False) -> tuple[int, int]:
    """Activation patterns of a ReLU net ``[(W1, b1), (W2, b2), ...]`` met at ordered ``points``.

    Returns ``(distinct patterns, pieces along the sequence)``; both are lower bounds for the
    set the points sample. Pieces of an open curve: ``1 +`` the changes between consecutive
    points; of a ``closed`` one (the last point is followed by the first): the changes around
    the loop, wrap-around included (at least 1), so a loop that starts and ends inside one
    piece counts it once. On a closed trigonometric curve of degree ``q`` one ReLU layer of
    width ``m`` has at most ``2 q m`` pieces (each unit's pre-activation, a trigonometric
    polynomial of degree ``q``, changes sign at most ``2 q`` times).

    Examples
    --------
    >>> relu_activation_patterns([([[1.0], [-1.0]], [0.0, -1.0])], [[-2.0], [-0.5], [0.5], [2.0]])
    (3, 3)
    >>> relu_activation_patterns([([[1.0]], [0.0])], [[-1.0], [1.0], [-1.0]], closed=True)
    (2, 2)
    """
    closed = check_bool("closed", closed)
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
    P = np.concatenate(pats, axis=1)  # (T, total width): the pattern at each point
    changes = int(np.any(P[1:] != P[:-1], axis=1).sum())
    if not closed:
        return len(np.unique(P, axis=0)), 1 + changes
    changes += int(np.any(P[0] != P[-1]))  # the step from the last point back to the first
    return len(np.unique(P, axis=0)), max(changes, 1)


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


def trig_curve(D: int, q: int, n_points: int, *, seed) -> np.ndarray:
    """A closed random trigonometric curve of degree ``q`` in ``R^D``, sampled at ``n_points``.

    ``gamma(t) = sum_{j=1}^{q} (a_j cos(j t) + b_j sin(j t)) / sqrt(q)``, ``a_j, b_j ~ N(0, I_D)``,
    at ``t = 2 pi i / n_points``. Each wall ``g_i = g_j``, and each hyperplane, meets it at most
    ``2 q`` times.

    Examples
    --------
    >>> trig_curve(3, 2, 10, seed=0).shape
    (10, 3)
    """
    D = check_positive_int("D", D)
    q = check_positive_int("q", q)
    n = check_positive_int("n_points", n_points)
    rng = check_rng(seed, name="seed")
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)[:, None]  # (n, 1)
    j = np.arange(1, q + 1)[None, :]  # (1, q)
    C, S = rng.standard_normal((q, D)), rng.standard_normal((q, D))
    return (np.cos(j * t) @ C + np.sin(j * t) @ S) / math.sqrt(q)  # (n, D)


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
