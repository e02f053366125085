"""Routers and the MoE layer: the vectorised path equals the reference loop, routing rules hold."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from moe_theory import MoE, NoisyTopKRouter, SoftmaxRouter, TopKRouter, load_balancing_loss, topk_route


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
    pi = router._route_logits(g).weights
    assert torch.allclose(pi, router._route_logits(g + c).weights, atol=1e-12)
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
