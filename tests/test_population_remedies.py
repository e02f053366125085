"""The stall remedies of the population trainer: warm-up, early router noise, reviving dead units.

Each is off by default (and then changes nothing: the equality tests against fit_regressor in
test_training_population.py run with the defaults); each does what its docstring says.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from moe_theory.layers import MoE
from moe_theory.population import _lr_schedule, fit_population

D, H, N = 3, 5, 4


def _moe(seed, dtype=torch.float64):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MoE(D, H, N, 1, d_out=1, router_bias=False, dtype=dtype)


def _data(T=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(T, D, generator=g, dtype=torch.float64) * 2 - 1
    return x, torch.sin(3 * x[:, :1]) + x[:, 1:2]


def test_warmup_ramps_the_learning_rate_linearly_then_follows_the_cosine_schedule():
    plain = _lr_schedule(1e-2, 100, True, 0.1)
    warm = _lr_schedule(1e-2, 100, True, 0.1, warmup_steps=10)
    np.testing.assert_allclose(warm[:10], plain[:10] * np.arange(1, 11) / 10)
    np.testing.assert_array_equal(warm[10:], plain[10:])
    np.testing.assert_allclose(_lr_schedule(1e-2, 5, False, 0.1, warmup_steps=4), [2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2])


def test_warmup_changes_training_only_through_the_learning_rate():
    x, y = _data()
    a, b = [_moe(0)], [_moe(0)]
    pa = fit_population(a, x, y, seeds=[1], steps=30, batch_size=32, warmup_steps=0)
    pb = fit_population(b, x, y, seeds=[1], steps=30, batch_size=32, warmup_steps=1)  # ramp of one step: none
    np.testing.assert_array_equal(pa.losses[0], pb.losses[0])
    c = [_moe(0)]
    pc = fit_population(c, x, y, seeds=[1], steps=30, batch_size=32, warmup_steps=20)
    assert pc.losses[0][0] == pa.losses[0][0]  # same first minibatch and weights
    assert pc.losses[0][5] != pa.losses[0][5]


def test_router_noise_zero_is_identical_and_positive_noise_changes_routing_early_only():
    x, y = _data()
    base = [_moe(3)]
    noisy = [_moe(3)]
    p0 = fit_population(base, x, y, seeds=[2], steps=40, batch_size=64, router_noise=0.0)
    p1 = fit_population(noisy, x, y, seeds=[2], steps=40, batch_size=64, router_noise=2.0, router_noise_steps=10)
    assert p0.losses[0][0] != p1.losses[0][0]  # noise moved the first step's routing
    again = [_moe(3)]
    p2 = fit_population(again, x, y, seeds=[2], steps=40, batch_size=64, router_noise=2.0, router_noise_steps=10)
    np.testing.assert_array_equal(p1.losses[0], p2.losses[0])  # seeded: reproducible


def test_revive_dead_units_redraws_a_dead_unit_so_it_fires_on_its_experts_data():
    x, y = _data(T=256)
    m = _moe(5)
    with torch.no_grad():  # kill unit 0 of every expert: it never fires on x in [-1, 1]^D
        m.experts.w1[:, 0] = 0.0
        m.experts.b1[:, 0] = -1.0
    pop = fit_population([m], x, y, seeds=[0], steps=3, batch_size=None, lr=1e-4, revive_dead=[1])
    assert pop.records[0]["revived_units"] >= 1
    with torch.no_grad():
        pre = torch.einsum("nhd,td->tnh", m.experts.w1, x) + m.experts.b1  # (T, N, H)
    fired = (pre[:, :, 0] > 0).any(0)  # per expert: does unit 0 fire on any input now
    assert fired.any(), "no expert's unit 0 was revived"


def test_revive_dead_leaves_live_units_and_the_data_stream_alone():
    x, y = _data()
    a, b = [_moe(7)], [_moe(7)]
    pa = fit_population(a, x, y, seeds=[4], steps=20, batch_size=32)
    pb = fit_population(b, x, y, seeds=[4], steps=20, batch_size=32, revive_dead=[10])
    np.testing.assert_array_equal(pa.losses[0][:10], pb.losses[0][:10])
    if pb.records[0]["revived_units"] == 0:
        np.testing.assert_array_equal(pa.losses[0], pb.losses[0])


def test_remedy_options_reject_bad_values():
    x, y = _data()
    with pytest.raises(ValueError, match="warmup_steps must be >= 0"):
        fit_population([_moe(0)], x, y, seeds=[0], steps=5, warmup_steps=-1)
    with pytest.raises(ValueError, match="router_noise must be >= 0"):
        fit_population([_moe(0)], x, y, seeds=[0], steps=5, router_noise=-0.5)
    with pytest.raises(ValueError, match="revive_dead"):
        fit_population([_moe(0)], x, y, seeds=[0], steps=5, revive_dead=[6])
    with pytest.raises(TypeError, match="revive_dead must be a sequence"):
        fit_population([_moe(0)], x, y, seeds=[0], steps=5, revive_dead=3)
    dense = nn.Sequential(nn.Linear(D, 4), nn.ReLU(), nn.Linear(4, 1)).double()
    with pytest.raises(ValueError, match="MoE members only"):
        fit_population([dense], x, y, seeds=[0], steps=5, router_noise=1.0)
