"""The computations of the primer chapter, "A mixture of experts in one page".

A 2-D regression problem whose target is built from different pieces in different
parts of the plane, a small MoE trained on it, and the routing regions of its gate.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._validation import (check_choice, check_dtype, check_int, check_k, check_positive_int, check_real, check_seed, check_seeds,
                          check_tensor)
from .device import resolve_device
from .layers import MoE
from .training import TrainResult, fit_regressor
from .tropical_regions import active_set_ids  # re-exported: the primer's routing_grid ranks active sets

#: Weight of the Switch load-balancing loss in the primer's toy training: strong enough that
#: in most runs no expert is squeezed out of its quadrant (the primer's table of seeds).
TOY_AUX_WEIGHT = 0.1

__all__ = ["TOY_AUX_WEIGHT", "toy_target", "quadrant", "piece_agreement", "toy_dataset", "train_toy_moe",
           "train_toy_moes", "spread_gate",
           "routing_grid", "active_set_ids"]


def toy_target(x: torch.Tensor) -> torch.Tensor:
    """The primer's target ``f : [-1, 1]^2 -> R``: a different function in each quadrant.

    ``f(x) = sin(3(x_1 + x_2))`` for ``x_1 > 0, x_2 > 0``; ``x_1^2 + 0.5`` for ``x_1 <= 0 < x_2``;
    ``0.5 x_2 - 0.5`` for ``x_1 <= 0, x_2 <= 0``; ``cos(3 x_1) - 1`` for ``x_1 > 0 >= x_2``.
    It jumps across the axes, so a good fit needs a cut there. Returns shape (T, 1).
    """
    x = check_tensor("x", x, shape=(2,), ndim=2)
    x1, x2 = x[:, 0], x[:, 1]
    right = torch.where(x2 > 0, torch.sin(3 * (x1 + x2)), torch.cos(3 * x1) - 1)
    left = torch.where(x2 > 0, x1**2 + 0.5, 0.5 * x2 - 0.5)
    return torch.where(x1 > 0, right, left)[:, None]


def quadrant(x: torch.Tensor) -> torch.Tensor:
    """Index of the piece of :func:`toy_target` each point lies in (0..3, counter-clockwise from x_1, x_2 > 0)."""
    x = check_tensor("x", x, shape=(2,), ndim=2)
    up, right = x[:, 1] > 0, x[:, 0] > 0
    return torch.where(up, torch.where(right, 0, 1), torch.where(right, 3, 2))


def toy_dataset(n: int, *, seed: int, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points uniform on ``[-1, 1]^2`` and their targets, drawn with ``seed`` (on CPU, then moved)."""
    n = check_positive_int("n", n)
    seed = check_seed("seed", seed)
    dtype = check_dtype("dtype", dtype)
    gen = torch.Generator().manual_seed(seed)
    x = 2 * torch.rand(n, 2, generator=gen, dtype=dtype) - 1
    return x.to(resolve_device(device)), toy_target(x).to(resolve_device(device))


def spread_gate(model: MoE, *, seed: int, scale: float = 1.0) -> MoE:
    """Set a 2-D gate to rows spread evenly around the circle (random angle, no bias).

    Row ``i`` becomes ``w_i = scale (cos(phi + 2 pi i / N), sin(phi + 2 pi i / N))``,
    with ``phi`` uniform on ``[0, 2 pi)`` drawn from ``seed``, and ``b = 0``. Then
    ``argmax_i w_i . x`` cuts the plane into ``N`` equal cones from the origin: every
    expert starts with a region of the same size, and none is dead at step 0. (With
    PyTorch's default initialisation an expert's region can miss the data.)
    Modifies ``model`` in place and returns it.
    """
    if not isinstance(model, MoE) or model.d_model != 2:
        raise TypeError("model must be an MoE with d_model = 2")
    seed = check_seed("seed", seed)
    scale = check_real("scale", scale, minimum=0.0, allow_equal_min=False)
    gen = torch.Generator().manual_seed(seed)
    phi = 2 * math.pi * torch.rand((), generator=gen, dtype=torch.float64)
    N = model.n_experts
    angles = phi + 2 * math.pi * torch.arange(N, dtype=torch.float64) / N  # (N,)
    rows = scale * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # (N, 2)
    with torch.no_grad():
        model.router.weight.copy_(rows.to(model.router.weight))
        if model.router.bias is not None:
            model.router.bias.zero_()
    return model


