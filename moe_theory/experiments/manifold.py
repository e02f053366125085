"""Experiment I of Wang & E (2025), reproduced: a shallow MoE on a circle in R^D, many seeds.

Inputs on the unit circle embedded in ``R^D`` (first two axes, or a random isometry ``Q``), target
``f(x) = sin(5 z_1) + cos(3 z_2)`` (:func:`moe_theory.manifold.circle_target`), a 1-layer MoE
with one bias-free linear router (the paper's ``g = W_R x``) and ``N = 4`` two-layer ReLU experts
of width 10, top-1; test MSE for ``D in {16, 32, 64, 128}`` over 30 seeds per cell, next to dense
ReLU nets of equal active width (10) and of equal parameter count. Every cell's seeds are trained
together by :func:`moe_theory.population.fit_population` (the same numbers as one run at a time).

Dead hidden units of the MoE's experts are redrawn early in training (:data:`REVIVE_STEPS`), the
stall remedy chosen among those of :data:`VARIANTS`.

Run ``python -m moe_theory.experiments.manifold --jobs 2`` (full sweep in two worker processes,
writes ``results/manifold_exp1.json``, ``results/manifold_exp1.png`` and resumable records) or add
``--quick``; ``--variants`` regenerates ``results/manifold_exp1.variants.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._validation import (check_array, check_choice, check_int, check_k, check_positive_int, check_positive_real,
                           check_seed)
from ..device import resolve_device
from ..layers import MoE
from ..manifold import (check_isometry, circle_embedding, circle_grid, circle_target, count_parameters,
                        equal_parameter_width, sample_circle)
from ..population import fit_population
from ..seed_stats import best_of_r, cell_statistics
from ..training import TrainResult, fit_regressor

__all__ = ["Exp1Config", "QUICK", "RESULTS_PATH", "VARIANTS_PATH", "KINDS", "make_regressor", "init_router_from_data",
           "init_first_layer_spread", "init_experts_from_data", "transplant_axis_model", "train_circle_regressor", "evaluate_circle",
           "circle_sampler", "atlas_frames", "build_members", "run_one", "run_cell", "run_experiment", "best_of_r", "summarise",
           "load_results", "results_table", "rank_tests_table", "stall_diagnostics", "stall_table", "compare_table", "stalled_against", "restrict", "VARIANTS", "REVIVE_STEPS",
           "plot_results", "plot_atlas", "main"]

#: Where the committed full results live (resolved from this file, not from the cwd).
RESULTS_PATH = Path(__file__).resolve().parents[2] / "results" / "manifold_exp1.json"
#: The remedy and initialisation variants of the MoE cells, ``{name: sweep}`` (same format per sweep).
VARIANTS_PATH = RESULTS_PATH.with_name("manifold_exp1.variants.json")
KINDS = ("moe", "dense-active", "dense-total")
KIND_LABELS = {"moe": "1-4-MoE (width 10, top-1)", "dense-active": "dense, width 10 (equal active)",
               "dense-total": "dense, equal parameter count"}
_MODEL_NAMES = {"moe": "1-4-MoE", "dense-active": "dense-active", "dense-total": "dense-total"}
#: Spread of the first layer's pre-activations on the data under the D-independent initialisation:
#: what PyTorch's default gives a network whose input *is* the circle's plane (fan-in 2).
SPREAD = 1.0 / math.sqrt(6.0)


#: Steps after which the MoE's dead hidden units are redrawn (the stall remedy the sweep keeps).
REVIVE_STEPS = (100, 200, 400, 800, 1200)


@dataclass(frozen=True)
class Exp1Config:
    """Everything that defines a run of Experiment I (saved with the results).

    Settings the paper states: circle in R^D, the target, ``N = 4`` experts of width 10, top-1, one
    linear bias-free router, ``D`` sweep. Settings it does not state (our choices): the rest.
    ``init``: ``"torch"`` (PyTorch's ``U(+-1/sqrt(fan_in))``, whose scale on the data shrinks as
    ``1/sqrt(D)``) or ``"spread"`` (the D-independent :func:`init_first_layer_spread`);
    ``expert_init``: ``"torch"`` or ``"data"`` (:func:`init_experts_from_data`). The stall
    remedies, as in :func:`~moe_theory.population.fit_population`: ``warmup_steps`` and
    ``router_noise`` (decaying over the first third of training), off; ``revive_dead`` (steps after
    which dead units are redrawn) on, at :data:`REVIVE_STEPS`: of the remedies tried it alone
    removed most stalls (:data:`VARIANTS`).
    """

    dims: tuple = (16, 32, 64, 128)
    embeddings: tuple = ("axis", "random")
    kinds: tuple = KINDS
    seeds: tuple = tuple(range(30))
    n_experts: int = 4
    width: int = 10
    k: int = 1
    freqs: tuple = (5.0, 3.0)
    steps: int = 3000
    lr: float = 1e-2
    lr_min_ratio: float = 1e-3
    batch_size: int = 512
    aux_weight: float = 0.01
    weighting: str = "softmax"
    router_bias: bool = False
    router_init: str = "data"
    init: str = "torch"
    expert_init: str = "torch"
    restarts: int = 5
    n_test: int = 4096
    dtype: str = "float32"
    warmup_steps: int = 0
    router_noise: float = 0.0
    revive_dead: tuple = REVIVE_STEPS


#: A small configuration for the chapter and smoke tests (seconds, not minutes).
QUICK = Exp1Config(dims=(16, 128), embeddings=("random",), kinds=("moe",), seeds=(0, 1, 2, 3), steps=1500)

#: The saved variants of the MoE cells (``python -m moe_theory.experiments.manifold --variants``):
#: one change each against the default configuration, none tuned on the test set. "no remedy" is the
#: sweep without reviving dead units (PyTorch's default training, all MoE cells); the other remedies
#: replace the revival, on the random embedding at the smallest and largest ``D`` with the sweep's 30
#: seeds; the "12000 steps" pair asks whether the level is limited by training (10 seeds).
VARIANTS = {
    "no remedy": dict(revive_dead=(), embeddings=("axis", "random"), dims=(16, 32, 64, 128)),
    "kinks on data": dict(expert_init="data", revive_dead=()),
    "warm-up": dict(warmup_steps=300, revive_dead=()),
    "router noise": dict(router_noise=1.0, revive_dead=()),
    "12000 steps, no remedy": dict(steps=12000, seeds=tuple(range(10)), revive_dead=()),
    "12000 steps": dict(steps=12000, seeds=tuple(range(10))),
    # without revival: a redrawn unit gets PyTorch's 1/sqrt(D) scale, which would bring D back in
    "spread init": dict(init="spread", embeddings=("axis",), revive_dead=()),
}


# --------------------------------------------------------------------------- models and their initialisation
def make_regressor(kind: str, D: int, *, width: int = 10, n_experts: int = 4, k: int = 1, seed,
                   weighting: str = "softmax", router_bias: bool = False, device=None,
                   dtype=torch.float32) -> nn.Module:
    """A 1-layer top-``k`` MoE of ``N`` two-layer ReLU experts of width ``width``, or a dense ReLU net.

    The initialisation is PyTorch's default (``U(+-1/sqrt(fan_in))``), drawn from ``seed`` without
    touching the global generator. ``weighting="softmax"`` (Switch) lets the gate learn at ``k = 1``;
    ``router_bias=False`` is the paper's gate ``g(x) = W_R x`` (Wang & E, 2025).
    """
    kind = check_choice("kind", kind, ("moe", "dense"))
    D, width, n_experts = check_int("D", D, minimum=2), check_positive_int("width", width), \
        check_positive_int("n_experts", n_experts)
    k = check_k(k, n_experts)
    seed = check_seed("seed", seed)
    device = resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "moe":
            return MoE(D, width, n_experts, k, d_out=1, weighting=weighting, router_bias=router_bias,
                       device=device, dtype=dtype)
        return nn.Sequential(nn.Linear(D, width), nn.ReLU(), nn.Linear(width, 1)).to(device=device, dtype=dtype)


def _first_layer(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(W, b)`` of each first layer: one per expert of an MoE, one for a dense net (by name)."""
    if isinstance(model, MoE):
        named = {n.split(".")[-1]: p for n, p in model.named_parameters() if "router" not in n}
        return [(named["w1"], named["b1"])]  # (N, H, D), (N, H)
    if isinstance(model, nn.Sequential) and isinstance(model[0], nn.Linear):
        return [(model[0].weight, model[0].bias)]  # (h, D), (h,)
    raise TypeError(f"model must be an MoE or an nn.Sequential starting with nn.Linear, got {type(model).__name__}")


