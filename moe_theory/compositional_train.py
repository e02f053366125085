"""Populations of deep MoEs, trained all at once: the models of Experiment II.

A *population* is ``P`` independent networks of one architecture whose weights are stacked along
a leading axis of size ``P``. Member ``p`` has its own initialisation (from its own seed), its own
stream of training data, its own Adam state and its own gradient clipping; the members share
only the arithmetic (:func:`torch.bmm` over the population axis). Adam is elementwise, so one
:class:`torch.optim.Adam` over the stacked tensors updates every member as if it were alone;
the loss is a *sum* of the members' mean losses, so each member's gradient is its own.

Architecture (:class:`StackSpec`): states ``h^(0) = x in R^{d_0}``, ..., ``h^(L) in R^{d_L}``,
layer ``l`` has ``N_l`` experts ``E^(l)_i(h) = W2 relu(W1 h + b1) + b2`` (hidden width ``m``),
a linear gate ``g^(l) = W^(l) h^(l-1) + b^(l)`` (or of the input ``x``, ``gate_on_input``),
top-1 routing ``j_l = argmax_i g^(l)_i`` (smaller index on ties) and

.. math:: h^{(l)} = \\pi^{(l)} E^{(l)}_{j_l}(h^{(l-1)}),

with ``pi = p_{j_l} = softmax(g)_{j_l}`` (Switch weighting, ``weighting="softmax"``: the gate
gets a gradient) or ``pi = 1`` (``weighting="renormalized"``, as :class:`moe_theory.MoE` at
``k = 1``). A layer with ``N_l = 1`` has no gate. No residual connection.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ._validation import check_bool, check_choice, check_int, check_positive_int, check_positive_real, check_real, \
    check_seed, check_tensor
from .compositional import CompositionalTarget, grid_midpoints

__all__ = ["StackSpec", "architecture", "ARCHITECTURES", "DeepMoEPopulation", "PopulationResult",
           "train_population", "evaluate_population", "normalized_mutual_information", "routing_scores",
           "exact_construction_error", "init_stripe_gates"]

_WEIGHTINGS = ("softmax", "renormalized")


@dataclass(frozen=True)
class StackSpec:
    """Shape of a deep MoE: state widths ``dims = (d_0, ..., d_L)``, experts per layer, width ``m``."""

    dims: tuple
    n_experts: tuple
    width: int
    gate_on_input: bool = False

    def __post_init__(self):
        if len(self.dims) != len(self.n_experts) + 1 or len(self.n_experts) < 1:
            raise ValueError(f"dims must have one more entry than n_experts (states d_0..d_L), "
                             f"got dims={self.dims} and n_experts={self.n_experts}")
        for d in self.dims:
            check_positive_int("dims entry", d)
        for n in self.n_experts:
            check_positive_int("n_experts entry", n)
        check_positive_int("width", self.width)

    @property
    def L(self) -> int:
        return len(self.n_experts)

    def n_params(self, active: bool = False) -> int:
        """Number of parameters (``active=True``: gates plus one expert per layer)."""
        total, m = 0, self.width
        for l, N in enumerate(self.n_experts):
            d_in, d_out = self.dims[l], self.dims[l + 1]
            gate_in = self.dims[0] if self.gate_on_input else d_in
            expert = m * d_in + m + d_out * m + d_out
            total += (N * (gate_in + 1) if N > 1 else 0) + (1 if active else N) * expert
        return total


#: The models of Experiment II (``D = 2`` inputs, scalar output).
ARCHITECTURES = ("2-3-MoE", "1-6-MoE", "2-1-stack", "dense", "2-3-MoE-x")


def architecture(name: str, m: int) -> StackSpec:
    """The :class:`StackSpec` of a named model of Experiment II with expert width ``m``.

    * ``"2-3-MoE"``: two MoE layers of 3 experts, ``R^2 -> R^2 -> R``;
    * ``"2-3-MoE-x"``: the same, but both gates read the input ``x`` (not the state);
    * ``"1-6-MoE"``: one MoE layer of 6 experts, ``R^2 -> R``;
    * ``"2-1-stack"``: the 2-3-MoE's stack with one expert per layer (depth, no routing);
    * ``"dense"``: a one-hidden-layer ReLU net whose parameter count equals the 2-3-MoE's
      *active* parameter count (gates plus one expert per layer), width ``(9 m + 20) / 4``
      rounded.
    """
    name = check_choice("name", name, ARCHITECTURES)
    m = check_positive_int("m", m)
    if name in ("2-3-MoE", "2-3-MoE-x"):
        return StackSpec((2, 2, 1), (3, 3), m, gate_on_input=name.endswith("-x"))
    if name == "1-6-MoE":
        return StackSpec((2, 1), (6,), m)
    if name == "2-1-stack":
        return StackSpec((2, 2, 1), (1, 1), m)
    active = StackSpec((2, 2, 1), (3, 3), m).n_params(active=True)
    return StackSpec((2, 1), (1,), max(1, round((active - 1) / 4)))


class DeepMoEPopulation(nn.Module):
    """``P`` independent deep MoEs of one :class:`StackSpec`, weights stacked on a leading axis.

    Parameters
    ----------
    spec : StackSpec
    seeds : sequence of int
        One seed per member; member ``p``'s initial weights depend on ``seeds[p]`` only (drawn
        like :class:`torch.nn.Linear`: uniform with bound ``1 / sqrt(fan_in)``, gates too).
    weighting : {"softmax", "renormalized"}
        ``pi = p_{j}`` (Switch) or ``pi = 1``.
    device, dtype
        Factory arguments.

    Attributes (per layer ``l``, in ``ParameterList`` s): ``gate_w (P, N, d_gate)``,
    ``gate_b (P, N)``, ``w1 (P, N, m, d_in)``, ``b1 (P, N, m)``, ``w2 (P, N, d_out, m)``,
    ``b2 (P, N, d_out)``.
    """

    def __init__(self, spec: StackSpec, seeds, *, weighting: str = "softmax", device=None, dtype=None):
        super().__init__()
        if not isinstance(spec, StackSpec):
            raise TypeError(f"spec must be a StackSpec, got {type(spec).__name__}")
        seeds = [check_seed("seeds entry", s) for s in seeds]
        if not seeds:
            raise ValueError("seeds must contain at least one seed, got an empty sequence")
        self.spec, self.seeds = spec, seeds
        self.weighting = check_choice("weighting", weighting, _WEIGHTINGS)
        P, m = len(seeds), spec.width
        self.gate_w, self.gate_b = nn.ParameterList(), nn.ParameterList()
        self.w1, self.b1, self.w2, self.b2 = (nn.ParameterList() for _ in range(4))
        gens = [torch.Generator().manual_seed(s) for s in seeds]

        def draw(shape, fan_in):  # member p's tensor from member p's generator only
            bound = 1.0 / math.sqrt(fan_in)
            t = torch.stack([(torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * bound for g in gens])
            return nn.Parameter(t.to(device=device, dtype=dtype or torch.get_default_dtype()))

        for l, N in enumerate(spec.n_experts):
            d_in, d_out = spec.dims[l], spec.dims[l + 1]
            d_gate = spec.dims[0] if spec.gate_on_input else d_in
            self.gate_w.append(draw((N, d_gate), d_gate))
            self.gate_b.append(draw((N,), d_gate))
            self.w1.append(draw((N, m, d_in), d_in))
            self.b1.append(draw((N, m), d_in))
            self.w2.append(draw((N, d_out, m), m))
            self.b2.append(draw((N, d_out), m))
        for l, N in enumerate(spec.n_experts):  # a single expert has no gate: its parameters never train
            if N == 1:
                self.gate_w[l].requires_grad_(False)
                self.gate_b[l].requires_grad_(False)

    @property
    def P(self) -> int:
        return len(self.seeds)

    def forward(self, x: torch.Tensor, return_routing: bool = False):
        """``x (P, T, d_0) -> y (P, T, d_L)``; with ``return_routing`` also a list of per-layer
        ``(g, j)``: logits ``(P, T, N)`` and chosen experts ``(P, T)`` (``None`` for ``N = 1``)."""
        x = check_tensor("x", x, ndim=3)
        if x.shape[0] != self.P or x.shape[2] != self.spec.dims[0]:
            raise ValueError(f"x must have shape (P={self.P}, T, {self.spec.dims[0]}), got {tuple(x.shape)}")
        h, routing = x, []
        P, T = x.shape[:2]
        m = self.spec.width
        for l, N in enumerate(self.spec.n_experts):
            d_in, d_out = self.spec.dims[l], self.spec.dims[l + 1]
            # every expert on every token, batched over (member, expert): N <= 6 makes this cheap
            hx = h[:, None].expand(P, N, T, d_in).reshape(P * N, T, d_in)
            a = torch.baddbmm(self.b1[l].reshape(P * N, 1, m), hx,
                              self.w1[l].reshape(P * N, m, d_in).transpose(1, 2))  # (P N, T, m)
            out = torch.baddbmm(self.b2[l].reshape(P * N, 1, d_out), torch.relu(a),
                                self.w2[l].reshape(P * N, d_out, m).transpose(1, 2))  # (P N, T, O)
            out = out.reshape(P, N, T, d_out)
            if N == 1:
                out = out[:, 0]  # (P, T, O)
                routing.append(None)
            else:
                gin = x if self.spec.gate_on_input else h
                g = torch.baddbmm(self.gate_b[l][:, None], gin, self.gate_w[l].transpose(1, 2))  # (P, T, N)
                j = g.detach().argmax(-1)  # (P, T): first maximal index = smaller index on ties
                out = out.gather(1, j[:, None, :, None].expand(P, 1, T, d_out))[:, 0]  # (P, T, O): chosen expert
                if self.weighting == "softmax":
                    out = out * torch.softmax(g, -1).gather(-1, j[..., None])  # pi = p_j
                routing.append((g, j))
            h = out
        return (h, routing) if return_routing else h

    def load_balancing_loss(self, routing) -> torch.Tensor:
        """Switch loss ``N sum_i f_i P_i`` per member, summed over routed layers: shape ``(P,)``."""
        total = 0
        for r in routing:
            if r is None:
                continue
            g, j = r
            N = g.shape[-1]
            f = torch.nn.functional.one_hot(j, N).to(g.dtype).mean(1)  # (P, N)
            total = total + N * (f * torch.softmax(g, -1).mean(1)).sum(-1)
        return total if isinstance(total, torch.Tensor) else torch.zeros(self.P, device=self.w1[0].device)

    def member_state(self, p: int) -> dict:
        """Member ``p``'s weights as a dict of numpy arrays (keys ``"w1.0"`` etc.)."""
        p = check_int("p", p, minimum=0, maximum=self.P - 1)
        return {f"{name}.{l}": t[p].detach().cpu().numpy().copy() for name in ("gate_w", "gate_b", "w1", "b1", "w2", "b2")
                for l, t in enumerate(getattr(self, name))}

    def extra_repr(self) -> str:
        return f"P={self.P}, spec={self.spec}, weighting={self.weighting!r}"


