"""Tests of moe_theory.bayes / balancing / bayes_training: one per claim of book/bayes.md."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from moe_theory import bayes
from moe_theory.layers import MoE, TopKRouter, load_balancing_loss


def _probs(seed, N, T=None, scale=2.0):
    rng = np.random.default_rng(seed)
    shape = (N,) if T is None else (T, N)
    return torch.softmax(torch.from_numpy(scale * rng.standard_normal(shape)), -1)


seeds = st.integers(0, 2**31 - 1)
sizes = st.integers(2, 7)


# --------------------------------------------------------------------------- top-k posterior
@given(seeds, sizes, st.data())
def test_thm_bayes_topk_reverse_kl_brute_force(seed, N, data):
    """Theorem: min over |supp q| <= k of KL(q||p) is -log p(S_k), attained by q^(k)."""
    k = data.draw(st.integers(1, N))
    p = _probs(seed, N)
    q = bayes.topk_posterior(p, k)
    value = float(bayes.kl_divergence(q, p))
    assert value == pytest.approx(-math.log(float(torch.topk(p, k).values.sum())), abs=1e-12)
    best = min(-math.log(float(p[list(S)].sum()))  # best q on support S is p|_S / p(S)
               for size in range(1, k + 1) for S in itertools.combinations(range(N), size))
    assert value == pytest.approx(best, abs=1e-12)
    rng = np.random.default_rng(seed)
    for _ in range(20):  # random k-sparse q never beat it
        S = rng.choice(N, size=k, replace=False)
        qr = torch.zeros(N, dtype=torch.float64)
        qr[S] = torch.from_numpy(rng.dirichlet(np.ones(k)))
        assert float(bayes.kl_divergence(qr, p)) >= value - 1e-12


@given(seeds, sizes, st.data())
def test_thm_bayes_topk_reverse_kl_equals_softmax_of_selected_logits(seed, N, data):
    k = data.draw(st.integers(1, N))
    g = torch.from_numpy(np.random.default_rng(seed).standard_normal(N))
    q = bayes.topk_posterior(torch.softmax(g, -1), k)
    S = torch.topk(g, k).indices
    expected = torch.zeros(N, dtype=torch.float64)
    expected[S] = torch.softmax(g[S], -1)
    torch.testing.assert_close(q, expected)


def test_topk_posterior_breaks_ties_by_smaller_index():
    q = bayes.topk_posterior(torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.float64), 2)
    assert q.tolist() == [0.5, 0.5, 0.0, 0.0]


@given(seeds, st.integers(3, 7), st.data())
def test_prop_bayes_forward_kl_infinite(seed, N, data):
    k = data.draw(st.integers(1, N - 1))
    p = _probs(seed, N)
    assert math.isinf(float(bayes.kl_divergence(p, bayes.topk_posterior(p, k))))
    assert float(bayes.kl_divergence(p, bayes.topk_posterior(p, N))) == pytest.approx(0.0, abs=1e-12)


@given(seeds, sizes, st.data(), st.floats(0.1, 5.0))
def test_prop_bayes_truncation_bounds(seed, N, data, scale):
    k = data.draw(st.integers(1, N))
    p = _probs(seed, N, scale=scale)
    kl = float(bayes.kl_divergence(bayes.topk_posterior(p, k), p))
    assert float(torch.topk(p, k).values.sum()) >= k / N - 1e-12
    assert kl <= min(float(bayes.entropy(p)), math.log(N / k)) + 1e-12
    assert float(torch.exp(-bayes.renyi2_entropy(p))) >= math.exp(-float(bayes.entropy(p))) - 1e-12


@given(seeds, sizes)
def test_free_energy_identity(seed, N):
    """<q, g> + H(q) = logsumexp(g) - KL(q || softmax g) for every q."""
    rng = np.random.default_rng(seed)
    g = torch.from_numpy(rng.standard_normal(N))
    q = torch.from_numpy(rng.dirichlet(np.ones(N)))
    lhs = float(q @ g + bayes.entropy(q))
    rhs = float(torch.logsumexp(g, 0) - bayes.kl_divergence(q, torch.softmax(g, 0)))
    assert lhs == pytest.approx(rhs, abs=1e-12)


def test_kl_divergence_closed_form_and_zeros():
    assert float(bayes.kl_divergence([1.0, 0.0], [0.5, 0.5])) == pytest.approx(math.log(2))
    assert float(bayes.kl_divergence([0.0, 1.0], [0.0, 1.0])) == 0.0  # 0 log 0 = 0, no NaN
    scipy_special = pytest.importorskip("scipy.special")
    q, p = _probs(1, 5).numpy(), _probs(2, 5).numpy()
    assert float(bayes.kl_divergence(q, p)) == pytest.approx(scipy_special.rel_entr(q, p).sum())


def test_depth_greedy_example_numbers():
    """Layer-wise top-1 costs -log .55 - log .5; the best path (1, 0) costs -log .45 - log .99."""
    p1, p2 = np.array([0.55, 0.45]), {0: np.array([0.5, 0.5]), 1: np.array([0.99, 0.01])}
    greedy = -math.log(p1.max()) - math.log(p2[int(p1.argmax())].max())
    best = min(-math.log(p1[a]) - math.log(p2[a][b]) for a in (0, 1) for b in (0, 1))
    assert greedy == pytest.approx(1.291, abs=1e-3) and best == pytest.approx(0.809, abs=1e-3)


# --------------------------------------------------------------------------- ELBO
def _mixture(seed, T=6, N=4):
    rng = np.random.default_rng(seed)
    lp = torch.log_softmax(torch.from_numpy(rng.standard_normal((T, N))), -1)
    ll = torch.from_numpy(rng.standard_normal((T, N)) - 1)
    return lp, ll


@given(seeds)
def test_prop_bayes_elbo_identity(seed):
    lp, ll = _mixture(seed)
    q = torch.from_numpy(np.random.default_rng(seed + 1).dirichlet(np.ones(4), 6))
    r = bayes.posterior_responsibilities(lp, ll)
    elbo = bayes.mixture_elbo(q, lp, ll)
    logev = bayes.mixture_log_likelihood(lp, ll)
    torch.testing.assert_close(elbo, logev - bayes.kl_divergence(q, r))
    torch.testing.assert_close(elbo, (q * ll).sum(-1) - bayes.kl_divergence(q, lp.exp()))
    torch.testing.assert_close(bayes.mixture_elbo(r, lp, ll), logev)  # tight at the posterior


@given(seeds, st.integers(1, 4))
def test_prop_bayes_sparse_predictive(seed, k):
    """log sum_{i in S} q^(k)_i phi_i = log p(t|x) + log r(S) - log p(S), S = S_k(p)."""
    lp, ll = _mixture(seed)
    p = lp.exp()
    q = bayes.topk_posterior(p, k)
    on = q > 0
    lhs = torch.logsumexp(torch.where(on, torch.log(torch.where(on, q, 1.0)) + ll, -math.inf), -1)
    r = bayes.posterior_responsibilities(lp, ll)
    rhs = bayes.mixture_log_likelihood(lp, ll) + torch.log((r * on).sum(-1)) - torch.log((p * on).sum(-1))
    torch.testing.assert_close(lhs, rhs)


# --------------------------------------------------------------------------- information
@given(seeds, st.integers(1, 30), sizes)
def test_prop_bayes_mi_bounds(seed, T, N):
    p = _probs(seed, N, T)
    mi = float(bayes.routing_mutual_information(p))
    assert -1e-12 <= mi <= float(bayes.marginal_entropy(p)) + 1e-12
    assert mi <= min(math.log(N), math.log(T)) + 1e-12
    assert mi == pytest.approx(float(bayes.marginal_entropy(p) - bayes.routing_entropy(p)), abs=1e-12)


@given(seeds, st.integers(1, 30), sizes)
def test_prop_bayes_mi_bounds_one_hot_routing_gives_load_entropy(seed, T, N):
    idx = np.random.default_rng(seed).integers(0, N, T)
    p = torch.nn.functional.one_hot(torch.from_numpy(idx), N).double()
    assert float(bayes.routing_entropy(p)) == 0.0
    assert float(bayes.routing_mutual_information(p)) == pytest.approx(
        bayes.plugin_routing_mutual_information(idx, N), abs=1e-12)


@given(seeds, st.integers(1, 20), sizes)
def test_prop_bayes_elbo_surgery(seed, T, N):
    """mean_t KL(p(x_t) || nu) = I(X; Z) + KL(P_bar || nu) for any prior nu."""
    p = _probs(seed, N, T)
    nu = _probs(seed + 7, N)
    lhs = float(bayes.kl_divergence(p, nu.expand(T, N)).mean())
    rhs = float(bayes.routing_mutual_information(p) + bayes.kl_divergence(p.mean(0), nu))
    assert lhs == pytest.approx(rhs, abs=1e-10)
    u = torch.full((N,), 1.0 / N, dtype=torch.float64)
    assert float(bayes.kl_divergence(p.mean(0), u)) == pytest.approx(
        math.log(N) - float(bayes.marginal_entropy(p)), abs=1e-12)


def test_subset_diversity_example():
    """N=4, k=2, only {1,2} and {3,4}: uniform per-expert load, but H(S) = log 2 < log 6."""
    sets = [(0, 1), (2, 3)] * 10
    load = np.bincount(np.ravel(sets), minlength=4) / len(sets)
    assert np.allclose(load, 0.5)
    assert bayes.plugin_entropy(np.bincount([0 if s == (0, 1) else 1 for s in sets])) == pytest.approx(math.log(2))


def test_plugin_entropy_bias_and_miller_madow():
    """Uniform on N=8, n=50: plug-in bias near -(N-1)/(2n), Miller-Madow removes most (fixed seed)."""
    rng = np.random.default_rng(0)
    N, n, R = 8, 50, 4000
    plug, mm = [], []
    for _ in range(R):
        c = np.bincount(rng.integers(0, N, n), minlength=N)
        plug.append(bayes.plugin_entropy(c)), mm.append(bayes.plugin_entropy(c, miller_madow=True))
    bias_plug, bias_mm = np.mean(plug) - math.log(N), np.mean(mm) - math.log(N)
    assert bias_plug == pytest.approx(-(N - 1) / (2 * n), abs=0.006)
    assert abs(bias_mm) < abs(bias_plug) / 4


# --------------------------------------------------------------------------- balancing losses
def _routing_logits(seed, T=32, N=6):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((T, N)) * 1.5)


@given(seeds, st.integers(1, 5))
def test_switch_loss_matches_layers_load_balancing_loss(seed, k):
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((40, 3)))
    router = TopKRouter(3, 6, k, dtype=torch.float64)
    with torch.no_grad():
        router.weight.copy_(torch.from_numpy(np.random.default_rng(seed + 1).standard_normal((6, 3))))
    routing = router(x)
    ours = bayes.switch_load_balancing_loss(routing.logits, k)
    torch.testing.assert_close(ours, k * load_balancing_loss(routing))  # layers' f sums to 1, ours to k


def test_switch_loss_matches_transformers_reference():
    modeling = pytest.importorskip("transformers.models.mixtral.modeling_mixtral")
    for k in (1, 2, 3):
        g = _routing_logits(k).float()
        ref = modeling.load_balancing_loss_func((g,), num_experts=6, top_k=k)
        torch.testing.assert_close(bayes.switch_load_balancing_loss(g, k), ref)


@given(seeds, st.integers(1, 40), sizes)
def test_prop_bayes_relaxed_switch(seed, T, N):
    g = _routing_logits(seed, T, N)
    P = torch.softmax(g, -1).mean(0)
    u = torch.full((N,), 1.0 / N, dtype=torch.float64)
    relaxed = float(bayes.relaxed_switch_loss(g))
    chi2 = float(((P - u) ** 2 / u).sum())
    assert relaxed == pytest.approx(1 + chi2, abs=1e-12)
    assert relaxed == pytest.approx(N * math.exp(-float(bayes.renyi2_entropy(P))), abs=1e-12)
    assert relaxed == pytest.approx(1 + float(bayes.cv_squared(P)), abs=1e-12)  # importance form
    assert relaxed >= math.exp(float(bayes.kl_divergence(P, u))) - 1e-12 >= 1 - 2e-12
    assert float(bayes.relaxed_switch_loss(torch.zeros(3, N, dtype=torch.float64))) == pytest.approx(1.0)


@pytest.mark.parametrize("N", [3, 4, 5, 6, 8])
def test_prop_bayes_hard_switch_below_one_ghost_value(N):
    for G in range(1, N):
        for eps in (1e-3, 1e-5):
            value = float(bayes.switch_load_balancing_loss(bayes.ghost_batch_logits(N, G, eps=eps), 1))
            assert value == pytest.approx(N / ((G + 1) * (N - G)), abs=N * eps + 1e-9)
    best = min(N / ((G + 1) * (N - G)) for G in range(1, N))
    assert best < 1  # below the value 1 at uniform load
    assert best == pytest.approx(4 * N / (N + 1) ** 2, abs=1e-12) if N % 2 else best < 4 / N + 1e-12


def test_prop_bayes_hard_switch_below_one_two_experts():
    assert float(bayes.switch_load_balancing_loss(bayes.two_expert_batch_logits(eps=1e-6), 1)) \
        == pytest.approx(7 / 8, abs=1e-5)


@given(seeds, st.integers(1, 20), st.integers(2, 6), st.data())
def test_hard_switch_equals_k_at_uniform_load(seed, T, N, data):
    """If every expert gets k/N of the tokens, N sum f_i P_i = k whatever P."""
    k = data.draw(st.integers(1, N))
    g = _routing_logits(seed, N * T, N)
    # make the load uniform: token t's top-k is {t, t+1, ..., t+k-1} mod N
    boost = torch.zeros(N * T, N, dtype=torch.float64)
    for t in range(N * T):
        boost[t, [(t + j) % N for j in range(k)]] = 100.0 - torch.arange(k, dtype=torch.float64)
    assert float(bayes.switch_load_balancing_loss(g + boost, k)) == pytest.approx(k, abs=1e-10)


@given(seeds, st.floats(-5, 5))
def test_prop_bayes_z_loss_gauge(seed, shift):
    g = _routing_logits(seed, 1, 5)
    c = torch.tensor(shift, dtype=torch.float64)
    assert float(bayes.router_z_loss(g + c)) >= 0
    best = -torch.logsumexp(g, -1)
    assert float(bayes.router_z_loss(g + best[:, None])) == pytest.approx(0.0, abs=1e-20)
    torch.testing.assert_close(g + best[:, None], torch.log_softmax(g, -1))  # g = log p
    torch.testing.assert_close(torch.softmax(g + c, -1), torch.softmax(g, -1))  # p unchanged


def test_prop_bayes_z_loss_gauge_brute_force_minimiser():
    g = _routing_logits(5, 1, 5)
    shifts = np.linspace(-10, 10, 2001)
    vals = [float(bayes.router_z_loss(g + s)) for s in shifts]
    assert shifts[int(np.argmin(vals))] == pytest.approx(-float(torch.logsumexp(g, -1)), abs=0.011)


def test_importance_loss_cv_squared_identity():
    gates = torch.softmax(_routing_logits(3, 20, 5), -1)
    v = gates.sum(0)
    vh = v / v.sum()
    assert float(bayes.importance_loss(gates)) == pytest.approx(float(5 * (vh ** 2).sum() - 1), abs=1e-12)
    assert float(bayes.importance_loss(torch.ones(4, 5, dtype=torch.float64))) == 0.0


def test_noisy_topk_load_loss_matches_monte_carlo():
    """P(x, i) is the chance that expert i stays in the top k when its own noise is redrawn."""
    rng = np.random.default_rng(0)
    g = torch.from_numpy(rng.standard_normal((3, 5)))
    s = torch.from_numpy(rng.uniform(0.5, 1.5, (3, 5)))
    h = g + s * torch.from_numpy(rng.standard_normal((3, 5)))
    k, R = 2, 40_000
    probs = np.zeros((3, 5))
    for i in range(5):
        hi = h.numpy()[:, None, :].repeat(R, 1)
        hi[:, :, i] = g.numpy()[:, None, i] + s.numpy()[:, None, i] * rng.standard_normal((3, R))
        rank = (hi > hi[:, :, i:i + 1]).sum(-1)  # how many beat expert i
        probs[:, i] = (rank < k).mean(1)
    load = torch.from_numpy(probs.sum(0))
    mc = float(load.var(unbiased=False) / load.mean() ** 2)
    assert float(bayes.noisy_topk_load_loss(g, h, s, k)) == pytest.approx(mc, abs=0.01)


def test_biased_topk_route_changes_selection_not_weights():
    g = torch.log(torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64))
    idx, w = bayes.biased_topk_route(g, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), 1)
    assert idx.tolist() == [[2]] and w.tolist()[0] == pytest.approx([0.2])  # selected by bias, p unchanged
    idx, w = bayes.biased_topk_route(g, torch.zeros(3, dtype=torch.float64), 2, weighting="renormalized")
    assert idx.tolist() == [[0, 1]] and w.tolist()[0] == pytest.approx([0.625, 0.375])


def test_aux_free_bias_update_balances_skewed_router():
    """N=8, k=2, skewed affinities: the sign update drives the max load deviation near 0."""
    rng = np.random.default_rng(0)
    N, k, T = 8, 2, 4096
    g = torch.from_numpy(rng.standard_normal((T, N)) + np.linspace(0, 1.5, N))
    beta = torch.zeros(N, dtype=torch.float64)

    def deviation(beta):
        idx = bayes.biased_topk_route(g, beta, k)[0]
        return float((torch.bincount(idx.reshape(-1), minlength=N) / T - k / N).abs().max()), idx

    before, _ = deviation(beta)
    for _ in range(400):
        _, idx = deviation(beta)
        beta = bayes.aux_free_bias_update(beta, torch.bincount(idx.reshape(-1), minlength=N), 0.002)
    after, _ = deviation(beta)
    assert before > 0.1 and after < 0.01
    assert bayes.aux_free_bias_update(torch.zeros(2), torch.tensor([3, 1]), 0.5).tolist() == [-0.5, 0.5]


# --------------------------------------------------------------------------- channel capacity
def test_channel_capacity_binary_symmetric_and_identity():
    for e in (0.0, 0.1, 0.3):
        C, _ = bayes.channel_capacity([[1 - e, e], [e, 1 - e]])
        h2 = 0.0 if e == 0 else -(e * math.log(e) + (1 - e) * math.log(1 - e))
        assert C == pytest.approx(math.log(2) - h2, abs=1e-8)
    assert bayes.channel_capacity(np.eye(5))[0] == pytest.approx(math.log(5), abs=1e-9)
    assert bayes.channel_capacity(np.full((3, 4), 0.25))[0] == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------- training loops
def test_routed_forward_equals_moe_forward():
    model = bayes.make_routed_moe(seed=3, dtype=torch.float64, device="cpu")
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((50, 2)))
    torch.testing.assert_close(bayes.routed_forward(model, x)[0], model(x))


def test_train_routed_moe_is_deterministic_and_logs_consistent_metrics(one_thread):
    x, t, _ = bayes.cluster_regression_data(128, seed=0)
    runs = [bayes.train_routed_moe(x, t, balance=b, steps=20, log_every=5, seed=1, device="cpu")
            for b in ("switch", "switch", "aux_free")]
    np.testing.assert_array_equal(runs[0].train_mse, runs[1].train_mse)
    for h in runs:
        assert h.load.shape == (5, 4) and np.allclose(h.load.sum(1), 1.0)
        np.testing.assert_allclose(h.mutual_information, h.marginal_entropy - h.cond_entropy)
        assert np.all(h.mutual_information >= -1e-9) and np.all(h.marginal_entropy <= math.log(4) + 1e-9)
    assert np.any(runs[2].bias != 0) and np.all(runs[0].bias == 0)


def test_fit_mixture_em_increases_likelihood_and_elbo_is_tight(one_thread):
    x, t, _ = bayes.cluster_regression_data(200, seed=0)
    h = bayes.fit_mixture_em(x, t, iters=15, m_steps=3, seed=0, device="cpu")
    np.testing.assert_allclose(h.elbo_posterior, h.log_likelihood, atol=1e-9)
    assert np.all(h.elbo_top1 <= h.log_likelihood + 1e-9)  # any q gives a lower bound
    assert h.log_likelihood[-1] > h.log_likelihood[0] + 0.3


# --------------------------------------------------------------------------- bad input
def test_bad_probabilities_are_refused():
    with pytest.raises(ValueError, match="p must sum to 1"):
        bayes.topk_posterior(torch.tensor([0.5, 0.2]), 1)
    with pytest.raises(ValueError, match="p must have non-negative entries"):
        bayes.entropy([1.5, -0.5])
    with pytest.raises(ValueError, match="q must have non-negative entries"):
        bayes.kl_divergence([1.5, -0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="q and p must have the same shape"):
        bayes.kl_divergence([1.0, 0.0], [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="p must contain only finite values"):
        bayes.renyi2_entropy(torch.tensor([float("nan"), 1.0]))
    with pytest.raises(TypeError, match="k must be an integer"):
        bayes.topk_posterior([0.5, 0.5], 1.0)
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= p.shape\[-1\] \(= 2\)"):
        bayes.topk_posterior([0.5, 0.5], 3)
    for f in (bayes.routing_entropy, bayes.marginal_entropy, bayes.routing_mutual_information):
        with pytest.raises(ValueError, match=r"p must have 2 dimensions \(tokens, experts\)"):
            f([0.5, 0.5])
    with pytest.raises(ValueError, match="counts must be non-negative integers"):
        bayes.plugin_entropy([1, -1])
    with pytest.raises(ValueError, match="indices must lie in 0..n_experts-1"):
        bayes.plugin_routing_mutual_information(np.array([0, 4]), 4)
    with pytest.raises(ValueError, match="W must sum to 1"):
        bayes.channel_capacity([[0.5, 0.6]])


def test_bad_mixture_input_is_refused():
    lp, ll = _mixture(0)
    with pytest.raises(ValueError, match="log_prior and log_lik must have the same shape"):
        bayes.mixture_log_likelihood(lp, ll[:, :3])
    with pytest.raises(ValueError, match="log_prior must be log-probabilities"):
        bayes.posterior_responsibilities(lp + 1, ll)
    with pytest.raises(ValueError, match="log_lik must not contain NaN"):
        bayes.mixture_elbo(lp.exp(), lp, ll * float("nan"))
    with pytest.raises(ValueError, match="q must have the shape of log_prior"):
        bayes.mixture_elbo(lp.exp()[:2], lp, ll)


def test_bad_balancing_input_is_refused():
    g = _routing_logits(0)
    with pytest.raises(ValueError, match="router_logits must have 2 dimensions"):
        bayes.switch_load_balancing_loss(g[0], 1)
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= router_logits.shape\[1\] \(= 6\)"):
        bayes.switch_load_balancing_loss(g, 7)
    with pytest.raises(TypeError, match="router_logits must be a torch.Tensor"):
        bayes.relaxed_switch_loss(g.numpy())
    with pytest.raises(ValueError, match="router_logits must contain only finite values"):
        bayes.router_z_loss(g * float("inf"))
    with pytest.raises(ValueError, match="gates must be non-negative"):
        bayes.importance_loss(-torch.ones(3, 2))
    with pytest.raises(ValueError, match="v must be a non-negative vector"):
        bayes.cv_squared(torch.zeros(3))
    with pytest.raises(ValueError, match="noise_std must be positive"):
        bayes.noisy_topk_load_loss(g, g, torch.zeros_like(g), 2)
    with pytest.raises(ValueError, match=r"noisy_logits must have shape"):
        bayes.noisy_topk_load_loss(g, g[:, :3], torch.ones_like(g), 2)
    with pytest.raises(ValueError, match=r"bias must have shape \(\.\.\., 6\)"):
        bayes.biased_topk_route(g, torch.zeros(5, dtype=g.dtype), 1)
    with pytest.raises(ValueError, match="weighting must be one of"):
        bayes.biased_topk_route(g, torch.zeros(6, dtype=g.dtype), 1, weighting="sparse")
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        bayes.aux_free_bias_update(torch.zeros(2), torch.tensor([1, 2]), -1.0)
    with pytest.raises(ValueError, match="n_ghosts must satisfy"):
        bayes.ghost_batch_logits(4, 4)
    with pytest.raises(ValueError, match="eps must be < 0.5"):
        bayes.two_expert_batch_logits(eps=0.6)


def test_bad_training_input_is_refused():
    x, t, _ = bayes.cluster_regression_data(16, seed=0)
    with pytest.raises(ValueError, match="balance must be one of"):
        bayes.train_routed_moe(x, t, balance="dirichlet", seed=0)
    with pytest.raises(ValueError, match="tau must be > 0"):
        bayes.routed_forward(bayes.make_routed_moe(seed=0, device="cpu"), torch.zeros(3, 2), tau=0.0)
    with pytest.raises(TypeError, match="model must be a moe_theory.layers.MoE"):
        bayes.routed_forward(torch.nn.Linear(2, 1), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"x must have shape \(T, 2\)"):
        bayes.fit_mixture_em(x[:, :1], t, seed=0, device="cpu")
    with pytest.raises(ValueError, match="n must be >= 1"):
        bayes.cluster_regression_data(0, seed=0)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        bayes.make_routed_moe(seed=-1)


@given(seeds, st.integers(1, 20), st.integers(2, 7), st.data(), st.floats(0.2, 4.0))
def test_cor_bayes_truncation_vs_information(seed, T, N, data, scale):
    k = data.draw(st.integers(1, N))
    p = _probs(seed, N, T, scale=scale)
    mean_kl = float(bayes.kl_divergence(bayes.topk_posterior(p, k), p).mean())
    hzx = float(bayes.routing_entropy(p))
    assert mean_kl <= min(hzx, math.log(N / k)) + 1e-12
    assert hzx <= math.log(N) - float(bayes.routing_mutual_information(p)) + 1e-12


def test_bad_plot_input_is_refused():
    from moe_theory import bayes_plots as bp

    with pytest.raises(TypeError, match="routers must be a non-empty dict"):
        bp.plot_truncation([])
    with pytest.raises(ValueError, match="n must be >= 2"):
        bp.simplex_grid(1)
    with pytest.raises(TypeError, match="histories must be a non-empty dict"):
        bp.plot_training_curves({})
    with pytest.raises(TypeError, match="runs must be a non-empty list of EMHistory"):
        bp.plot_em_history(())
    with pytest.raises(TypeError, match="batches must be a non-empty dict"):
        bp.plot_aggregate_split(None)
    with pytest.raises(TypeError, match="n must be an integer"):
        bp.plot_switch_simplex(n=2.5)


def test_simplex_grid_points_are_distributions():
    from moe_theory import bayes_plots as bp

    bary, xy = bp.simplex_grid(10)
    assert bary.shape == (66, 3) and xy.shape == (66, 2)
    assert np.allclose(bary.sum(1), 1) and bary.min() >= 0
