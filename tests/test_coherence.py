"""Tests of moe_theory.coherence and moe_theory.coherence_experiments, named after the
results of the chapter *The coherence barrier* (book/coherence.md) they check."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from moe_theory import coherence as coh
from moe_theory import coherence_experiments as cx

seeds = st.integers(0, 2**32 - 1)


def _orthonormal(rng, D, N):
    Q, _ = np.linalg.qr(rng.standard_normal((D, N)))
    return Q


def _brute_residual(A, t, S):
    """Independent reference: least squares by numpy's lstsq on the chosen columns."""
    AS = A[:, list(S)]
    coef = np.linalg.lstsq(AS, t, rcond=None)[0]
    return float(np.sum((t - AS @ coef) ** 2))


# -- coherence and the Welch bound -------------------------------------------------------------
@given(seed=seeds, D=st.integers(1, 6), N=st.integers(2, 9))
def test_mutual_coherence_in_unit_interval_and_invariant_to_scaling_and_sign(seed, D, N):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((D, N))
    mu = coh.mutual_coherence(A)
    scaled = A * rng.uniform(0.1, 10, N) * rng.choice([-1, 1], N)
    assert 0 <= mu <= 1
    assert coh.mutual_coherence(scaled) == pytest.approx(mu, abs=1e-12)
    # reference: the definition, pair by pair
    ref = max(abs(A[:, i] @ A[:, j]) / np.linalg.norm(A[:, i]) / np.linalg.norm(A[:, j])
              for i, j in itertools.combinations(range(N), 2))
    assert mu == pytest.approx(min(ref, 1.0), abs=1e-12)


@given(seed=seeds, D=st.integers(1, 6), extra=st.integers(1, 6))
def test_prop_coh_frame_bound_penalty_and_welch(seed, D, extra):
    """R = 2 sum cos^2 >= N(N-D)/D, hence mu >= Welch bound (prop-coh-frame-bound)."""
    N = D + extra
    W = torch.tensor(np.random.default_rng(seed).standard_normal((N, D)))
    R = float(coh.orthogonality_penalty(W))
    U = coh.normalize_columns(W.numpy().T)
    cos = U.T @ U
    assert R == pytest.approx(2 * np.sum(np.triu(cos, 1) ** 2), rel=1e-10)
    assert R >= coh.frame_penalty_bound(N, D) - 1e-9
    assert coh.mutual_coherence(U) >= coh.welch_bound(D, N) - 1e-12


@pytest.mark.parametrize("D", [1, 2, 3, 5, 8])
def test_prop_coh_frame_bound_attained_by_the_simplex_frame(D):
    S = coh.simplex_frame(D)
    assert S.shape == (D, D + 1)
    assert coh.mutual_coherence(S) == pytest.approx(1 / D, abs=1e-12)
    assert coh.welch_bound(D, D + 1) == pytest.approx(1 / D, abs=1e-15)
    R = float(coh.orthogonality_penalty(torch.tensor(S.T)))
    assert R == pytest.approx(coh.frame_penalty_bound(D + 1, D), rel=1e-9)  # a tight frame


def test_equiangular_dictionary_has_exactly_the_prescribed_coherence():
    for N, mu in [(3, 0.0), (5, 0.2), (10, 0.55)]:
        A = coh.equiangular_dictionary(N, mu)
        G = A.T @ A
        assert np.allclose(np.diag(G), 1) and np.allclose(G[~np.eye(N, dtype=bool)], mu)
        assert coh.mutual_coherence(A) == pytest.approx(mu, abs=1e-12)