def init_stripe_gates(model: DeepMoEPopulation, *, sharpness: float = 3.0) -> list[int]:
    """Start the gates on the compositional routing: layer ``l`` routes by the cells of coordinate ``l``.

    In the rescaled coordinates ``u = 2 x / N - 1`` of :func:`train_population` the cell centres of
    a coordinate are ``c_i = (2 i - 1) / N - 1``; the Voronoi gate
    ``g_i(u) = sharpness * (c_i u_l - c_i^2 / 2)`` sends ``u`` to the cell of ``u_l``
    (:prf:ref:`lem-mfd-voronoi-gate`). A gate can be set so only when it reads the input: every
    layer of a ``gate_on_input`` model, and the first layer of any model (its state *is* the input).
    Later gates that read a learned state are left as drawn. Returns the layers that were set.
    """
    if not isinstance(model, DeepMoEPopulation):
        raise TypeError(f"model must be a DeepMoEPopulation, got {type(model).__name__}")
    sharpness = check_positive_real("sharpness", sharpness)
    spec, done = model.spec, []
    for l, N in enumerate(spec.n_experts):
        if N == 1 or l >= spec.dims[0] or not (l == 0 or spec.gate_on_input):
            continue
        c = (2 * torch.arange(1, N + 1, dtype=torch.float64) - 1) / N - 1  # (N,) cell centres in u
        w = torch.zeros(N, model.gate_w[l].shape[-1], dtype=torch.float64)
        w[:, l] = sharpness * c
        with torch.no_grad():
            model.gate_w[l].copy_(w.to(model.gate_w[l]).expand_as(model.gate_w[l]))
            model.gate_b[l].copy_((-sharpness * c ** 2 / 2).to(model.gate_b[l]).expand_as(model.gate_b[l]))
        done.append(l)
    return done


