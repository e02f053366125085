"""A small, seeded training loop for MoE and dense regressors (used across chapters)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ._validation import check_positive_int, check_positive_real, check_real, check_seed, check_tensor
from .layers import MoE, load_balancing_loss
from .population import PopulationResult, fit_population  # many seeds at once, same numbers

__all__ = ["TrainResult", "fit_regressor", "mse", "PopulationResult", "fit_population"]


@dataclass
class TrainResult:
    """Loss history and wall time of :func:`fit_regressor` (``snapshots``: optional extras)."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    snapshots: dict = field(default_factory=dict)


def mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error of ``model`` on ``(x, y)`` without gradients."""
    with torch.no_grad():
        return float(torch.mean((model(x) - y) ** 2))


def fit_regressor(model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None, *,
                  steps: int = 1000, lr: float = 1e-2,
                  batch_size: int | None = None, aux_weight: float = 0.0, seed: int = 0,
                  lr_decay: bool = True, clip: float | None = 1.0,
                  callback: Callable[[int, nn.Module], None] | None = None,
                  sampler: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]] | None = None,
                  lr_min_ratio: float = 0.05) -> TrainResult:
    """Train ``model`` to regress ``y`` on ``x`` with Adam and squared loss.

    Parameters
    ----------
    model : nn.Module
        Any module mapping ``(T, D) -> (T, O)``; if it is a :class:`~moe_theory.layers.MoE`,
        ``aux_weight > 0`` adds the Switch load-balancing loss.
    x, y : torch.Tensor, shapes (T, D) and (T, O)
        The training set (omit both when ``sampler`` is given).
    steps : int
        Optimiser steps.
    lr : float
        Adam learning rate (cosine-decayed to ``lr_min_ratio * lr`` when ``lr_decay``).
    batch_size : int, optional
        Minibatch size (full batch by default); batches are drawn with a generator seeded by ``seed``.
    aux_weight : float
        Weight of the load-balancing loss.
    seed : int
        Seed of the minibatch sampler.
    clip : float, optional
        Gradient-norm clipping threshold.
    callback : callable, optional
        Called as ``callback(step, model)`` before the first step (``step = 0``) and after
        every step (``step = 1..steps``), e.g. to record snapshots.
    sampler : callable, optional
        ``sampler(generator) -> (xb, yb)`` draws a *fresh* minibatch at every step (online
        training, e.g. new points of a manifold each step), using the seeded CPU generator;
        replaces ``x, y`` and ``batch_size``.
    lr_min_ratio : float
        Final learning rate of the cosine schedule, as a fraction of ``lr`` (default 5%).

    Returns
    -------
    TrainResult
    """
    if sampler is None:
        if x is None or y is None:
            raise ValueError("fit_regressor needs either x and y or a sampler, got neither")
        x = check_tensor("x", x, ndim=2)
        y = check_tensor("y", y, ndim=2)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must have the same number of rows, got {x.shape[0]} and {y.shape[0]}")
    elif not callable(sampler):
        raise TypeError(f"sampler must be callable or None, got {type(sampler).__name__}")
    elif x is not None or y is not None:
        raise ValueError("pass either x and y or a sampler, not both")
    lr_min_ratio = check_real("lr_min_ratio", lr_min_ratio, minimum=0.0, maximum=1.0)
    steps = check_positive_int("steps", steps)
    lr = check_positive_real("lr", lr)
    aux_weight = check_real("aux_weight", aux_weight, minimum=0.0)
    seed = check_seed("seed", seed)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr_min_ratio * lr) if lr_decay else None
    result = TrainResult()
    start = time.perf_counter()
    T = x.shape[0] if sampler is None else 0
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    if callback is not None:
        callback(0, model)
    for step in range(1, steps + 1):
        if sampler is not None:
            xb, yb = sampler(gen)
        elif batch_size is None or batch_size >= T:
            xb, yb = x, y
        else:
            idx = torch.randint(0, T, (batch_size,), generator=gen).to(x.device)
            xb, yb = x[idx], y[idx]
        opt.zero_grad(set_to_none=True)
        if isinstance(model, MoE) and aux_weight > 0:
            pred, routing = model(xb, return_routing=True)
            loss = torch.mean((pred - yb) ** 2)
            total = loss + aux_weight * load_balancing_loss(routing)
        else:
            loss = torch.mean((model(xb) - yb) ** 2)
            total = loss
        total.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if sched is not None:
            sched.step()
        result.losses.append(float(loss.detach()))
        if callback is not None:
            callback(step, model)
    result.seconds = time.perf_counter() - start
    return result
