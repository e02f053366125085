"""Routers and the MoE layer: the vectorised path equals the reference loop, routing rules hold."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from moe_theory import MoE, NoisyTopKRouter, SoftmaxRouter, TopKRouter, load_balancing_loss, topk_route


# These tensors are tiny: on a shared 2-core machine, thread barriers cost more than they save.
pytestmark = pytest.mark.usefixtures("one_thread")


def _layer(N, k, D=5, H=7, O=None, seed=0, **kw):
    torch.manual_seed(seed)
    return MoE(D, H, N, k, d_out=O, device="cpu", dtype=torch.float64, **kw)


@given(N=st.integers(1, 7), data=st.data(), T=st.integers(1, 20), seed=st.integers(0, 10_000),
       weighting=st.sampled_from(["renormalized", "softmax"]))
def test_moe_dense_dispatch_equals_reference_loop_float64_every_k(N, data, T, seed, weighting):
    k = data.draw(st.integers(1, N))
    layer = _layer(N, k, seed=seed, weighting=weighting)
    x = torch.randn(T, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    assert torch.allclose(layer(x), layer.forward_reference(x), atol=1e-6, rtol=0)


def test_moe_equals_reference_for_every_k_with_batch_dims_and_gradients():
    x = torch.randn(2, 3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for k in range(1, 7):
        layer = _layer(6, k, D=6, O=4, seed=k)
        y = layer(x)
        assert y.shape == (2, 3, 4)
        g_fast = torch.autograd.grad(y.square().sum(), list(layer.parameters()), allow_unused=True)
        y_ref = layer.forward_reference(x)
        g_ref = torch.autograd.grad(y_ref.square().sum(), list(layer.parameters()), allow_unused=True)
        assert torch.allclose(y, y_ref, atol=1e-6, rtol=0)
        for a, b in zip(g_fast, g_ref):
            if a is None or b is None:
                assert a is None and b is None or (a if a is not None else b).abs().max() == 0
            else:
                assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_moe_output_is_weighted_sum_of_selected_experts():
    layer = _layer(5, 2, D=3, O=2, seed=3)
    x = torch.randn(9, 3, dtype=torch.float64)
    y, r = layer(x, return_routing=True)
    for t in range(9):
        manual = sum(r.weights[t, s] * layer.expert(int(r.indices[t, s]), x[t:t + 1])[0] for s in range(2))
        assert torch.allclose(y[t], manual, atol=1e-12)


def test_routing_load_counts_every_token_slot_and_weights_sum_to_one():
    layer = _layer(6, 3, seed=1)
    x = torch.randn(50, 5, dtype=torch.float64)
    _, r = layer(x, return_routing=True)
    assert int(r.load.sum()) == 50 * 3
    assert torch.allclose(r.weights.sum(-1), torch.ones(50, dtype=torch.float64))
    assert torch.allclose(r.load_fraction().sum(), torch.tensor(1.0, dtype=torch.float64))
    assert layer.last_routing is r
    dense = r.combine_matrix()
    assert ((dense > 0).sum(-1) == 3).all()


def test_topk_route_breaks_ties_by_smaller_index():
    g = torch.tensor([0.5, 2.0, 2.0, -1.0, 2.0])
    assert topk_route(g, 3)[0].tolist() == [1, 2, 4]
    assert topk_route(torch.zeros(6), 4)[0].tolist() == [0, 1, 2, 3]


@given(N=st.integers(2, 8), data=st.data(), seed=st.integers(0, 10_000))
def test_prop_topk_invariance_shift_and_increasing_maps(N, data, seed):
    k = data.draw(st.integers(1, N))
    gen = torch.Generator().manual_seed(seed)
    g = torch.randint(-3, 4, (64, N), generator=gen).double()  # integer logits: frequent ties
    c = 10 * torch.randn(64, 1, generator=gen, dtype=torch.float64)
    S = topk_route(g, k)[0]
    assert torch.equal(S, topk_route(g + c, k)[0])
    assert torch.equal(S, topk_route(torch.sigmoid(g), k)[0])
    assert torch.equal(S, topk_route(g**3 + 2 * g, k)[0])
    router = TopKRouter(1, N, k, dtype=torch.float64)
    pi = router.route(g).weights
    assert torch.allclose(pi, router.route(g + c).weights, atol=1e-12)
    assert torch.allclose(pi.sum(-1), torch.ones(64, dtype=torch.float64))
    assert ((S.sort(-1).values[:, 1:] > S.sort(-1).values[:, :-1]).all() if k > 1 else True)


def test_prop_topk_invariance_all_binom_n_k_sets_occur():
    N, k = 6, 3
    seen = set()
    import itertools
    for s in itertools.combinations(range(N), k):
        g = torch.zeros(N)
        g[list(s)] = 1.0
        seen.add(tuple(sorted(topk_route(g, k)[0].tolist())))
    assert len(seen) == math.comb(N, k)


def test_prop_top1_no_gate_gradient_with_renormalized_weights():
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    renorm = _layer(4, 1, D=2, O=1, weighting="renormalized")
    renorm(x).sum().backward()
    assert renorm.router.weight.grad.abs().max() == 0
    assert renorm.router.bias.grad.abs().max() == 0
    switch = _layer(4, 1, D=2, O=1, weighting="softmax")
    switch(x).sum().backward()
    assert switch.router.weight.grad.abs().max() > 1e-6
    y, r = renorm(x, return_routing=True)
    assert torch.equal(r.weights, torch.ones_like(r.weights))


def test_softmax_router_uses_every_expert_with_softmax_weights():
    layer = _layer(4, 1, router="softmax", seed=2)
    x = torch.randn(10, 5, dtype=torch.float64)
    y, r = layer(x, return_routing=True)
    assert layer.k == 4 and r.indices.shape == (10, 4)
    assert torch.allclose(r.weights, torch.softmax(r.logits, -1))
    assert torch.allclose(y, layer.forward_reference(x), atol=1e-10)
    assert isinstance(layer.router, SoftmaxRouter)


def test_noisy_router_is_seeded_in_training_and_noise_free_in_eval():
    def run(seed):
        torch.manual_seed(0)
        layer = MoE(4, 6, 5, 2, router="noisy_topk", generator=torch.Generator().manual_seed(seed),
                    device="cpu", dtype=torch.float64)
        with torch.no_grad():
            layer.router.noise_weight.fill_(1.0)
        x = torch.randn(30, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
        return layer, x, layer(x, return_routing=True)[1]

    l1, x, r1 = run(5)
    _, _, r2 = run(5)
    _, _, r3 = run(6)
    assert isinstance(l1.router, NoisyTopKRouter)
    assert torch.equal(r1.logits, r2.logits) and not torch.equal(r1.logits, r3.logits)
    l1.eval()
    assert torch.allclose(l1(x, return_routing=True)[1].logits, l1.router.logits(x))


def test_load_balancing_loss_is_one_when_balanced_and_n_when_collapsed():
    N = 4
    probs = torch.full((8, N), 1 / N)
    idx = torch.arange(8).remainder(N)[:, None]
    from moe_theory.layers import Routing
    balanced = Routing(idx, torch.ones(8, 1), probs.log(), probs, torch.bincount(idx[:, 0]).float())
    assert torch.isclose(load_balancing_loss(balanced), torch.tensor(1.0))
    onehot = torch.zeros(8, N)
    onehot[:, 0] = 1
    collapsed = Routing(torch.zeros(8, 1, dtype=torch.long), torch.ones(8, 1), onehot, onehot,
                        torch.tensor([8.0, 0, 0, 0]))
    assert torch.isclose(load_balancing_loss(collapsed), torch.tensor(float(N)))
    with pytest.raises(TypeError, match="routing must be a Routing"):
        load_balancing_loss(probs)


def test_moe_rejects_bad_arguments_with_named_messages():
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= n_experts \(= 4\), got k=5"):
        MoE(3, 4, 4, 5, device="cpu")
    with pytest.raises(ValueError, match="d_hidden must be >= 1, got d_hidden=0"):
        MoE(3, 0, 4, 1, device="cpu")
    with pytest.raises(TypeError, match="n_experts must be an integer"):
        MoE(3, 4, 4.0, 1, device="cpu")
    with pytest.raises(ValueError, match="router must be one of"):
        MoE(3, 4, 4, 1, router="hash", device="cpu")
    with pytest.raises(ValueError, match="activation must be one of"):
        MoE(3, 4, 4, 1, activation="swish", device="cpu")
    with pytest.raises(TypeError, match="dtype must be a floating torch.dtype"):
        MoE(3, 4, 4, 1, device="cpu", dtype=torch.int64)
    layer = MoE(3, 4, 4, 2, device="cpu")
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 3\), got shape \(5, 2\)"):
        layer(torch.randn(5, 2))
    with pytest.raises(ValueError, match="x must contain only finite values"):
        layer(torch.tensor([[0.0, float("nan"), 1.0]]))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        layer([[0.0, 1.0, 2.0]])
    with pytest.raises(TypeError, match="return_routing must be a bool"):
        layer(torch.randn(2, 3), return_routing=1)


def test_topk_route_and_routers_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= logits.shape\[-1\] \(= 3\), got k=4"):
        topk_route(torch.zeros(3), 4)
    with pytest.raises(ValueError, match="logits must contain only finite values"):
        topk_route(torch.tensor([0.0, float("nan")]), 1)
    with pytest.raises(ValueError, match="weighting must be one of"):
        TopKRouter(3, 4, 2, weighting="sigmoid")
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None"):
        NoisyTopKRouter(3, 4, 2, generator=1)
    with pytest.raises(ValueError, match="n_experts must be >= 1"):
        SoftmaxRouter(3, 0)


def test_moe_is_deterministic_for_a_fixed_seed():
    a, b = _layer(4, 2, seed=11), _layer(4, 2, seed=11)
    x = torch.randn(7, 5, dtype=torch.float64)
    assert torch.equal(a(x), b(x))
    assert "n_experts=4, k=2" in repr(a)


# ---------------------------------------------------------------- fast dispatch paths

from moe_theory._dispatch import _padding_levels  # noqa: E402
from moe_theory._kernels import _grouped_mm_supported, fast_topk_indices  # noqa: E402
from moe_theory.layers import Routing  # noqa: E402

_STRATEGIES = ("auto", "sorted", "padded", "dense")


def _grads(layer, y, x=None):
    """Gradients of a fixed, non-symmetric scalar of ``y`` w.r.t. every parameter and ``x`` (zeros if unused)."""
    params = list(layer.parameters()) + ([x] if x is not None else [])
    weights = torch.linspace(-1.0, 2.0, y.numel(), dtype=y.dtype).view_as(y)
    grads = torch.autograd.grad((y * weights).sum(), params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def _assert_fast_equals_reference(layer, x, atol=1e-6):
    x = x.detach().requires_grad_()
    y, r = layer(x, return_routing=True)
    g = _grads(layer, y, x)
    y_ref, r_ref = layer.forward_reference(x, return_routing=True)
    g_ref = _grads(layer, y_ref, x)
    assert torch.allclose(y, y_ref, atol=atol, rtol=0), (layer.last_dispatch, (y - y_ref).abs().max())
    names = [name for name, _ in layer.named_parameters()] + ["x"]
    for name, a, b in zip(names, g, g_ref):
        assert torch.allclose(a, b, atol=atol, rtol=0), (name, (a - b).abs().max())
    assert torch.equal(r.indices, r_ref.indices) and torch.equal(r.load, r_ref.load)
    assert (r.kept is None) == (r_ref.kept is None)
    if r.kept is not None:
        assert torch.equal(r.kept, r_ref.kept)
    return r


@pytest.mark.parametrize("expert", ["mlp", "swiglu"])
@pytest.mark.parametrize("dispatch", _STRATEGIES)
def test_fast_paths_equal_reference_for_every_k_with_gradients_float64(expert, dispatch):
    N = 6
    x = torch.randn(3, 13, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(N))
    for k in range(1, N + 1):
        layer = _layer(N, k, D=5, H=7, O=3, seed=k, expert=expert, dispatch=dispatch)
        _assert_fast_equals_reference(layer, x)


@given(N=st.integers(1, 9), data=st.data(), T=st.integers(1, 40), seed=st.integers(0, 10_000),
       expert=st.sampled_from(["mlp", "swiglu"]), dispatch=st.sampled_from(_STRATEGIES),
       router=st.sampled_from(["topk", "softmax", "noisy_topk"]),
       weighting=st.sampled_from(["renormalized", "softmax"]),
       capacity_factor=st.sampled_from([None, 0.3, 1.0, 1.7]))
def test_prop_fast_path_equals_reference_all_routers_kinds_capacities(N, data, T, seed, expert, dispatch, router,
                                                                      weighting, capacity_factor):
    k = data.draw(st.integers(1, N))
    layer = _layer(N, k, D=4, H=6, O=2, seed=seed, expert=expert, dispatch=dispatch, router=router,
                   weighting=weighting, capacity_factor=capacity_factor)
    layer.eval()  # the noisy router draws noise in training mode: compare noise-free routing
    x = torch.randn(T, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    _assert_fast_equals_reference(layer, x)


def test_noisy_router_in_training_gives_equal_paths_for_equal_noise():
    def make():
        torch.manual_seed(0)
        layer = MoE(4, 6, 5, 2, router="noisy_topk", generator=torch.Generator().manual_seed(3),
                    dispatch="padded", device="cpu", dtype=torch.float64)
        with torch.no_grad():
            layer.router.noise_weight.fill_(0.5)
        return layer
    x = torch.randn(40, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a, b = make(), make()
    assert torch.allclose(a(x), b.forward_reference(x), atol=1e-10)


def test_padded_path_with_several_levels_equals_reference():
    # Skewed routing (a large gate bias on expert 0, a medium one on expert 1): the padded path
    # splits ranks into levels, gathering the weights of the heavily loaded experts.
    layer = _layer(12, 2, D=6, H=5, O=4, seed=4, dispatch="padded")
    with torch.no_grad():
        layer.router.bias.copy_(torch.linspace(3.0, 0.0, 12))
    x = torch.randn(400, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    r = _assert_fast_equals_reference(layer, x)
    levels = _padding_levels(r.load.long().tolist(), 800)
    assert len(levels) > 2, levels


@pytest.mark.parametrize("capacity_factor", [None, 0.7])
@pytest.mark.parametrize("layout", ["blocks", "levels"])
def test_padded_swiglu_blocks_and_levels_layouts_equal_reference(monkeypatch, layout, capacity_factor):
    # Small SwiGLU experts go through expert-sorted blocks of _BLOCK_ROWS rows (a custom autograd
    # function), wide ones through the levels; force each layout, with skewed loads spanning
    # several blocks per expert, with and without dropping.
    import moe_theory._dispatch as dispatch
    monkeypatch.setattr(dispatch, "_BLOCK_ROWS", 8)
    if layout == "levels":
        monkeypatch.setattr(dispatch, "_BLOCK_MAX_EXPERT_MACS", 0)
    calls = []
    original = dispatch._BlockSwiGLU.apply
    monkeypatch.setattr(dispatch._BlockSwiGLU, "apply", lambda *a: calls.append(1) or original(*a))
    for k in (1, 2, 3):
        layer = _layer(7, k, D=6, H=5, O=4, seed=k, expert="swiglu", dispatch="padded",
                       capacity_factor=capacity_factor)
        with torch.no_grad():
            layer.router.bias.copy_(torch.linspace(2.0, 0.0, 7))
        x = torch.randn(2, 60, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
        r = _assert_fast_equals_reference(layer, x)
        assert int(r.load.max()) > 8  # several blocks for the busiest expert
    assert bool(calls) == (layout == "blocks")


def test_padding_levels_cover_the_largest_load_and_never_cost_more_than_one_level():
    for loads in ([5, 5, 5, 5], [0, 0, 9], [100, 3, 3, 3, 3, 3, 3, 3], [7], [0, 0]):
        t = _padding_levels(loads, sum(loads))
        assert t[0] == 0 and t[-1] == max(max(loads), 1) and all(a < b for a, b in zip(t, t[1:]))
        rows = sum((hi - lo) * (len(loads) if i == 0 else sum(l > lo for l in loads))
                   for i, (lo, hi) in enumerate(zip(t[:-1], t[1:])))
        assert rows <= len(loads) * max(max(loads), 1)


def _reference_dropping(indices, n_experts, capacity):
    """Independent pure-Python statement of the capacity rule: slot by slot, tokens in order."""
    T, k = indices.shape
    served = [0] * n_experts
    kept = [[False] * k for _ in range(T)]
    for s in range(k):
        for t in range(T):
            e = int(indices[t, s])
            if served[e] < capacity:
                served[e] += 1
                kept[t][s] = True
    return torch.tensor(kept), torch.tensor(served)


@pytest.mark.parametrize("dispatch", ["auto", "sorted", "padded", "dense", "loop"])
@pytest.mark.parametrize("expert", ["mlp", "swiglu"])
def test_capacity_dropping_equals_reference_implementation_of_dropping(dispatch, expert):
    N, k, T = 5, 2, 60
    layer = _layer(N, k, D=4, H=6, O=3, seed=7, expert=expert, dispatch=dispatch, capacity_factor=0.8)
    with torch.no_grad():
        layer.router.bias.copy_(torch.tensor([2.0, 1.0, 0.0, 0.0, -1.0], dtype=torch.float64))
    x = torch.randn(T, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    y, r = layer(x, return_routing=True)
    C = layer.capacity(T)
    assert C == math.ceil(0.8 * T * k / N)
    kept, served = _reference_dropping(r.indices, N, C)
    assert torch.equal(r.kept, kept) and torch.equal(r.load.long(), served)
    assert (~kept).any() and int(r.load.max()) <= C
    # Output: the kept slots' weighted expert outputs; a dropped slot contributes zero.
    manual = torch.zeros(T, 3, dtype=torch.float64)
    for t in range(T):
        for s in range(k):
            if kept[t, s]:
                manual[t] += r.weights[t, s] * layer.expert(int(r.indices[t, s]), x[t:t + 1])[0]
    assert torch.allclose(y, manual, atol=1e-10)
    if dispatch != "loop":
        _assert_fast_equals_reference(layer, x)


def test_large_capacity_drops_nothing_and_equals_no_capacity():
    x = torch.randn(50, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = _layer(4, 2, seed=1, capacity_factor=10.0)
    b = _layer(4, 2, seed=1)
    ya, ra = a(x, return_routing=True)
    assert ra.kept.all() and torch.allclose(ya, b(x), atol=1e-12)


def test_swiglu_expert_is_w2_of_silu_w1x_times_w3x():
    layer = _layer(3, 2, D=4, H=5, O=2, seed=2, expert="swiglu")
    assert layer.b1 is None if hasattr(layer, "b1") else True
    assert dict(layer.named_parameters()).keys() >= {"experts.w13", "experts.w2"}
    x = torch.randn(7, 4, dtype=torch.float64)
    W1, W3, W2 = layer.w13[1, :5], layer.w13[1, 5:], layer.w2[1]
    manual = (torch.nn.functional.silu(x @ W1.T) * (x @ W3.T)) @ W2.T
    assert torch.allclose(layer.expert(1, x), manual, atol=1e-12)


def test_auto_dispatch_rule_by_size():
    tiny = MoE(2, 8, 4, 1, device="cpu")
    tiny(torch.randn(100, 2))
    assert tiny.last_dispatch == "dense"
    all_active = MoE(8, 8, 4, 4, device="cpu")
    all_active(torch.randn(3000, 8))
    assert all_active.last_dispatch == "dense"
    small = MoE(16, 32, 64, 2, expert="swiglu", device="cpu", dtype=torch.float64)
    small(torch.randn(512, 16, dtype=torch.float64))
    assert small.last_dispatch == "padded"  # float64: grouped_mm cannot run
    wide = MoE(128, 128, 8, 2, expert="swiglu", device="cpu")
    wide(torch.randn(512, 128))
    assert wide.last_dispatch == ("sorted" if _grouped_mm_supported(wide.w2, (wide.w13,), (128, 256)) else "padded")


def test_grouped_mm_sorted_path_float32_close_to_reference(monkeypatch):
    calls = []
    if hasattr(torch.nn.functional, "grouped_mm"):  # count the grouped_mm kernel's calls
        original = torch.nn.functional.grouped_mm
        monkeypatch.setattr(torch.nn.functional, "grouped_mm", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    for expert in ("mlp", "swiglu"):
        torch.manual_seed(0)
        layer = MoE(16, 32, 8, 2, expert=expert, dispatch="sorted", capacity_factor=1.0, device="cpu")
        x = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
        _assert_fast_equals_reference(layer, x, atol=1e-4)
        supported = _grouped_mm_supported(x, (layer.experts.first, layer.w2), (16, 32 * layer.experts.gates, 32, 16))
        assert bool(calls) == supported  # float32, 16-byte widths: the grouped_mm kernel really ran
        calls.clear()


def test_fast_path_is_bitwise_deterministic_on_cpu():
    for dispatch in ("sorted", "padded", "dense"):
        for expert in ("mlp", "swiglu"):
            runs = []
            for _ in range(2):
                layer = _layer(8, 2, D=8, H=8, O=8, seed=3, dispatch=dispatch, expert=expert)
                x = torch.randn(200, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
                y = layer(x)
                runs.append((y, _grads(layer, y)))
            assert torch.equal(runs[0][0], runs[1][0])
            assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_empty_batch_gives_empty_output():
    for dispatch in _STRATEGIES:
        layer = _layer(4, 2, dispatch=dispatch, capacity_factor=1.0)
        y, r = layer(torch.zeros(0, 5, dtype=torch.float64), return_routing=True)
        assert y.shape == (0, 5) and int(r.load.sum()) == 0


def test_routing_probs_are_lazy_softmax_of_logits():
    layer = _layer(4, 2, seed=0)
    _, r = layer(torch.randn(6, 5, dtype=torch.float64), return_routing=True)
    assert r._probs is None
    assert torch.allclose(r.probs, torch.softmax(r.logits, -1)) and r._probs is not None
    assert "Routing(T=6, k=2" in repr(r)
    r2 = Routing(r.indices, r.weights, r.logits, None, r.load)
    assert torch.allclose(load_balancing_loss(r2), load_balancing_loss(r))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])  # NumPy, NumPy, torch rounds
def test_topk_route_fast_paths_equal_stable_sort_with_ties_and_minus_inf(dtype):
    gen = torch.Generator().manual_seed(0)
    for N in (3, 8, 17):
        for k in range(1, N + 1):
            ties = torch.randint(-2, 3, (50, N), generator=gen).float()
            # rows with many -inf logits: masking picks with -inf is ambiguous there
            minus_inf = torch.where(torch.rand(50, N, generator=gen) < 0.7, -math.inf, ties)
            windows = torch.randn(N + 8, generator=gen).as_strided((9, N), (1, 1))  # overlapping rows
            for g in (torch.randn(50, N, generator=gen), ties, minus_inf, torch.full((4, N), -math.inf), windows,
                      torch.randn(N, 40, generator=gen).t()):  # and a transposed (strided) g
                g = g.to(dtype)
                ref = torch.sort(g, dim=-1, descending=True, stable=True)
                if bool(torch.isfinite(g).all()):  # the public function accepts finite logits only
                    idx, val = topk_route(g, k)
                    assert torch.equal(val, ref[0][:, :k]) and torch.equal(idx, ref[1][:, :k])
                # the routers' fast rule, also where a router's logits overflowed to -inf
                before = g.clone()
                idx = fast_topk_indices(g, k)
                bits = before.contiguous().view(torch.uint8)
                assert torch.equal(g.contiguous().view(torch.uint8), bits)  # g unchanged, bit for bit
                assert torch.equal(idx, ref[1][:, :k])
                assert all(len(set(row)) == k for row in idx.tolist())  # k distinct experts per token


def test_moe_rejects_bad_new_arguments_with_named_messages():
    with pytest.raises(ValueError, match="dispatch must be one of .*'sorted'.*got dispatch='fast'"):
        MoE(3, 4, 4, 1, dispatch="fast", device="cpu")
    with pytest.raises(ValueError, match=r"expert must be one of \('mlp', 'swiglu'\), got expert='glu'"):
        MoE(3, 4, 4, 1, expert="glu", device="cpu")
    with pytest.raises(ValueError, match="capacity_factor must be > 0.0, got capacity_factor=0.0"):
        MoE(3, 4, 4, 1, capacity_factor=0.0, device="cpu")
    with pytest.raises(TypeError, match="capacity_factor must be a real number"):
        MoE(3, 4, 4, 1, capacity_factor="1", device="cpu")
    with pytest.raises(ValueError, match="capacity_factor must be finite"):
        MoE(3, 4, 4, 1, capacity_factor=float("inf"), device="cpu")
    layer = MoE(3, 4, 4, 2, device="cpu")
    with pytest.raises(ValueError, match="x must contain only finite values"):
        layer(torch.tensor([[0.0, float("inf"), 1.0]]))
    with pytest.raises(ValueError, match="x must contain only finite values"):
        layer.forward_reference(torch.tensor([[3e38, 3e38, float("nan")]]))
    with pytest.raises(TypeError, match="return_routing must be a bool"):
        layer.forward_reference(torch.randn(2, 3), return_routing="yes")


@pytest.mark.parametrize("capacity", [None, 3])
def test_plan_and_block_layout_are_the_same_integers_in_numpy_and_torch_and_place_every_assignment(capacity):
    # On CPU the dispatch bookkeeping runs in NumPy, elsewhere in torch: both must agree exactly,
    # and the block layout must put every kept assignment in a row of its own expert's block.
    from moe_theory._dispatch import _block_layout, _Plan
    gen = torch.Generator().manual_seed(0)
    q = 8
    for T, N, k in ((1, 1, 1), (37, 5, 2), (200, 64, 3), (90, 3, 3)):
        indices = torch.stack([torch.randperm(N, generator=gen)[:k] for _ in range(T)])
        a = _Plan(indices, N, capacity, backend="numpy")
        b = _Plan(indices, N, capacity, backend="torch")
        for name in ("e_q", "order", "e_sorted", "rank", "counts", "token_sorted", "keep_sorted", "kept"):
            va, vb = getattr(a, name), getattr(b, name)
            assert (va is None and vb is None) or torch.equal(va, vb), name
        la, lb = _block_layout(a, q), _block_layout(b, q)
        assert la.keys() == lb.keys() and all(torch.equal(la[n], lb[n]) for n in la)
        S = T * k
        e = indices.t().reshape(-1)  # expert of assignment s T + t
        kept = torch.ones(S, dtype=torch.bool) if a.kept is None else a.kept.t().reshape(-1)
        rows = la["pos"][kept]
        assert torch.equal(la["row_q"][rows], torch.arange(S)[kept])  # the row holds its assignment
        assert torch.equal(la["bexp"][rows // q], e[kept])  # ... inside a block of its expert
        assert int(kept.sum()) == int(a.counts.sum()) and rows.unique().numel() == rows.numel()
        if capacity is not None:
            assert int(a.counts.max()) <= capacity
            dropped = la["pos"][~kept]
            assert bool((la["row_q"][dropped] == S).all())  # dropped slots point at a padding row
        assert torch.equal(la["src"], la["row_q"] % T)


@pytest.mark.parametrize("dispatch", ["sorted", "padded"])
@pytest.mark.parametrize("expert", ["mlp", "swiglu"])
def test_fast_paths_with_torch_bookkeeping_equal_reference(monkeypatch, dispatch, expert):
    # Off the CPU the bookkeeping runs in torch: force that backend here, so the code a GPU runs
    # is checked end to end on CPU too (blocks for small SwiGLU, levels, ragged groups).
    import moe_theory._dispatch as dispatch_module
    original = dispatch_module._ops
    monkeypatch.setattr(dispatch_module, "_ops", lambda device, backend=None: original(device, backend or "torch"))
    for k, capacity_factor in ((1, None), (2, 0.8), (3, None)):
        layer = _layer(7, k, D=6, H=5, O=4, seed=k, expert=expert, dispatch=dispatch,
                       capacity_factor=capacity_factor)
        x = torch.randn(50, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
        _assert_fast_equals_reference(layer, x)


@pytest.mark.parametrize("router", ["topk", "softmax", "noisy_topk"])
def test_bias_free_gate_has_no_bias_parameter_and_routes_by_w_x(router):
    layer = _layer(5, 2, D=4, H=3, seed=0, router=router, router_bias=False, expert="swiglu")
    assert layer.router.bias is None and "bias=False" in repr(layer)
    x = torch.randn(30, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    layer.eval()  # no noise: the logits are exactly W x
    _, r = layer(x, return_routing=True)
    assert torch.equal(r.logits, x @ layer.router.weight.T)
    _assert_fast_equals_reference(layer, x)
    with pytest.raises(TypeError, match="router_bias must be a bool"):
        MoE(3, 4, 4, 1, router_bias=1, device="cpu")


def test_routing_weights_are_lazy_by_the_weighting_rule_and_need_a_rule():
    g = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    idx = topk_route(g, 2)[0]
    load = torch.bincount(idx.reshape(-1), minlength=5).double()
    r = Routing(idx, None, g, None, load, weighting="renormalized")
    assert torch.allclose(r.weights, torch.softmax(g.gather(1, idx), -1), atol=1e-15)
    r = Routing(idx, None, g, None, load, weighting="softmax")
    assert torch.allclose(r.weights, torch.softmax(g, -1).gather(1, idx), atol=1e-15)
    with pytest.raises(ValueError, match="weighting must be one of .* when weights is None, got None"):
        Routing(idx, None, g, None, load)


@pytest.mark.parametrize("capacity_factor", [None, 0.8])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_block_kernel_with_losses_on_the_router_equals_reference(k, capacity_factor):
    # The block kernel does the gate's backward itself (sparsely when only y is in the loss);
    # a loss on the routing too (load balancing on the logits, a term on the weights) must give
    # the reference gradients for every parameter and for x.
    layer = _layer(7, k, D=6, H=5, O=4, seed=k, expert="swiglu", dispatch="padded", capacity_factor=capacity_factor)
    x = torch.randn(80, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
    grads = []
    for forward in (layer.forward, layer.forward_reference):
        xx = x.clone().requires_grad_()
        y, r = forward(xx, return_routing=True)
        for loss in (y.square().sum(), y.square().sum() + load_balancing_loss(r) + 0.3 * (r.weights ** 2).sum(),
                     load_balancing_loss(r)):
            grads.append(torch.autograd.grad(loss, [xx, *layer.parameters()], retain_graph=True, allow_unused=True))
        assert r.logits.requires_grad
        if forward == layer.forward:  # the logits come out of the block kernel, which did the gate
            assert "BlockSwiGLU" in type(r.logits.grad_fn).__name__, r.logits.grad_fn
    assert layer.last_dispatch == "loop"
    for fast, ref in zip(grads[:3], grads[3:]):
        for a, b in zip(fast, ref):
            a = torch.zeros_like(b) if a is None else a
            b = torch.zeros_like(a) if b is None else b
            assert torch.allclose(a, b, atol=1e-8, rtol=0), (a - b).abs().max()


def test_import_moe_theory_loads_neither_matplotlib_nor_the_dispatch_machinery():
    # matplotlib is imported by the plot helpers that need it; the fast paths on the first forward
    import subprocess
    import sys
    code = ("import sys, moe_theory, moe_theory.tropical, moe_theory.primer, moe_theory.performance; "
            "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith('matplotlib')}), "
            "'moe_theory._dispatch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "False"], out


def test_routing_is_immutable_and_replace_gives_a_changed_copy():
    layer = _layer(4, 2, seed=0)
    _, r = layer(torch.randn(6, 5, dtype=torch.float64), return_routing=True)
    with pytest.raises(AttributeError, match="Routing is immutable"):
        r.kept = None
    kept = torch.zeros_like(r.indices, dtype=torch.bool)
    dropped = r.replace(kept=kept, load=torch.zeros(4, dtype=torch.float64))
    assert dropped.kept is kept and r.kept is None and dropped.indices is r.indices
    assert dropped.combine_matrix().abs().sum() == 0 and r.combine_matrix().abs().sum() > 0
    shifted = r.replace(logits=r.logits + 3.0)  # new logits: weights recomputed (same, by shift invariance)
    assert shifted._weights is None and torch.allclose(shifted.weights, r.weights, atol=1e-12)


@pytest.mark.parametrize("expert", ["mlp", "swiglu"])
def test_experts_are_modules_and_the_layer_aliases_their_parameters_read_only(expert):
    from moe_theory.experts import MLPExperts, SwiGLUExperts
    layer = _layer(3, 2, D=4, H=5, O=2, seed=1, expert=expert)
    assert isinstance(layer.experts, MLPExperts if expert == "mlp" else SwiGLUExperts)
    assert layer.w2 is layer.experts.w2 and layer.experts.first.shape == (3, layer.experts.gates * 5, 4)
    assert "n_experts=3, d_model=4, d_hidden=5, d_out=2" in repr(layer.experts)
    x = torch.randn(7, 4, dtype=torch.float64)
    assert torch.equal(layer.expert(2, x), layer.experts(2, x))
    with pytest.raises(AttributeError):  # read-only: the parameter lives in layer.experts
        layer.w2 = torch.zeros(3, 2, 5)
    with pytest.raises(KeyError, match="attribute 'w2' already exists"):
        layer.w2 = torch.nn.Parameter(torch.zeros(3, 2, 5))
    torch.manual_seed(5)
    layer.reset_parameters()
    bound = 1 / math.sqrt(4)
    assert 0 < float(layer.experts.first.detach().abs().max()) <= bound


def test_expert_modules_reject_bad_arguments_with_named_messages():
    from moe_theory.experts import MLPExperts, SwiGLUExperts
    with pytest.raises(ValueError, match="n_experts must be >= 1, got n_experts=0"):
        MLPExperts(0, 3, 4, 3)
    with pytest.raises(ValueError, match="activation must be one of"):
        MLPExperts(2, 3, 4, 3, activation="swish")
    with pytest.raises(TypeError, match="d_hidden must be an integer"):
        SwiGLUExperts(2, 3, 4.5, 3)


def test_moe_device_none_follows_torch_and_a_named_device_is_checked():
    layer = MoE(3, 4, 2, 1)  # device=None: torch's default device, the CPU here
    assert layer.w2.device == torch.empty(0).device and layer.router.weight.device == layer.w2.device
    with pytest.raises(ValueError, match="device must name a torch device"):
        MoE(3, 4, 2, 1, device="gpu0")