# -- selection rules ----------------------------------------------------------------------------
@given(seed=seeds, D=st.integers(1, 6), N=st.integers(1, 7), data=st.data())
def test_exhaustive_select_matches_brute_force_lstsq(seed, D, N, data):
    k = data.draw(st.integers(1, N))
    rng = np.random.default_rng(seed)
    A, t = rng.standard_normal((D, N)), rng.standard_normal(D)
    if N > 1 and rng.random() < 0.3:
        A[:, 1] = -3 * A[:, 0]  # dependent atoms must not break the least squares
    best = min(_brute_residual(A, t, S) for S in itertools.combinations(range(N), k))
    sel = coh.exhaustive_select(A, t, k)
    # 1e-7: with dependent atoms the two least-squares solvers differ by rounding of order 1e-8
    # (hypothesis found seed=1901, D=N=4 with a gap of 8.7e-9 on a residual of 2)
    tol = 1e-7 * (1 + t @ t)
    assert sel.residual == pytest.approx(best, abs=tol)
    assert sel.residual == pytest.approx(_brute_residual(A, t, sel.support), abs=tol)
    assert list(sel.support) == sorted(sel.support) and len(set(sel.support)) == k
    assert coh.captured_energy(A, t, sel.support) == pytest.approx(t @ t - sel.residual, abs=tol)


@given(seed=seeds, D=st.integers(2, 6), N=st.integers(2, 7), data=st.data())
def test_greedy_rules_residuals_are_least_squares_and_never_beat_the_optimum(seed, D, N, data):
    k = data.draw(st.integers(1, N))
    rng = np.random.default_rng(seed)
    A, t = rng.standard_normal((D, N)), rng.standard_normal(D)
    opt = coh.exhaustive_select(A, t, k).residual
    for rule in (coh.greedy_select, coh.topk_correlation_select):
        sel = rule(A, t, k)
        assert sel.residual == pytest.approx(_brute_residual(A, t, sel.support), abs=1e-9 * (1 + t @ t))
        assert sel.residual >= opt - 1e-9 * (1 + t @ t)


def test_topk_correlation_select_is_top_k_of_abs_correlations_with_ties_to_smaller_index():
    A = np.eye(4)
    assert coh.topk_correlation_select(A, [1.0, -3.0, 3.0, 2.0], 2).support == (1, 2)
    assert coh.topk_correlation_select(A, [1.0, 1.0, 1.0, 1.0], 2).support == (0, 1)


def test_greedy_select_refits_so_omp_differs_from_thresholding():
    # two nearly parallel atoms and one orthogonal: OMP's refit avoids the second twin
    A = np.array([[1.0, 0.99, 0.0], [0.0, math.sqrt(1 - 0.99**2), 0.0], [0.0, 0.0, 1.0]])
    t = A[:, 0] + 0.5 * A[:, 2]
    assert coh.topk_correlation_select(A, t, 2).support == (0, 1)
    assert coh.greedy_select(A, t, 2).support == (0, 2)
    assert coh.greedy_select(A, t, 2).residual == pytest.approx(0, abs=1e-12)


# -- the barrier -----------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3, 4, 6])
def test_thm_coh_barrier_is_sharp_at_one_over_2k_minus_1(k):
    below, above = 0.9 / (2 * k - 1), 1.1 / (2 * k - 1)
    truth = tuple(range(1, k + 1))
    for mu, omp_right in ((below, True), (above, False)):
        A = coh.adversarial_dictionary(k, mu)
        t = A[:, 1:].sum(axis=1)
        assert coh.mutual_coherence(A) == pytest.approx(mu, abs=1e-12)
        corr = A.T @ t
        assert corr[0] == pytest.approx(k * mu) and np.allclose(corr[1:], 1 - (k - 1) * mu)
        ex = coh.exhaustive_select(A, t, k)
        assert ex.support == truth and ex.residual < 1e-20
        assert (coh.greedy_select(A, t, k).support == truth) is omp_right
        assert (coh.topk_correlation_select(A, t, k).support == truth) is omp_right
        # this instance attains the ERC bound of lem-coh-erc-coherence; ERC crosses 1 at the line
        assert coh.erc(A, truth) == pytest.approx(coh.erc_coherence_bound(mu, k), rel=1e-10)
        assert (coh.erc(A, truth) < 1) is omp_right
        if not omp_right:
            assert 0 in coh.greedy_select(A, t, k).support
            assert coh.greedy_select(A, t, k).residual > 0.1


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_thm_coh_barrier_gram_is_positive_definite_iff_mu_below_one_over_k(k):
    for mu in np.linspace(0, 1 / k, 7)[:-1]:
        G = np.full((k + 1, k + 1), -mu)
        G[0, :] = G[:, 0] = mu
        np.fill_diagonal(G, 1)
        assert np.linalg.det(G) == pytest.approx((1 - k * mu) * (1 + mu) ** k, rel=1e-9)
        A = coh.adversarial_dictionary(k, mu)
        assert np.allclose(A.T @ A, G)
    for mu in (1 / k, 1.2 / k):
        with pytest.raises(ValueError, match="mu must satisfy 0 <= mu < 1/k"):
            coh.adversarial_dictionary(k, mu)