def init_router_from_data(model: MoE, x, *, scale: float = 1.0) -> np.ndarray:
    """Set the gate to ``g_i(x) = scale * c_i^T x`` with ``N`` data points ``c_i`` spread by farthest-point sampling.

    By the Voronoi-gate lemma the initial top-1 cells are then the Voronoi cells of the ``c_i``
    (on a centred sphere no bias is needed), so every expert starts with data. Deterministic:
    the first centre is ``x[0]``, each next one the point farthest from those chosen.
    Returns the indices of the chosen points.
    """
    if not isinstance(model, MoE):
        raise TypeError(f"model must be an MoE, got {type(model).__name__}")
    x = check_array("x", x, shape=(model.d_model,), ndim=2)
    scale = check_positive_real("scale", scale)
    if x.shape[0] < model.n_experts:
        raise ValueError(f"x must have at least n_experts (= {model.n_experts}) rows, got {x.shape[0]}")
    chosen = [0]
    dist = np.linalg.norm(x - x[0], axis=1)
    for _ in range(model.n_experts - 1):
        chosen.append(int(np.argmax(dist)))
        dist = np.minimum(dist, np.linalg.norm(x - x[chosen[-1]], axis=1))
    w = model.router.weight
    with torch.no_grad():
        w.copy_(scale * torch.as_tensor(x[chosen], device=w.device, dtype=w.dtype))
        if model.router.bias is not None:
            model.router.bias.zero_()
    return np.array(chosen)


def init_first_layer_spread(model: nn.Module, x, *, spread: float = SPREAD) -> float:
    """Rescale the first layer(s) so that its pre-activations on the data ``x`` have standard deviation ``spread``.

    ``W <- c W``, ``b <- c b`` with ``c = spread / std(W x + b)`` (over all points of ``x`` and all
    hidden units, all experts together). PyTorch's default ``U(+-1/sqrt(D))`` gives pre-activations
    of spread about ``1/sqrt(3 D)`` on unit-norm data, so the starting network on the data flattens
    as ``D`` grows; after this rescaling its spread no longer depends on ``D``. The default
    ``spread = 1/sqrt(6)`` is what the default gives when the input *is* the circle's plane (``D = 2``).
    Returns ``c``.
    """
    spread = check_positive_real("spread", spread)
    layers = _first_layer(model)
    W, b = layers[0]
    x = torch.as_tensor(check_array("x", x, shape=(W.shape[-1],), ndim=2), device=W.device, dtype=W.dtype)
    with torch.no_grad():
        pre = torch.einsum("td,...hd->...th", x, W) + b[..., None, :]  # (N, T, H) or (T, h)
        c = spread / float(pre.std())
        W.mul_(c)
        b.mul_(c)
    return c


def init_experts_from_data(model: MoE, x, *, seed) -> None:
    """Place every expert's ReLU kinks on the data it is routed at initialisation.

    For expert ``i`` and hidden unit ``j``: ``b1_ij = -w1_ij^T x_ij`` with ``x_ij`` a point of ``x``
    drawn (from ``seed``) among those the initial router sends to expert ``i``; the unit's kink then
    lies on the expert's own arc, so no unit starts dead on its data. Used as a remedy for stalled runs.
    """
    if not isinstance(model, MoE):
        raise TypeError(f"model must be an MoE, got {type(model).__name__}")
    rng = np.random.default_rng(check_seed("seed", seed))
    W, b = _first_layer(model)[0]
    xt = torch.as_tensor(check_array("x", x, shape=(model.d_model,), ndim=2), device=W.device, dtype=W.dtype)
    with torch.no_grad():
        owner = model.router(xt).indices[:, 0].cpu().numpy()
        for i in range(model.n_experts):
            pool = np.flatnonzero(owner == i)
            if pool.size == 0:
                continue
            pts = xt[torch.as_tensor(rng.choice(pool, W.shape[1]), device=W.device)]  # (H, D)
            b[i] = -(W[i] * pts).sum(1)


