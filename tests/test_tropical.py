"""Top-k routing as tropical geometry: moe_theory.tropical, tropical_regions, tropical_capacity.

Tests are named after the labelled results of book/tropical.md.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import linprog
from scipy.spatial import ConvexHull

from moe_theory.tropical import (
    active_set_ids, arrangement_cell_count, braid_section_count, effective_capacity, eulerian_number,
    general_position_bound, hypersimplex_edges, hypersimplex_vertices, hypersimplex_volume,
    lee_voronoi_count, monte_carlo_topk_sets, normal_cone_inequalities, ordering_count, perturbation_resilience,
    random_flat, realizable_topk_sets, region_lp, relu_activation_patterns, relu_layer_regions, routing_gap,
    soft_elementary_symmetric, stirling_first, sum_zero_basis, topk_mask, trig_curve,
    topk_sets_at, tropical_elementary_symmetric, tropical_elementary_symmetric_brute, voronoi_router,
)
from moe_theory.experiments.tropical import flat_capacity_table

logit_vectors = st.integers(2, 7).flatmap(
    lambda n: arrays(np.float64, n, elements=st.floats(-5, 5, allow_nan=False, width=32)))


def _router(N, D, seed, bias=1.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, D)), bias * rng.standard_normal(N)


# ------------------------------------------------------------------ thm-trop-topk-etrop
@given(g=logit_vectors, data=st.data())
def test_thm_trop_topk_etrop_subset_max_sort_lp_relu_agree(g, data):
    N = len(g)
    k = data.draw(st.integers(1, N))
    e = tropical_elementary_symmetric(g, k)
    assert e == pytest.approx(tropical_elementary_symmetric_brute(g, k), abs=1e-9)
    lp = linprog(-g, A_eq=np.ones((1, N)), b_eq=[k], bounds=[(0, 1)] * N, method="highs")
    assert -lp.fun == pytest.approx(e, abs=1e-7)
    ts = np.r_[g, g.min() - 1]  # min over t of k t + sum (g_i - t)_+ is attained at a logit
    relu = min(k * t + np.maximum(g - t, 0).sum() for t in ts)
    assert relu == pytest.approx(e, abs=1e-9)
    c = data.draw(st.floats(-3, 3))
    assert tropical_elementary_symmetric(g + c, k) == pytest.approx(e + k * c, abs=1e-6)
    if k < N:
        assert e == pytest.approx(g.sum() + tropical_elementary_symmetric(-g, N - k), abs=1e-6)


def test_thm_trop_topk_etrop_gradient_is_the_mask_and_torch_matches_numpy():
    gen = torch.Generator().manual_seed(0)
    G = torch.randn(200, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    tropical_elementary_symmetric(G, 3).sum().backward()
    assert torch.equal(G.grad, topk_mask(G.detach(), 3))
    assert np.allclose(tropical_elementary_symmetric(G.detach(), 3).numpy(),
                       tropical_elementary_symmetric(G.detach().numpy(), 3))
    assert torch.allclose(tropical_elementary_symmetric_brute(G.detach(), 3), tropical_elementary_symmetric(G.detach(), 3))
    g, h = G.detach().numpy()[0], 1e-6  # finite differences where delta_k > 0
    assert routing_gap(g, 3) > 1e-3
    fd = [(tropical_elementary_symmetric(g + h * np.eye(6)[i], 3) - tropical_elementary_symmetric(g, 3)) / h
          for i in range(6)]
    assert np.allclose(fd, topk_mask(g, 3), atol=1e-6)


def test_thm_trop_topk_etrop_ties_iff_zero_gap_and_linf_robustness():
    rng = np.random.default_rng(1)
    G = rng.integers(-2, 3, (500, 5)).astype(float)
    for g in G:
        s = np.sort(g)[::-1]
        assert (routing_gap(g, 2) == 0) == (s[1] == s[2])
    G = rng.standard_normal((500, 5))
    for g in G:
        delta = routing_gap(g, 2)
        dg = rng.uniform(-1, 1, 5) * 0.499 * delta
        assert np.array_equal(topk_mask(g + dg, 2), topk_mask(g, 2))
    assert topk_mask([1.0, 1.0, 1.0, 0.0], 2).tolist() == [1.0, 1.0, 0.0, 0.0]  # ties to the smaller index


# ------------------------------------------------------------------ prop-trop-dequantisation
@given(g=logit_vectors, tau=st.sampled_from([0.05, 0.3, 1.0, 3.0]), data=st.data())
def test_prop_trop_dequantisation_bounds(g, tau, data):
    k = data.draw(st.integers(1, len(g)))
    gap = soft_elementary_symmetric(g, k, tau) - tropical_elementary_symmetric(g, k)
    assert -1e-9 <= gap <= tau * math.log(math.comb(len(g), k)) + 1e-9


def test_prop_trop_dequantisation_gradient_is_inclusion_probabilities():
    g = torch.tensor([2.0, -0.5, 1.2, 0.3, 1.9], dtype=torch.float64, requires_grad=True)
    soft_elementary_symmetric(g, 2, 0.5).backward()
    w = {S: math.exp(sum(g[list(S)].tolist()) / 0.5) for S in itertools.combinations(range(5), 2)}
    incl = [sum(v for S, v in w.items() if i in S) / sum(w.values()) for i in range(5)]
    assert np.allclose(g.grad.numpy(), incl) and g.grad.sum().item() == pytest.approx(2.0)
    g2 = g.detach().clone().requires_grad_(True)
    soft_elementary_symmetric(g2, 2, 0.005).backward()
    assert torch.allclose(g2.grad, topk_mask(g.detach(), 2), atol=1e-6)
    assert soft_elementary_symmetric(g.detach(), 2, 0.5).item() == pytest.approx(
        soft_elementary_symmetric(g.detach().numpy(), 2, 0.5))


# ------------------------------------------------------------------ prop-trop-hypersimplex
@pytest.mark.parametrize("n,k", [(4, 1), (4, 2), (5, 2), (6, 3), (6, 1)])
def test_prop_trop_hypersimplex_vertices_edges_facets_volume(n, k):
    V = hypersimplex_vertices(n, k)
    assert V.shape == (math.comb(n, k), n) and (V.sum(1) == k).all()
    assert [tuple(np.flatnonzero(v)) for v in V] == list(itertools.combinations(range(n), k))
    E = hypersimplex_edges(n, k)
    deg = np.bincount(np.array(E).ravel(), minlength=len(V))
    assert (deg == k * (n - k)).all()
    hull = ConvexHull(V[:, :-1].astype(float))  # full-dimensional in y_1..y_{n-1}
    assert len(hull.vertices) == len(V)  # every 1_S is a vertex
    assert hull.volume == pytest.approx(eulerian_number(n - 1, k - 1) / math.factorial(n - 1))
    assert hull.volume == pytest.approx(hypersimplex_volume(n, k))
    facets = len(np.unique(np.round(hull.equations, 8), axis=0))
    assert facets == (2 * n if 2 <= k <= n - 2 else n)
    # hull edges (pairs on a common 1-face) are exactly the swaps: check with the LP of an edge
    for a, b in [(0, len(V) - 1), E[0]]:
        mid = (V[a] + V[b]) / 2
        others = np.delete(V, [a, b], axis=0)
        # mid is on an edge iff it is not a convex combination of other vertices
        res = linprog(np.zeros(len(others)), A_eq=np.vstack([others.T, np.ones(len(others))]),
                      b_eq=np.r_[mid, 1], bounds=[(0, None)] * len(others), method="highs")
        assert (res.status == 2) == ((a, b) in E)
    assert np.array_equal(hypersimplex_vertices(n, n - k)[::-1], 1 - V)  # Delta(n, k) ~ Delta(n, n - k)


def test_prop_trop_hypersimplex_eulerian_and_stirling_numbers():
    assert [eulerian_number(5, m) for m in range(5)] == [1, 26, 66, 26, 1]
    assert sum(eulerian_number(6, m) for m in range(6)) == math.factorial(6)
    assert [stirling_first(5, j) for j in range(6)] == [0, 24, 50, 35, 10, 1]
    B = sum_zero_basis(4)
    assert np.allclose(B @ B.T, np.eye(3)) and np.allclose(B @ np.ones(4), 0)


# ------------------------------------------------------------------ thm-trop-normal-fan
def test_thm_trop_normal_fan_cones_are_the_active_sets():
    rng = np.random.default_rng(2)
    n, k = 5, 2
    V = hypersimplex_vertices(n, k)
    subsets = list(itertools.combinations(range(n), k))
    for g in rng.standard_normal((300, n)):
        S = tuple(np.flatnonzero(topk_mask(g, k)))
        M = normal_cone_inequalities(S, n)
        assert M.shape == (k * (n - k), n) and (M @ g > 0).all()
        inside = [T for T in subsets if (normal_cone_inequalities(T, n) @ g > 0).all()]
        assert inside == [S]
        scores = V @ g  # <g, 1_T>: uniquely maximised at T = S
        assert subsets[int(np.argmax(scores))] == S and np.sum(scores == scores.max()) == 1
    # each C_S is the union of k! (n-k)! Weyl chambers
    per = {}
    for perm in itertools.permutations(range(n)):
        per[tuple(sorted(perm[:k]))] = per.get(tuple(sorted(perm[:k])), 0) + 1
    assert set(per.values()) == {math.factorial(k) * math.factorial(n - k)} and len(per) == math.comb(n, k)


# ------------------------------------------------------------------ prop-trop-regions-lp
@pytest.mark.parametrize("N,D,k,seed", [(6, 2, 2, 0), (7, 3, 3, 1), (8, 2, 3, 2), (6, 1, 2, 3)])
def test_prop_trop_regions_lp_brute_equals_bfs_and_contains_monte_carlo(N, D, k, seed):
    W, b = _router(N, D, seed)
    brute, cert = realizable_topk_sets(W, b, k, method="brute", return_certificates=True)
    assert brute == realizable_topk_sets(W, b, k, method="bfs") == sorted(brute)
    mc = monte_carlo_topk_sets(W, b, k, n_samples=5000, seed=seed, scale=3.0)
    assert set(mc.sets) <= set(brute) and sum(mc.probabilities.values()) <= 1 + 1e-12
    for S, c in cert.items():  # every witness reproduces its set
        assert tuple(np.flatnonzero(topk_mask(W @ c.witness + b, k))) == S
    for S in set(itertools.combinations(range(N), k)) - set(brute):
        assert not region_lp(W, b, S).realizable


def test_prop_trop_regions_lp_invariances():
    N, D, k = 7, 2, 3
    W, b = _router(N, D, 4)
    base = realizable_topk_sets(W, b, k)
    rng = np.random.default_rng(5)
    u, beta = rng.standard_normal(D), 0.7
    assert realizable_topk_sets(W + u, b + beta, k) == base  # common shift of all rows
    assert realizable_topk_sets(3.5 * W, 3.5 * b, k) == base  # positive scaling
    A, c = rng.standard_normal((D, D)), rng.standard_normal(D)
    assert realizable_topk_sets(W @ A, b + W @ c, k) == base  # reparametrise x = A z + c
    assert realizable_topk_sets(W, b, k, A, c) == base
    perm = rng.permutation(N)  # expert j of the permuted router is expert perm[j]
    mapped = sorted(tuple(sorted(perm[j] for j in S)) for S in realizable_topk_sets(W[perm], b[perm], k))
    assert mapped == base
    for kk in range(1, N):  # complement law rho_k(W, b) = rho_{N-k}(W, -b), set by set
        comp = sorted(tuple(sorted(set(range(N)) - set(S))) for S in realizable_topk_sets(W, -b, N - kk))
        assert comp == realizable_topk_sets(W, b, kk)


def test_prop_trop_regions_lp_far_regions_and_degenerate_routers():
    # rows differing by 1e-6 cross near x ~ 1e6: free x (no box) keeps the far region
    W, b = np.array([[1.0], [1.0 + 1e-6], [0.0]]), np.array([1.0, 0.0, 0.0])
    assert realizable_topk_sets(W, b, 1) == [(0,), (1,), (2,)]
    # identical rows always tie; the index rule takes the lower one first (6 only with 2)
    W, b = _router(6, 2, 6)
    W2, b2 = np.vstack([W, W[2]]), np.r_[b, b[2]]
    assert realizable_topk_sets(W2, b2, 1) == realizable_topk_sets(W, b, 1)
    for k in (1, 2, 3):
        got, cert = realizable_topk_sets(W2, b2, k, return_certificates=True)
        assert got and all(not (6 in S and 2 not in S) for S in got)
        if k > 1:  # the pair can be split at the threshold: 2 in, its copy 6 out
            assert any(2 in S and 6 not in S for S in got)
        for S, c in cert.items():  # the tie-broken router really picks S at the witness
            assert tuple(np.flatnonzero(topk_mask(W2 @ c.witness + b2, k))) == S
        assert set(monte_carlo_topk_sets(W2, b2, k, n_samples=4000, seed=0, scale=3).sets) <= set(got)
    assert realizable_topk_sets(np.ones((3, 2)), np.zeros(3), 2) == [(0, 1)]  # all tied: one region
    # bias-free router on a line: brute force finds both half-lines; BFS is not promised here
    W = np.array([[1.0], [2.0], [-1.0], [-3.0]])
    assert realizable_topk_sets(W, np.zeros(4), 2, method="brute") == [(0, 1), (2, 3)]
    assert not region_lp(W, np.zeros(4), (0, 2)).realizable


# ------------------------------------------------------------------ prop-trop-count-bounds
def test_prop_trop_count_bounds_rank_n_gives_all_subsets():
    for N, k in [(5, 2), (6, 3), (7, 1)]:
        W, b = _router(N, N - 1, N)  # rank [W 1] = N
        assert np.linalg.matrix_rank(np.column_stack([W, np.ones(N)])) == N
        assert len(realizable_topk_sets(W, b, k)) == math.comb(N, k)


@pytest.mark.parametrize("N,D", [(4, 1), (5, 2), (6, 2), (6, 3), (5, 4)])
def test_prop_trop_count_bounds_braid_arrangement(N, D):
    W, b = _router(N, D, 10 * N + D)
    n_orders = ordering_count(W, b)
    assert n_orders == braid_section_count(N, D) <= general_position_bound(math.comb(N, 2), D)
    for k in range(1, N):
        assert len(realizable_topk_sets(W, b, k)) <= min(n_orders, math.comb(N, k))
    if 2 <= D < N - 1:  # the walls meet three at a time (g_i = g_j = g_l): fewer cells
        assert braid_section_count(N, D) < general_position_bound(math.comb(N, 2), D)
    # the orderings met by samples are a subset of the cells: sampled count <= exact count
    X = 4 * np.random.default_rng(0).standard_normal((20000, D))
    assert len(np.unique(np.argsort(-(X @ W.T + b), axis=1), axis=0)) <= n_orders


def test_prop_trop_count_bounds_checked_values_from_the_brief():
    assert [braid_section_count(6, D) for D in range(1, 6)] == [16, 101, 326, 600, 720]
    assert [general_position_bound(15, D) for D in range(1, 6)] == [16, 121, 576, 1941, 4944]


# ------------------------------------------------------------------ prop-trop-kset-duality
def test_prop_trop_kset_duality_planar_convex_rows_and_voronoi():
    N = 7
    ang = np.sort(np.random.default_rng(3).uniform(0, 2 * np.pi, N))
    rows = np.column_stack([2 * np.cos(ang), np.sin(ang)])  # convex position, not cocircular
    for k in range(1, N):
        assert len(realizable_topk_sets(rows, np.zeros(N), k)) == N  # bias-free, convex position: N k-sets
        W, b = voronoi_router(rows)  # order-k Voronoi of convex sites: k(N - k) + 1 (Lee)
        assert len(realizable_topk_sets(W, b, k)) == k * (N - k) + 1 == lee_voronoi_count(rows, k)
    line = np.sort(np.random.default_rng(5).uniform(-3, 3, (N, 1)), axis=0)
    for k in range(1, N):
        W, b = voronoi_router(line)
        assert len(realizable_topk_sets(W, b, k)) == N - k + 1


def test_prop_trop_kset_duality_planar_at_most_k_sets_alon_gyori():
    # bias-free planar router: rho_i(rows, 0) = number of i-sets; sum_{i<=k} nu_i <= kN for k < N/2
    for seed in range(2):
        pts = np.random.default_rng(seed).standard_normal((7, 2))
        nu = [len(realizable_topk_sets(pts, np.zeros(7), i)) for i in range(1, 4)]
        assert all(sum(nu[:k]) <= k * 7 for k in range(1, 4))


def test_prop_trop_kset_duality_lee_on_random_sites_and_lifted_upper_hull():
    sites = np.random.default_rng(6).standard_normal((8, 2))
    W, b = voronoi_router(sites)
    for k in (1, 2, 3):
        assert len(realizable_topk_sets(W, b, k)) == lee_voronoi_count(sites, k)
    # S realised iff (sum_S w_i, sum_S b_i) is an upper vertex of the lifted hull
    W, b = _router(7, 2, 7)
    for k in (2, 3):
        subsets = list(itertools.combinations(range(7), k))
        P = np.array([np.r_[W[list(S)].sum(0), b[list(S)].sum()] for S in subsets])
        hull = ConvexHull(P)
        upper = {subsets[v] for eq in hull.equations if eq[2] > 1e-12
                 for v in np.flatnonzero(np.abs(P @ eq[:3] + eq[3]) < 1e-9)}
        assert upper == set(realizable_topk_sets(W, b, k))


# ------------------------------------------------------------------ prop-trop-flat-capacity
def test_prop_trop_flat_capacity_equals_reduced_router_and_obeys_d_bounds():
    N, k, D = 8, 3, 6
    W, b = _router(N, D, 8)
    for d in (1, 2):
        A, c = random_flat(D, d, seed=d)
        ec = effective_capacity(W, b, k, A=A, c=c)
        assert ec.exact and ec.ec_set == ec.ec_piece
        assert ec.sets == realizable_topk_sets(W @ A, W @ c + b, k)
        assert ec.ec_set <= min(braid_section_count(N, d), math.comb(N, k))
        assert ec.ec_set <= ordering_count(W, b, A, c) == braid_section_count(N, d)
        pts = c + (3 * np.random.default_rng(0).standard_normal((3000, d))) @ A.T
        sampled = effective_capacity(W, b, k, points=pts)
        assert set(sampled.sets) <= set(ec.sets) and 1 <= sampled.ec_mass <= sampled.ec_set


def test_prop_trop_flat_capacity_curves_set_le_piece_and_curve_bound():
    N, k, D = 6, 2, 5
    W, b = _router(N, D, 9)
    for q in (1, 3, 6):
        curve = trig_curve(D, q, 4000, seed=q)
        ec = effective_capacity(W, b, k, points=curve, closed=True)
        assert ec.ec_set <= ec.ec_piece <= 2 * q * math.comb(N, 2)


def test_prop_trop_flat_capacity_every_count_the_chapter_prints_obeys_its_bound():
    # The chapter's curve table, recomputed with its own arguments (N = 10, k = 3, m = 10 in R^12,
    # closed curves of degree q sampled at 10 000 points): every printed count is at most its
    # bound, 2 q C(N, 2) for the router's pieces and 2 q m for the ReLU layer's.
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((10, 12)), rng.standard_normal(10)
    W1, b1 = rng.standard_normal((10, 12)), rng.standard_normal(10)
    for q in (1, 2, 4, 8, 16, 32):
        curve = 2 * trig_curve(12, q, 10_000, seed=q)
        ec = effective_capacity(W, b, 3, points=curve, closed=True)
        patterns, pieces = relu_activation_patterns([(W1, b1)], curve, closed=True)
        assert ec.ec_set <= min(ec.ec_piece, math.comb(10, 3)) and ec.ec_piece <= 2 * q * math.comb(10, 2)
        assert patterns <= pieces <= 2 * q * 10, (q, patterns, pieces)
        assert 1 <= ec.ec_mass <= ec.ec_set


def test_prop_trop_relu_layer_pieces_on_a_closed_curve_count_the_wrap_around_once():
    # relu(x) along the closed loop -1 -> 1 -> -1: two pieces (the old count, 1 + changes, said 3)
    W, b = np.array([[1.0]]), np.zeros(1)
    loop = np.array([[-1.0], [1.0], [-1.0]])
    assert relu_activation_patterns([(W, b)], loop, closed=True) == (2, 2)
    assert relu_activation_patterns([(W, b)], loop) == (2, 3)  # as an open path: three pieces
    t = np.linspace(0, 2 * np.pi, 400, endpoint=False)[:, None]
    assert relu_activation_patterns([(W, b)], np.cos(t), closed=True) == (2, 2)  # degree 1: 2 q m = 2
    assert relu_activation_patterns([(W, b)], np.ones((5, 1)), closed=True) == (1, 1)
    with pytest.raises(TypeError, match="closed must be a bool"):
        relu_activation_patterns([(W, b)], loop, closed=1)


def test_prop_trop_flat_capacity_table_and_resilience():
    rows = flat_capacity_table(6, 2, 6, [1, 2], n_flats=2, seed=0)
    assert [r["d"] for r in rows] == [1, 2]
    for r in rows:
        assert r["moe_ambient"] == 15 and r["dense_ambient"] == 64  # rank N router; 2^6 ReLU patterns
        assert r["moe_ec"] <= braid_section_count(6, r["d"])
        assert r["dense_regions"] == general_position_bound(6, r["d"])
    A, c = random_flat(4, 2, seed=1)
    W, b = _router(6, 4, 1)
    same = perturbation_resilience(W, b, 2, A=A, c=c, sigma=0.0, n_trials=1, seed=0)
    assert same["jaccard"] == 1.0 and same["count_ratio"] == 1.0
    moved = perturbation_resilience(W, b, 2, A=A, c=c, sigma=0.5, n_trials=3, seed=0)
    assert 0 <= moved["jaccard"] <= 1 and moved["base_count"] == same["base_count"]


# ------------------------------------------------------------------ prop-trop-relu-layer
@pytest.mark.parametrize("m,D", [(5, 1), (6, 2), (8, 3), (7, 4)])
def test_prop_trop_relu_layer_regions_are_binomial_sums(m, D):
    W1, b1 = _router(m, D, m + D)
    assert relu_layer_regions(W1, b1) == general_position_bound(m, D)
    X = 5 * np.random.default_rng(0).standard_normal((20000, D))
    assert relu_activation_patterns([(W1, b1)], X)[0] <= general_position_bound(m, D)


def test_prop_trop_relu_layer_arrangement_count_non_generic():
    # three lines through one point: 6 cells (not 7); parallel lines: 3 cells; a repeated line counts once
    assert arrangement_cell_count([[1, 0], [0, 1], [1, 1]], [0, 0, 0]) == 6
    assert arrangement_cell_count([[1, 0], [1, 0]], [0, 1]) == 3
    assert arrangement_cell_count([[1, 0], [2, 0]], [1, 2]) == 2
    W = np.array([[1.0], [2.0], [3.0]])
    assert ordering_count(W, np.zeros(3)) == 2  # bias-free on a line: all walls at 0
    net = [(np.array([[1.0], [-1.0]]), np.zeros(2)), (np.array([[1.0, 1.0]]), np.array([-1.0]))]
    assert relu_activation_patterns(net, np.linspace(-3, 3, 600)[:, None]) == (4, 4)  # relu(|x| - 1)


# ------------------------------------------------------------------ misc and bad input
def test_active_set_ids_are_lexicographic_ranks():
    W, b = _router(5, 2, 11)
    X = np.random.default_rng(0).standard_normal((50, 2))
    ids = active_set_ids(topk_sets_at(W, b, 2, X), 5)
    subsets = list(itertools.combinations(range(5), 2))
    assert [subsets[i] for i in ids] == [tuple(np.flatnonzero(topk_mask(W @ x + b, 2))) for x in X]


def test_bad_inputs_raise_clear_errors():
    W, b = _router(5, 3, 0)
    with pytest.raises(ValueError, match=r"b must have shape \(N,\) = \(5,\)"):
        realizable_topk_sets(W, b[:4], 2)
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= N \(rows of W\) \(= 5\), got k=6"):
        realizable_topk_sets(W, b, 6)
    with pytest.raises(ValueError, match="k must satisfy"):
        monte_carlo_topk_sets(W, b, 0, n_samples=10, seed=0)
    with pytest.raises(ValueError, match=r"A must have shape \(D, d\) = \(3, d\)"):
        realizable_topk_sets(W, b, 2, A=np.eye(2))
    with pytest.raises(ValueError, match=r"c must have shape \(D,\) = \(3,\)"):
        realizable_topk_sets(W, b, 2, A=np.eye(3)[:, :2], c=np.zeros(2))
    with pytest.raises(ValueError, match="W must contain only finite values"):
        realizable_topk_sets(np.full((3, 2), np.nan), np.zeros(3), 1)
    with pytest.raises(ValueError, match="b must contain only finite values"):
        region_lp(W, np.r_[b[:4], np.inf], (0,))
    with pytest.raises(ValueError, match="W must have 2 dimensions"):
        realizable_topk_sets(np.ones(3), np.zeros(3), 1)
    with pytest.raises(TypeError, match="k must be an integer"):
        realizable_topk_sets(W, b, 2.5)
    with pytest.raises(ValueError, match="method must be one of"):
        realizable_topk_sets(W, b, 2, method="sampling")
    with pytest.raises(ValueError, match=r"S must be a non-empty set of distinct indices in 0..4"):
        region_lp(W, b, (0, 7))
    with pytest.raises(ValueError, match=r"S must be a non-empty set"):
        normal_cone_inequalities((1, 1), 4)
    with pytest.raises(TypeError, match="seed must be a non-negative int seed"):
        monte_carlo_topk_sets(W, b, 2, n_samples=10, seed=None)
    with pytest.raises(ValueError, match=r"sampler\(rng, n\) must return shape"):
        monte_carlo_topk_sets(W, b, 2, n_samples=10, seed=0, sampler=lambda r, n: np.zeros((n, 2)))
    with pytest.raises(ValueError, match="k must satisfy"):
        tropical_elementary_symmetric([1.0, 2.0], 3)
    with pytest.raises(ValueError, match="g must contain only finite values"):
        tropical_elementary_symmetric(torch.tensor([1.0, float("nan")]), 1)
    with pytest.raises(ValueError, match="k must satisfy"):
        tropical_elementary_symmetric_brute(np.zeros(3), 0)
    with pytest.raises(ValueError, match="k must satisfy"):
        topk_mask(np.zeros(3), 4)
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= 2"):
        routing_gap(np.zeros(3), 3)
    with pytest.raises(ValueError, match="tau must be > 0"):
        soft_elementary_symmetric(np.zeros(3), 1, 0.0)
    with pytest.raises(ValueError, match="k must satisfy"):
        hypersimplex_vertices(4, 5)
    with pytest.raises(ValueError, match="n must be >= 1"):
        hypersimplex_edges(0, 1)
    with pytest.raises(ValueError, match="n must be >= 2"):
        sum_zero_basis(1)
    with pytest.raises(ValueError, match="m must be >= 0"):
        eulerian_number(3, -1)
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= 3"):
        hypersimplex_volume(4, 4)
    with pytest.raises(TypeError, match="j must be an integer"):
        stirling_first(3, 1.0)
    with pytest.raises(ValueError, match="dim must be >= 0"):
        braid_section_count(4, -1)
    with pytest.raises(ValueError, match="n_hyperplanes must be >= 0"):
        general_position_bound(-1, 2)
    with pytest.raises(ValueError, match="sites must have 2 dimensions"):
        voronoi_router([1.0, 2.0])
    with pytest.raises(ValueError, match=r"sites must have shape \(N, 2\)"):
        lee_voronoi_count(np.zeros((4, 3)), 1)
    with pytest.raises(ValueError, match=r"offsets must have shape \(m,\) = \(2,\)"):
        arrangement_cell_count(np.eye(2), np.zeros(3))
    with pytest.raises(ValueError, match=r"b must have shape"):
        ordering_count(W, np.zeros(2))
    with pytest.raises(ValueError, match="W must contain only finite values"):
        relu_layer_regions(np.full((2, 2), np.inf), np.zeros(2))
    with pytest.raises(ValueError, match=r"layers\[0\] must be \(W, b\)"):
        relu_activation_patterns([(np.eye(2), np.zeros(3))], np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"points must have shape \(T, D\) = \(T, 3\)"):
        topk_sets_at(W, b, 2, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="needs a flat chart A"):
        effective_capacity(W, b, 2)
    with pytest.raises(ValueError, match="either a chart"):
        effective_capacity(W, b, 2, A=np.eye(3), points=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"d must satisfy 1 <= d <= 3"):
        random_flat(3, 4, seed=0)
    with pytest.raises(ValueError, match="q must be >= 1"):
        trig_curve(3, 0, 10, seed=0)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        perturbation_resilience(W, b, 2, A=np.eye(3), c=np.zeros(3), sigma=-1.0, n_trials=1, seed=0)
    with pytest.raises(ValueError, match="n_flats must be >= 1"):
        flat_capacity_table(4, 2, 3, [1], n_flats=0, seed=0)


def test_plot_helpers_and_result_table():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from moe_theory.tables import result_table
    from moe_theory.tropical import (coalition_color, plot_hypersimplex4, plot_normal_fan4,
                                     plot_topk_regions)

    W, b = _router(5, 2, 12)
    fig, ax = plt.subplots()
    seen = plot_topk_regions(ax, W, b, 2, resolution=60)
    assert 1 <= seen <= len(realizable_topk_sets(W, b, 2))  # the window shows a subset of the exact regions
    with pytest.raises(ValueError, match=r"W must have shape \(\.\.\., \*, 2\)"):
        plot_topk_regions(ax, np.zeros((5, 3)), b, 2)
    fig3 = plt.figure()
    plot_hypersimplex4(fig3.add_subplot(projection="3d"), 2, g=[3.0, 1.0, 2.0, 0.0])
    with pytest.raises(ValueError, match=r"g must have shape \(\.\.\., 4\)"):
        plot_hypersimplex4(fig3.add_subplot(projection="3d"), 2, g=[1.0, 2.0])
    with pytest.raises(ValueError, match="n_points must be >= 1"):
        plot_normal_fan4(fig3.add_subplot(projection="3d"), 2, n_points=0)
    plt.close("all")
    assert np.allclose(coalition_color((0,), 3), matplotlib.colors.to_rgb("#1f77b4"))
    md = result_table(["a", "b"], [[1, 0.5]]).markdown
    assert ">0.5</span></td>" in result_table(["a", "b"], [[1, 0.5]])._repr_html_()
    assert md.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.5 |"]
    with pytest.raises(ValueError, match="rows must have 2 entries"):
        result_table(["a", "b"], [[1]])