@dataclass
class PopulationResult:
    """Per-step training losses of every member (``losses``: array ``(steps, P)``) and wall time."""

    losses: np.ndarray
    seconds: float
    extras: dict = field(default_factory=dict)


def train_population(model: DeepMoEPopulation, target: CompositionalTarget, *, steps: int = 2000,
                     lr: float = 3e-3, batch_size: int = 128, aux_weight: float = 0.01, clip: float | None = 1.0,
                     lr_min_ratio: float = 0.01, data_seeds=None, rescale: bool = True) -> PopulationResult:
    """Train every member with Adam on fresh uniform samples of ``[0, N]^L`` at every step.

    Member ``p`` draws its batches from a generator seeded with ``data_seeds[p]`` (default
    ``seeds[p] + 7919``), minimises ``mean (y - f)^2 + aux_weight * LB`` (LB: the Switch
    load-balancing loss of each routed layer), has its gradient norm clipped to ``clip`` as
    :func:`torch.nn.utils.clip_grad_norm_` would do for it alone, and follows a cosine learning
    rate from ``lr`` to ``lr_min_ratio * lr``. With ``rescale`` (default) the model reads
    ``u = 2 x / N - 1 in [-1, 1]^L`` instead of ``x`` (an affine change of coordinates that the
    first layer could absorb; it makes the default initialisation fit the domain).

    Returns
    -------
    PopulationResult
        ``losses[s, p]``: member ``p``'s squared loss on its batch at step ``s + 1`` (before the step).
    """
    if not isinstance(model, DeepMoEPopulation):
        raise TypeError(f"model must be a DeepMoEPopulation, got {type(model).__name__}")
    if not isinstance(target, CompositionalTarget):
        raise TypeError(f"target must be a CompositionalTarget, got {type(target).__name__}")
    if target.L != model.spec.dims[0]:
        raise ValueError(f"target must have as many coordinates as the model's input width "
                         f"(= {model.spec.dims[0]}), got target.L={target.L}")
    steps = check_positive_int("steps", steps)
    rescale = check_bool("rescale", rescale)
    lr = check_positive_real("lr", lr)
    batch_size = check_positive_int("batch_size", batch_size)
    aux_weight = check_real("aux_weight", aux_weight, minimum=0.0)
    lr_min_ratio = check_real("lr_min_ratio", lr_min_ratio, minimum=0.0, maximum=1.0)
    if clip is not None:
        clip = check_positive_real("clip", clip)
    data_seeds = [s + 7919 for s in model.seeds] if data_seeds is None else [check_seed("data_seeds entry", s)
                                                                            for s in data_seeds]
    if len(data_seeds) != model.P:
        raise ValueError(f"data_seeds must have one seed per member (= {model.P}), got {len(data_seeds)}")
    w = model.w1[0]
    gens = [torch.Generator().manual_seed(s) for s in data_seeds]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr_min_ratio * lr)
    losses = np.empty((steps, model.P))
    hi, L = float(target.n_experts), target.L
    start = time.perf_counter()
    for s in range(steps):
        x = torch.stack([torch.rand(batch_size, L, generator=g, dtype=torch.float64) for g in gens]) * hi
        x = x.to(device=w.device, dtype=w.dtype)  # (P, T, L)
        t = target(x)[..., None]  # (P, T, 1)
        opt.zero_grad(set_to_none=True)
        y, routing = model(x * (2 / hi) - 1 if rescale else x, return_routing=True)
        loss = ((y - t) ** 2).mean(dim=(1, 2))  # (P,): each member's own mean
        total = loss.sum()
        if aux_weight > 0:
            total = total + aux_weight * model.load_balancing_loss(routing).sum()
        total.backward()
        if clip is not None:  # per member, as clip_grad_norm_ on that member alone
            sq = sum(p.grad.reshape(model.P, -1).pow(2).sum(1) for p in params)  # (P,)
            coef = torch.clamp(clip / (sq.sqrt() + 1e-6), max=1.0)
            for p in params:
                p.grad.mul_(coef.reshape(-1, *([1] * (p.ndim - 1))))
        opt.step()
        sched.step()
        losses[s] = loss.detach().cpu().numpy()
    return PopulationResult(losses, time.perf_counter() - start)


