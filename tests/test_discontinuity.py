"""Discontinuities of sparse MoE: moe_theory.discontinuity, discontinuity_hitting, discontinuity_smooth
and discontinuity_plots.

Tests are named after the labelled results of book/discontinuity.md.
"""

import itertools
import math

import matplotlib
import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import erfc

matplotlib.use("Agg")

from moe_theory import discontinuity as dc  # noqa: E402
from moe_theory import discontinuity_hitting as dh  # noqa: E402
from moe_theory import discontinuity_plots as dp  # noqa: E402
from moe_theory import discontinuity_smooth as sm  # noqa: E402


def _router(N, D, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, D)), rng.standard_normal(N)


def _brute_order(g, k):
    """Order straight from the definition: r + 1 logits equal to g_(k), the block covering k, k+1."""
    gk = sorted(g, reverse=True)[k - 1]
    above, tied = sum(v > gk for v in g), sum(v == gk for v in g)
    return tied - 1 if above + tied >= k + 1 else 0


int_logits = st.integers(2, 7).flatmap(lambda n: arrays(np.float64, n, elements=st.integers(-2, 2).map(float)))


# ------------------------------------------------------------------ prop-disc-strata
def test_prop_disc_strata_prescribed_ties():
    g = [[3, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [3, 3, 1, 0, 0], [3, 2, 0, 0, -1], [3, 2, 1, 0, -1]]
    assert dc.discontinuity_order(g, 2).tolist() == [1, 2, 3, 0, 0, 0]
    assert dc.discontinuity_order([[2.0, 2.0, 2.0]], 3).tolist() == [0]          # k = N: no cut


@given(g=int_logits, data=st.data())
def test_prop_disc_strata_order_matches_definition_and_is_permutation_invariant(g, data):
    k = data.draw(st.integers(1, len(g)))
    r = int(dc.discontinuity_order(g, k))
    assert r == _brute_order(list(g), k)
    perm = data.draw(st.permutations(range(len(g))))
    assert int(dc.discontinuity_order(g[list(perm)], k)) == r
    assert int(dc.discontinuity_order(g + 3.5, k)) == r                         # shift invariance
    assert (r > 0) == (sorted(g, reverse=True)[k - 1] == sorted(g, reverse=True)[min(k, len(g) - 1)] and k < len(g))


@given(g=arrays(np.float64, 6, elements=st.floats(-3, 3, allow_nan=False)), k=st.integers(1, 5),
       tol=st.floats(0, 2))
def test_prop_disc_strata_near_order_monotone_and_first_threshold_is_gap(g, k, tol):
    e = dc.near_order_thresholds(g, k)
    assert np.all(np.diff(e) >= 0)
    s = np.sort(g)[::-1]
    assert e[0] == pytest.approx(s[k - 1] - s[k])
    assert dc.discontinuity_order(g, k, tol) >= dc.discontinuity_order(g, k, tol / 2)


@pytest.mark.parametrize("seed", range(5))
def test_prop_disc_strata_planar_segments_and_points_exact(seed):
    W, b = _router(6, 2, seed)
    box = (-2, 2, -2, 2)
    for k in (1, 2, 3):
        segs = dc.switching_segments(W, b, k, box)
        pts, triples = dc.order2_points(W, b, k, box)
        mids = np.array([(s[2] + s[3]) / 2 for s in segs])
        assert np.all(dc.discontinuity_order(mids @ W.T + b, k, 1e-9) == 1)
        if len(pts):
            assert np.all(dc.discontinuity_order(pts @ W.T + b, k, 1e-9) == 2)
        # no order-3 points in the plane: no quadruple tie anywhere near a grid of the box
        u = np.linspace(-2, 2, 150)
        grid = np.stack(np.meshgrid(u, u), -1).reshape(-1, 2)
        assert np.all(dc.discontinuity_order(grid @ W.T + b, k, 0.02) <= 2)
        # every change of active set between grid neighbours is within one grid step of a segment
        ids = np.sort(np.argsort(-(grid @ W.T + b), axis=-1, kind="stable")[:, :k], -1).reshape(150, 150, k)
        change = np.any(ids[:, 1:] != ids[:, :-1], -1)
        xs = grid.reshape(150, 150, 2)[:, :-1][change]
        assert np.all(dc.distance_to_segments(xs, segs) <= (u[1] - u[0]) * 1.01)


def test_prop_disc_strata_segments_brute_force_against_dense_sampling():
    """Reference check: the total length of Sigma_1 equals the area of a thin tube / (2 eps)."""
    W, b = _router(5, 2, 11)
    segs = dc.switching_segments(W, b, 2, (-1.5, 1.5, -1.5, 1.5))
    length = sum(np.linalg.norm(s[3] - s[2]) for s in segs)
    frac, L, _ = dc.euclidean_tube_fractions(W, b, 2, np.array([0.003]), n_points=400_000, half_width=1.5, seed=0)
    assert L == pytest.approx(length)
    assert frac[0, 0] * 9 / (2 * 0.003) == pytest.approx(length, rel=0.08)


# ------------------------------------------------------------------ prop-disc-jump
def _toy_moe(seed, N=6, k=2):
    W, b = _router(N, 2, seed)
    moe = sm.SmoothMoE(2, 8, N, k, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        moe.gate_weight.copy_(torch.tensor(W)); moe.gate_bias.copy_(torch.tensor(b))

    def logits_fn(x):
        with torch.no_grad():
            return moe.logits(torch.as_tensor(x)).numpy()

    def experts_fn(x):
        with torch.no_grad():
            return moe.expert_outputs(torch.as_tensor(x)).numpy()
    return moe, logits_fn, experts_fn


@pytest.mark.parametrize("weighting", ["renormalized", "softmax"])
def test_prop_disc_jump_matches_closed_form_on_20_lines(weighting):
    moe, lf, ef = _toy_moe(0)
    rng, done = np.random.default_rng(0), 0
    while done < 20:
        xa, xb = rng.uniform(-2, 2, (2, 2))
        try:
            j = dc.jump_across_surface(lf, ef, xa, xb, 2, weighting=weighting)
        except ValueError:
            continue
        done += 1
        np.testing.assert_allclose(j["measured"], j["predicted"], atol=1e-8)
        assert dc.discontinuity_order(lf(j["point"][None]), 2, 1e-9)[0] == 1


def test_prop_disc_jump_top1_renormalized_swaps_a_whole_expert():
    moe, lf, ef = _toy_moe(1, N=4, k=1)
    rng = np.random.default_rng(1)
    for _ in range(50):
        xa, xb = rng.uniform(-2, 2, (2, 2))
        try:
            j = dc.jump_across_surface(lf, ef, xa, xb, 1)
        except ValueError:
            continue
        assert j["pi_star"] == pytest.approx(1.0)
        a, c = j["pair"]
        E = ef(j["point"][None])[0]
        np.testing.assert_allclose(j["measured"], E[c] - E[a], atol=1e-8)
        return
    pytest.fail("no crossing found")


@given(g=arrays(np.float64, (3, 5), elements=st.floats(-3, 3, allow_nan=False)), k=st.integers(1, 5))
def test_moe_output_against_loop_and_torch_weights(g, k):
    E = np.random.default_rng(0).standard_normal((3, 5, 2))
    for weighting in ("renormalized", "softmax"):
        y = dc.moe_output(g, E, k, weighting)
        pi = sm.topk_softmax_weights(torch.tensor(g), k, weighting).numpy()
        np.testing.assert_allclose(y, np.einsum("tn,tnd->td", pi, E), atol=1e-12)
        for t in range(3):
            S = np.argsort(-g[t], kind="stable")[:k]
            w = np.exp(g[t, S]) / (np.exp(g[t, S]).sum() if weighting == "renormalized" else np.exp(g[t]).sum())
            np.testing.assert_allclose(y[t], (w[:, None] * E[t, S]).sum(0), atol=1e-12)


# ------------------------------------------------------------------ thm-disc-steiner, prop-disc-tube-order
def test_thm_disc_steiner_planar_tubes_match_leading_terms():
    W, b = _router(6, 2, 0)
    eps = np.array([0.01, 0.02, 0.04])
    frac, length, n2 = dc.euclidean_tube_fractions(W, b, 2, eps, n_points=400_000, half_width=2.0, seed=1)
    area = 16.0
    assert n2 >= 3
    np.testing.assert_allclose(frac[:, 0], 2 * eps * length / area, rtol=0.06)
    np.testing.assert_allclose(frac[1:, 1], n2 * math.pi * eps[1:] ** 2 / area, rtol=0.2)


def test_thm_disc_steiner_segment_tube_exact_formula():
    """One segment of length L in the plane: vol U_eps = 2 eps L + pi eps^2 exactly (Steiner)."""
    seg = [(0, 1, np.array([-0.5, 0.0]), np.array([0.5, 0.0]))]
    x = np.random.default_rng(0).uniform(-1, 1, (400_000, 2))
    for e in (0.05, 0.1, 0.2):
        frac = np.mean(dc.distance_to_segments(x, seg) <= e)
        assert frac * 4 == pytest.approx(2 * e * 1.0 + math.pi * e**2, rel=0.03)


def test_prop_disc_tube_order_slopes_in_the_plane():
    W, b = _router(6, 2, 2)
    fits = dc.tube_slopes(W, b, 2, np.geomspace(0.02, 0.1, 6), n_points=1_000_000, half_width=1.5, seed=0)
    assert abs(fits[0][1] - 1) < 0.15 and fits[0][2] == 6
    assert abs(fits[1][1] - 2) < 0.3 and fits[1][2] >= 4


def test_prop_disc_tube_order_probability_bounded_by_slabs():
    """P(r_eps >= 1) <= sum over pairs of P(dist to H_ab <= eps/|w_a - w_b|) (the proof's union bound)."""
    W, b = _router(5, 2, 3)
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (200_000, 2))
    for eps in (0.02, 0.05):
        p = np.mean(dc.discontinuity_order(x @ W.T + b, 2, eps) >= 1)
        slabs = np.zeros(len(x), bool)
        for i, j in itertools.combinations(range(5), 2):
            slabs |= np.abs((x @ (W[i] - W[j])) + b[i] - b[j]) <= eps
        assert p <= slabs.mean() + 1e-12


def test_tube_probabilities_deterministic_and_monotone():
    W, b = _router(6, 3, 0)
    eps = np.geomspace(0.01, 0.2, 5)
    P1 = dc.tube_probabilities(W, b, 2, eps, n_points=50_000, seed=3)
    P2 = dc.tube_probabilities(W, b, 2, eps, n_points=50_000, seed=3)
    assert np.array_equal(P1, P2)
    assert np.all(np.diff(P1, axis=0) >= 0) and np.all(np.diff(P1, axis=1) <= 0)


# ------------------------------------------------------------------ prop-disc-hit-bounds
@pytest.fixture(scope="module")
def hits():
    rng = np.random.default_rng(7)
    W, b = rng.standard_normal((5, 2)), rng.standard_normal(5)
    pts, _ = dc.order2_points(W, b, 2)
    x0 = pts[0] + np.array([0.1, -0.25])
    res = {dt: dh.first_hits(W, b, 2, x0, n_paths=2000, dt=dt, t_max=1.0, tols=(0.02, 0.01, 0.005), seed=s)
           for dt, s in ((2e-3, 1), (1e-3, 2))}
    return W, b, x0, res


def test_prop_disc_hit_bounds_cdf_between_erfc_bounds(hits):
    W, b, x0, res = hits
    t = np.array([0.05, 0.2, 1.0])
    lo, hi = dh.hitting_cdf_bounds(W, b, 2, x0, t)
    cdf = np.array([np.mean(res[1e-3].times <= s) for s in t])
    assert np.all(lo <= hi)
    assert np.all(cdf >= lo - 0.03) and np.all(cdf <= hi + 0.03)


def test_prop_disc_hit_bounds_single_hyperplane_is_exact():
    """N = 2, k = 1: one wall; both bounds are erfc(d / sqrt(2t)) and the simulation matches it."""
    W, b = np.array([[1.0, 0.0], [-1.0, 0.0]]), np.zeros(2)
    x0 = np.array([0.3, 0.0])                        # distance to the wall x_1 = 0 is 0.3
    lo, hi = dh.hitting_cdf_bounds(W, b, 1, x0, np.array([0.5]))
    assert lo[0] == pytest.approx(erfc(0.3 / 1.0)) and hi[0] == pytest.approx(lo[0])
    h = dh.first_hits(W, b, 1, x0, n_paths=2000, dt=5e-4, t_max=0.5, seed=0)
    se = math.sqrt(lo[0] * (1 - lo[0]) / 2000)
    p_sim = np.mean(np.isfinite(h.times))
    assert lo[0] - 4 * se - 0.04 <= p_sim <= lo[0] + 4 * se               # Euler misses crossings: late
    assert np.allclose(h.points[np.isfinite(h.times), 0], 0.0, atol=1e-9)


def test_first_hits_deterministic_and_step_halving_agrees(hits):
    W, b, x0, res = hits
    a = dh.first_hits(W, b, 2, x0, n_paths=50, dt=1e-2, seed=5)
    c = dh.first_hits(W, b, 2, x0, n_paths=50, dt=1e-2, seed=5)
    assert np.array_equal(a.times, c.times)
    for j in range(3):
        (p1, s1), (p2, s2) = res[2e-3].share_at_least(2, j), res[1e-3].share_at_least(2, j)
        assert abs(p1 - p2) <= 3 * math.hypot(s1, s2)


# ------------------------------------------------------------------ prop-disc-first-hit-order-one
def test_prop_disc_first_hit_order_one_hits_on_sigma_and_near_order_two_vanishes(hits):
    W, b, x0, res = hits
    for h in res.values():
        hit = np.isfinite(h.times)
        assert hit.mean() > 0.8
        assert np.all(h.gaps[hit] < 1e-6)                          # every hit lies on Sigma
        assert np.all(h.near_orders[hit] >= 1)
        p02, _ = h.share_at_least(2, 0)
        p005, _ = h.share_at_least(2, 2)
        assert p02 > 0.1                                            # the start is near an order-2 point
        assert p005 <= 0.5 * p02                                    # linear decay of the share to 0


# ------------------------------------------------------------------ prop-disc-smoothed-router
def test_smoothing_ramp_closed_form_shape_and_max_slope():
    u = torch.linspace(1e-6, 1 - 1e-6, 20_001, dtype=torch.float64)
    chi = sm.smoothing_ramp(u)
    torch.testing.assert_close(chi, u / (u + (1 - u) ** 50), rtol=1e-12, atol=1e-12)
    assert bool((chi.diff() >= 0).all())
    out = torch.tensor([-1.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    assert sm.smoothing_ramp(out).tolist() == [0.0, 0.0, 1.0, 1.0]
    v = torch.linspace(0.04, 0.07, 20_001, dtype=torch.float64)
    slope = (sm.smoothing_ramp(v).diff() / v.diff()).max().item()
    assert slope == pytest.approx(17.756, abs=0.01)
    ramp = sm.smoothing_ramp(torch.tensor([0.007, 0.0545, 0.056, 0.125], dtype=torch.float64)).tolist()
    assert ramp[0] == pytest.approx(0.01, abs=2e-4) and ramp[3] == pytest.approx(0.99, abs=1e-3)
    assert ramp[2] == pytest.approx(0.5, abs=0.02)
    # the reference's clamp at 1e-6: phi(u) ~ 1e-6 instead of ~u for 0 < u < 1e-6
    tiny = torch.tensor([1e-9], dtype=torch.float64)
    assert torch.exp(sm.log_smoothing_ramp(tiny, clamp=1e-6)).item() == pytest.approx(1e-6, rel=1e-3)
    assert sm.smoothing_ramp(tiny).item() == pytest.approx(1e-9, rel=1e-3)


logit_rows = arrays(np.float64, 6, elements=st.floats(-4, 4, allow_nan=False))


@given(g=logit_rows, k=st.integers(1, 5), eta=st.floats(0.01, 2.0), perm=st.permutations(range(6)))
def test_prop_disc_smoothed_router_weights_are_a_distribution_on_the_band(g, k, eta, perm):
    G = torch.tensor(g)
    pi = sm.smoothed_topk_weights(G, k, eta)
    assert bool((pi >= 0).all()) and abs(pi.sum().item() - 1) < 1e-12
    s = np.sort(g)[::-1]
    top = np.argsort(-g, kind="stable")[:k]
    assert np.all(pi.numpy()[top] > 0) or s[k - 1] == s[min(k, 5)]
    assert np.all(pi.numpy()[g <= s[k - 1] - eta] == 0)                    # nothing below the band
    torch.testing.assert_close(sm.smoothed_topk_weights(G[list(perm)], k, eta), pi[list(perm)])
    torch.testing.assert_close(sm.smoothed_topk_weights(G + 1.7, k, eta), pi, rtol=1e-9, atol=1e-12)
    if k < 6 and s[k - 1] - s[k] >= eta:                                    # exact top-k off the band
        torch.testing.assert_close(pi, sm.topk_softmax_weights(G, k), rtol=0, atol=1e-15)


def test_prop_disc_smoothed_router_is_continuous_top_k_is_not():
    """Along a sweep of one logit through the cut, the largest step -> 0 under refinement."""
    steps_s, steps_t = [], []
    for n in (1_001, 10_001, 100_001):
        s = torch.linspace(-1.0, 1.0, n, dtype=torch.float64)
        G = torch.stack([torch.full_like(s, 0.5), torch.zeros_like(s), s, torch.full_like(s, -2.0)], -1)
        steps_s.append((sm.smoothed_topk_weights(G, 2, 0.3).diff(dim=0)).abs().max().item())
        steps_t.append((sm.topk_softmax_weights(G, 2).diff(dim=0)).abs().max().item())
    assert steps_s[2] < steps_s[1] / 5 < steps_s[0] / 25 and steps_s[2] < 1e-3
    assert min(steps_t) > 0.3                                                # the jump stays


def test_prop_disc_smoothed_router_eta_to_zero_gives_top_k():
    G = torch.randn(500, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = torch.sort(G, -1, descending=True).values
    off = (s[:, 1] - s[:, 2]) > 1e-3
    for eta in (1e-3, 1e-4):
        torch.testing.assert_close(sm.smoothed_topk_weights(G, 2, eta)[off], sm.topk_softmax_weights(G, 2)[off],
                                   rtol=0, atol=1e-15)


def test_prop_disc_smoothed_router_gradient_reaches_gate_and_eta():
    g = torch.tensor([[1.0, 0.0, -0.2, -3.0]], dtype=torch.float64, requires_grad=True)
    theta = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    eta = torch.nn.functional.softplus(theta)
    (sm.smoothed_topk_weights(g, 2, eta) * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert g.grad.abs().sum() > 0 and theta.grad.abs() > 0


def test_eta_times_max_slope_stable_under_halving():
    vals = []
    for eta in (0.05, 0.025):
        s = torch.linspace(-eta, 0.0, 100_001, dtype=torch.float64)
        G = torch.stack([torch.ones_like(s), torch.zeros_like(s), s, torch.full_like(s, -3.0)], -1)
        w = sm.smoothed_topk_weights(G, 2, eta)[:, 2]
        vals.append(eta * (w.diff() / s.diff()).abs().max().item())
    assert abs(vals[1] / vals[0] - 1) < 0.05


def test_reference_parameters_init_budget_and_overhead():
    assert math.log1p(math.exp(-9.0)) == pytest.approx(1.2340e-4, rel=1e-4)
    m = sm.SmoothMoE(2, 4, 4, 2, router="smooth")
    assert m.eta.item() == pytest.approx(1.2340e-4, rel=1e-4)
    assert sm.SmoothMoE(2, 4, 4, 2, router="smooth", eta_init=0.1).eta.item() == pytest.approx(0.1)
    G = torch.randn(400, 8, generator=torch.Generator().manual_seed(0))
    for eta0 in (0.05, 1.0):
        theta = torch.tensor(math.log(math.expm1(eta0)), requires_grad=True)
        eta = torch.nn.functional.softplus(theta)
        sm.budget_loss(G, 2, eta).backward()
        n_bar = sm.band_count(G, 2, eta0).float().mean().item()
        assert np.sign(theta.grad.item()) == np.sign(n_bar - 2.5)
    G = torch.randn(200_000, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ratio = [(sm.band_count(G, 2, e) - 2).double().mean().item() / e for e in (0.02, 0.01)]
    assert abs(ratio[0] / ratio[1] - 1) < 0.1


def test_release_dispatch_jumps_and_book_router_does_not():
    rows = {}
    for g3 in (-0.5001, -0.4999):
        g = torch.tensor([[1.0, 0.0, g3, -3.0]], dtype=torch.float64)
        rows[g3] = (sm.smoothed_topk_weights(g, 2, 0.5), sm.smoothed_topk_weights(g, 2, 0.5, release_dispatch=True))
    book_jump = (rows[-0.5001][0] - rows[-0.4999][0]).abs().max().item()
    release_jump = (rows[-0.5001][1] - rows[-0.4999][1]).abs().max().item()
    assert book_jump < 1e-3 and release_jump >= 0.25
    torch.testing.assert_close(rows[-0.5001][1], torch.tensor([[0.7311, 0, 0, 0]], dtype=torch.float64),
                               atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="keeps j\\* = 0 slots"):
        sm.smoothed_topk_weights(torch.tensor([[1.0, 0.0, -1.0]]), 1, 1e-4, release_dispatch=True)


# ------------------------------------------------------------------ the trained comparison
def test_training_is_deterministic_and_learns(one_thread):
    runs1 = sm.compare_routers(seeds=(0,), steps=60, n_train=128, n_test=200)
    runs2 = sm.compare_routers(seeds=(0,), steps=60, n_train=128, n_test=200)
    for r1, r2 in zip(runs1, runs2):
        assert r1["hist"]["loss"] == r2["hist"]["loss"] and r1["robustness"] == r2["robustness"]
        assert r1["hist"]["loss"][-1] < 0.5 * r1["hist"]["loss"][0]
    smooth = next(r for r in runs1 if r["router"] == "smooth")
    assert smooth["eta"] != pytest.approx(0.1) and smooth["n_bar"] > 2


def test_posthoc_smoothing_zero_width_repeats_top_k_and_forward_eta_is_the_smoothed_router(one_thread):
    # several noise levels, as in the chapter: the eta = 0 row must still repeat the nu = 0.1 numbers
    runs = sm.compare_routers(seeds=(0, 1), steps=30, n_train=64, n_test=100, noise_levels=(0.05, 0.1, 0.2))
    header, rows = sm.posthoc_smoothing(runs, [0.0, 0.5], nu=0.1, n_test=100)
    acc_header, acc_rows = sm.comparison_table(runs, "accuracy")
    rob_header, rob_rows = sm.comparison_table(runs, "robustness", noise_index=1)
    assert rows[0][1] == acc_rows[0][2] and rows[0][2] == rob_rows[0][1] and rows[0][3] == rob_rows[0][2]
    assert float(rows[1][4].split()[0]) >= 2
    model = next(r["model"] for r in runs if r["router"] == "topk")
    smooth = sm.SmoothMoE(2, 8, 4, 2, 2, router="smooth", eta_init=0.5)
    smooth.load_state_dict(model.state_dict())
    with torch.no_grad():
        smooth.theta.fill_(math.log(math.expm1(0.5)))
        x = sm.two_moons(50, seed=3)[0]
        torch.testing.assert_close(model(x, eta=0.5), smooth(x))
        torch.testing.assert_close(model(x, eta=1e-9), model(x))


def test_noise_robustness_zero_noise_and_median_range():
    m = sm.SmoothMoE(2, 4, 4, 2, 2)
    x, y = sm.two_moons(100, seed=0)
    r = sm.noise_robustness(m, x, y, [0.0, 0.1], n_draws=2, seed=0)
    assert r[0]["rms"] == 0 and r[0]["p99"] == 0 and r[1]["rms"] > 0
    assert r[0]["accuracy"] == pytest.approx(float((m(x).argmax(-1) == y).float().mean()))
    assert sm.median_range([3, 1, 2]) == "2 [1, 3]"


def test_plots_draw(one_thread):
    import matplotlib.pyplot as plt
    W, b = _router(5, 2, 0)
    fig, ax = plt.subplots()
    segs, pts = dp.plot_order_map(ax, W, b, 2, eps=0.1, resolution=40)
    assert len(segs) == len(dc.switching_segments(W, b, 2, (-2, 2, -2, 2))) and len(ax.lines) >= len(segs)
    x0, v = dp.crossing_line(W, segs, offset=0.3)
    g0, g1 = (x0 + 0.29 * v) @ W.T + b, (x0 + 0.31 * v) @ W.T + b
    assert not np.array_equal(np.sort(np.argsort(-g0)[:2]), np.sort(np.argsort(-g1)[:2]))
    moe, _, _ = _toy_moe(0)
    yt, ys, n = dp.line_cut(moe, [0.0, 0.0], [1.0, 0.0], np.linspace(-1, 1, 50), eta=0.5)
    assert yt.shape == ys.shape == n.shape == (50,) and n.min() >= 2
    plt.close("all")


# ------------------------------------------------------------------ bad input
def test_bad_input_messages():
    W, b = _router(4, 2, 0)
    g = np.zeros((2, 4))
    cases = [
        (ValueError, "k must satisfy", lambda: dc.discontinuity_order(g, 0)),
        (ValueError, "tol must be >= 0", lambda: dc.discontinuity_order(g, 2, -1.0)),
        (ValueError, "k must satisfy", lambda: dc.near_order_thresholds(g, 5)),
        (ValueError, "W must have shape", lambda: dc.switching_segments(np.zeros((4, 3)), b, 2)),
        (ValueError, "box must be", lambda: dc.order2_points(W, b, 2, (1, 0, 0, 1))),
        (ValueError, "x must have shape", lambda: dc.distance_to_segments(np.zeros((3, 3)), [])),
        (ValueError, "expert_outputs must have shape", lambda: dc.moe_output(g, np.zeros((2, 3, 1)), 2)),
        (ValueError, "weighting must be one of", lambda: dc.moe_output(g, np.zeros((2, 4, 1)), 2, "bad")),
        (ValueError, "must have different active sets",
         lambda: dc.jump_across_surface(lambda x: x @ W.T + b, lambda x: np.zeros((len(x), 4, 1)),
                                        np.zeros(2), np.zeros(2), 2)),
        (ValueError, "eps must contain only positive", lambda: dc.tube_probabilities(W, b, 2, [0.0, 0.1])),
        (ValueError, "eps must contain only positive", lambda: dc.euclidean_tube_fractions(W, b, 2, [-0.1])),
        (ValueError, "min_hits must be >= 1", lambda: dc.tube_slopes(W, b, 2, [0.1], min_hits=0)),
        (ValueError, "must be positive for a log-log fit", lambda: dc.loglog_slope([0.1, 0.2], [0.0, 1.0])),
        (ValueError, "dt must be > 0", lambda: dh.first_hits(W, b, 2, np.array([0.5, 0.5]), dt=0.0)),
        (ValueError, "k must be < N", lambda: dh.first_hits(W, b, 4, np.zeros(2))),
        (ValueError, "x0 must not lie on the switching set",
         lambda: dh.first_hits(np.array([[1.0, 0], [-1.0, 0]]), np.zeros(2), 1, np.zeros(2))),
        (ValueError, "t must contain only positive", lambda: dh.hitting_cdf_bounds(W, b, 2, np.zeros(2), [0.0])),
        (ValueError, "a must be > 0", lambda: sm.log_smoothing_ramp(torch.zeros(3), a=0.0)),
        (ValueError, "eta must be > 0", lambda: sm.smoothed_topk_weights(torch.zeros(4), 2, 0.0)),
        (ValueError, "eta must be a positive scalar", lambda: sm.smoothed_topk_weights(torch.zeros(4), 2,
                                                                                        torch.tensor(-1.0))),
        (ValueError, "k must satisfy", lambda: sm.smoothed_topk_weights(torch.zeros(4), 5, 0.1)),
        (ValueError, "release_dispatch needs logits of shape",
         lambda: sm.smoothed_topk_weights(torch.zeros(2, 3, 4), 2, 0.1, release_dispatch=True)),
        (TypeError, "logits must be a torch.Tensor", lambda: sm.topk_softmax_weights(np.zeros(4), 2)),
        (ValueError, "eta must be > 0", lambda: sm.band_count(torch.zeros(4), 2, -1.0)),
        (ValueError, "h must be >= 0", lambda: sm.budget_loss(torch.zeros(4), 2, 0.1, h=-1.0)),
        (ValueError, "router must be one of", lambda: sm.SmoothMoE(2, 4, 4, 2, router="hard")),
        (ValueError, "n must be >= 1", lambda: sm.two_moons(0)),
        (ValueError, "steps must be >= 1",
         lambda: sm.train_classifier(sm.SmoothMoE(2, 4, 4, 2, 2), *sm.two_moons(10), steps=0)),
        (ValueError, "n_draws must be >= 1",
         lambda: sm.noise_robustness(sm.SmoothMoE(2, 4, 4, 2, 2), *sm.two_moons(10), [0.1], n_draws=0)),
        (ValueError, "seeds must be >= 0", lambda: sm.compare_routers(seeds=(-1,))),
        (ValueError, "values must contain at least one", lambda: sm.median_range([])),
        (ValueError, "kind must be one of", lambda: sm.comparison_table([{"robustness": [{"nu": 0.1}]}], "bad")),
        (ValueError, "etas must be >= 0", lambda: sm.posthoc_smoothing([], [-1.0])),
        (ValueError, "W must have shape", lambda: dp.plot_order_map(None, np.zeros((4, 3)), b, 2)),
        (ValueError, "segments must contain at least one", lambda: dp.crossing_line(W, [])),
        (ValueError, "x0 must have 1 dimensions", lambda: dp.line_cut(_toy_moe(0)[0], np.zeros((1, 2)),
                                                                        np.ones(2), np.zeros(3))),
    ]
    for exc, msg, fn in cases:
        with pytest.raises(exc, match=msg):
            fn()


def test_docstring_examples_run():
    import doctest
    for module in (dc, dh, sm):
        assert doctest.testmod(module).failed == 0


def test_exercise_solutions_in_the_chapter_run(one_thread):
    """The code cells of the solutions in book/discontinuity.md run (with the chapter's names)."""
    import re
    from pathlib import Path
    from moe_theory import result_table
    text = (Path(__file__).resolve().parents[1] / "book" / "discontinuity.md").read_text()
    exercises = text[text.index("## Exercises"):text.index("## Further reading")]
    blocks = re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", exercises, re.S)
    assert len(blocks) >= 3
    rng5 = np.random.default_rng(7)
    W5, b5 = rng5.standard_normal((5, 2)), rng5.standard_normal(5)
    x5 = dc.order2_points(W5, b5, 2)[0][0] + np.array([0.1, -0.25])
    names = {"np": np, "torch": torch, "dc": dc, "dh": dh, "sm": sm, "W5": W5, "b5": b5, "x5": x5,
             "result_table": result_table}
    for code in blocks:
        exec(code, names)
    # exercise "tube slopes in four dimensions": the order-4 fit is not possible
    assert any(np.isnan(slope) for _, slope, _ in names["fits"])
