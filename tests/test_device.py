"""Device selection and seeding."""

import numpy as np
import pytest
import torch

from moe_theory import best_device, resolve_device, seed_everything, torch_generator
from moe_theory.device import ENV_DEVICE


def test_best_device_honours_environment_override(monkeypatch):
    monkeypatch.setenv(ENV_DEVICE, "cpu")
    assert best_device() == torch.device("cpu")
    monkeypatch.setenv(ENV_DEVICE, "not-a-device")
    with pytest.raises(ValueError, match="MOE_THEORY_DEVICE must name a torch device"):
        best_device()


def test_best_device_without_override_is_an_available_device(monkeypatch):
    monkeypatch.delenv(ENV_DEVICE, raising=False)
    dev = best_device()
    expected = "cuda" if torch.cuda.is_available() else dev.type
    assert dev.type == expected
    torch.zeros(1, device=dev)  # usable


def test_resolve_device_accepts_strings_devices_and_none(monkeypatch):
    monkeypatch.setenv(ENV_DEVICE, "cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(TypeError, match="device must be a str, torch.device or None, got int"):
        resolve_device(3)
    with pytest.raises(ValueError, match="device must name a torch device"):
        resolve_device("gpu-please")


def test_seed_everything_makes_global_generators_repeat():
    seed_everything(7)
    a = (np.random.rand(), torch.rand(1).item())
    seed_everything(7)
    b = (np.random.rand(), torch.rand(1).item())
    assert a == b
    with pytest.raises(ValueError, match="seed must be >= 0"):
        seed_everything(-3)


def test_torch_generator_same_seed_same_numbers():
    x = torch.rand(4, generator=torch_generator(3))
    y = torch.rand(4, generator=torch_generator(3))
    assert torch.equal(x, y)
    with pytest.raises(TypeError, match="seed must be an integer"):
        torch_generator(1.5)
