"""The population trainer: member i equals fit_regressor with the same seed (float64, 1e-8)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from moe_theory.layers import MoE
from moe_theory.population import fit_population, population_chunk_size
from moe_theory.training import fit_population as fit_population_reexported
from moe_theory.training import fit_regressor

D, H, N, O = 5, 6, 4, 1


def _moe(seed, *, k=1, weighting="softmax", router="topk", bias=True, dtype=torch.float64):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MoE(D, H, N, k, d_out=O, router=router, weighting=weighting, router_bias=bias, dtype=dtype)


def _dense(seed, width=7, dtype=torch.float64):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(D, width), nn.ReLU(), nn.Linear(width, O)).to(dtype)


def _data(T=64, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.standard_normal((T, D)))
    return x, torch.sin(x[:, :1] * 2) + x[:, 1:2] * x[:, 2:3]


def _sampler_single(gen, B=32):
    x = torch.rand(B, D, generator=gen, dtype=torch.float64) * 2 - 1
    return x, torch.cos(3 * x[:, :1]) * x[:, 1:2]


def _sampler_population(gens, members, B=32):
    xs, ys = zip(*(_sampler_single(g, B) for g in gens))
    return torch.stack(xs), torch.stack(ys)


def _assert_same_as_sequential(make, seeds, *, steps=200, **kw):
    singles = [make(s) for s in seeds]
    members = [copy.deepcopy(m) for m in singles]
    pop = fit_population(members, seeds=seeds, steps=steps, **kw)
    for s, single, member, losses in zip(seeds, singles, members, pop.losses):
        res = fit_regressor(single, seed=s, steps=steps, **kw)
        np.testing.assert_allclose(losses, res.losses, rtol=1e-8, atol=1e-10)
        for (name, a), b in zip(single.named_parameters(), member.parameters()):
            np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-8, atol=1e-10,
                                       err_msg=name)
    return pop


@pytest.mark.parametrize("aux_weight", [0.0, 0.05])
def test_population_member_equals_fit_regressor_moe_top1(aux_weight):
    x, y = _data()
    _assert_same_as_sequential(lambda s: _moe(s, k=1, weighting="softmax"), [0, 1], x=x, y=y,
                               batch_size=16, aux_weight=aux_weight, lr=1e-2)


@pytest.mark.parametrize("aux_weight", [0.0, 0.05])
def test_population_member_equals_fit_regressor_moe_top2(aux_weight):
    _assert_same_as_sequential(lambda s: _moe(s, k=2, weighting="renormalized", bias=False), [3, 4],
                               sampler=None, x=_data()[0], y=_data()[1], batch_size=24, aux_weight=aux_weight,
                               clip=0.5, lr_min_ratio=1e-3)


def test_population_member_equals_fit_regressor_dense_softmax_router_and_sampler():
    seeds = [5, 6]
    singles = [_moe(s, router="softmax") for s in seeds]
    members = [copy.deepcopy(m) for m in singles]
    pop = fit_population(members, seeds=seeds, steps=200, sampler=_sampler_population, aux_weight=0.1)
    for s, a, b, losses in zip(seeds, singles, members, pop.losses):
        res = fit_regressor(a, seed=s, steps=200, sampler=_sampler_single, aux_weight=0.1)
        np.testing.assert_allclose(losses, res.losses, rtol=1e-8, atol=1e-10)
        for pa, pb in zip(a.parameters(), b.parameters()):
            np.testing.assert_allclose(pb.detach().numpy(), pa.detach().numpy(), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("lr_decay", [True, False])
def test_population_member_equals_fit_regressor_dense_mlp(lr_decay):
    x, y = _data(T=40)
    _assert_same_as_sequential(_dense, [0, 7, 9], x=x, y=y, batch_size=8, lr=3e-3, lr_decay=lr_decay, clip=None)


def test_population_member_equals_fit_regressor_full_batch_top1_renormalized():
    x, y = _data(T=30)
    pop = _assert_same_as_sequential(lambda s: _moe(s, weighting="renormalized"), [0, 1], x=x, y=y, steps=100)
    assert all(r["train_dead_experts"] == sum(f == 0 for f in r["train_load_fraction"]) for r in pop.records)


def test_population_records_loads_sum_to_one_and_final_train_mse_is_mean_of_last_50():
    x, y = _data()
    pop = fit_population([_moe(s) for s in range(3)], x, y, seeds=[0, 1, 2], steps=60, batch_size=16)
    for rec, losses in zip(pop.records, pop.losses):
        assert math.isclose(sum(rec["train_load_fraction"]), 1.0)
        assert math.isclose(rec["final_train_mse"], float(np.mean(losses[-50:])))


def test_population_chunking_does_not_change_the_numbers():
    x, y = _data()
    a = fit_population([_moe(s) for s in range(5)], x, y, seeds=range(5), steps=40, batch_size=16, max_chunk=5)
    b = fit_population([_moe(s) for s in range(5)], x, y, seeds=range(5), steps=40, batch_size=16, max_chunk=2)
    assert (a.chunk_size, b.chunk_size) == (5, 2)
    np.testing.assert_allclose(np.array(a.losses), np.array(b.losses), rtol=1e-12)


def test_population_chunk_size_follows_the_memory_budget():
    members = [_moe(s) for s in range(10)]
    small = population_chunk_size(members, 512, memory_budget=2e6)
    assert 1 <= small < population_chunk_size(members, 512, memory_budget=2e7) <= 10
    assert population_chunk_size(members, 512, memory_budget=1.0) == 1


def test_population_resume_skips_recorded_members(tmp_path):
    x, y = _data()
    path = tmp_path / "records.jsonl"
    first = fit_population([_moe(s) for s in range(2)], x, y, seeds=[0, 1], keys=["a", "b"], steps=30,
                           batch_size=16, records_path=path)
    assert len(path.read_text().splitlines()) == 2
    calls = []
    again = fit_population([_moe(s) for s in range(3)], x, y, seeds=[0, 1, 2], keys=["a", "b", "c"], steps=30,
                           batch_size=16, records_path=path,
                           evaluate=lambda i, m: calls.append(i) or {"i": i})
    assert calls == [2]  # only the new member was trained
    assert again.records[:2] == first.records and again.losses[0] is None
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["a", "b", "c"]


def test_population_evaluate_sees_the_trained_model():
    x, y = _data()
    members = [_moe(s) for s in range(2)]
    pop = fit_population(members, x, y, seeds=[0, 1], steps=50, batch_size=16,
                         evaluate=lambda i, m: {"mse": float(((m(x) - y) ** 2).mean().detach())})
    assert [r["mse"] for r in pop.records] == [float(((m(x) - y) ** 2).mean().detach()) for m in members]


def test_population_float32_and_reexport_from_training():
    assert fit_population_reexported is fit_population
    x, y = _data()
    pop = fit_population([_moe(s, dtype=torch.float32) for s in range(2)], x.float(), y.float(), seeds=[0, 1],
                         steps=200, batch_size=32, progress=False)
    assert pop.losses[0][-1] < pop.losses[0][0]


def test_population_bad_input():
    x, y = _data()
    with pytest.raises(ValueError, match="P >= 1"):
        fit_population([], x, y, seeds=[])
    with pytest.raises(TypeError, match="models must be a list"):
        fit_population(_moe(0), x, y, seeds=[0])
    with pytest.raises(ValueError, match=r"models\[1\] must have the architecture of models\[0\]"):
        fit_population([_moe(0), _moe(1, k=2)], x, y, seeds=[0, 1])
    with pytest.raises(ValueError, match=r"models\[1\] must have the architecture"):
        fit_population([_dense(0), _dense(1, width=3)], x, y, seeds=[0, 1])
    with pytest.raises(TypeError, match=r"models\[1\] must be an MoE"):
        fit_population([_moe(0), _dense(1)], x, y, seeds=[0, 1])
    with pytest.raises(ValueError, match="seeds must have one entry per member"):
        fit_population([_moe(0)], x, y, seeds=[0, 1])
    with pytest.raises(ValueError, match="noisy_topk"):
        fit_population([MoE(D, H, N, 1, d_out=O, router="noisy_topk")], x, y, seeds=[0])
    with pytest.raises(ValueError, match="expert='mlp'"):
        fit_population([MoE(D, H, N, 1, expert="swiglu")], x, y, seeds=[0])
    with pytest.raises(ValueError, match="Linear, ReLU, Tanh and GELU"):
        fit_population([nn.Sequential(nn.Linear(D, 3), nn.Sigmoid(), nn.Linear(3, 1))], x, y, seeds=[0])
    with pytest.raises(ValueError, match="x must have D"):
        fit_population([_moe(0)], x[:, :3], y, seeds=[0])
    with pytest.raises(ValueError, match="either x and y or a sampler"):
        fit_population([_moe(0)], seeds=[0])
    with pytest.raises(ValueError, match="steps must be >= 1"):
        fit_population([_moe(0)], x, y, seeds=[0], steps=0)
    with pytest.raises(ValueError, match="keys must be distinct"):
        fit_population([_moe(0), _moe(1)], x, y, seeds=[0, 1], keys=["a", "a"])
    with pytest.raises(ValueError, match="memory_budget must be > 0"):
        population_chunk_size([_moe(0)], 16, memory_budget=0)


def test_population_reads_parameters_by_name():
    """The trainer finds the MoE's tensors through named_parameters(): these names must exist."""
    names = {n.split(".")[-1] for n, _ in _moe(0).named_parameters()}
    assert {"w1", "b1", "w2", "b2", "weight", "bias"} <= names


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_population_on_cuda_equals_population_on_cpu_float64():
    x, y = _data()
    cpu = fit_population([_moe(s) for s in range(3)], x, y, seeds=[0, 1, 2], steps=100, batch_size=16,
                         aux_weight=0.01)
    gpu_members = [_moe(s).to("cuda") for s in range(3)]
    gpu = fit_population(gpu_members, x.cuda(), y.cuda(), seeds=[0, 1, 2], steps=100, batch_size=16,
                         aux_weight=0.01, device="cuda")
    np.testing.assert_allclose(np.array(gpu.losses), np.array(cpu.losses), rtol=1e-6)
    assert next(gpu_members[0].parameters()).device.type == "cuda"