def _toy_model_and_data(seed, n_experts, k, d_hidden, n_train, device, dtype):
    """The toy MoE of ``seed`` (PyTorch's initialisation from ``seed``, global RNG untouched)
    and its training set."""
    with torch.random.fork_rng(devices=[]):  # from ``seed``; global state untouched
        torch.manual_seed(seed)
        model = MoE(2, d_hidden, n_experts, k, d_out=1, weighting="softmax",
                    device=device, dtype=dtype)
    x, y = toy_dataset(n_train, seed=seed + 1, device=device, dtype=dtype)
    return model, x, y


def train_toy_moe(*, n_experts: int = 4, k: int = 1, d_hidden: int = 16,
                  steps: int = 1000, n_train: int = 1024, lr: float = 3e-2,
                  aux_weight: float = TOY_AUX_WEIGHT, seed: int = 0, device=None,
                  dtype=torch.float32, snapshot_steps=(),
                  snapshot_resolution: int = 120, gate_init: str = "spread"):
    """Train an ``N``-expert, top-``k`` MoE on :func:`toy_target`.

    The routing weights are Switch-style (``pi_i = p_i``), so that the gate is trained
    even for ``k = 1`` (renormalised weights would give it no gradient at ``k = 1``);
    the load-balancing term (weight ``aux_weight``) keeps every expert in use; and the
    gate starts from :func:`spread_gate`, so that no expert is dead at step 0.

    Parameters
    ----------
    snapshot_steps : sequence of int
        Training steps (0 = before training) at which to record :func:`routing_grid`.
    gate_init : {"spread", "default"}
        ``"spread"``: the gate starts as :func:`spread_gate` (equal cones);
        ``"default"``: PyTorch's default initialisation (may start with dead experts).

    Returns
    -------
    model : MoE
    result : TrainResult
        Loss history; ``result.snapshots`` maps step -> routing grid when requested.

    Deterministic for a fixed ``seed`` on CPU.
    """
    n_experts = check_positive_int("n_experts", n_experts)
    k = check_k(k, n_experts)
    seed = check_seed("seed", seed)
    device = resolve_device(device)
    gate_init = check_choice("gate_init", gate_init, ("spread", "default"))
    model, x, y = _toy_model_and_data(seed, n_experts, k, d_hidden, n_train,
                                      device, dtype)
    if gate_init == "spread":
        spread_gate(model, seed=seed)
    snapshot_steps = {check_int("snapshot_steps", s, minimum=0, maximum=steps)
                      for s in snapshot_steps}
    snapshots = {}

    def record(step, m):
        if step in snapshot_steps:
            snapshots[step] = routing_grid(m, resolution=snapshot_resolution)

    result = fit_regressor(model, x, y, steps=steps, lr=lr, aux_weight=aux_weight,
                           seed=seed, callback=record if snapshot_steps else None)
    result.snapshots = snapshots
    return model, result


def train_toy_moes(seeds, *, n_experts: int = 4, k: int = 1, d_hidden: int = 16,
                   steps: int = 1000, n_train: int = 1024, lr: float = 3e-2,
                   aux_weight: float = TOY_AUX_WEIGHT, device=None, dtype=torch.float32):
    """:func:`train_toy_moe` for several seeds at once, trained together as one population.

    Member ``i`` is built and trained exactly as ``train_toy_moe(seed=seeds[i], ...)`` (same
    initialisation, gate, data and Adam steps; :func:`moe_theory.population.fit_population`
    equals :func:`~moe_theory.training.fit_regressor` member by member), only faster: the
    members' small operations are batched over the population axis.

    Returns
    -------
    list of (model, TrainResult)
        One pair per seed, in the order of ``seeds``.
    """
    from .population import fit_population  # the population machinery, only when used

    seeds = check_seeds("seeds", seeds)
    n_experts = check_positive_int("n_experts", n_experts)
    k = check_k(k, n_experts)
    device = resolve_device(device)
    models, xs, ys = [], [], []
    for seed in seeds:  # each member built exactly as train_toy_moe builds it
        model, x, y = _toy_model_and_data(seed, n_experts, k, d_hidden, n_train, device, dtype)
        spread_gate(model, seed=seed)
        models.append(model)
        xs.append(x)
        ys.append(y)
    pop = fit_population(models, torch.stack(xs), torch.stack(ys), seeds=seeds, steps=steps,
                         lr=lr, aux_weight=aux_weight)  # (P, T, 2) and (P, T, 1)
    out = []
    for model, losses in zip(models, pop.losses):
        out.append((model, TrainResult(losses=list(losses), seconds=pop.seconds / len(seeds))))
    return out