def transplant_axis_model(model: MoE, D: int) -> MoE:
    """A copy of ``model`` in ``R^D``: the same weights on the first two input columns, zeros elsewhere.

    For data in the first two coordinates (the axis embedding) the copy computes the same function,
    and it trains to the same numbers: the other columns multiply zeros and get zero gradients.
    """
    if not isinstance(model, MoE):
        raise TypeError(f"model must be an MoE, got {type(model).__name__}")
    D = check_int("D", D, minimum=2)
    p0 = next(iter(model.parameters()))
    big = MoE(D, model.d_hidden, model.n_experts, model.k, d_out=model.d_out, weighting=model.router.weighting,
              router_bias=model.router.bias is not None, device=p0.device, dtype=p0.dtype)
    with torch.no_grad():
        for (name, p_big), p_small in zip(big.named_parameters(), model.parameters()):
            if p_big.shape != p_small.shape:  # a weight that reads x: (..., D)
                p_big.zero_()
                p_big[..., :2] = p_small[..., :2]
            else:
                p_big.copy_(p_small)
    return big


def _init_members(models, Qs, cfg: Exp1Config, kind: str, seeds) -> None:
    for model, Q, s in zip(models, Qs, seeds):
        data = sample_circle(256, Q, seed=20_000 + s)[0]
        if kind == "moe" and cfg.router_init == "data":
            init_router_from_data(model, data)
        if cfg.init == "spread":
            init_first_layer_spread(model, data)
        if kind == "moe" and cfg.expert_init == "data":
            init_experts_from_data(model, data, seed=30_000 + s)


def _width(kind: str, D: int, cfg: Exp1Config) -> int:
    return {"moe": cfg.width, "dense-active": cfg.width,
            "dense-total": equal_parameter_width(D, n_experts=cfg.n_experts, width=cfg.width)}[kind]


def build_members(cfg: Exp1Config, kind: str, embedding: str, D: int, seeds, *, device=None):
    """The initialised models of one cell and their embeddings ``Q`` (seed ``s``: model seed ``s``,
    ``Q`` from ``10000 + s``, router and initialisation data from ``20000 + s``)."""
    kind = check_choice("kind", kind, KINDS)
    width, dtype = _width(kind, D, cfg), getattr(torch, cfg.dtype)
    Qs = [circle_embedding(D, embedding, seed=10_000 + s) for s in seeds]
    models = [make_regressor("moe" if kind == "moe" else "dense", D, width=width, n_experts=cfg.n_experts,
                             k=cfg.k, weighting=cfg.weighting, router_bias=cfg.router_bias, seed=s,
                             device=device, dtype=dtype) for s in seeds]
    _init_members(models, Qs, cfg, kind, seeds)
    return models, Qs


# --------------------------------------------------------------------------- training and evaluation
def _draw_circle(gen: torch.Generator, batch_size: int, Qt: torch.Tensor, freqs):
    """One minibatch: ``theta ~ U[0, 2 pi)`` from ``gen`` (float64 on CPU), ``x = Q z``, ``t = f(theta)``."""
    theta = 2 * math.pi * torch.rand(batch_size, generator=gen, dtype=torch.float64).to(Qt.device, Qt.dtype)
    z = torch.stack([torch.cos(theta), torch.sin(theta)], 1)  # (B, 2)
    return z @ Qt.T, circle_target(theta, freqs)[:, None]  # (B, D), (B, 1)


def train_circle_regressor(model: nn.Module, Q, *, freqs=(5.0, 3.0), steps: int = 4000, lr: float = 3e-3,
                           batch_size: int = 128, aux_weight: float = 0.01, lr_min_ratio: float = 1e-3,
                           seed, device=None, dtype=torch.float32) -> TrainResult:
    """Fit ``model`` (on ``device``, in ``dtype``) to the circle target with a fresh uniform-angle batch every step.

    Adam on squared loss, cosine learning-rate decay to ``lr_min_ratio * lr``, gradient clipping at
    1, Switch load-balancing loss of weight ``aux_weight`` for an MoE (see
    :func:`~moe_theory.training.fit_regressor`). :func:`circle_sampler` draws the same batches for a population.
    """
    Q = check_isometry(Q)
    batch_size = check_positive_int("batch_size", batch_size)
    Qt = torch.as_tensor(Q, device=resolve_device(device), dtype=dtype)  # (D, 2)
    return fit_regressor(model, steps=steps, lr=lr, aux_weight=aux_weight, seed=seed, lr_min_ratio=lr_min_ratio,
                         sampler=lambda gen: _draw_circle(gen, batch_size, Qt, freqs))


def circle_sampler(Qs, batch_size: int, freqs=(5.0, 3.0), *, device=None, dtype=torch.float32):
    """The population version of :func:`train_circle_regressor`'s sampler: member ``i`` uses ``Qs[i]``."""
    batch_size = check_positive_int("batch_size", batch_size)
    device = resolve_device(device)
    QT = torch.stack([torch.as_tensor(check_isometry(Q), dtype=dtype) for Q in Qs]).transpose(1, 2).to(device)
    per_member = np.ndim(freqs) == 2  # one (a, b) per member
    if per_member:
        ab = torch.as_tensor(check_array("freqs", freqs, shape=(2,), ndim=2), dtype=dtype).to(device)  # (P, 2)

    def sampler(gens, members):
        theta = torch.stack([torch.rand(batch_size, generator=g, dtype=torch.float64) for g in gens])  # (P, B)
        theta = 2 * math.pi * theta.to(device, dtype)
        z = torch.stack([torch.cos(theta), torch.sin(theta)], 2)  # (P, B, 2)
        if per_member:
            a, b = ab[members, :1], ab[members, 1:]  # (P, 1) each
            t = torch.sin(a * z[..., 0]) + torch.cos(b * z[..., 1])  # (P, B)
        else:
            t = circle_target(theta, freqs)  # (P, B)
        return torch.bmm(z, QT[members]), t[:, :, None]  # (P, B, D), (P, B, 1)
    return sampler


