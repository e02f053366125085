"""Top-k routing as tropical geometry: the algebra and the polytope.

Notation (the book's notation page): ``N`` experts, ``k`` active, logits ``g = W x + b``,
order statistics ``g_(1) >= ... >= g_(N)``, routing gap ``delta_k = g_(k) - g_(k+1)``,
active set ``S_k(g)`` (ties broken by the smaller index), mask ``m_k(g) = 1_{S_k(g)}``.

* :func:`tropical_elementary_symmetric` is ``e_k^trop(g) = max_{|S|=k} sum_{i in S} g_i``,
  the sum of the ``k`` largest logits; its gradient is the routing mask.
* :func:`hypersimplex_vertices`, :func:`hypersimplex_edges`, :func:`normal_cone_inequalities`
  describe its Newton polytope, the hypersimplex ``Delta(N, k)``, and its normal fan, whose
  maximal cones are the ``C(N, k)`` routing cones.
* Counting formulas: :func:`braid_section_count`, :func:`general_position_bound`,
  :func:`eulerian_number`, :func:`stirling_first`.

Regions in input space live in :mod:`moe_theory.tropical_regions` (enumeration by linear
programming, Monte Carlo) and :mod:`moe_theory.tropical_capacity` (arrangement counts, the
regions a data manifold meets, the ReLU comparison); the chapter's sweeps in
:mod:`moe_theory.experiments.tropical`. The public names of the first two are imported here too,
so that the chapter reaches everything as ``tropical.<name>``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from ._validation import check_array, check_k, check_int, check_positive_int, check_positive_real, check_tensor
from .tropical_capacity import (EffectiveCapacity, arrangement_cell_count, effective_capacity, lee_voronoi_count,
                                ordering_count, perturbation_resilience, random_flat, relu_activation_patterns,
                                relu_layer_regions, trig_curve)
from .tropical_regions import (MonteCarloRegions, RegionCertificate, active_set_ids, monte_carlo_topk_sets,
                               realizable_topk_sets, region_lp, topk_sets_at)

__all__ = [
    "tropical_elementary_symmetric", "tropical_elementary_symmetric_brute", "topk_mask", "routing_gap",
    "soft_elementary_symmetric", "hypersimplex_vertices", "hypersimplex_edges", "normal_cone_inequalities",
    "sum_zero_basis", "eulerian_number", "hypersimplex_volume", "stirling_first", "braid_section_count",
    "general_position_bound", "voronoi_router", "coalition_color", "plot_topk_regions",
    "plot_hypersimplex4", "plot_normal_fan4",
    # regions in input space (tropical_regions, tropical_capacity)
    "RegionCertificate", "region_lp", "realizable_topk_sets", "topk_sets_at", "active_set_ids",
    "MonteCarloRegions", "monte_carlo_topk_sets", "arrangement_cell_count", "ordering_count",
    "relu_layer_regions", "relu_activation_patterns", "lee_voronoi_count", "EffectiveCapacity",
    "effective_capacity", "random_flat", "trig_curve", "perturbation_resilience",
]


def _logits(g, name: str = "g"):
    """Validate logits: a torch tensor stays a tensor, anything else becomes a float numpy array."""
    if isinstance(g, torch.Tensor):
        return check_tensor(name, g, min_ndim=1)
    return check_array(name, g, min_ndim=1)


def _desc_order(g):
    """Stable descending sort indices over the last axis (ties: smaller index first)."""
    if isinstance(g, torch.Tensor):
        return torch.sort(g, dim=-1, descending=True, stable=True)[1]
    return np.argsort(-g, axis=-1, kind="stable")


def tropical_elementary_symmetric(g, k: int):
    """The k-th elementary symmetric tropical polynomial of the logits ``g``.

    Parameters
    ----------
    g : numpy array, list or torch.Tensor, shape (..., N)
        Logits.
    k : int
        ``1 <= k <= N``.

    Returns
    -------
    numpy array or torch.Tensor, shape (...)
        ``e_k^trop(g)``, of the same kind as ``g`` (torch keeps its graph).

    Notes
    -----
    In the max-plus semiring (``a (+) b = max(a, b)``, ``a (.) b = a + b``)

    .. math:: e_k^{\\rm trop}(g) = \\bigoplus_{|S|=k} \\bigodot_{i\\in S} g_i
              = \\max_{|S|=k}\\sum_{i\\in S} g_i = \\sum_{j=1}^k g_{(j)} ,

    computed here by a stable sort, so the torch gradient is the routing mask
    :func:`topk_mask` (ties broken by the smaller index). Su et al.
    (arXiv:2602.03204) describe top-k routing in these terms; the identity
    itself is standard.

    Examples
    --------
    >>> float(tropical_elementary_symmetric([3.0, -1.0, 2.0, 0.5], 2))
    5.0
    """
    g = _logits(g)  # (..., N)
    k = check_k(k, g.shape[-1], n_name="g.shape[-1]")
    if isinstance(g, torch.Tensor):
        top = torch.sort(g, dim=-1, descending=True, stable=True).values
        return top[..., :k].sum(-1)
    return -np.sort(-g, axis=-1)[..., :k].sum(-1)


def tropical_elementary_symmetric_brute(g, k: int):
    """``max_{|S|=k} sum_{i in S} g_i`` by enumerating all ``C(N, k)`` subsets (a test oracle).

    Same inputs and outputs as :func:`tropical_elementary_symmetric`; cost ``C(N, k) k``.

    Examples
    --------
    >>> float(tropical_elementary_symmetric_brute([3.0, -1.0, 2.0, 0.5], 2))
    5.0
    """
    g = _logits(g)
    k = check_k(k, g.shape[-1], n_name="g.shape[-1]")
    subsets = np.array(list(itertools.combinations(range(g.shape[-1]), k)))  # (C(N,k), k)
    if isinstance(g, torch.Tensor):
        return g[..., torch.as_tensor(subsets, device=g.device)].sum(-1).max(-1)[0]
    return g[..., subsets].sum(-1).max(-1)


def topk_mask(g, k: int):
    """Routing mask ``m_k(g) = 1_{S_k(g)}``: 1 on the k largest logits, ties to the smaller index.

    Returns an array/tensor of the shape and kind of ``g`` with entries 0.0 and 1.0.

    Examples
    --------
    >>> topk_mask(np.array([1.0, 3.0, 3.0, 0.0]), 2).tolist()
    [0.0, 1.0, 1.0, 0.0]
    """
    g = _logits(g)
    k = check_k(k, g.shape[-1], n_name="g.shape[-1]")
    order = _desc_order(g)[..., :k]
    if isinstance(g, torch.Tensor):
        return torch.zeros_like(g).scatter(-1, order, 1.0)
    mask = np.zeros_like(g, dtype=float)
    np.put_along_axis(mask, order, 1.0, axis=-1)
    return mask


def routing_gap(g, k: int):
    """The routing gap ``delta_k(g) = g_(k) - g_(k+1) >= 0`` over the last axis (needs ``k < N``).

    Where ``delta_k > 0`` the active set is locally constant: a change of the logits with
    ``||Delta g||_inf < delta_k / 2`` keeps it.

    Examples
    --------
    >>> float(routing_gap([3.0, -1.0, 2.0, 0.5], 2))
    1.5
    """
    g = _logits(g)
    n = g.shape[-1]
    k = check_int("k", k, minimum=1, maximum=n - 1)
    s = torch.sort(g, dim=-1, descending=True)[0] if isinstance(g, torch.Tensor) else -np.sort(-g, axis=-1)
    return s[..., k - 1] - s[..., k]


def soft_elementary_symmetric(g, k: int, tau: float):
    """Dequantised ``e_k^trop``: ``tau log e_k(exp(g / tau))`` with ``e_k`` the classical polynomial.

    Notes
    -----
    Computed in log space by the recursion ``E_j <- logaddexp(E_j, E_{j-1} + g_i / tau)``
    over experts ``i``. Maslov dequantisation gives

    .. math:: 0 \\le \\tau\\log e_k(e^{g/\\tau}) - e_k^{\\rm trop}(g) \\le \\tau\\log\\binom Nk ,

    and its gradient is the vector of inclusion probabilities of a random ``S`` with
    ``P(S) \\propto e^{\\sum_{i\\in S} g_i/\\tau}``; it sums to ``k`` and tends to the mask
    as ``tau -> 0`` where ``delta_k > 0``.

    Examples
    --------
    >>> v = soft_elementary_symmetric(np.array([3.0, -1.0, 2.0, 0.5]), 2, 0.01)
    >>> bool(abs(v - 5.0) < 0.01)
    True
    """
    g = _logits(g)
    k = check_k(k, g.shape[-1], n_name="g.shape[-1]")
    tau = check_positive_real("tau", tau)
    if isinstance(g, torch.Tensor):
        h = g / tau
        low = torch.finfo(h.dtype).min / 4  # finite "-inf": logaddexp(-inf, -inf) has a NaN gradient
        E = [torch.zeros_like(h[..., 0])] + [torch.full_like(h[..., 0], low)] * k
        for i in range(h.shape[-1]):
            E = [E[0]] + [torch.logaddexp(E[j], E[j - 1] + h[..., i]) for j in range(1, k + 1)]
        return tau * E[k]
    h = g / tau
    E = np.full(h.shape[:-1] + (k + 1,), -np.inf)
    E[..., 0] = 0.0
    for i in range(h.shape[-1]):
        E[..., 1:] = np.logaddexp(E[..., 1:], E[..., :-1] + h[..., i:i + 1])
    return tau * E[..., k]


def hypersimplex_vertices(n: int, k: int) -> np.ndarray:
    """Vertices ``1_S`` of the hypersimplex ``Delta(n, k)``, one row per k-subset, lexicographic.

    Notes
    -----
    ``Delta(n, k) = conv{1_S : |S| = k} = {y in [0, 1]^n : sum_i y_i = k}`` is the Newton
    polytope of ``e_k^trop``: its exponent vectors are the ``1_S``, and all of them are
    vertices. Row ``r`` corresponds to ``list(itertools.combinations(range(n), k))[r]``.

    Examples
    --------
    >>> hypersimplex_vertices(3, 2).tolist()
    [[1, 1, 0], [1, 0, 1], [0, 1, 1]]
    """
    n = check_positive_int("n", n)
    k = check_k(k, n, n_name="n")
    subsets = list(itertools.combinations(range(n), k))
    V = np.zeros((len(subsets), n), dtype=int)  # (C(n,k), n)
    for r, S in enumerate(subsets):
        V[r, list(S)] = 1
    return V


def hypersimplex_edges(n: int, k: int) -> list[tuple[int, int]]:
    """Edges of ``Delta(n, k)`` as pairs of vertex rows: vertices whose sets differ by one swap.

    Each vertex has ``k (n - k)`` edges (swap one ``i in S`` for one ``j not in S``).

    Examples
    --------
    >>> hypersimplex_edges(3, 1)
    [(0, 1), (0, 2), (1, 2)]
    """
    V = hypersimplex_vertices(n, k)
    diff = np.abs(V[:, None, :] - V[None, :, :]).sum(-1)  # (C, C) Hamming distances
    a, b = np.nonzero(np.triu(diff == 2))
    return list(zip(a.tolist(), b.tolist()))


def normal_cone_inequalities(S, n: int) -> np.ndarray:
    """Rows ``e_i - e_j`` (``i in S``, ``j not in S``): the normal cone ``C_S = {g : M g >= 0}``.

    Notes
    -----
    ``C_S = {g : g_i >= g_j for all i in S, j not in S}`` is the normal cone of the vertex
    ``1_S`` of ``Delta(n, k)``: one inequality per edge at that vertex, ``k (n - k)`` in all.
    ``S_k(g) = S`` whenever ``g`` lies in its interior (all inequalities strict).

    Examples
    --------
    >>> normal_cone_inequalities((0,), 3).tolist()
    [[1, -1, 0], [1, 0, -1]]
    """
    n = check_positive_int("n", n)
    S = tuple(sorted(int(i) for i in S))
    if not S or len(set(S)) != len(S) or S[0] < 0 or S[-1] >= n:
        raise ValueError(f"S must be a non-empty set of distinct indices in 0..{n - 1}, got S={S}")
    out = [i for i in range(n) if i not in S]
    M = np.zeros((len(S) * len(out), n), dtype=int)
    for r, (i, j) in enumerate(itertools.product(S, out)):
        M[r, i], M[r, j] = 1, -1
    return M


def sum_zero_basis(n: int) -> np.ndarray:
    """An orthonormal basis of ``1^perp`` in ``R^n``, as the rows of an ``(n - 1, n)`` array.

    Used to draw ``Delta(4, k)`` (which lies in the hyperplane ``sum_i y_i = k``) in ``R^3``.

    Examples
    --------
    >>> B = sum_zero_basis(4); bool(np.allclose(B @ B.T, np.eye(3)) and np.allclose(B.sum(1), 0))
    True
    """
    n = check_int("n", n, minimum=2)
    Q, _ = np.linalg.qr(np.eye(n) - 1.0 / n)  # columns span 1^perp (first n-1 of them)
    B = Q[:, : n - 1].T
    return B * np.where(B[:, :1] < 0, -1.0, 1.0)


def eulerian_number(n: int, m: int) -> int:
    """Eulerian number ``A(n, m)``: permutations of ``n`` elements with ``m`` descents.

    ``A(n, m) = sum_{j=0}^{m} (-1)^j C(n+1, j) (m+1-j)^n``.

    Examples
    --------
    >>> [eulerian_number(4, m) for m in range(4)]
    [1, 11, 11, 1]
    """
    n = check_int("n", n, minimum=0)
    m = check_int("m", m, minimum=0)
    return sum((-1) ** j * math.comb(n + 1, j) * (m + 1 - j) ** n for j in range(m + 1))


def hypersimplex_volume(n: int, k: int) -> float:
    """Volume of ``Delta(n, k)`` in the coordinates ``y_1..y_{n-1}``: ``A(n-1, k-1) / (n-1)!``.

    Examples
    --------
    >>> hypersimplex_volume(4, 2)   # the octahedron: 4/6
    0.6666666666666666
    """
    n = check_int("n", n, minimum=2)
    k = check_int("k", k, minimum=1, maximum=n - 1)
    return eulerian_number(n - 1, k - 1) / math.factorial(n - 1)


def stirling_first(n: int, j: int) -> int:
    """Unsigned Stirling number of the first kind ``c(n, j)`` (permutations with ``j`` cycles).

    Examples
    --------
    >>> [stirling_first(4, j) for j in range(5)]
    [0, 6, 11, 6, 1]
    """
    n = check_int("n", n, minimum=0)
    j = check_int("j", j, minimum=0)
    row = [1]  # c(0, .)
    for m in range(n):
        row = [(m * (row[i] if i < len(row) else 0)) + (row[i - 1] if i >= 1 else 0) for i in range(len(row) + 1)]
    return row[j] if j < len(row) else 0


def braid_section_count(n: int, dim: int) -> int:
    """Cells of a generic ``dim``-dimensional affine section of the braid arrangement in ``R^n``.

    Notes
    -----
    The hyperplanes ``H_ij = {g : g_i = g_j}`` have characteristic polynomial
    ``t (t - 1) ... (t - n + 1)``; by Zaslavsky's theorem a generic ``dim``-section has

    .. math:: \\sum_{j=0}^{\\dim} c(n, n - j)

    cells, the number of orderings of the logits ``g(x) = W x + b`` met by a generic router
    on ``R^dim``. It bounds the number of routing regions ``rho_k(W, b)`` for every ``k``.

    Examples
    --------
    >>> [braid_section_count(6, D) for D in range(1, 6)]
    [16, 101, 326, 600, 720]
    """
    n = check_positive_int("n", n)
    dim = check_int("dim", dim, minimum=0)
    return sum(stirling_first(n, n - j) for j in range(0, min(dim, n - 1) + 1))


def general_position_bound(n_hyperplanes: int, dim: int) -> int:
    """Cells of ``n_hyperplanes`` affine hyperplanes in general position in ``R^dim``.

    ``sum_{j=0}^{dim} C(m, j)`` (Zaslavsky); for a ReLU layer of width ``m`` it is the number
    of its linear regions on ``R^dim``, generically.

    Examples
    --------
    >>> general_position_bound(15, 2)
    121
    """
    m = check_int("n_hyperplanes", n_hyperplanes, minimum=0)
    dim = check_int("dim", dim, minimum=0)
    return sum(math.comb(m, j) for j in range(0, min(dim, m) + 1))


def voronoi_router(sites) -> tuple[np.ndarray, np.ndarray]:
    """A router whose top-k regions are the order-k Voronoi cells of ``sites`` (shape (N, D)).

    ``W = 2 sites``, ``b_i = -||site_i||^2``, so ``g_i(x) = ||x||^2 - ||x - site_i||^2``: the
    ``k`` largest logits are the ``k`` nearest sites.

    Examples
    --------
    >>> W, b = voronoi_router([[0.0, 0.0], [1.0, 0.0]]); b.tolist()
    [-0.0, -1.0]
    """
    sites = check_array("sites", sites, ndim=2)
    return 2.0 * sites, -np.sum(sites**2, axis=1)


def coalition_color(S, n: int) -> np.ndarray:
    """RGB colour of the expert set ``S`` out of ``n``: the mean of its experts' book colours."""
    from matplotlib.colors import to_rgb

    from .plotting import expert_colors

    cols = expert_colors(n)
    return np.mean([to_rgb(cols[i]) for i in S], axis=0)