def routing_grid(model: MoE, *, resolution: int = 200, box: float = 1.0):
    """Evaluate the gate of a 2-D-input MoE on a grid.

    Returns
    -------
    grid : dict
        ``extent`` (for ``imshow``), ``top1`` (ny, nx) top-1 expert, ``active`` (ny, nx)
        active-set id (see :func:`active_set_ids`), ``output`` (ny, nx) the layer's output.
    """
    if not isinstance(model, MoE) or model.d_model != 2:
        raise TypeError("model must be an MoE with d_model = 2")
    resolution = check_positive_int("resolution", resolution)
    box = check_real("box", box, minimum=0.0, allow_equal_min=False)
    p = next(model.parameters())
    u = torch.linspace(-box, box, resolution, dtype=p.dtype, device=p.device)
    X1, X2 = torch.meshgrid(u, u, indexing="xy")
    pts = torch.stack([X1.reshape(-1), X2.reshape(-1)], dim=1)  # (R*R, 2)
    with torch.no_grad():
        out, routing = model(pts, return_routing=True)
    idx = routing.indices.cpu().numpy()
    shape = (resolution, resolution)
    return {
        "extent": (-box, box, -box, box),
        "top1": idx[:, 0].reshape(shape),
        "active": active_set_ids(idx, model.n_experts).reshape(shape),
        "output": out[:, 0].cpu().numpy().reshape(shape),
        "n_sets": math.comb(model.n_experts, model.k),
        "n_experts": model.n_experts,
    }


def _piece_labels(grid: dict) -> tuple[np.ndarray, np.ndarray]:
    top1 = np.asarray(grid["top1"])
    if top1.ndim != 2:
        raise ValueError(f"grid['top1'] must be a 2-D label image, got shape {top1.shape}")
    lo, hi = grid["extent"][0], grid["extent"][1]
    u = torch.linspace(lo, hi, top1.shape[1], dtype=torch.float64)
    X1, X2 = torch.meshgrid(u, u, indexing="xy")
    piece = quadrant(torch.stack([X1.reshape(-1), X2.reshape(-1)], 1)).reshape(top1.shape).numpy()
    return top1, piece


def piece_agreement(grid: dict) -> float:
    """Agreement of the routing regions with the 4 pieces, under a one-to-one matching.

    With ``C[i, p]`` the area routed to expert ``i`` inside piece ``p`` (quadrant ``p``
    of :func:`toy_target`), the score is

        max over one-to-one matchings m of pieces to experts of sum_p C[m(p), p] / area,

    the largest fraction of the square on which "expert ``m(p)`` owns piece ``p``"
    holds, each expert owning at most one piece (Hungarian algorithm,
    :func:`scipy.optimize.linear_sum_assignment`). 1.0 means the regions are exactly the
    four pieces, up to relabelling; a router that sends everything to one expert scores
    0.25, since one expert can be matched to one piece only.

    Parameters
    ----------
    grid : dict
        A :func:`routing_grid` result: ``top1`` (ny, nx) expert labels and ``extent``.
    """
    from scipy.optimize import linear_sum_assignment

    top1, piece = _piece_labels(grid)
    n_experts = max(int(grid.get("n_experts", 0)), int(top1.max()) + 1, 1)
    C = np.zeros((n_experts, 4))  # (N, pieces): area of expert i inside piece p
    np.add.at(C, (top1.ravel(), piece.ravel()), 1.0)
    rows, cols = linear_sum_assignment(C, maximize=True)
    return float(C[rows, cols].sum() / top1.size)
