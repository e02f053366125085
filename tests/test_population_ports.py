"""The chapters' multi-seed loops on the population trainer: each member equals the one-at-a-time run.

Bayes (train_routed_moe: every balancing rule, temperature, top-2), coherence (train_penalised_moe:
the orthogonality penalty) and discontinuity (train_classifier: cross-entropy, top-k and smoothed
routers with the budget loss), all in float64 to 1e-8; and the new options of fit_population
(loss, aux_loss, router_temperature, bias_update, penalty, monitor) with their bad input.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moe_theory import bayes_training as bt
from moe_theory import coherence_experiments as cx
from moe_theory import discontinuity_smooth as sm
from moe_theory.layers import MoE
from moe_theory.population import fit_population


def _close(a, b, what):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-8, atol=1e-10,
                               err_msg=what)


def _same_weights(m1, m2):
    for (name, a), b in zip(m1.named_parameters(), m2.parameters()):
        _close(a.detach().numpy(), b.detach().numpy(), name)


@pytest.fixture(scope="module")
def clusters():
    x, t, _ = bt.cluster_regression_data(96, seed=0)
    xs, ts, _ = bt.cluster_regression_data(150, seed=1)
    return x, t, xs, ts


@pytest.mark.parametrize("rule, kw", [
    ("none", {}), ("switch", {"lam": 1.0}), ("switch", {"lam": 0.5, "k": 2}),
    ("z_loss", {"lam": 0.01, "tau": 0.7}), ("importance", {"lam": 1.0}), ("aux_free", {"gamma": 0.05, "k": 2}),
])
def test_routed_population_member_equals_train_routed_moe(clusters, rule, kw):
    x, t, xs, ts = clusters
    setup = dict(balance=rule, steps=40, lr=0.05, log_every=7, x_test=xs, t_test=ts, dtype=torch.float64, **kw)
    pop = bt.train_routed_population(x, t, seeds=[0, 3], **setup)
    for seed, h in zip([0, 3], pop):
        r = bt.train_routed_moe(x, t, seed=seed, **setup)
        assert h.steps.tolist() == r.steps.tolist() == [0, 7, 14, 21, 28, 35, 40]
        for name in ("train_mse", "load", "cond_entropy", "marginal_entropy", "mutual_information", "bias"):
            _close(getattr(h, name), getattr(r, name), f"{rule}: {name}")
        _close(h.test_mse, r.test_mse, "test_mse")
        _same_weights(h.model, r.model)
    if rule == "aux_free":
        assert np.abs(pop[0].bias).max() > 0  # the bias rule really ran


def test_routed_population_takes_a_grid_of_lambda_and_tau(clusters):
    x, t, _, _ = clusters
    lams, taus = [0.0, 1.0, 1.0], [1.0, 1.0, 2.0]
    pop = bt.train_routed_population(x, t, seeds=[0, 0, 0], balance="switch", lam=lams, tau=taus, steps=25,
                                     dtype=torch.float64)
    for h, lam, tau in zip(pop, lams, taus):
        r = bt.train_routed_moe(x, t, seed=0, balance="switch", lam=lam, tau=tau, steps=25, dtype=torch.float64)
        _close(h.train_mse, r.train_mse, f"lam={lam}, tau={tau}")
    assert not np.allclose(pop[0].train_mse, pop[2].train_mse)  # the settings differ per member


def test_routed_population_bad_input(clusters):
    x, t, _, _ = clusters
    with pytest.raises(ValueError, match="at least one seed"):
        bt.train_routed_population(x, t, seeds=[])
    with pytest.raises(ValueError, match="lam must be one number or one per seed"):
        bt.train_routed_population(x, t, seeds=[0, 1], lam=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="balance"):
        bt.train_routed_population(x, t, seeds=[0], balance="nope")
    with pytest.raises(ValueError, match="x must have shape"):
        bt.train_routed_population(np.zeros((5, 3)), np.zeros(5), seeds=[0])


def test_penalised_population_member_equals_train_penalised_moe():
    cfg = cx.PenaltyConfig(steps=40, n_test=256)
    lams, seeds = [0.0, 0.03, 0.3], [0, 1, 2]
    pop = cx.train_penalised_population(lams, seeds, cfg, dtype=torch.float64)
    for lam, seed, r in zip(lams, seeds, pop):
        q = cx.train_penalised_moe(lam, seed, cfg, dtype=torch.float64)
        for key in ("train_mse", "test_mse", "mu_router", "mu_experts", "agree_fit", "agree_mix"):
            _close(r[key], q[key], f"lam={lam}: {key}")
        _same_weights(r["model"], q["model"])
    assert pop[2]["mu_router"] != pytest.approx(cx.train_penalised_moe(0.0, 2, cfg, dtype=torch.float64)
                                                ["mu_router"], rel=1e-6)  # the penalty acted


def test_penalised_population_bad_input():
    with pytest.raises(ValueError, match="lam must be one number or one per seed"):
        cx.train_penalised_population([0.1, 0.2], [0])
    with pytest.raises(ValueError, match="lam must be >= 0"):
        cx.train_penalised_population(-1.0, [0])
    with pytest.raises(TypeError, match="seeds must be a sequence"):
        cx.train_penalised_population(0.1, 3)


@pytest.mark.parametrize("router", ["topk", "smooth"])
def test_classifiers_population_member_equals_train_classifier(router):
    seeds = [0, 4]
    data = [sm.two_moons(64, seed=s, dtype=torch.float64) for s in seeds]

    def make(s):
        return sm.SmoothMoE(2, 6, 4, 2, 2, router=router, eta_init=0.1, generator=torch.Generator().manual_seed(s),
                            dtype=torch.float64)

    members = [make(s) for s in seeds]
    hists = sm.train_classifiers_population(members, torch.stack([d[0] for d in data]),
                                            torch.stack([d[1] for d in data]), steps=60)
    for s, member, hist, (x, y) in zip(seeds, members, hists, data):
        single = make(s)
        ref = sm.train_classifier(single, x, y, steps=60)
        for key in ("loss", "eta", "n_bar"):
            _close(hist[key], ref[key], f"{router}: {key}")
        _same_weights(member, single)
    if router == "smooth":
        assert hists[0]["eta"][-1] != pytest.approx(0.1, rel=1e-3)  # eta was trained


def test_compare_routers_population_equals_one_at_a_time():
    kw = dict(seeds=[1, 2], steps=30, n_train=64, n_test=100, dtype=torch.float64)
    a, b = sm.compare_routers(**kw), sm.compare_routers(population=False, **kw)
    assert [(r["router"], r["seed"]) for r in a] == [(r["router"], r["seed"]) for r in b]
    for r, q in zip(a, b):
        for key in ("train_acc", "test_acc", "eta", "n_bar"):
            _close(r[key], q[key], key)
        _close([z["rms"] for z in r["robustness"]], [z["rms"] for z in q["robustness"]], "rms")


def _moe(seed, **kw):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MoE(3, 4, 4, kw.pop("k", 1), d_out=1, dtype=torch.float64, **kw)


def test_population_monitor_sees_every_step_and_the_trained_weights():
    x = torch.randn(32, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = x[:, :1] ** 2
    seen = []
    pop = fit_population([_moe(0), _moe(1)], x, y, seeds=[0, 1], steps=5,
                         monitor=lambda step, st: seen.append((step, st.loss.detach().clone())))
    assert [s for s, _ in seen] == [1, 2, 3, 4, 5, 6]
    _close(seen[0][1], [pop.losses[0][0], pop.losses[1][0]], "monitor loss = loss history")
    assert float(seen[-1][1][0]) != pytest.approx(pop.losses[0][-1], rel=1e-9)  # step 6: after the last update


def test_population_new_options_bad_input():
    x = torch.randn(16, 3, dtype=torch.float64)
    y = torch.randn(16, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="loss"):
        fit_population([_moe(0)], x, y, seeds=[0], loss="hinge")
    with pytest.raises(ValueError, match="aux_loss"):
        fit_population([_moe(0)], x, y, seeds=[0], aux_loss="entropy")
    with pytest.raises(ValueError, match="router_temperature must be > 0"):
        fit_population([_moe(0)], x, y, seeds=[0], router_temperature=0.0)
    with pytest.raises(ValueError, match="bias_update needs a top-k router"):
        fit_population([_moe(0, router="softmax")], x, y, seeds=[0], bias_update=0.1)
    with pytest.raises(ValueError, match="penalty must return a tensor of shape"):
        fit_population([_moe(0)], x, y, seeds=[0], steps=2, penalty=lambda st: st.loss.sum())
    with pytest.raises(TypeError, match="monitor must be callable"):
        fit_population([_moe(0)], x, y, seeds=[0], monitor=3)
    with pytest.raises(TypeError, match="y must be an integer tensor"):
        fit_population([_moe(0)], x, y, seeds=[0], loss="cross_entropy")
    with pytest.raises(ValueError, match=r"class indices in \[0, 1\)"):
        fit_population([_moe(0)], x, torch.ones(16, dtype=torch.long), seeds=[0], loss="cross_entropy")
    net = torch.nn.Sequential(torch.nn.Linear(3, 2)).double()
    with pytest.raises(ValueError, match="apply to MoE members only"):
        fit_population([net], x, y, seeds=[0], router_temperature=2.0)