def plot_topk_regions(ax, W, b, k: int, *, box: float = 3.0, resolution: int = 200, label: bool = True):
    """Draw the routing regions of a 2-D router on ``[-box, box]^2``, each in its coalition colour.

    Walls (pixels whose neighbour has another active set) are white; with ``label``, each
    region big enough gets its set written at its centre. Returns the number of sets seen.
    """
    W = check_array("W", W, shape=(None, 2), ndim=2)
    u = np.linspace(-box, box, resolution)
    X = np.stack(np.meshgrid(u, u, indexing="xy"), -1).reshape(-1, 2)  # (r*r, 2)
    ids = active_set_ids(topk_sets_at(W, b, k, X), len(W)).reshape(resolution, resolution)
    subsets = list(itertools.combinations(range(len(W)), k))
    seen = np.unique(ids)
    palette = np.zeros((len(subsets), 3))
    palette[seen] = [coalition_color(subsets[i], len(W)) for i in seen]
    img = palette[ids]  # (r, r, 3)
    wall = np.zeros(ids.shape, bool)
    wall[1:] |= ids[1:] != ids[:-1]
    wall[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    img[wall] = 1.0
    ax.imshow(img, origin="lower", extent=(-box, box, -box, box), interpolation="nearest")
    if label:
        for i in seen:
            yy, xx = np.nonzero(ids == i)
            if len(xx) > resolution**2 / 60:
                ax.text(u[int(np.median(xx))], u[int(np.median(yy))], "".join(map(str, subsets[i])),
                        ha="center", va="center", fontsize=7, color="k",
                        bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.6))
    ax.set(xlabel="$x_1$", ylabel="$x_2$")
    return len(seen)