# -- Tropp's ERC and the coherence condition -------------------------------------------------------
def _near_orthonormal(rng, D, N, eps):
    A = _orthonormal(rng, D, N) + eps * rng.standard_normal((D, N)) / math.sqrt(D)
    return A / np.linalg.norm(A, axis=0)


@given(seed=seeds, k=st.integers(1, 4))
def test_thm_coh_tropp_erc_implies_omp_recovery(seed, k):
    rng = np.random.default_rng(seed)
    A = _near_orthonormal(rng, 10, 8, rng.uniform(0.2, 1.2))
    S = np.sort(rng.choice(8, k, replace=False))
    assume(coh.erc(A, S) < 1)
    beta = rng.standard_normal(k) * rng.uniform(0.01, 10, k)
    t = A[:, S] @ beta
    assert coh.greedy_select(A, t, k).support == tuple(S)
    assert coh.exhaustive_select(A, t, k).support == tuple(S)


@given(seed=seeds, k=st.integers(1, 5), D=st.integers(5, 9), N=st.integers(5, 9))
def test_lem_coh_erc_coherence_bound(seed, k, D, N):
    assume(k < N)
    A = np.random.default_rng(seed).standard_normal((D, N))
    mu = coh.mutual_coherence(A)
    assume((k - 1) * mu < 1)
    worst = max(coh.erc(A, S) for S in itertools.combinations(range(N), k))
    assume(np.linalg.matrix_rank(A) >= k)
    assert worst <= coh.erc_coherence_bound(mu, k) + 1e-9


@given(seed=seeds, k=st.integers(1, 4))
def test_cor_coh_mu_condition_omp_recovers_every_k_sparse_target(seed, k):
    rng = np.random.default_rng(seed)
    A = _near_orthonormal(rng, 24, 12, rng.uniform(0.02, 0.3))
    mu = coh.mutual_coherence(A)
    assume(mu < 1 / (2 * k - 1))
    assert coh.erc_coherence_bound(mu, k) < 1
    S = np.sort(rng.choice(12, k, replace=False))
    beta = rng.choice([-1, 1], k) * rng.uniform(0.001, 100, k)  # any dynamic range
    t = A[:, S] @ beta
    assert coh.greedy_select(A, t, k).support == tuple(S)
    assert coh.erc(A, S) <= coh.erc_coherence_bound(mu, k) + 1e-12 < 1 + 1e-12


@given(seed=seeds, k=st.integers(1, 3))
def test_prop_coh_erc_necessary_first_pick_leaves_the_support(seed, k):
    rng = np.random.default_rng(seed)
    A = coh.gaussian_shared_dictionary(6, 8, rng.uniform(0.3, 0.9), rng)
    S = np.sort(rng.choice(8, k, replace=False))
    assume(coh.erc(A, S) > 1 + 1e-6)
    t = coh.erc_failure_target(A, S)
    corr = np.abs(A.T @ t)
    assert np.allclose(corr[S], 1)
    assert corr.max() == pytest.approx(coh.erc(A, S))
    assert coh.greedy_select(A, t, 1).support[0] not in S
    assert coh.exhaustive_select(A, t, k).residual < 1e-9  # t is exactly k-sparse on S


@given(seed=seeds, k=st.integers(1, 4), ratio=st.floats(0.05, 1.0))
def test_prop_coh_thresholding_dynamic_range_condition(seed, k, ratio):
    rng = np.random.default_rng(seed)
    A = _near_orthonormal(rng, 24, 12, rng.uniform(0.01, 0.3))
    mu = coh.mutual_coherence(A)
    assume(ratio > (2 * k - 1) * mu)  # |beta|_min / |beta|_max > (2k - 1) mu
    S = np.sort(rng.choice(12, k, replace=False))
    mags = np.r_[1.0, rng.uniform(ratio, 1.0, k - 1)] if k > 1 else np.ones(1)
    mags[-1] = ratio if k > 1 else 1.0
    t = A[:, S] @ (mags * rng.choice([-1, 1], k))
    assert coh.topk_correlation_select(A, t, k).support == tuple(S)


