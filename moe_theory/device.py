"""Where computations run, and how they are seeded.

This is the only module of :mod:`moe_theory` that asks about CUDA or MPS. Every other
function takes ``device``/``dtype`` arguments and passes them on.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from ._validation import check_seed

__all__ = ["best_device", "resolve_device", "seed_everything", "torch_generator", "ENV_DEVICE"]

#: Environment variable that overrides :func:`best_device` (e.g. ``MOE_THEORY_DEVICE=cpu``).
ENV_DEVICE = "MOE_THEORY_DEVICE"


def best_device() -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU.

    The environment variable ``MOE_THEORY_DEVICE`` overrides the choice (any string
    :class:`torch.device` accepts, e.g. ``"cpu"`` or ``"cuda:1"``).

    Returns
    -------
    torch.device

    Examples
    --------
    >>> import os; os.environ["MOE_THEORY_DEVICE"] = "cpu"
    >>> best_device()
    device(type='cpu')
    >>> del os.environ["MOE_THEORY_DEVICE"]
    """
    override = os.environ.get(ENV_DEVICE, "").strip()
    if override:
        try:
            return torch.device(override)
        except RuntimeError as exc:
            raise ValueError(f"{ENV_DEVICE} must name a torch device such as 'cpu' or 'cuda', "
                             f"got {override!r}") from exc
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> :func:`best_device`; a string or device -> :class:`torch.device`."""
    if device is None:
        return best_device()
    if isinstance(device, torch.device):
        return device
    if isinstance(device, str):
        try:
            return torch.device(device)
        except RuntimeError as exc:
            raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda', got {device!r}") from exc
    raise TypeError(f"device must be a str, torch.device or None, got {type(device).__name__}")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, NumPy's and PyTorch's global generators; return a CPU generator.

    Library functions never read global random state (they take ``seed``/``generator``);
    this helper is for notebooks and scripts that also call third-party code.

    Parameters
    ----------
    seed : int
        Non-negative seed.

    Returns
    -------
    torch.Generator
        A CPU generator seeded with ``seed``.
    """
    seed = check_seed("seed", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch_generator(seed)


def torch_generator(seed: int, device: str | torch.device | None = "cpu") -> torch.Generator:
    """A :class:`torch.Generator` seeded with ``seed`` (CPU by default, for reproducibility)."""
    seed = check_seed("seed", seed)
    g = torch.Generator(device=resolve_device(device))
    g.manual_seed(seed)
    return g
