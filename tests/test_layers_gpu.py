"""The MoE layer's fast paths on CUDA equal its reference path (skipped without a GPU)."""

import pytest
import torch

from moe_theory import MoE

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("expert", ["mlp", "swiglu"])
@pytest.mark.parametrize("dispatch", ["auto", "sorted", "padded", "dense"])
@pytest.mark.parametrize("capacity_factor", [None, 0.8])
def test_gpu_fast_path_equals_reference_float64_with_gradients(expert, dispatch, capacity_factor):
    torch.manual_seed(0)
    for k in (1, 2, 4):
        layer = MoE(8, 16, 6, k, expert=expert, dispatch=dispatch, capacity_factor=capacity_factor,
                    device="cuda", dtype=torch.float64)
        x = torch.randn(257, 8, device="cuda", dtype=torch.float64)
        y, r = layer(x, return_routing=True)
        g = torch.autograd.grad(y.square().sum(), list(layer.parameters()))
        y_ref, r_ref = layer.forward_reference(x, return_routing=True)
        g_ref = torch.autograd.grad(y_ref.square().sum(), list(layer.parameters()))
        assert y.device.type == "cuda"
        assert torch.allclose(y, y_ref, atol=1e-6, rtol=0)
        assert torch.equal(r.load, r_ref.load)
        for a, b in zip(g, g_ref):
            assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_gpu_bfloat16_sorted_path_runs_close_to_reference():
    torch.manual_seed(0)
    layer = MoE(64, 128, 8, 2, expert="swiglu", dispatch="sorted", device="cuda", dtype=torch.bfloat16)
    x = torch.randn(512, 64, device="cuda", dtype=torch.bfloat16)
    y = layer(x)
    y_ref = layer.forward_reference(x)
    assert torch.allclose(y.float(), y_ref.float(), atol=5e-2, rtol=5e-2)
    y.float().square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())