# -- orthogonality closes the gap --------------------------------------------------------------------
@given(seed=seeds, D=st.integers(2, 7), data=st.data())
def test_prop_coh_orthonormal_sort_thresholding_is_optimal_f1_and_f2(seed, D, data):
    N = data.draw(st.integers(2, D))
    k = data.draw(st.integers(1, N))
    rng = np.random.default_rng(seed)
    A = _orthonormal(rng, D, N) * rng.uniform(0.5, 2, N)  # orthogonal, any lengths
    t = rng.standard_normal(D)
    thr, opt = coh.topk_correlation_select(A, t, k), coh.exhaustive_select(A, t, k)
    assert thr.residual == pytest.approx(opt.residual, abs=1e-10)
    U = coh.normalize_columns(A)
    c = U.T @ t
    assert thr.residual == pytest.approx(t @ t - np.sort(c**2)[::-1][:k].sum(), abs=1e-10)
    # F2: approximate the dense mixture U p by k atoms: keep the top-k of p, weights p_S
    p = rng.dirichlet(np.ones(N))
    ybar = U @ p
    f2 = coh.exhaustive_select(U, ybar, k)
    top = tuple(sorted(np.argsort(-p, kind="stable")[:k]))
    assert f2.residual == pytest.approx(np.sum(p**2) - np.sum(p[list(top)] ** 2), abs=1e-10)
    assert f2.residual == pytest.approx(np.sum((ybar - U[:, list(top)] @ p[list(top)]) ** 2), abs=1e-10)


@given(seed=seeds, k=st.integers(1, 4), rho=st.floats(0.0, 0.6))
def test_thm_coh_energy_ratio_gershgorin_and_bound(seed, k, rho):
    rng = np.random.default_rng(seed)
    A = coh.gaussian_shared_dictionary(12, 8, rho, rng)
    mu = coh.mutual_coherence(A)
    theta = coh.restricted_isometry_constant(A, k)
    assert theta <= (k - 1) * mu + 1e-12  # every G_S has eigenvalues in [1 - (k-1)mu, 1 + (k-1)mu]
    assume(theta < 1)
    t = rng.standard_normal(12)
    e_thr = t @ t - coh.topk_correlation_select(A, t, k).residual
    e_opt = t @ t - coh.exhaustive_select(A, t, k).residual
    assert e_thr / e_opt >= (1 - theta) / (1 + theta) - 1e-12
    assert e_thr / e_opt >= coh.energy_ratio_bound(mu, k) - 1e-12


def test_twin_experts_example_numbers():
    """The F2 example of the chapter: top-1 by p misses the best single expert."""
    ang = 0.05
    U = np.array([[1, math.cos(ang), 0], [0, math.sin(ang), 0], [0, 0, 1.0]])
    p = np.array([0.3, 0.3, 0.35]) / 0.95
    ybar = U @ p
    top1 = coh.captured_energy(U, ybar, [2])
    best = coh.exhaustive_select(U, ybar, 1)
    assert ybar @ ybar - top1 == pytest.approx(0.399, abs=1e-3)
    assert best.support in ((0,), (1,)) and best.residual == pytest.approx(0.136, abs=1e-3)
    U2 = np.eye(3)  # twin made orthogonal: top-1 by p is optimal again
    assert coh.exhaustive_select(U2, U2 @ p, 1).support == (2,)