def atlas_frames(a_values, n_experts: int, *, D: int = 16, steps: int = 800, restarts: int = 3, seed: int = 0,
                 device=None, dtype=torch.float32) -> dict:
    """Widget frames: for each target frequency ``a`` of ``f = sin(a z_1) + cos(3 z_2)``, the best of
    ``restarts`` 1-``N``-MoEs *by training loss*, all trained together.

    Axis embedding in ``R^D``, router started on the data, every expert's ReLU kinks on its data
    (:func:`init_experts_from_data`), the chapter's settings otherwise (batch 512, learning rate 1e-2,
    load balancing 0.01). Returns ``{a: (model, Q, test_mse)}``.
    """
    a_values = [float(a) for a in a_values]
    n_experts = check_int("n_experts", n_experts, minimum=2)
    restarts = check_positive_int("restarts", restarts)
    cfg = replace(Exp1Config(), n_experts=n_experts, steps=check_positive_int("steps", steps))
    Q = circle_embedding(D, "axis")
    seeds = [seed + r for _ in a_values for r in range(restarts)]
    models = [make_regressor("moe", D, n_experts=n_experts, seed=s, device=device, dtype=dtype) for s in seeds]
    for m, s in zip(models, seeds):
        data = sample_circle(256, Q, seed=20_000 + s)[0]
        init_router_from_data(m, data)
        init_experts_from_data(m, data, seed=30_000 + s)  # kinks on the data: fewer stalled frames
    freqs = [(a, cfg.freqs[1]) for a in a_values for _ in range(restarts)]
    pop = fit_population(models, sampler=circle_sampler([Q] * len(models), cfg.batch_size, freqs, device=device,
                                                        dtype=dtype),
                         seeds=seeds, steps=cfg.steps, lr=cfg.lr, aux_weight=cfg.aux_weight,
                         lr_min_ratio=cfg.lr_min_ratio, device=device, dtype=dtype)
    out = {}
    for j, a in enumerate(a_values):
        group = range(j * restarts, (j + 1) * restarts)
        best = min(group, key=lambda i: pop.records[i]["final_train_mse"])
        ev = evaluate_circle(models[best], Q, freqs=freqs[best], n_test=1024, device=device, dtype=dtype)
        out[a] = (models[best], Q, ev["test_mse"])
    return out


def evaluate_circle(model: nn.Module, Q, *, freqs=(5.0, 3.0), n_test: int = 4096, device=None,
                    dtype=torch.float32) -> dict:
    """Test MSE and sup error on the grid :func:`~moe_theory.manifold.circle_grid`; for an MoE also the
    load per expert, the dead experts and the hidden units that are never active on their own arc."""
    n_test = check_positive_int("n_test", n_test)
    x, theta = circle_grid(n_test, check_isometry(Q))
    xt = torch.as_tensor(x, device=resolve_device(device), dtype=dtype)  # (n, D)
    with torch.no_grad():
        out = model(xt)  # (n, 1)
        err = out[:, 0].double().cpu().numpy() - circle_target(theta, freqs)
        result = {"test_mse": float(np.mean(err**2)), "sup_error": float(np.abs(err).max())}
        if isinstance(model, MoE):
            routing = model.router(xt)
            owner = routing.indices[:, 0]
            load = routing.load_fraction().cpu().double()
            W, b = _first_layer(model)[0]
            dead_units = 0
            for i in range(model.n_experts):
                xi = xt[owner == i]
                if len(xi):
                    dead_units += int(((xi @ W[i].T + b[i]) <= 0).all(0).sum())
            result.update(load_fraction=load.tolist(), dead_experts=int((load == 0).sum()),
                          dead_units=dead_units)
    return result


def _atlas(model: nn.Module, Q, n: int = 512, *, device=None, dtype=torch.float32):
    if not isinstance(model, MoE):
        return None
    x, _ = circle_grid(n, Q)
    with torch.no_grad():
        return model.router(torch.as_tensor(x, device=resolve_device(device), dtype=dtype)).indices[:, 0].cpu().numpy()


def run_one(cfg: Exp1Config, kind: str, embedding: str, D: int, seed: int, *, device=None,
            return_model: bool = False):
    """Train and evaluate one model by :func:`train_circle_regressor` (the single-run reference: plain
    :func:`~moe_theory.training.fit_regressor`, so it equals :func:`run_cell` when ``cfg.revive_dead``
    is empty)."""
    (model,), (Q,) = build_members(cfg, kind, embedding, D, [seed], device=device)
    dtype = getattr(torch, cfg.dtype)
    res = train_circle_regressor(model, Q, freqs=cfg.freqs, steps=cfg.steps, lr=cfg.lr, batch_size=cfg.batch_size,
                                 aux_weight=cfg.aux_weight if kind == "moe" else 0.0,
                                 lr_min_ratio=cfg.lr_min_ratio, seed=seed, device=device, dtype=dtype)
    rec = {"seed": seed, "final_train_mse": float(np.mean(res.losses[-50:])),
           **evaluate_circle(model, Q, freqs=cfg.freqs, n_test=cfg.n_test, device=device, dtype=dtype)}
    return (rec, model, Q) if return_model else rec


