"""The primer chapter's computations and the shared training loop."""

import numpy as np
import pytest
import torch

from moe_theory import MoE, fit_regressor, mse, show_source, expert_colors
from moe_theory.primer import (TOY_AUX_WEIGHT, active_set_ids, piece_agreement, quadrant, routing_grid,
                               spread_gate, toy_dataset, toy_target, train_toy_moe)


def test_toy_target_is_the_stated_piecewise_function():
    x = torch.tensor([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]], dtype=torch.float64)
    expected = torch.tensor([np.sin(3.0), 0.75, -0.75, np.cos(1.5) - 1], dtype=torch.float64)
    assert torch.allclose(toy_target(x)[:, 0], expected)
    assert quadrant(x).tolist() == [0, 1, 2, 3]


def test_toy_dataset_is_seeded_and_in_the_square():
    a, ya = toy_dataset(100, seed=3, device="cpu")
    b, yb = toy_dataset(100, seed=3, device="cpu")
    assert torch.equal(a, b) and torch.equal(ya, yb)
    assert a.abs().max() <= 1 and a.shape == (100, 2) and ya.shape == (100, 1)


def test_train_toy_moe_is_deterministic_and_learns():
    m1, r1 = train_toy_moe(steps=60, seed=4, device="cpu", snapshot_steps=(0, 60), snapshot_resolution=20)
    m2, r2 = train_toy_moe(steps=60, seed=4, device="cpu")
    assert r1.losses == r2.losses
    assert r1.losses[-1] < 0.5 * r1.losses[0]
    assert set(r1.snapshots) == {0, 60} and r1.snapshots[0]["top1"].shape == (20, 20)


def _quadrant_grid(resolution=64):
    layer = MoE(2, 4, 4, 1, device="cpu", dtype=torch.float64)
    with torch.no_grad():
        layer.router.weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]]))
        layer.router.bias.zero_()
    return routing_grid(layer, resolution=resolution)


def test_piece_agreement_is_one_for_a_quadrant_router_and_cannot_be_gamed_by_one_expert():
    grid = _quadrant_grid()
    assert piece_agreement(grid) == pytest.approx(1.0)
    grid["top1"] = np.array([3, 0, 1, 2])[grid["top1"]]  # relabelled experts: still the pieces
    assert piece_agreement(grid) == pytest.approx(1.0)
    grid["top1"] = np.zeros((64, 64), dtype=int)  # collapsed router: one expert gets one piece only
    assert piece_agreement(grid) == pytest.approx(0.25)
    grid["top1"] = np.where(np.indices((64, 64))[0] < 32, 0, 1)  # two experts, one per half plane
    assert piece_agreement(grid) == pytest.approx(0.5)


def test_piece_agreement_matches_a_brute_force_over_all_matchings():
    import itertools

    rng = np.random.default_rng(0)
    grid = _quadrant_grid(24)
    piece = grid["top1"].copy()  # the quadrant router's labels are the pieces themselves
    for n_experts in (2, 4, 6):
        top1 = rng.integers(0, n_experts, size=(24, 24))
        follow = rng.random((24, 24)) < 0.5  # half the points routed by their piece
        top1[follow] = piece[follow] % n_experts
        grid.update(top1=top1, n_experts=n_experts)
        C = np.array([[np.sum((top1 == i) & (piece == p)) for p in range(4)] for i in range(n_experts)])
        brute = max(sum(C[e, p] for p, e in zip(range(4), perm) if e is not None)
                    for perm in itertools.permutations(list(range(n_experts)) + [None] * 4, 4))
        assert piece_agreement(grid) == pytest.approx(brute / top1.size)


def test_spread_gate_gives_every_expert_an_equal_cone():
    for seed in range(5):
        layer = spread_gate(MoE(2, 4, 4, 1, device="cpu", dtype=torch.float64), seed=seed)
        top1 = routing_grid(layer, resolution=200)["top1"]
        shares = np.bincount(top1.ravel(), minlength=4) / top1.size
        assert np.all(shares > 0.15), shares  # alive, and roughly a quarter each on the square
        assert torch.equal(layer.router.bias, torch.zeros(4, dtype=torch.float64))
    a = spread_gate(MoE(2, 4, 4, 1, device="cpu"), seed=1).router.weight
    b = spread_gate(MoE(2, 4, 4, 1, device="cpu"), seed=1).router.weight
    assert torch.equal(a, b)
    with pytest.raises(TypeError, match="model must be an MoE with d_model = 2"):
        spread_gate(MoE(3, 4, 4, 1, device="cpu"), seed=0)
    with pytest.raises(ValueError, match="scale must be > 0.0"):
        spread_gate(MoE(2, 4, 4, 1, device="cpu"), seed=0, scale=0.0)