# -- experiments -----------------------------------------------------------------------------------------
def test_recovery_sweep_adversarial_drops_exactly_at_the_line_and_equiangular_omp_is_perfect():
    k = 3
    mus = [0.19, 0.21]  # 1/(2k-1) = 0.2
    adv = cx.recovery_sweep("adversarial", mus, k)
    assert adv["success_omp"].tolist() == [1.0, 0.0] and adv["success_thr"].tolist() == [1.0, 0.0]
    eq = cx.recovery_sweep("equiangular", [0.1, 0.5], k, trials=60, seed=1)
    assert np.allclose(eq["mu"], [0.1, 0.5]) and np.all(eq["success_omp"] == 1)
    assert eq["success_thr"][0] == 1 and eq["success_thr"][1] < 0.6
    assert np.all(eq["ratio_thr_min"] >= [coh.energy_ratio_bound(m, k) for m in eq["mu"]])
    again = cx.recovery_sweep("equiangular", [0.1, 0.5], k, trials=60, seed=1)
    assert all(np.array_equal(eq[key], again[key]) for key in eq)  # same seed, same numbers


def test_recovery_rates_orthonormal_dictionary_is_always_recovered():
    A = np.linalg.qr(np.random.default_rng(0).standard_normal((8, 6)))[0]
    assert cx.recovery_rates(A, 3, trials=40) == {"success_thr": 1.0, "success_omp": 1.0}
    with pytest.raises(ValueError, match="trials must be >= 1"):
        cx.recovery_rates(A, 3, trials=0)


def test_decorrelate_lowers_the_penalty_and_stalls_at_the_frame_bound_when_n_exceeds_d():
    rng = np.random.default_rng(0)
    for D, N in ((12, 10), (8, 10)):
        A0 = coh.gaussian_shared_dictionary(D, N, 0.8, rng)
        hist = cx.decorrelate(A0, 60, record=(0, 5))
        R = {s: float(coh.orthogonality_penalty(torch.tensor(a.T))) for s, a in hist.items()}
        assert R[60] < R[5] < R[0]
        assert R[60] >= coh.frame_penalty_bound(N, D) - 1e-9
        if N <= D:
            assert coh.mutual_coherence(hist[60]) < 0.05
        else:
            assert R[60] == pytest.approx(coh.frame_penalty_bound(N, D), rel=0.02)
            assert coh.mutual_coherence(hist[60]) >= coh.welch_bound(D, N)


def test_train_penalised_moe_is_deterministic_and_the_penalty_lowers_expert_coherence(one_thread):
    cfg = cx.PenaltyConfig(steps=30, n_train=64, n_test=64)
    a = cx.train_penalised_moe(0.0, 3, cfg)
    b = cx.train_penalised_moe(0.0, 3, cfg)
    assert a["test_mse"] == b["test_mse"] and a["mu_experts"] == b["mu_experts"]
    pen = cx.train_penalised_moe(0.1, 3, cfg)
    assert pen["mu_experts"] < a["mu_experts"] and pen["mu_router"] < a["mu_router"]
    for r in (a, pen):
        assert 0 <= r["agree_fit"] <= 1 and 0 <= r["agree_mix"] <= 1


def test_training_output_from_combine_matrix_equals_the_moe_layer():
    model = cx.train_penalised_moe(0.0, 0, cx.PenaltyConfig(steps=1, n_train=16, n_test=16))["model"]
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = torch.einsum("tn,tno->to", model.router(x).combine_matrix(), cx._expert_outputs(model, x))
        assert torch.allclose(y, model(x), atol=1e-6)