def run_cell(cfg: Exp1Config, kind: str, embedding: str, D: int, *, device=None, records_path=None,
             models: dict | None = None, progress: bool = False) -> list[dict]:
    """Train every seed of one cell together (:func:`~moe_theory.population.fit_population`).

    Each record has the seed, ``final_train_mse`` (mean of the last 50 minibatch losses),
    ``test_mse``, ``sup_error``, a 30-point loss curve, and for an MoE the loads, dead experts, dead
    units and the fraction of the circle whose expert changed during training (``atlas_moved``).
    """
    seeds = list(cfg.seeds)
    dtype = getattr(torch, cfg.dtype)
    members, Qs = build_members(cfg, kind, embedding, D, seeds, device=device)
    start_owner = [_atlas(m, Q, device=device, dtype=dtype) for m, Q in zip(members, Qs)]

    def evaluate(i, model):
        rec = evaluate_circle(model, Qs[i], freqs=cfg.freqs, n_test=cfg.n_test, device=device, dtype=dtype)
        rec.update(kind=kind, embedding=embedding, D=D, width=_width(kind, D, cfg),
                   n_params=count_parameters(model))
        if start_owner[i] is not None:
            rec["atlas_moved"] = float(np.mean(_atlas(model, Qs[i], device=device, dtype=dtype) != start_owner[i]))
        if models is not None:
            models[(kind, embedding, D, seeds[i])] = (model, Qs[i])
        return rec

    pop = fit_population(members, sampler=circle_sampler(Qs, cfg.batch_size, cfg.freqs, device=device, dtype=dtype),
                         seeds=seeds, steps=cfg.steps, lr=cfg.lr, aux_weight=cfg.aux_weight if kind == "moe" else 0.0,
                         lr_min_ratio=cfg.lr_min_ratio, keys=[f"{embedding}/{kind}/{D}/{s}" for s in seeds],
                         evaluate=evaluate, records_path=records_path, progress=progress, device=device,
                         dtype=dtype, warmup_steps=cfg.warmup_steps,
                         router_noise=cfg.router_noise if kind == "moe" else 0.0,
                         revive_dead=tuple(r for r in cfg.revive_dead if r <= cfg.steps) if kind == "moe" else ())
    for rec, losses in zip(pop.records, pop.losses):
        if losses is not None:
            rec["loss_curve"] = [float(np.mean(losses[j:j + 100])) for j in range(0, len(losses), max(1, len(losses) // 30))]
    return pop.records


# --------------------------------------------------------------------------- statistics
def summarise(records: list[dict], *, restarts: int = 5, seed: int = 0, n_boot: int = 2000) -> dict:
    """Statistics of one cell: median test MSE with a bootstrap 90% interval, min and max, stalled
    fraction (test MSE > 10x the cell's best), median of the others, train MSE, best-of-``restarts``."""
    test = np.array([r["test_mse"] for r in records])
    train = np.array([r["final_train_mse"] for r in records])
    out = {**cell_statistics(test, train, restarts=restarts, seed=seed, n_boot=n_boot),
           "sup_error_median": float(np.median([r["sup_error"] for r in records]))}
    if "dead_experts" in records[0]:
        out["dead_expert_fraction"] = float(np.mean([r["dead_experts"] > 0 for r in records]))
    return out


def restrict(data: dict, *, kind: str = "moe", embedding: str | None = None, dims=None, seeds=None) -> dict:
    """The cells of a saved sweep of one ``kind`` (and ``embedding``, ``dims``), keeping only the runs
    of ``seeds``, with :func:`summarise`'s statistics recomputed on them (for like-for-like tables)."""
    rows = []
    for r in data["results"]:
        if r["kind"] != kind or (embedding is not None and r["embedding"] != embedding) or \
                (dims is not None and r["D"] not in dims):
            continue
        recs = [s for s in r["per_seed"] if seeds is None or s["seed"] in seeds]
        if not recs:
            raise ValueError(f"no run of the cell {r['embedding']}/{kind}/D={r['D']} has a seed in {seeds}")
        restarts = min(data["config"].get("restarts", 5), len(recs))
        rows.append({**r, **summarise(recs, restarts=restarts), "per_seed": recs})
    return {**data, "results": rows, "seed": sorted({s["seed"] for r in rows for s in r["per_seed"]})}


def _rank_test(a, b) -> float:
    from scipy.stats import mannwhitneyu
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def _recorded(path, keys) -> bool:
    if path is None or not Path(path).exists():
        return False
    have = {json.loads(line)["key"] for line in Path(path).read_text().splitlines() if line.strip()}
    return all(k in have for k in keys)


def _cell_records_path(records_path, kind: str, embedding: str, D: int):
    return None if records_path is None else Path(records_path).with_suffix(f".{embedding}-{kind}-{D}.jsonl")


def _run_cell_worker(args):
    """One cell in a worker process with one torch thread (``run_experiment(jobs=...)``)."""
    cfg, kind, embedding, D, device, records_path = args
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    return run_cell(cfg, kind, embedding, D, device=device, records_path=records_path), time.perf_counter() - t0


def _cell_cost(cfg: Exp1Config, kind: str, D: int) -> float:
    """Rough cost of a cell (parameters per member), for handing out the longest cells first."""
    return _width(kind, D, cfg) * (D + 2) * (cfg.n_experts if kind == "moe" else 1)


def _run_cells_parallel(cfg, cells, jobs, device, records_path, log):
    """Run ``cells`` in ``jobs`` processes, longest first; each cell's records go to its own file
    (seeded from ``records_path``'s records of that cell, so resuming and ``--merge`` still work)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    done = _read_jsonl(records_path)
    tasks = []
    for kind, embedding, D in sorted(cells, key=lambda c: -_cell_cost(cfg, c[0], c[2])):
        path = _cell_records_path(records_path, kind, embedding, D)
        if path is not None:
            keep = [r for r in done if r["key"].startswith(f"{embedding}/{kind}/{D}/")]
            have = {r["key"] for r in _read_jsonl(path)}
            with open(path, "a") as fh:
                for r in keep:
                    if r["key"] not in have:
                        fh.write(json.dumps(r) + "\n")
        tasks.append((cfg, kind, embedding, D, device, path))
    out = {}
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        for (_, kind, embedding, D, _, _), (recs, sec) in zip(tasks, pool.map(_run_cell_worker, tasks)):
            out[(kind, embedding, D)] = (recs, sec)
            if log is not None:
                log(f"[worker, cell {sec:5.1f} s] {embedding:>6} {kind:>12} D={D}")
    return out


def _read_jsonl(path) -> list[dict]:
    if path is None or not Path(path).exists():
        return []
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


def run_experiment(cfg: Exp1Config = Exp1Config(), *, device=None, log=print, records_path=None,
                   models: dict | None = None, progress: bool = False, recorded_only: bool = False,
                   jobs: int = 1) -> dict:
    """Run the whole sweep, one population per cell; returns the JSON-ready result.

    ``results`` holds one row per cell (embedding, model, ``D``): ``"model"`` and ``"test_mse"`` (the
    headline statistic: the median over draws of the best of ``cfg.restarts`` restarts chosen by
    training loss), :func:`summarise`'s statistics and the per-seed records. ``rank_tests`` holds the
    two-sided Mann-Whitney p-value of the test MSE between the smallest and the largest ``D``.
    ``recorded_only``: build the result from the records already in ``records_path`` and skip the
    cells not complete there (no training). ``jobs``: run the cells in that many worker processes
    of one torch thread each (the same numbers as ``jobs=1`` up to float32 reduction order).
    """
    if not isinstance(cfg, Exp1Config):
        raise TypeError(f"cfg must be an Exp1Config, got {type(cfg).__name__}")
    jobs = check_positive_int("jobs", jobs)
    if jobs > 1 and (models is not None or recorded_only):
        raise ValueError("jobs > 1 cannot return trained models or tabulate recorded cells only: use jobs=1")
    start = time.perf_counter()
    cells = [(kind, embedding, D) for kind in cfg.kinds for embedding in cfg.embeddings for D in cfg.dims]
    ran = _run_cells_parallel(cfg, cells, jobs, device, records_path, log) if jobs > 1 else {}
    rows = []
    for kind in cfg.kinds:  # the MoE first: its cells are the point of the experiment
        for embedding in cfg.embeddings:
            for D in cfg.dims:
                if recorded_only and not _recorded(records_path, [f"{embedding}/{kind}/{D}/{s}" for s in cfg.seeds]):
                    continue
                t0 = time.perf_counter()
                if (kind, embedding, D) in ran:
                    recs, _ = ran[(kind, embedding, D)]
                else:
                    recs = run_cell(cfg, kind, embedding, D, device=device, records_path=records_path,
                                    models=models, progress=progress)
                stats = summarise(recs, restarts=cfg.restarts)
                rows.append({"model": _MODEL_NAMES[kind], "kind": kind, "embedding": embedding, "D": D,
                             "test_mse": stats["best_of_r_median"], **stats, "width": recs[0]["width"],
                             "n_params": recs[0]["n_params"], "per_seed": recs})
                if log is not None:
                    log(f"[{time.perf_counter() - start:7.1f} s, cell {time.perf_counter() - t0:5.1f} s] "
                        f"{embedding:>6} {kind:>12} D={D:<4} median {stats['test_mse_median']:.2e} "
                        f"stalled {stats['stalled_fraction']:.0%} best-of-{cfg.restarts} "
                        f"{stats['best_of_r_median']:.2e}")
    tests = []
    for embedding in cfg.embeddings:
        for kind in cfg.kinds:
            cell = {r["D"]: r for r in rows if r["embedding"] == embedding and r["kind"] == kind}
            lo, hi = min(cell, default=0), max(cell, default=0)
            if lo != hi:
                tests.append({"embedding": embedding, "kind": kind, "D_low": lo, "D_high": hi,
                              "p_value": _rank_test([s["test_mse"] for s in cell[lo]["per_seed"]],
                                                    [s["test_mse"] for s in cell[hi]["per_seed"]])})
    return {"config": asdict(cfg), "seed": list(cfg.seeds), "results": rows, "rank_tests": tests,
            "headline": "test_mse = median over draws of the best of R restarts chosen by training loss",
            "total_seconds": time.perf_counter() - start,
            "training_seconds": float(sum(rec["train_seconds"] for row in rows for rec in row["per_seed"])),
            "environment": {"torch": torch.__version__, "python": platform.python_version(),
                            "threads": torch.get_num_threads() if jobs == 1 else 1, "jobs": jobs, "device": str(device or "cpu")}}


def load_results(path=None) -> dict:
    """The saved results (default: the committed ``results/manifold_exp1.json``)."""
    path = RESULTS_PATH if path is None else Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path {path} does not exist: run `python -m moe_theory.experiments.manifold`")
    return json.loads(path.read_text())


def _e(v: float) -> str:
    """``1.8e-03 -> 1.8e-3``: short enough for a table in the text column."""
    return f"{v:.1e}".replace("e-0", "e-").replace("e+0", "e")


def results_table(data: dict, *, kinds=None):
    """An HTML table (:func:`~moe_theory.tables.result_table`), one row per cell: median test MSE
    [bootstrap 90% interval], stalled fraction, median of the others ("not stalled"), best of R by
    training loss (median over draws), best run, median training MSE. With one model in ``kinds``
    the model column is left out."""
    from ..tables import result_table

    kinds = kinds or list(dict.fromkeys(r["kind"] for r in data["results"]))
    R = data["config"].get("restarts", 5)
    one = len(kinds) == 1  # one model: name it in the caption, not in every row
    header = ["embedding"] + ([] if one else ["model"]) + ["D", "median test MSE [90% CI]", "stalled",
                                                          "not stalled", f"best of {R}", "best run", "train MSE"]
    rows = []
    for r in data["results"]:
        if r["kind"] not in kinds:
            continue
        ci = r["test_mse_ci90"]
        rows.append([r["embedding"]] + ([] if one else [r["model"]]) + [
            r["D"], f"{_e(r['test_mse_median'])} [{_e(ci[0])}, {_e(ci[1])}]", f"{r['stalled_fraction']:.0%}",
            _e(r["test_mse_median_not_stalled"]), _e(r["best_of_r_median"]), _e(r["test_mse_min"]),
            _e(r["train_mse_median"])])
    return result_table(header, rows)


def rank_tests_table(data: dict):
    """The two-sided Mann-Whitney test of "same distribution of test MSE at the smallest and largest D"."""
    from ..tables import result_table

    return result_table(["embedding", "model", "D vs D", "p-value"],
                        [[t["embedding"], _MODEL_NAMES[t["kind"]], f"{t['D_low']} vs {t['D_high']}", t["p_value"]]
                         for t in data["rank_tests"]])


def stall_diagnostics(data: dict, kind: str = "moe") -> list[dict]:
    """Stalled (test MSE > 10x the cell's best) against the other runs, pooled over the cells of each
    embedding: how many runs, their median train MSE, the fraction with a dead expert, the median
    number of dead hidden units (never active on the expert's own arc) and the median fraction of the
    circle whose expert changed during training."""
    out = []
    for emb in dict.fromkeys(r["embedding"] for r in data["results"]):
        groups = {True: [], False: []}
        for r in data["results"]:
            if r["embedding"] == emb and r["kind"] == kind:
                best = r["test_mse_min"]
                for rec in r["per_seed"]:
                    groups[rec["test_mse"] > 10 * best].append(rec)
        for stalled, recs in groups.items():
            if not recs:
                continue
            out.append({"embedding": emb, "stalled": stalled, "runs": len(recs),
                        "train_mse": float(np.median([x["final_train_mse"] for x in recs])),
                        "test_mse": float(np.median([x["test_mse"] for x in recs])),
                        "dead_expert": float(np.mean([x.get("dead_experts", 0) > 0 for x in recs])),
                        "dead_units": float(np.median([x.get("dead_units", 0) for x in recs])),
                        "atlas_moved": float(np.median([x.get("atlas_moved", 0.0) for x in recs]))})
    return out


def stall_table(data: dict, kind: str = "moe"):
    """:func:`stall_diagnostics` as an HTML table."""
    from ..tables import result_table

    rows = [[d["embedding"], "stalled" if d["stalled"] else "not stalled", d["runs"], _e(d["train_mse"]),
             _e(d["test_mse"]), f"{d['dead_expert']:.0%}", f"{d['dead_units']:.0f}", f"{d['atlas_moved']:.0%}"]
            for d in stall_diagnostics(data, kind)]
    return result_table(["embedding", "group", "runs", "median train MSE", "median test MSE", "dead expert",
                         "dead units (of 40)", "circle re-assigned"], rows)


def compare_table(variants: dict, kind: str = "moe", *, baseline: str | None = None):
    """Stalled fraction and medians of several saved sweeps (``{name: data}``), cell by cell.

    With ``baseline`` (a name in ``variants``) a run counts as stalled when its test MSE exceeds 10x
    the best run of the *baseline's* cell with the same embedding and ``D`` (a fixed threshold, so a
    variant that improves its own best run does not move the goalposts); otherwise 10x its own
    cell's best. The last column is the median training MSE (what a practitioner can see). The
    embedding and seed-count columns are shown only when they vary between rows.
    """
    from ..tables import result_table

    if baseline is not None and baseline not in variants:
        raise ValueError(f"baseline must be one of {sorted(variants)}, got {baseline!r}")
    best = {}
    if baseline is not None:
        best = {(r["embedding"], r["D"]): r["test_mse_min"] for r in variants[baseline]["results"] if r["kind"] == kind}
    rows = []
    for name, data in variants.items():
        for r in data["results"]:
            if r["kind"] == kind:
                thr = 10 * best.get((r["embedding"], r["D"]), r["test_mse_min"])
                test = np.array([s["test_mse"] for s in r["per_seed"]])
                rows.append([name, r["embedding"], r["D"], len(test), f"{np.mean(test > thr):.0%}",
                             _e(r["test_mse_median"]), _e(float(np.median(test[test <= thr])) if (test <= thr).any()
                                                          else float("nan")),
                             _e(r["best_of_r_median"]), _e(r["test_mse_min"]), _e(r["train_mse_median"])])
    header = ["variant", "embedding", "D", "seeds", "stalled", "median test MSE", "not stalled", "best of 5",
              "best run", "median train MSE"]
    # columns that are the same in every row (one embedding, one number of seeds) say nothing: drop them
    keep = [j for j, h in enumerate(header) if h not in ("embedding", "seeds") or len({row[j] for row in rows}) > 1]
    return result_table([header[j] for j in keep], [[row[j] for j in keep] for row in rows])


def stalled_against(variants: dict, baseline: str, kind: str = "moe") -> dict:
    """``{(name, embedding, D): stalled fraction}`` with the fixed thresholds of :func:`compare_table`."""
    best = {(r["embedding"], r["D"]): r["test_mse_min"] for r in variants[baseline]["results"] if r["kind"] == kind}
    out = {}
    for name, data in variants.items():
        for r in data["results"]:
            if r["kind"] == kind and (r["embedding"], r["D"]) in best:
                test = np.array([s["test_mse"] for s in r["per_seed"]])
                train = np.array([s["final_train_mse"] for s in r["per_seed"]])
                thr = 10 * best[(r["embedding"], r["D"])]
                out[(name, r["embedding"], r["D"])] = {"stalled": float(np.mean(test > thr)),
                                                       "stalled_train": float(np.mean(train > thr))}
    return out


def plot_results(data: dict, axes=None, *, title: str | None = None):
    """Test MSE against ``D``, one panel per embedding: per model the median over seeds with its
    bootstrap 90% interval (band), the median best-of-R (dashed) and every seed (dots)."""
    import matplotlib.pyplot as plt

    embeddings = list(dict.fromkeys(r["embedding"] for r in data["results"]))
    if axes is None:
        fig, axes = plt.subplots(1, len(embeddings), figsize=(3.25 * len(embeddings), 3.4), squeeze=False,
                                 sharey=True)
        axes = axes[0]
    colors = {"moe": "#1f77b4", "dense-active": "#7f7f7f", "dense-total": "#d62728"}
    R = data["config"].get("restarts", 5)
    for ax, emb in zip(axes, embeddings):
        for j, kind in enumerate(dict.fromkeys(r["kind"] for r in data["results"])):
            rows = sorted((r for r in data["results"] if r["embedding"] == emb and r["kind"] == kind),
                          key=lambda r: r["D"])
            D = np.array([r["D"] for r in rows], dtype=float)
            c = colors[kind]
            for r, d in zip(rows, D):
                ax.scatter(np.full(len(r["per_seed"]), d * 1.04 ** (j - 1)), [s["test_mse"] for s in r["per_seed"]],
                           s=4, color=c, alpha=0.3, lw=0)
            ax.plot(D, [r["test_mse_median"] for r in rows], "o-", color=c, ms=3, label=KIND_LABELS[kind])
            ax.fill_between(D, [r["test_mse_ci90"][0] for r in rows], [r["test_mse_ci90"][1] for r in rows],
                            color=c, alpha=0.2)
            ax.plot(D, [r["best_of_r_median"] for r in rows], "--", color=c, lw=1)
        ax.set(xscale="log", yscale="log", xlabel="ambient dimension $D$",
               title=f"{'axis-aligned' if emb == 'axis' else 'random isometric'} embedding")
        ax.set_xticks(D, [str(int(d)) for d in D])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test MSE")
    axes[0].legend(fontsize=7, loc="upper left")
    fig = axes[0].figure
    fig.suptitle(title or f"Test MSE vs $D$: median (band: 90% CI), dashed: best of {R} by train loss, "
                 f"dots: {len(data['seed'])} seeds", fontsize=9)
    fig.tight_layout()
    return fig


def plot_atlas(model: MoE, Q, *, freqs=(5.0, 3.0), device=None, dtype=torch.float32, axes=None, title=None):
    """The opening picture: the router's arcs on the circle (left) and each expert's fit along the angle."""
    import matplotlib.pyplot as plt

    from ..manifold import plot_circle_moe
    from ..plotting import expert_colors

    if not isinstance(model, MoE):
        raise TypeError(f"model must be an MoE, got {type(model).__name__}")
    if axes is None:
        fig = plt.figure(figsize=(6.5, 3.2))
        gs = fig.add_gridspec(2, 2, width_ratios=[1, 1.8], height_ratios=[2.2, 1])
        axes = [fig.add_subplot(gs[:, 0]), fig.add_subplot(gs[0, 1])]
        axes.append(fig.add_subplot(gs[1, 1], sharex=axes[1]))
    x, theta = circle_grid(720, Q)
    owner = _atlas(model, Q, 720, device=device, dtype=dtype)
    z = x @ Q  # (n, 2): back to the circle's own plane
    axes[0].scatter(z[:, 0], z[:, 1], c=[expert_colors(model.n_experts)[i] for i in owner], s=4)
    axes[0].set(aspect="equal", xlabel="$z_1$", ylabel="$z_2$", title="the router's arcs")
    plot_circle_moe(model, Q, freqs=freqs, axes=axes[1:], n=720, device=device, dtype=dtype, legend=False)
    axes[1].set_title("each expert on its arc (bold) vs the target (grey)", fontsize=9)
    fig = axes[0].figure
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small configuration (QUICK): seconds")
    parser.add_argument("--seeds", type=int, help="number of seeds per cell (default 30)")
    parser.add_argument("--dims", type=int, nargs="+", help="ambient dimensions D")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, help="models")
    parser.add_argument("--embeddings", nargs="+", choices=("axis", "random"), help="embeddings")
    parser.add_argument("--steps", type=int, help="training steps per run")
    parser.add_argument("--init", choices=("torch", "spread"), help="first-layer initialisation")
    parser.add_argument("--expert-init", choices=("torch", "data"), help="expert biases from the data")
    parser.add_argument("--out", default=str(RESULTS_PATH), help="output JSON (the figure goes next to it, .png)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--fresh", action="store_true", help="ignore the records of an earlier, interrupted run")
    parser.add_argument("--merge", nargs="+", default=[], help="records (.records.jsonl) or finished sweeps (.json) of "
                        "cells run by other processes with the same settings, added to the records first")
    parser.add_argument("--recorded-only", action="store_true", help="no training: tabulate the recorded cells")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes, one torch thread each (default 1)")
    parser.add_argument("--warmup", type=int, help="linear learning-rate warm-up steps (a stall remedy)")
    parser.add_argument("--router-noise", type=float, help="early router noise, in units of the logits' spread")
    parser.add_argument("--revive-dead", type=int, nargs="+", help="steps at which dead units are redrawn")
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), help="run these saved variants (all if no "
                        "name is given) on the MoE cells and write them into " + VARIANTS_PATH.name)
    args = parser.parse_args(argv)
    if args.variants is not None:
        return _main_variants(args.variants or list(VARIANTS), jobs=args.jobs, device=args.device)
    t_start = time.perf_counter()
    cfg = QUICK if args.quick else Exp1Config()
    overrides = {"seeds": args.seeds and tuple(range(args.seeds)), "dims": args.dims and tuple(args.dims),
                 "steps": args.steps, "init": args.init, "expert_init": args.expert_init,
                 "kinds": args.kinds and tuple(args.kinds), "embeddings": args.embeddings and tuple(args.embeddings),
                 "warmup_steps": args.warmup, "router_noise": args.router_noise,
                 "revive_dead": args.revive_dead and tuple(args.revive_dead)}
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v})
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    records = out.with_suffix(".records.jsonl")
    stamp = out.with_suffix(".records.config.json")
    # a record is resumed when everything but the choice of cells and seeds is the same (its key
    # names the cell and the seed), so cells may also be run by separate processes and merged
    run_settings = json.loads(json.dumps(  # as JSON reads it back (tuples become lists)
        {k: v for k, v in asdict(cfg).items() if k not in ("dims", "embeddings", "kinds", "seeds")}))
    if args.fresh or not stamp.exists() or json.loads(stamp.read_text()) != run_settings:
        records.unlink(missing_ok=True)
    stamp.write_text(json.dumps(run_settings))
    if args.merge:
        have = {json.loads(x)["key"] for x in records.read_text().splitlines() if x.strip()} if records.exists() else set()
        with open(records, "a") as fh:
            for extra in args.merge:
                if extra.endswith(".jsonl"):
                    recs = [json.loads(x) for x in Path(extra).read_text().splitlines() if x.strip()]
                else:  # a finished sweep's JSON: its per-seed records
                    recs = [rec for row in load_results(extra)["results"] for rec in row["per_seed"]]
                for rec in recs:
                    if rec["key"] not in have:
                        have.add(rec["key"])
                        fh.write(json.dumps(rec) + "\n")
    data = run_experiment(cfg, device=args.device, records_path=records, progress=sys.stderr.isatty() and args.jobs == 1,
                          recorded_only=args.recorded_only, jobs=args.jobs)
    data["command"] = "python -m moe_theory.experiments.manifold " + " ".join(sys.argv[1:] if argv is None else argv)
    data["wall_seconds"] = time.perf_counter() - t_start
    out.write_text(json.dumps(data, indent=1))
    records.unlink(missing_ok=True)
    stamp.unlink(missing_ok=True)
    for part in records.parent.glob(records.stem + ".*.jsonl"):  # the workers' per-cell records
        part.unlink()
    if data["results"]:
        import matplotlib
        matplotlib.use("Agg")
        plot_results(data).savefig(out.with_suffix(".png"), dpi=110, bbox_inches="tight")
    print(results_table(data).markdown)
    print(f"wall time {data['wall_seconds']:.0f} s ({data['wall_seconds'] / 60:.1f} min); "
          f"wrote {out} and {out.with_suffix('.png')}")
    return 0


def _main_variants(names: list[str], *, jobs: int = 1, device="cpu") -> int:
    """Run the named :data:`VARIANTS` on the MoE cells and merge them into :data:`VARIANTS_PATH`."""
    saved = json.loads(VARIANTS_PATH.read_text()) if VARIANTS_PATH.exists() else {}
    for name in names:
        t0 = time.perf_counter()
        over = {"kinds": ("moe",), "embeddings": ("random",), "dims": (16, 128), **VARIANTS[name]}
        cfg = replace(Exp1Config(), **over)
        data = run_experiment(cfg, device=device, jobs=jobs)
        data["command"] = f"python -m moe_theory.experiments.manifold --variants '{name}'"
        data["wall_seconds"] = time.perf_counter() - t0
        saved[name] = data
        VARIANTS_PATH.write_text(json.dumps(saved, indent=1))
        print(f"{name}: {data['wall_seconds']:.0f} s; wrote {VARIANTS_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