def evaluate_population(model: DeepMoEPopulation, target: CompositionalTarget, *, n_side: int = 60,
                        chunk: int = 1024, rescale: bool = True) -> dict:
    """Test MSE, sup error and routing codes of every member on the grid :func:`grid_midpoints`.

    Returns ``{"test_mse": (P,), "sup_error": (P,), "x": (G, L), "codes": (P, G, L_routed) or None,
    "cells": (G, L)}`` (codes of the routed layers, 0-based experts; cells 1-based). ``rescale`` as in
    :func:`train_population`.
    """
    n_side = check_positive_int("n_side", n_side)
    rescale = check_bool("rescale", rescale)
    x = grid_midpoints(n_side, target.L, target.n_experts)
    w = model.w1[0]
    xt = torch.as_tensor(x, device=w.device, dtype=w.dtype)
    ys, codes = [], []
    with torch.no_grad():
        for c in range(0, len(x), chunk):
            xc = xt[c:c + chunk][None].expand(model.P, -1, -1)
            xc = xc * (2 / target.n_experts) - 1 if rescale else xc
            y, routing = model(xc, return_routing=True)
            ys.append(y[..., 0].cpu().numpy())
            r = [rt[1] for rt in routing if rt is not None]
            if r:
                codes.append(torch.stack(r, -1).cpu().numpy())
    y = np.concatenate(ys, 1)  # (P, G)
    err = y - target(x)[None]
    return {"test_mse": (err ** 2).mean(1), "sup_error": np.abs(err).max(1), "x": x,
            "codes": np.concatenate(codes, 1) if codes else None, "cells": target.cells(x)}