@pytest.mark.slow
def test_trained_toy_regions_follow_the_pieces_over_seeds(one_thread):
    """The chapter's claim: the trained top-1 router cuts the plane along the four quadrants,
    every expert in use, for each of several seeds (the chapter's table shows seeds 0-5)."""
    assert TOY_AUX_WEIGHT == 0.1
    for seed in (0, 1, 2):
        model, result = train_toy_moe(seed=seed, device="cpu")
        grid = routing_grid(model, resolution=100)
        assert len(np.unique(grid["top1"])) == 4, seed
        assert piece_agreement(grid) >= 0.8, (seed, piece_agreement(grid))
        assert result.losses[-1] < 0.05


def test_active_set_ids_rank_subsets_lexicographically():
    idx = np.array([[0, 1], [1, 0], [2, 3], [0, 3]])
    assert active_set_ids(idx, 4).tolist() == [0, 0, 5, 2]
    with pytest.raises(ValueError, match="indices.shape"):
        active_set_ids(np.zeros((2, 5), dtype=int), 4)


def test_routing_grid_counts_and_rejects_bad_models():
    layer = MoE(2, 4, 5, 2, device="cpu", dtype=torch.float64)
    grid = routing_grid(layer, resolution=30)
    assert grid["n_sets"] == 10 and grid["active"].max() < 10
    with pytest.raises(TypeError, match="model must be an MoE with d_model = 2"):
        routing_grid(MoE(3, 4, 5, 2, device="cpu"))
    with pytest.raises(ValueError, match="resolution must be >= 1"):
        routing_grid(layer, resolution=0)
    with pytest.raises(ValueError, match="box must be > 0.0"):
        routing_grid(layer, box=0)


def test_primer_functions_reject_bad_input():
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 2\)"):
        toy_target(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="n must be >= 1"):
        toy_dataset(0, seed=1)
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= n_experts \(= 4\), got k=5"):
        train_toy_moe(k=5)
    with pytest.raises(ValueError, match="snapshot_steps must satisfy"):
        train_toy_moe(steps=5, snapshot_steps=(9,), device="cpu")
    with pytest.raises(ValueError, match=r"grid\['top1'\] must be a 2-D label image"):
        piece_agreement({"top1": np.zeros(4), "extent": (-1, 1, -1, 1)})
    with pytest.raises(ValueError, match="gate_init must be one of"):
        train_toy_moe(gate_init="zeros", steps=1)


def test_fit_regressor_reduces_loss_and_validates():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)).double()
    x, y = toy_dataset(256, seed=0, device="cpu", dtype=torch.float64)
    before = mse(model, x, y)
    calls = []
    res = fit_regressor(model, x, y, steps=50, lr=1e-2, batch_size=64, callback=lambda s, m: calls.append(s))
    assert mse(model, x, y) < before and len(res.losses) == 50 and calls == list(range(51))
    with pytest.raises(ValueError, match="x and y must have the same number of rows"):
        fit_regressor(model, x, y[:10])
    with pytest.raises(ValueError, match="lr must be > 0.0"):
        fit_regressor(model, x, y, lr=0.0)
    with pytest.raises(TypeError, match="callback must be callable or None"):
        fit_regressor(model, x, y, steps=1, callback=5)


def test_plotting_helpers_palette_and_source():
    assert expert_colors(3) == ["#1f77b4", "#ff7f0e", "#2ca02c"]
    assert expert_colors(25)[20] == expert_colors(25)[0]
    assert "def toy_target" in show_source(toy_target).data
    with pytest.raises(TypeError, match="obj must be a function, class, method or module"):
        show_source(3)
    with pytest.raises(ValueError, match="n must be >= 1"):
        expert_colors(0)


def test_train_toy_moe_is_seeded_and_leaves_the_global_generator_alone():
    """Same seed, same model; the global torch generator is not consumed or reseeded."""
    torch.manual_seed(99)
    before = torch.get_rng_state()
    a, _ = train_toy_moe(seed=3, steps=5, n_train=64)
    assert torch.equal(torch.get_rng_state(), before)
    b, _ = train_toy_moe(seed=3, steps=5, n_train=64)
    c, _ = train_toy_moe(seed=4, steps=5, n_train=64)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.router.weight, c.router.weight)


def test_train_toy_moes_equals_train_toy_moe_seed_by_seed():
    """The population version of the primer's training gives each seed's single run (float64)."""
    from moe_theory.primer import train_toy_moe, train_toy_moes

    runs = train_toy_moes([1, 3], steps=40, dtype=torch.float64)
    for seed, (model, result) in zip([1, 3], runs):
        single, single_result = train_toy_moe(seed=seed, steps=40, dtype=torch.float64)
        np.testing.assert_allclose(result.losses, single_result.losses, rtol=0, atol=1e-10)
        for (name, p), q in zip(model.named_parameters(), single.parameters()):
            assert torch.allclose(p, q, rtol=0, atol=1e-10), name


def test_train_toy_moes_bad_input():
    from moe_theory.primer import train_toy_moes

    with pytest.raises(ValueError, match="seeds must hold at least one seed"):
        train_toy_moes([])
    with pytest.raises(TypeError, match="seeds must be a sequence of ints"):
        train_toy_moes(3)