def plot_hypersimplex4(ax, k: int, g=None):
    """Draw ``Delta(4, k)`` on a 3-D axis, in the orthonormal coordinates of ``1^perp``.

    Vertices are labelled by their sets; with logits ``g`` the vertex ``1_S`` maximising
    ``<g, y>`` (``S = S_k(g)``) is ringed and the projected direction of ``g`` drawn as an arrow.
    """
    B = sum_zero_basis(4)  # (3, 4)
    V = hypersimplex_vertices(4, k)
    P = (V - k / 4) @ B.T  # (C(4,k), 3), centred
    for a, c in hypersimplex_edges(4, k):
        ax.plot(*P[[a, c]].T, color="0.4", lw=1)
    subsets = list(itertools.combinations(range(4), k))
    ax.scatter(*P.T, c=[coalition_color(S, 4) for S in subsets], s=60, depthshade=False)
    for p, S in zip(P, subsets):
        ax.text(*(1.18 * p), "{" + ",".join(map(str, S)) + "}", fontsize=7, ha="center")
    if g is not None:
        g = check_array("g", g, shape=(4,), ndim=1)
        best = int(np.argmax(V @ g))
        ax.scatter(*P[best], s=260, facecolors="none", edgecolors="k", lw=1.5, depthshade=False)
        u = B @ g
        u = 0.9 * np.abs(P).max() * u / np.linalg.norm(u)
        ax.quiver(0, 0, 0, *u, color="k", lw=1.5, arrow_length_ratio=0.15)
    ax.set(xlabel="$u_1$", ylabel="$u_2$", zlabel="$u_3$")
    return ax


