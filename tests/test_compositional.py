"""The compositional chapter: zigzag MoEs, exact piece counts, the exact deep MoE, populations."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from moe_theory import MoE, load_balancing_loss
from moe_theory.compositional import (AffineStack, CompositionalTarget, affine_stack_forward, best_piecewise_fit,
                                      build_compositional_moe, cell_index, count_linear_pieces, count_routing_paths,
                                      exact_affine_pieces, grid_midpoints, piecewise_to_moe, random_affine_stack,
                                      subfunction, telgarsky_sawtooth, zigzag_closed_form, zigzag_moe)
from moe_theory.compositional_train import (DeepMoEPopulation, StackSpec, architecture, evaluate_population,
                                            normalized_mutual_information, routing_scores, train_population)


# ----------------------------------------------------------------------------- the zigzag MoE (prop-comp-zigzag)
@pytest.mark.parametrize("N,L", [(2, 1), (2, 4), (3, 2), (3, 3), (4, 2), (5, 2)])
def test_prop_comp_zigzag_computes_z_to_the_n_power_l(N, L):
    stack = zigzag_moe(N, L)
    x = np.random.default_rng(N * 10 + L).random(2000)
    y, codes = affine_stack_forward(stack, x)
    n = N ** L
    assert np.abs(y - zigzag_closed_form(x, n)).max() < 1e-12
    # slope +-N^L at the midpoint of every interval [k/n, (k+1)/n] (finite difference of the exact stack)
    mid = (np.arange(n) + 0.5) / n
    eps = 0.25 / n
    slope = (affine_stack_forward(stack, mid + eps)[0] - affine_stack_forward(stack, mid - eps)[0]) / (2 * eps)
    assert np.allclose(np.abs(slope), n, rtol=1e-9)
    assert np.all(np.sign(slope) == np.where(np.arange(n) % 2 == 0, 1, -1))
    # exactly N^L distinct codes on the midpoints, and N^L exact pieces, each with its own code
    assert count_routing_paths(affine_stack_forward(stack, mid)[1]) == n
    pieces = exact_affine_pieces(stack)
    assert len(pieces) == n and len({p[4] for p in pieces}) == n
    assert np.allclose([p[0] for p in pieces], np.arange(n) / n, atol=1e-12)


@pytest.mark.parametrize("L", [1, 3, 6])
def test_prop_comp_zigzag_with_two_experts_is_telgarskys_dense_sawtooth(L):
    x = np.random.default_rng(L).random(3000)
    z = zigzag_closed_form(x, 2 ** L)
    assert np.abs(telgarsky_sawtooth(x, L) - z).max() < 1e-12
    assert np.abs(affine_stack_forward(zigzag_moe(2, L), x)[0] - z).max() < 1e-12
    with pytest.raises(ValueError, match="L must be >= 1"):
        telgarsky_sawtooth(x, 0)


@given(a=st.integers(1, 6), b=st.integers(1, 6), x=st.floats(0, 1))
def test_prop_comp_zigzag_composition_rule(a, b, x):
    """z_a(z_b(x)) = z_{ab}(x): the identity T_a(cos t) = cos(a t) behind the zigzag."""
    lhs = zigzag_closed_form(zigzag_closed_form(np.array([x]), b), a)
    assert abs(lhs[0] - zigzag_closed_form(np.array([x]), a * b)[0]) < 1e-9


def test_prop_comp_zigzag_neighbouring_experts_agree_at_breakpoints():
    """Neighbouring experts give the same value at x = i/N, so the tie-break does not matter; where
    the tie is exact in floating point (N a power of 2) it goes to the smaller index."""
    for N in (2, 3, 4, 5, 8):
        stack = zigzag_moe(N, 1)
        for i in range(1, N):
            x = i / N
            left = stack.a[0, i - 1] * x + stack.c[0, i - 1]
            right = stack.a[0, i] * x + stack.c[0, i]
            assert abs(left - right) < 1e-12
            if N in (2, 4, 8):
                assert affine_stack_forward(stack, np.array([x]))[1][0, 0] == i - 1


# ----------------------------------------------------------------------------- counting (prop-comp-affine-stack-bound)
@given(N=st.integers(1, 4), L=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_prop_comp_affine_stack_bound_at_most_n_to_the_l_pieces(N, L, seed):
    stack = random_affine_stack(N, L, rng=seed)
    pieces = exact_affine_pieces(stack, -3.0, 3.0)
    assert 1 <= len(pieces) <= N ** L
    if L == 1:
        assert len(pieces) <= N
    # reference: the forward pass at each piece's midpoint has that piece's code and affine value
    mids = np.array([(p[0] + p[1]) / 2 for p in pieces])
    y, codes = affine_stack_forward(stack, mids)
    for p, yy, cc in zip(pieces, y, codes):
        assert tuple(cc) == p[4]
        assert abs(yy - (p[2] * (p[0] + p[1]) / 2 + p[3])) < 1e-8 * (1 + abs(yy))
    # and the pieces tile [-3, 3]
    assert pieces[0][0] == -3.0 and pieces[-1][1] == 3.0
    assert all(abs(p[1] - q[0]) < 1e-12 for p, q in zip(pieces, pieces[1:]))


@given(seed=st.integers(0, 10_000))
def test_prop_comp_affine_stack_bound_grid_codes_never_exceed_exact_count(seed):
    stack = random_affine_stack(3, 3, rng=seed)
    x = np.linspace(-3, 3, 5001)
    exact = {p[4] for p in exact_affine_pieces(stack, -3.0, 3.0)}
    assert count_routing_paths(affine_stack_forward(stack, x)[1]) <= len(exact) <= 27


def test_count_linear_pieces_matches_exact_counter_on_zigzag():
    x = np.linspace(0, 1, 4 * 27 * 50 + 1)
    y = affine_stack_forward(zigzag_moe(3, 3), x)[0]
    assert count_linear_pieces(x, y) == 27 == len(exact_affine_pieces(zigzag_moe(3, 3)))
    assert count_linear_pieces(x, 2 * x + 1) == 1


# ----------------------------------------------------------------------------- one layer (prop-comp-one-layer-segments)
@given(P=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_prop_comp_one_layer_segments_realises_any_p_piece_function(P, seed):
    rng = np.random.default_rng(seed)
    breaks = np.sort(rng.choice(np.arange(1, 200), P - 1, replace=False)) / 200
    slopes, icpts = rng.standard_normal(P), rng.standard_normal(P)
    stack = piecewise_to_moe(breaks, slopes, icpts)
    x = (np.arange(1000) + 0.5) / 1000  # never on a break (ties are not exact in floating point)
    piece = np.searchsorted(breaks, x)  # piece i on (b_{i-1}, b_i)
    y, codes = affine_stack_forward(stack, x)
    assert np.array_equal(codes[:, 0], piece)
    assert np.allclose(y, slopes[piece] * x + icpts[piece], atol=1e-12)
    assert len(exact_affine_pieces(stack)) == P


def test_best_piecewise_fit_equals_brute_force_on_small_problems():
    rng = np.random.default_rng(0)
    x = np.sort(rng.random(14))
    y = np.sin(6 * x) + 0.1 * rng.standard_normal(14)

    def sse(s, e):
        if e - s < 2:
            return 0.0
        c = np.polyfit(x[s:e], y[s:e], 1)
        return float(((np.polyval(c, x[s:e]) - y[s:e]) ** 2).sum())

    from itertools import combinations
    for P in (1, 2, 3):
        brute = min(sum(sse(s, e) for s, e in zip((0,) + c, c + (14,))) for c in combinations(range(1, 14), P - 1))
        mse, fit, breaks = best_piecewise_fit(x, y, P, n_candidates=14)
        assert abs(mse * 14 - brute) < 1e-9
        assert abs(((fit - y) ** 2).mean() - mse) < 1e-12
        assert len(breaks) <= P - 1


# ----------------------------------------------------------------------------- Telgarsky-style gap (prop-comp-sawtooth-gap)
def _l1(x, f, n):
    return float(np.mean(np.abs(f - zigzag_closed_form(x, n))))


@pytest.mark.parametrize("N,L", [(2, 4), (3, 2), (3, 3), (4, 2)])
def test_prop_comp_sawtooth_gap_best_fits_obey_the_lower_bound(N, L):
    n = N ** L
    x = (np.arange(40_000) + 0.5) / 40_000
    z = zigzag_closed_form(x, n)
    for P in sorted({1, 2, L * N, max(1, n // 4)}):
        _, fit, _ = best_piecewise_fit(x, z, P, n_candidates=400)
        bound = (n // 2 - P + 1) / (2 * n)
        assert _l1(x, fit, n) >= bound - 1e-4
    assert _l1(x, np.full_like(x, 0.5), n) == pytest.approx(0.25, abs=1e-6)  # the constant 1/2: L1 = 1/4


@given(P=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_prop_comp_sawtooth_gap_random_p_piece_functions(P, seed):
    rng = np.random.default_rng(seed)
    n = 27
    stack = piecewise_to_moe(np.sort(rng.random(P - 1)) if P > 1 else [], rng.normal(0, 10, P), rng.normal(0, 3, P))
    x = (np.arange(20_000) + 0.5) / 20_000
    assert _l1(x, affine_stack_forward(stack, x)[0], n) >= (n // 2 - P + 1) / (2 * n) - 1e-4


# ----------------------------------------------------------------------------- targets and the exact deep MoE
def test_target_has_the_stated_structure_and_continuity():
    f = CompositionalTarget(3, ("p", "q"))
    assert f.L == 2 and f.n_pieces == 9
    z = np.linspace(0, 3, 3001)
    for fam in ("p", "q", "hat"):
        for i in (1, 2, 3):
            assert abs(subfunction(fam, i, float(i - 1))) < 1e-15 and abs(subfunction(fam, i, float(i))) < 1e-15
    # continuous across interfaces; q has kinks there (slopes +i / -i), p joins with zero slope
    g = CompositionalTarget(3, ("q", "q"))
    for a in (1.0, 2.0):
        h = 1e-6
        left = (g(np.array([[a, 0.5]]))[0] - g(np.array([[a - h, 0.5]]))[0]) / h
        right = (g(np.array([[a + h, 0.5]]))[0] - g(np.array([[a, 0.5]]))[0]) / h
        assert left == pytest.approx(-a, rel=1e-4) and right == pytest.approx(a + 1, rel=1e-4)
    vals = f(np.stack([z, np.full_like(z, 1.3)], 1))
    assert np.abs(np.diff(vals)).max() < 1e-2  # no jumps
    # numpy and torch agree
    x = grid_midpoints(12, 2, 3.0)
    assert np.allclose(f(torch.as_tensor(x)).numpy(), f(x), atol=1e-14)
    assert np.array_equal(cell_index(np.array([0.0, 0.5, 1.0, 1.0001, 3.0]), 3), [1, 1, 1, 2, 3])


@pytest.mark.parametrize("N,families", [(3, ("hat", "hat")), (2, ("hat",)), (3, ("hat", "hat", "hat")),
                                        (4, ("hat", "hat"))])
def test_thm_comp_exact_deep_moe_equals_piecewise_linear_targets(N, families):
    f = CompositionalTarget(N, families)
    model = build_compositional_moe(f, 6)
    t = np.linspace(0, N, 4 * N * 6 + 1)  # includes every interface x_l = i and every knot
    x = np.stack(np.meshgrid(*([t] * f.L), indexing="ij"), -1).reshape(-1, f.L)
    if len(x) > 20_000:
        x = x[np.random.default_rng(0).choice(len(x), 20_000, replace=False)]
    with torch.no_grad():
        y, routing = model(torch.as_tensor(x)[None], return_routing=True)
    assert np.abs(y[0, :, 0].numpy() - f(x)).max() < 1e-12
    codes = np.stack([r[1][0].numpy() for r in routing], 1)
    assert np.array_equal(codes, f.cells(x) - 1)  # the routing code is the cell, ties to the left cell
    assert count_routing_paths(codes) == N ** f.L


@pytest.mark.parametrize("families,m", [(("p", "q"), 8), (("q", "p", "p"), 5), (("q",), 32)])
def test_thm_comp_exact_deep_moe_is_the_sum_of_interpolants_and_obeys_the_bound(families, m):
    f = CompositionalTarget(3, families)
    model = build_compositional_moe(f, m)
    ev = evaluate_population(model, f, n_side=30 if f.L == 3 else 120, rescale=False)
    x = ev["x"]
    # independent reference: numpy's linear interpolation of each sub-function on its own cell
    ref = np.zeros(len(x))
    for l, fam in enumerate(families):
        i = f.cells(x)[:, l]
        for j in range(1, 4):
            knots = (j - 1) + np.arange(m + 1) / m
            sel = i == j
            ref[sel] += np.interp(x[sel, l], knots, subfunction(fam, j, knots))
    with torch.no_grad():
        y = model(torch.as_tensor(x)[None])[0, :, 0].numpy()
    assert np.abs(y - ref).max() < 1e-12
    second = {"p": 6.0, "q": 6.0}  # max |f''| over the three pieces: p_i'' <= 2i at the ends, |q_i''| = 2i
    bound = sum((1 / m) ** 2 * second[fam] / 8 for fam in families)
    assert ev["sup_error"][0] <= bound
    assert np.array_equal(ev["codes"][0], ev["cells"] - 1)


def test_thm_comp_exact_deep_moe_error_falls_like_m_to_the_minus_two():
    f = CompositionalTarget(3, ("p", "q"))
    ms = np.array([4, 8, 16, 32])
    err = [evaluate_population(build_compositional_moe(f, int(m)), f, n_side=90, rescale=False)["sup_error"][0]
           for m in ms]
    slope = np.polyfit(np.log(ms), np.log(err), 1)[0]
    assert -2.2 < slope < -1.8


# ----------------------------------------------------------------------------- one layer: at most N convex cells
@given(seed=st.integers(0, 10_000))
def test_prop_comp_one_layer_cells_some_expert_straddles_two_squares(seed):
    """A linear gate with 6 experts on [0, 3]^2: some cell meets the interiors of two unit squares."""
    rng = np.random.default_rng(seed)
    W, b = rng.standard_normal((6, 2)), rng.standard_normal(6)
    x = grid_midpoints(60, 2, 3.0)
    j = np.argmax(x @ W.T + b, 1)
    square = (np.ceil(x[:, 0]) - 1) * 3 + np.ceil(x[:, 1]) - 1
    squares_per_expert = [len(np.unique(square[j == e])) for e in np.unique(j)]
    assert len(squares_per_expert) <= 6
    assert max(squares_per_expert) >= 2


# ----------------------------------------------------------------------------- populations
def test_population_member_equals_the_same_member_trained_alone():
    f = CompositionalTarget(3, ("p", "q"))
    spec = architecture("2-3-MoE", 8)
    pop = DeepMoEPopulation(spec, [3, 5, 7], dtype=torch.float64)
    alone = DeepMoEPopulation(spec, [5], dtype=torch.float64)
    for a, b in zip(pop.parameters(), alone.parameters()):
        assert torch.equal(a[1], b[0])  # same initialisation from the same seed
    kw = dict(steps=40, lr=1e-2, aux_weight=0.01, clip=0.05)  # a small clip so that clipping happens
    r_pop, r_alone = train_population(pop, f, **kw), train_population(alone, f, **kw)
    assert np.abs(r_pop.losses[:, 1] - r_alone.losses[:, 0]).max() < 1e-8
    for a, b in zip(pop.parameters(), alone.parameters()):
        assert torch.allclose(a[1], b[0], atol=1e-8, rtol=0)
    assert not np.allclose(r_pop.losses[:, 0], r_pop.losses[:, 1])  # members differ


def test_population_training_matches_plain_torch_training_of_one_dense_net():
    """Reference: one member, no routing, trained by hand with torch's clip_grad_norm_ and Adam."""
    f = CompositionalTarget(3, ("p", "q"))
    spec = StackSpec((2, 1), (1,), 6)
    pop = DeepMoEPopulation(spec, [2], dtype=torch.float64)
    net = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.ReLU(), torch.nn.Linear(6, 1)).double()
    with torch.no_grad():
        net[0].weight.copy_(pop.w1[0][0, 0]); net[0].bias.copy_(pop.b1[0][0, 0])
        net[2].weight.copy_(pop.w2[0][0, 0]); net[2].bias.copy_(pop.b2[0][0, 0])
    res = train_population(pop, f, steps=25, lr=1e-2, clip=0.1, lr_min_ratio=0.5, batch_size=16)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 25, eta_min=0.5e-2)
    gen = torch.Generator().manual_seed(2 + 7919)
    for s in range(25):
        x = torch.rand(16, 2, generator=gen, dtype=torch.float64) * 3
        opt.zero_grad()
        loss = ((net(x * (2 / 3) - 1) - f(x)[:, None]) ** 2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 0.1)
        opt.step(); sched.step()
        assert abs(loss.item() - res.losses[s, 0]) < 1e-10
    assert torch.allclose(net[2].weight, pop.w2[0][0, 0], atol=1e-10)