def normalized_mutual_information(a, b) -> float:
    """``I(a; b) / H(b)`` of two integer label arrays (empirical): 1 iff ``a`` determines ``b``.

    Zero when ``b`` is constant (then there is nothing to determine).
    """
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same number of labels, got {a.size} and {b.size}")
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1.0)
    joint /= joint.sum()
    pa, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / (pa[:, None] * pb[None])[nz])).sum())
    hb = float(-(pb[pb > 0] * np.log(pb[pb > 0])).sum())
    return mi / hb if hb > 0 else 0.0


def routing_scores(codes, cells, *, min_share: float = 0.005) -> dict:
    """How compositional a deep MoE's routing is, from its codes and the cells of the same points.

    ``codes (G, L)`` (experts chosen per routed layer), ``cells (G, L)`` (cell index per
    coordinate). Returns:

    * ``layer_stripe[l][c]``: ``I(j_l; i_c) / H(i_c)``, how well layer ``l``'s expert
      determines the stripe of coordinate ``c``;
    * ``path_cell``: ``I((j_1..j_L); (i_1..i_L)) / H(cells)``, 1 iff the path determines the cell;
    * ``compositional``: some assignment of layers to distinct coordinates has every
      ``layer_stripe >= 0.9`` (the layers route by stripes of different coordinates);
    * ``paths``: distinct paths used by at least ``min_share`` of the points (and ``paths_all``).
    """
    codes, cells = np.asarray(codes), np.asarray(cells)
    if codes.ndim != 2 or cells.ndim != 2 or codes.shape[0] != cells.shape[0]:
        raise ValueError(f"codes and cells must be 2-D with the same number of rows, got shapes "
                         f"{codes.shape} and {cells.shape}")
    L, C = codes.shape[1], cells.shape[1]
    stripe = [[normalized_mutual_information(codes[:, l], cells[:, c]) for c in range(C)] for l in range(L)]
    key = lambda arr: np.ravel_multi_index(arr.T, arr.max(0) + 1)  # noqa: E731
    path_cell = normalized_mutual_information(key(codes), key(cells - 1))
    from itertools import permutations
    comp = L <= C and any(all(stripe[l][perm[l]] >= 0.9 for l in range(L)) for perm in permutations(range(C), L))
    _, counts = np.unique(codes, axis=0, return_counts=True)
    return {"layer_stripe": stripe, "path_cell": path_cell, "compositional": bool(comp),
            "paths": int((counts >= min_share * len(codes)).sum()), "paths_all": int(len(counts))}


def exact_construction_error(target: CompositionalTarget, m: int, *, n_side: int = 90) -> dict:
    """Test MSE and sup error of :func:`~moe_theory.compositional.build_compositional_moe`
    with ``m`` spline units per expert, on the grid of :func:`evaluate_population`."""
    from .compositional import build_compositional_moe

    ev = evaluate_population(build_compositional_moe(target, m), target, n_side=n_side, rescale=False)
    return {"test_mse": float(ev["test_mse"][0]), "sup_error": float(ev["sup_error"][0])}