def plot_normal_fan4(ax, k: int, n_points: int = 90, elev: float = 20.0, azim: float = -60.0):
    """Draw the normal fan of ``Delta(4, k)`` on the unit sphere of ``1^perp``, as solid cones.

    Each direction ``u`` (orthonormal coordinates of ``1^perp``, as in :func:`plot_hypersimplex4`)
    gets the colour of its active set ``S_k(B^T u)``; the walls ``g_i = g_j`` between two cones
    (``i`` in ``S``, ``j`` not) are drawn as black arcs on the visible hemisphere, and each cone is
    labelled by its set at its centre, the direction of the vertex ``1_S`` (the normal cone of a
    vertex of this symmetric polytope contains the vertex's own direction).

    Parameters
    ----------
    ax : mpl_toolkits.mplot3d.Axes3D
    k : int
        Active experts, ``1 <= k <= 3``.
    n_points : int
        Grid points along each angle of the sphere's surface (at least 8 are used).
    elev, azim : float
        View angles (degrees), shared with the polytope panel.
    """
    k = check_k(k, 4)
    resolution = max(8, check_positive_int("n_points", n_points))
    B = sum_zero_basis(4)  # (3, 4)
    theta, phi = np.meshgrid(np.linspace(0, np.pi, resolution), np.linspace(0, 2 * np.pi, 2 * resolution))
    X, Y, Z = np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)  # (2R, R) each
    # Colour each surface patch by the active set at its centre.
    C = np.stack([X, Y, Z], -1)
    centres = (C[:-1, :-1] + C[1:, 1:] + C[1:, :-1] + C[:-1, 1:]) / 4  # (2R-1, R-1, 3)
    S = np.sort(_desc_order(centres @ B)[..., :k], -1)  # (2R-1, R-1, k)
    cache = {}
    face = np.empty(S.shape[:2] + (3,))
    for idx in np.ndindex(S.shape[:2]):
        key = tuple(S[idx])
        if key not in cache:
            cache[key] = coalition_color(key, 4)
        face[idx] = cache[key]
    ax.computed_zorder = False  # draw in call order: the sphere, then walls and labels on it
    ax.plot_surface(X, Y, Z, facecolors=face, shade=False, rstride=1, cstride=1, linewidth=0,
                    antialiased=False, zorder=1)
    # Walls: arcs of the great circles g_i = g_j where i and j sit at places k and k+1.
    e, a = np.radians(elev), np.radians(azim)
    view = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
    t = np.linspace(0, 2 * np.pi, 721)
    for i, j in itertools.combinations(range(4), 2):
        n = B[:, i] - B[:, j]
        e1 = np.linalg.svd(n[None])[2][1:]  # (2, 3): orthonormal basis of n^perp
        U = 1.003 * (np.cos(t)[:, None] * e1[0] + np.sin(t)[:, None] * e1[1])  # (721, 3)
        G = U @ B  # (721, 4)
        others = [m for m in range(4) if m not in (i, j)]
        above = (G[:, others] > G[:, [i]]).sum(1)
        keep = (above == k - 1) & (U @ view > 0)
        U[~keep] = np.nan
        ax.plot(*U.T, color="k", lw=1.5, zorder=3)
    for Sk in itertools.combinations(range(4), k):
        v = B @ (np.isin(np.arange(4), Sk) - k / 4)
        v = v / np.linalg.norm(v)
        if v @ view > -0.2:
            ax.text(*(1.08 * v), "{" + ",".join(map(str, Sk)) + "}", fontsize=7, ha="center",
                    va="center", zorder=10)
    ax.view_init(elev=elev, azim=azim)
    ax.set_box_aspect((1, 1, 1))
    ax.set(xlabel="$u_1$", ylabel="$u_2$", zlabel="$u_3$", xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1))
    return ax