def test_one_layer_population_member_equals_moe_layer():
    pop = DeepMoEPopulation(architecture("1-6-MoE", 5), [0, 1], dtype=torch.float64)
    layer = MoE(2, 5, n_experts=6, k=1, d_out=1, weighting="softmax", dtype=torch.float64)
    with torch.no_grad():
        layer.router.weight.copy_(pop.gate_w[0][1]); layer.router.bias.copy_(pop.gate_b[0][1])
        layer.w1.copy_(pop.w1[0][1]); layer.b1.copy_(pop.b1[0][1])
        layer.w2.copy_(pop.w2[0][1]); layer.b2.copy_(pop.b2[0][1])
    x = torch.rand(300, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    y_pop, routing = pop(x[None].expand(2, -1, -1), return_routing=True)
    y_layer, r_layer = layer(x, return_routing=True)
    assert torch.allclose(y_pop[1], y_layer, atol=1e-12)
    assert torch.equal(routing[0][1][1], r_layer.indices[:, 0])
    lb = pop.load_balancing_loss(routing)[1]
    assert torch.allclose(lb, load_balancing_loss(r_layer), atol=1e-12)


def test_parameter_counts_of_the_two_moes_agree_within_15_percent():
    for m in (16, 32, 64, 128):
        deep, wide = architecture("2-3-MoE", m).n_params(), architecture("1-6-MoE", m).n_params()
        assert abs(deep - wide) / wide < 0.15
        dense = architecture("dense", m)
        assert abs(dense.n_params() - architecture("2-3-MoE", m).n_params(active=True)) <= 4
        pop = DeepMoEPopulation(architecture("2-3-MoE", m), [0])
        assert sum(p.numel() for p in pop.parameters()) == deep  # counts every stored parameter


def test_populations_are_seeded_and_deterministic():
    f = CompositionalTarget(3, ("p", "q"))
    runs = [train_population(DeepMoEPopulation(architecture("2-3-MoE", 4), [1, 2]), f, steps=5).losses
            for _ in range(2)]
    assert np.array_equal(*runs)


def test_routing_scores_recognise_compositional_and_collapsed_routing():
    f = CompositionalTarget(3, ("p", "q"))
    x = grid_midpoints(30, 2, 3.0)
    cells = f.cells(x)
    good = routing_scores(cells - 1, cells)
    assert good["compositional"] and good["paths"] == 9 and abs(good["path_cell"] - 1) < 1e-12
    swapped = routing_scores((cells - 1)[:, ::-1], cells)  # layer 1 by x_2, layer 2 by x_1: also compositional
    assert swapped["compositional"]
    collapsed = routing_scores(np.stack([np.zeros(len(x), int), cells[:, 1] - 1], 1), cells)
    assert not collapsed["compositional"] and collapsed["paths"] == 3
    assert abs(collapsed["path_cell"] - math.log(3) / math.log(9)) < 1e-12
    rng = np.random.default_rng(0)
    assert normalized_mutual_information(rng.integers(0, 3, 90_000), rng.integers(0, 3, 90_000)) < 1e-3


# ----------------------------------------------------------------------------- bad input
def test_compositional_functions_reject_bad_input():
    with pytest.raises(ValueError, match="N must be >= 1"):
        zigzag_moe(0, 2)
    with pytest.raises(TypeError, match="L must be an integer"):
        zigzag_moe(2, 1.5)
    with pytest.raises(ValueError, match="n must be >= 1"):
        zigzag_closed_form([0.1], 0)
    with pytest.raises(ValueError, match="family must be one of"):
        subfunction("r", 1, 0.5)
    with pytest.raises(ValueError, match="families must be a non-empty tuple"):
        CompositionalTarget(3, ())
    with pytest.raises(ValueError, match="families entry must be one of"):
        CompositionalTarget(3, ("p", "z"))
    with pytest.raises(ValueError, match="n_experts must be >= 1"):
        CompositionalTarget(0)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 2\)"):
        CompositionalTarget(3)(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"x must lie in the domain \[0, 3\]\^2"):
        CompositionalTarget(3)(np.array([[3.5, 1.0]]))
    with pytest.raises(ValueError, match="n_experts must be >= 1"):
        cell_index(np.ones(3), 0)
    with pytest.raises(ValueError, match=r"w, b, a and c must have the same shape \(L, N\)"):
        AffineStack(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 2)), np.ones((2, 3)))
    with pytest.raises(TypeError, match="stack must be an AffineStack"):
        affine_stack_forward("zigzag", np.ones(3))
    with pytest.raises(ValueError, match="hi must be > lo"):
        exact_affine_pieces(zigzag_moe(2, 1), 1.0, 0.0)
    with pytest.raises(TypeError, match="rng must be a non-negative int seed"):
        random_affine_stack(2, 2, rng=None)
    with pytest.raises(ValueError, match="codes must have 2 dimensions"):
        count_routing_paths(np.ones(4))
    with pytest.raises(ValueError, match="x must be strictly increasing"):
        count_linear_pieces([0, 0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="x and y must have the same length"):
        best_piecewise_fit(np.arange(5.0), np.arange(4.0), 2)
    with pytest.raises(ValueError, match="n_pieces must be >= 1"):
        best_piecewise_fit(np.arange(5.0), np.arange(5.0), 0)
    with pytest.raises(ValueError, match="needs 3 intercepts and 2 breaks"):
        piecewise_to_moe([0.5], [1, 2, 3], [0, 0, 0])
    with pytest.raises(ValueError, match="breaks must be strictly increasing"):
        piecewise_to_moe([0.5, 0.2], [1, 2, 3], [0, 0, 0])
    with pytest.raises(TypeError, match="target must be a CompositionalTarget"):
        build_compositional_moe(lambda x: x, 4)
    with pytest.raises(ValueError, match="m must be >= 1"):
        build_compositional_moe(CompositionalTarget(), 0)
    with pytest.raises(ValueError, match="n_side must be >= 1"):
        grid_midpoints(0, 2, 3.0)


def test_population_functions_reject_bad_input():
    with pytest.raises(ValueError, match="dims must have one more entry than n_experts"):
        StackSpec((2, 1), (3, 3), 4)
    with pytest.raises(ValueError, match="name must be one of"):
        architecture("3-3-MoE", 16)
    with pytest.raises(ValueError, match="m must be >= 1"):
        architecture("2-3-MoE", 0)
    with pytest.raises(TypeError, match="spec must be a StackSpec"):
        DeepMoEPopulation("2-3-MoE", [0])
    with pytest.raises(ValueError, match="seeds must contain at least one seed"):
        DeepMoEPopulation(architecture("2-3-MoE", 4), [])
    with pytest.raises(ValueError, match="weighting must be one of"):
        DeepMoEPopulation(architecture("2-3-MoE", 4), [0], weighting="hard")
    pop = DeepMoEPopulation(architecture("2-3-MoE", 4), [0, 1])
    with pytest.raises(ValueError, match=r"x must have shape \(P=2, T, 2\)"):
        pop(torch.ones(3, 5, 2))
    with pytest.raises(ValueError, match="target must have as many coordinates as the model's input width"):
        train_population(pop, CompositionalTarget(3, ("p",)), steps=1)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        train_population(pop, CompositionalTarget(), steps=0)
    with pytest.raises(ValueError, match="data_seeds must have one seed per member"):
        train_population(pop, CompositionalTarget(), steps=1, data_seeds=[1])
    with pytest.raises(TypeError, match="model must be a DeepMoEPopulation"):
        train_population(MoE(2, 4, 3), CompositionalTarget(), steps=1)
    with pytest.raises(ValueError, match="n_side must be >= 1"):
        evaluate_population(pop, CompositionalTarget(), n_side=0)
    with pytest.raises(ValueError, match="codes and cells must be 2-D with the same number of rows"):
        routing_scores(np.zeros((4, 2), int), np.zeros((5, 2), int))
    with pytest.raises(ValueError, match="a and b must have the same number of labels"):
        normalized_mutual_information([0, 1], [0])


def test_compositional_module_docstring_examples_hold():
    import doctest

    import moe_theory.compositional as comp

    result = doctest.testmod(comp)
    assert result.attempted > 0 and result.failed == 0


def test_zero_family_makes_a_coordinate_irrelevant():
    f = CompositionalTarget(3, ("p", "zero"))
    x = np.array([[0.5, 0.2], [0.5, 2.9]])
    assert f(x)[0] == f(x)[1] == pytest.approx(0.0625)