# -- bad input -------------------------------------------------------------------------------------------
def test_bad_input_messages():
    A = np.eye(3)
    with pytest.raises(ValueError, match="A must have no zero columns"):
        coh.mutual_coherence(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"A must have at least 2 column"):
        coh.mutual_coherence(np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"A must have at least 1 column"):
        coh.normalize_columns(np.ones((3, 0)))
    with pytest.raises(ValueError, match="A must have 2 dimensions"):
        coh.mutual_coherence(np.ones(3))
    for rule in (coh.greedy_select, coh.topk_correlation_select, coh.exhaustive_select):
        with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= the number of columns of A \(= 3\)"):
            rule(A, np.ones(3), 4)
        with pytest.raises(ValueError, match=r"t must have length D = 3"):
            rule(A, np.ones(2), 1)
        with pytest.raises(TypeError, match="k must be an integer"):
            rule(A, np.ones(3), 1.5)
    with pytest.raises(ValueError, match=r"C\(N, k\) = C\(64, 8\).*N=64, k=8"):
        coh.exhaustive_select(np.random.default_rng(0).standard_normal((64, 64)), np.ones(64), 8)
    with pytest.raises(ValueError, match="support must be 1 to 2 distinct column indices"):
        coh.erc(A, [0, 1, 2])
    with pytest.raises(ValueError, match="support must be 1 to 2 distinct column indices"):
        coh.erc_failure_target(A, [0, 0])
    with pytest.raises(ValueError, match="support must be 1 to 3 distinct column indices"):
        coh.captured_energy(A, np.ones(3), [5])
    with pytest.raises(ValueError, match=r"mu must satisfy 0 <= mu < 1 \(distinct atoms\)"):
        coh.equiangular_dictionary(4, 1.0)
    with pytest.raises(ValueError, match="D must be >= 5"):
        coh.equiangular_dictionary(4, 0.1, D=4)
    with pytest.raises(ValueError, match="rho must be <= 1"):
        coh.gaussian_shared_dictionary(3, 3, 1.5, 0)
    with pytest.raises(TypeError, match="rng must be a non-negative int seed"):
        coh.gaussian_shared_dictionary(3, 3, 0.5, None)
    with pytest.raises(ValueError, match="D must be >= 1"):
        coh.simplex_frame(0)
    with pytest.raises(ValueError, match="N must be >= 2"):
        coh.welch_bound(3, 1)
    with pytest.raises(ValueError, match=r"mu must satisfy \(k - 1\) mu < 1"):
        coh.erc_coherence_bound(0.5, 3)
    with pytest.raises(ValueError, match="mu must be <= 1"):
        coh.energy_ratio_bound(1.5, 2)
    with pytest.raises(ValueError, match=r"restricted_isometry_constant would enumerate C\(30, 10\)"):
        coh.restricted_isometry_constant(np.random.default_rng(0).standard_normal((30, 30)), 10)
    with pytest.raises(ValueError, match="W must have no zero rows"):
        coh.orthogonality_penalty(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="W must be a torch.Tensor"):
        coh.orthogonality_penalty(np.eye(2))
    with pytest.raises(ValueError, match="N must be >= 1"):
        coh.frame_penalty_bound(0, 3)


def test_bad_input_messages_experiments():
    with pytest.raises(ValueError, match="family must be one of"):
        cx.recovery_sweep("random", [0.1], 2)
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= N \(= 10\)"):
        cx.recovery_sweep("equiangular", [0.1], 11)
    with pytest.raises(ValueError, match="values must be <= 1"):
        cx.recovery_sweep("gaussian", [1.5], 2)
    with pytest.raises(ValueError, match="magnitudes must be"):
        cx.sparse_targets(np.ones((1, 3, 3)), 1, 0, magnitudes=(2.0, 1.0))
    with pytest.raises(ValueError, match="steps must be >= 0"):
        cx.decorrelate(np.eye(3), -1)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        cx.train_penalised_moe(-1.0, 0)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        cx.train_penalised_moe(0.0, -2)


def test_plots_draw_and_check_their_arguments():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sw = {"adversarial": cx.recovery_sweep("adversarial", [0.1, 0.3], 2)}
    fig, (a1, a2, a3, a4) = plt.subplots(1, 4)
    cx.plot_sweep(a1, sw, 2)
    assert len(a1.lines) == 3  # two rules + the 1/(2k-1) line
    cx.plot_gap(a2, sw["adversarial"], 2)
    cx.plot_barrier_instance(a3, a4, 2, 0.38)
    assert "OMP wrong" in a3.get_title() and len(a3.patches) == 3
    a3.clear()
    cx.plot_barrier_instance(a3, a4, 2, 0.1)
    assert "OMP right" in a3.get_title()
    a3.clear()
    cx.plot_barrier_instance(a3, a4, 3, 0.4)  # mu >= 1/k: no such atoms, a message instead
    assert "no such atoms" in a3.texts[0].get_text()
    with pytest.raises(ValueError, match="k must be >= 1"):
        cx.plot_sweep(a1, sw, 0)
    with pytest.raises(ValueError, match="k must be >= 1"):
        cx.plot_gap(a2, sw["adversarial"], 0)
    with pytest.raises(ValueError, match="k must be >= 2"):
        cx.plot_barrier_instance(a3, a4, 1, 0.1)
    plt.close(fig)
