"""Shared test configuration: CPU only, deterministic, small hypothesis budgets."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

os.environ.setdefault("MOE_THEORY_DEVICE", "cpu")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

settings.register_profile("moe", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("moe")


@pytest.fixture
def gen():
    """A seeded CPU torch generator."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def one_thread():
    """Run a test on one torch thread (restored afterwards): tiny tensors and models are faster
    without thread barriers, and do not fight other jobs on a small shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
