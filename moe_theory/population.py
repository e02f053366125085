"""Train a population of small regressors at once: every seed of a sweep in one program.

:func:`fit_population` trains ``P`` independent models of one architecture (a
:class:`~moe_theory.layers.MoE` with an MLP expert bank, or a dense ``nn.Sequential`` of
``Linear`` layers and activations) with *exactly* the algorithm of
:func:`~moe_theory.training.fit_regressor`: the same seeded minibatch stream per member, Adam,
cosine learning-rate decay, gradient-norm clipping per member, the Switch load-balancing loss
for an MoE. The members' weights are stacked along a leading population axis ``P``, so a step is
a handful of batched tensor operations (``bmm``, ``einsum``) instead of ``P`` programs of tiny
operators. Member ``i`` reproduces the single-model run with the same seed (a float64 test checks
the loss history and the final weights to 1e-8).

Routing per member is the single model's rule: logits ``g = W_r x (+ b)``, the ``k`` largest
(ties to the smaller index, :func:`~moe_theory.layers.topk_route`), weights ``pi`` renormalised
over the selected logits or taken from the full softmax, ``y = sum_{i in S} pi_i E_i(x)``. All
``N`` experts are evaluated densely and combined with a matrix that is zero off the active set
(as fast as index dispatch at ``N = 4``; an inactive expert gets an exactly zero gradient).

The population is cut into chunks that fit a memory budget; finished members' records can be
appended to a JSON-lines file, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._validation import (check_bool, check_choice, check_int, check_positive_int, check_positive_real, check_real,
                          check_seed, check_tensor)
from .device import resolve_device
from .layers import MoE, topk_route

__all__ = ["PopulationResult", "PopulationState", "fit_population", "population_chunk_size", "expert_counts"]

#: Offset between a member's data seed and the seed of its remedy generator (noise, revived units).
_REMEDY_SEED_OFFSET = 7_919_000
_ACTIVATIONS = {nn.ReLU: F.relu, nn.Tanh: torch.tanh, nn.GELU: F.gelu}
_MOE_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}


def _named(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters of ``model`` by the last component of their name (``experts.w1 -> w1``)."""
    out = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        short = "router." + parts[-1] if "router" in parts[:-1] else parts[-1]
        if short in out:
            raise ValueError(f"model has two parameters named {short!r}: cannot stack it")
        out[short] = p
    return out


def _softmax1(g: torch.Tensor) -> torch.Tensor:
    """Softmax over axis 1 (the experts), written out."""
    e = torch.exp(g - g.detach().amax(1, keepdim=True))
    return e / e.sum(1, keepdim=True)


def _check_members(models, cls, what: str, signature) -> None:
    """Every member is a ``cls`` with the architecture (``signature``) of ``models[0]``."""
    sig = signature(models[0])
    for i, m in enumerate(models):
        if not isinstance(m, cls):
            raise TypeError(f"models[{i}] must be {what} like models[0], got {type(m).__name__}")
        if signature(m) != sig:
            raise ValueError(f"models[{i}] must have the architecture of models[0]: {sig}, got {signature(m)}")


def expert_counts(indices: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Tokens (token, slot pairs) each expert received, per member: ``indices (P, k, B) -> (P, N)``,
    float64, on the indices' device."""
    P = indices.shape[0]
    flat = indices.reshape(P, -1)
    return torch.zeros(P, n_experts, dtype=torch.float64, device=indices.device).scatter_add_(
        1, flat, torch.ones(flat.shape, dtype=torch.float64, device=indices.device))


class _MoEFamily:
    """Stacked MoE members: gate ``(P, N, D)`` (+ bias ``(P, N)``), experts ``w1 (P, N, H, D)``,
    ``b1 (P, N, H)``, ``w2 (P, N, O, H)``, ``b2 (P, N, O)``."""

    is_moe = True

    def __init__(self, models: Sequence[MoE]):
        m0 = models[0]
        if getattr(m0, "expert_kind", "mlp") != "mlp":
            raise ValueError(f"models[0] must have MLP experts (expert='mlp'), got expert={m0.expert_kind!r}")
        if m0.router_kind == "noisy_topk":
            raise ValueError("models[0] has router='noisy_topk': its noise comes from the layer's own "
                             "generator, which a population cannot reproduce; use 'topk' or 'softmax'")
        if m0.capacity_factor is not None:
            raise ValueError(f"models[0] must have capacity_factor=None, got {m0.capacity_factor}")
        self.N, self.k, self.D, self.O, self.H = m0.n_experts, m0.k, m0.d_model, m0.d_out, m0.d_hidden
        self.router = m0.router_kind
        self.weighting = getattr(m0.router, "weighting", "softmax")
        self.act = _MOE_ACTIVATIONS[m0.activation]
        _check_members(models, MoE, "an MoE", self._signature)
        self.names = [n for n in ("router.weight", "router.bias", "w1", "b1", "w2", "b2") if n in _named(m0)]
        shapes = {"router.weight": (self.N, self.D), "router.bias": (self.N,), "w1": (self.N, self.H, self.D),
                  "b1": (self.N, self.H), "w2": (self.N, self.O, self.H), "b2": (self.N, self.O)}
        for n in ("router.weight", "w1", "b1", "w2", "b2"):
            if n not in self.names:
                raise ValueError(f"models[0] has no parameter named {n!r} (found {sorted(_named(m0))})")
        for n in self.names:
            if tuple(_named(m0)[n].shape) != shapes[n]:
                raise ValueError(f"parameter {n} of models[0] must have shape {shapes[n]}, "
                                 f"got {tuple(_named(m0)[n].shape)}")

    @staticmethod
    def _signature(m: nn.Module) -> tuple:
        if not isinstance(m, MoE):
            return (type(m).__name__,)
        return (m.d_model, m.d_hidden, m.n_experts, m.k, m.d_out, m.router_kind, m.activation,
                getattr(m.router, "weighting", None), m.router.bias is not None, m.capacity_factor,
                getattr(m, "expert_kind", "mlp"))

    def params_of(self, model: nn.Module) -> list[torch.Tensor]:
        named = _named(model)
        return [named[n] for n in self.names]

    def forward(self, params: list[torch.Tensor], x: torch.Tensor, noise: torch.Tensor | None = None, *,
                tau: torch.Tensor | None = None, bias: torch.Tensor | None = None):
        """``x (P, B, D) -> y (P, B, O)`` and a dict of what routing made of it.

        ``tau (P, 1, 1)``, if given, divides the logits (router temperature: ``p = softmax(g / tau)``;
        the selection, the weights and the balancing losses all see the tempered logits).
        ``noise (P, N, B)``, if given, is added to the (tempered) logits before routing
        (training-time router noise: it moves the choice of experts and their weights; the gradient
        flows through ``g``). ``bias (P, N)``, if given, is a selection bias ``beta``: the top-k set is
        ``S_k(g + beta)`` while the weights come from ``g`` alone
        (:func:`~moe_theory.balancing.biased_topk_route`).

        The dict holds ``logits`` ``g (P, N, B)``, ``indices`` ``(P, k, B)`` (``None`` for a softmax
        router), ``combine`` ``(P, N, B)`` (the weight of each expert for each token, zero off the
        active set) and ``expert_outputs`` ``(P, N, O, B)`` (every expert on every token).

        Batch axis last inside (``(P, features, B)``): the first layers of all experts are one
        ``bmm``, the second layers one block-diagonal ``bmm``; the softmax over the ``N`` experts is
        written out (torch's kernel is slow on a short axis).
        """
        p = dict(zip(self.names, params))
        xT = x.transpose(1, 2)  # (P, D, B)
        g = torch.bmm(p["router.weight"], xT)  # (P, N, B)
        if "router.bias" in p:
            g = g + p["router.bias"][:, :, None]
        if tau is not None:
            g = g / tau
        if noise is not None:
            g = g + noise
        out = self._experts(p, xT)  # (P, N, O, B)
        if self.router == "softmax":
            C = _softmax1(g)  # (P, N, B)
            idx = None
        else:
            # the library's rule (ties to the smaller index), on a (P, B, N) copy: fast on a last axis
            sel = g.detach() if bias is None else (g + bias[:, :, None]).detach()
            idx = topk_route(sel.transpose(1, 2).contiguous(), self.k)[0].transpose(1, 2)  # (P, k, B)
            if self.weighting == "renormalized":
                pi = _softmax1(g.gather(1, idx))  # (P, k, B)
            else:
                pi = _softmax1(g).gather(1, idx)  # (P, k, B)
            C = torch.zeros_like(g).scatter(1, idx, pi)  # (P, N, B), zero off the active set
        y = (C[:, :, None, :] * out).sum(1)  # (P, O, B)
        return y.transpose(1, 2), {"logits": g, "indices": idx, "combine": C, "expert_outputs": out}

    def _experts(self, p: dict, xT: torch.Tensor) -> torch.Tensor:
        """Every expert on every token: ``xT (P, D, B) -> (P, N, O, B)``."""
        P, N, H, O = xT.shape[0], self.N, self.H, self.O
        w1 = p["w1"].reshape(P, N * H, -1)  # (P, N H, D)
        h = self.act(torch.baddbmm(p["b1"].reshape(P, N * H, 1), w1, xT))  # (P, N H, B)
        w2 = (p["w2"][:, :, :, None, :] * self._eye(N, xT)).reshape(P, N * O, N * H)  # block-diagonal
        return torch.baddbmm(p["b2"].reshape(P, N * O, 1), w2, h).view(P, N, O, -1)  # (P, N, O, B)

    @staticmethod
    def _eye(N, x):
        return torch.eye(N, device=x.device, dtype=x.dtype)[None, :, None, :, None]  # (1, N, 1, N, 1)

    def aux_loss(self, info: dict, kind: str = "switch") -> torch.Tensor:
        """A balancing loss per member, shape (P,), on the (tempered) logits of ``forward``.

        ``"switch"``: ``N sum_i f_i P_i`` with ``f_i`` the fraction of (token, slot) pairs expert ``i``
        received (``sum_i f_i = 1``, as :func:`~moe_theory.layers.load_balancing_loss`; it is
        :func:`~moe_theory.balancing.switch_load_balancing_loss` divided by ``k``) and ``P_i`` the mean
        router probability; ``"z_loss"``: :func:`~moe_theory.balancing.router_z_loss`;
        ``"importance"``: :func:`~moe_theory.balancing.importance_loss` of the routing weights.
        """
        g, idx = info["logits"], info["indices"]
        P, N, B = g.shape
        if kind == "z_loss":
            return (torch.logsumexp(g, 1) ** 2).mean(1)
        if kind == "importance":
            v = info["combine"].sum(2)  # (P, N): the gate sums of the experts
            return v.var(1, unbiased=False) / v.mean(1) ** 2
        probs = _softmax1(g).mean(2)  # (P, N)
        if idx is None:  # dense softmax routing: every expert gets every token
            f = torch.full_like(probs, 1.0 / N)
        else:
            f = torch.zeros_like(probs).scatter_add_(1, idx.reshape(P, -1), torch.ones_like(
                idx.reshape(P, -1), dtype=g.dtype)) / idx[0].numel()  # (P, N)
        return N * (f * probs).sum(1)

    def counts(self, idx: torch.Tensor) -> torch.Tensor:
        """Tokens (token, slot pairs) each expert received, per member, shape (P, N): :func:`expert_counts`."""
        return expert_counts(idx, self.N)

    def loads(self, info: dict) -> torch.Tensor:
        """Fraction of (token, slot) pairs each expert received, per member, shape (P, N): with a dense
        softmax router every expert gets every token (``1/N`` each); with a smoothed router the
        (token, expert) pairs of positive weight are counted."""
        g, idx = info["logits"], info["indices"]
        if idx is not None:
            return self.counts(idx) / idx[0].numel()
        if self.router == "softmax":
            return torch.full(g.shape[:2], 1.0 / self.N, dtype=torch.float64)
        active = (info["combine"] > 0).double().sum(2)  # (P, N)
        return active / active.sum(1, keepdim=True)

    def activation_width(self) -> int:
        return self.D + 3 * self.N * self.H + 3 * self.N * self.O + 6 * self.N

    def revive_dead_units(self, params, moments, x: torch.Tensor, idx: torch.Tensor | None, gens) -> torch.Tensor:
        """Redraw every hidden unit that fires on none of the tokens its expert received in ``x``.

        A unit ``(n, h)`` of member ``p`` is *dead* on the batch when its pre-activation
        ``w1[p, n, h] . x + b1[p, n, h]`` is ``<= 0`` for every token routed to expert ``n`` (an
        expert that received no token is left alone). Its input weights are redrawn from PyTorch's
        default ``U(-1/sqrt(D), 1/sqrt(D))`` and its bias set so that its kink passes through one of
        the expert's own tokens, drawn at random (so it starts alive); Adam's moments of the redrawn
        entries are reset. Draws come from ``gens`` (one generator per member), never the data
        streams. Returns the number of revived units per member, shape (P,).
        """
        p = dict(zip(self.names, params))
        P, B, D = x.shape
        N, H = self.N, self.H
        xT = x.transpose(1, 2)  # (P, D, B)
        pre = torch.baddbmm(p["b1"].reshape(P, N * H, 1), p["w1"].reshape(P, N * H, D), xT).view(P, N, H, B)
        if idx is None:
            routed = torch.ones(P, N, B, dtype=torch.bool, device=x.device)
        else:
            routed = torch.zeros(P, N, B, dtype=torch.bool, device=x.device).scatter_(1, idx, True)  # (P, N, B)
        fires = ((pre > 0) & routed[:, :, None, :]).any(-1)  # (P, N, H)
        dead = ~fires & routed.any(-1)[:, :, None]  # (P, N, H)
        w1, b1 = p["w1"], p["b1"]
        bound = 1.0 / math.sqrt(D)
        for j in range(P):
            cells = dead[j].nonzero().tolist()
            for n, h in cells:
                tokens = routed[j, n].nonzero()[:, 0]
                w = (torch.rand(D, generator=gens[j], dtype=torch.float64) * 2 - 1) * bound
                t = tokens[int(torch.randint(len(tokens), (1,), generator=gens[j]))]
                w = w.to(w1.device, w1.dtype)
                w1.data[j, n, h] = w
                b1.data[j, n, h] = -(w @ x[j, t])
                for name in ("w1", "b1"):
                    k = self.names.index(name)
                    moments[0][k][j, n, h] = 0
                    moments[1][k][j, n, h] = 0
        return dead.sum((1, 2))


class _DenseFamily:
    """Stacked ``nn.Sequential`` members of ``Linear`` layers and activations: ``W_l (P, out, in)``."""

    is_moe = False

    def __init__(self, models: Sequence[nn.Module]):
        sig = self._signature(models[0])
        for i, m in enumerate(models):
            s = self._signature(m)
            if s != sig:
                raise ValueError(f"models[{i}] must have the architecture of models[0]: {sig}, got {s}")
        self.layers = sig
        self.D = sig[0][1]

    @staticmethod
    def _signature(m: nn.Module) -> tuple:
        if not isinstance(m, nn.Sequential):
            raise TypeError(f"models must be MoE layers or nn.Sequential dense nets, got {type(m).__name__}")
        sig = []
        for j, layer in enumerate(m):
            if isinstance(layer, nn.Linear):
                sig.append(("linear", layer.in_features, layer.out_features, layer.bias is not None))
            elif type(layer) in _ACTIVATIONS:
                sig.append((type(layer).__name__,))
            else:
                raise ValueError(f"dense members may hold only Linear, ReLU, Tanh and GELU layers, "
                                 f"got {type(layer).__name__} at position {j}")
        if not sig or sig[0][0] != "linear":
            raise ValueError("a dense member must start with an nn.Linear layer")
        return tuple(sig)

    def params_of(self, model: nn.Module) -> list[torch.Tensor]:
        out = []
        for layer in model:
            if isinstance(layer, nn.Linear):
                out += [layer.weight] + ([layer.bias] if layer.bias is not None else [])
        return out

    def forward(self, params: list[torch.Tensor], x: torch.Tensor, noise=None, *, tau=None, bias=None):
        """``x (P, B, D) -> y (P, B, O)`` (and an empty dict: no routing)."""
        it = iter(params)
        h = x.transpose(1, 2)  # (P, D, B): batch axis last
        for s in self.layers:
            if s[0] == "linear":
                w = next(it)  # (P, out, in)
                h = torch.baddbmm(next(it)[:, :, None], w, h) if s[3] else torch.bmm(w, h)  # (P, out, B)
            else:
                h = {"ReLU": F.relu, "Tanh": torch.tanh, "GELU": F.gelu}[s[0]](h)
        return h.transpose(1, 2), {}

    def activation_width(self) -> int:
        return sum(3 * s[2] for s in self.layers if s[0] == "linear") + self.D


class _SmoothFamily(_MoEFamily):
    """Stacked :class:`~moe_theory.discontinuity_smooth.SmoothMoE` members (dense MoE, top-k or
    smoothed top-k router): gate ``(P, N, D)`` + ``(P, N)``, experts as :class:`_MoEFamily`, and for the
    smoothed router the width parameter ``theta (P,)`` (``eta = softplus(theta)``)."""

    def __init__(self, models):
        from .discontinuity_smooth import SmoothMoE

        m0 = models[0]
        self.N, self.k, self.D, self.O, self.H = m0.n_experts, m0.k, m0.d_model, m0.d_out, m0.d_hidden
        self.router = m0.router  # "topk" or "smooth"
        self.weighting = "renormalized"
        self.act = F.relu
        _check_members(models, SmoothMoE, "a SmoothMoE", self._signature)
        self.names = ["router.weight", "router.bias", "w1", "b1", "w2", "b2"] + (
            ["theta"] if self.router == "smooth" else [])

    @staticmethod
    def _signature(m) -> tuple:
        return (type(m).__name__, m.d_model, m.d_hidden, m.n_experts, m.k, m.d_out, getattr(m, "router", None))

    def params_of(self, model):
        out = [model.gate_weight, model.gate_bias, model.w1, model.b1, model.w2, model.b2]
        return out + ([model.theta] if self.router == "smooth" else [])

    def eta(self, params) -> torch.Tensor:
        """The smoothing width per member, ``softplus(theta)``, shape (P,)."""
        return F.softplus(params[self.names.index("theta")])

    def forward(self, params, x, noise=None, *, tau=None, bias=None):
        """As :meth:`SmoothMoE.forward` per member: weights :func:`topk_softmax_weights` (top-k then
        softmax) or :func:`smoothed_topk_weights` with the member's own ``eta``; every expert dense."""
        from .discontinuity_smooth import log_smoothing_ramp

        if noise is not None or tau is not None or bias is not None:
            raise ValueError("router noise, temperature and selection bias are not defined for SmoothMoE members")
        p = dict(zip(self.names, params))
        xT = x.transpose(1, 2)  # (P, D, B)
        g = torch.baddbmm(p["router.bias"][:, :, None], p["router.weight"], xT)  # (P, N, B)
        out = self._experts(p, xT)  # (P, N, O, B)
        gl = g.transpose(1, 2)  # (P, B, N)
        order = torch.sort(gl.detach(), dim=-1, descending=True, stable=True)
        if self.router == "topk":
            idx = order[1][..., :self.k]  # (P, B, k)
            mask = torch.zeros_like(gl, dtype=torch.bool).scatter(-1, idx, True)
            pi = torch.softmax(gl.masked_fill(~mask, -math.inf), -1)  # (P, B, N)
            indices = idx.transpose(1, 2)
        else:
            eta = self.eta(params)[:, None, None]  # (P, 1, 1)
            gk = order[0][..., self.k - 1:self.k]  # (P, B, 1): the k-th largest logit, no gradient
            u = (gl.detach() - gk + eta) / eta
            pi = torch.softmax(gl + log_smoothing_ramp(u), -1)  # (P, B, N)
            indices = None
        C = pi.transpose(1, 2)  # (P, N, B)
        y = (C[:, :, None, :] * out).sum(1)  # (P, O, B)
        return y.transpose(1, 2), {"logits": g, "indices": indices, "combine": C, "expert_outputs": out}

    def activation_width(self) -> int:
        return self.D + 3 * self.N * self.H + 3 * self.N * self.O + 8 * self.N


@dataclass
class PopulationResult:
    """What :func:`fit_population` returns.

    ``records[i]`` is member ``i``'s record (``key``, ``seed``, ``final_train_mse`` = mean of the
    last 50 minibatch losses, ``train_seconds``, for an MoE ``train_load_fraction`` and
    ``train_dead_experts`` on the last minibatch, plus what ``evaluate`` returned);
    ``losses[i]`` its minibatch loss history (``None`` for a member whose record was resumed).
    """

    records: list[dict] = field(default_factory=list)
    losses: list = field(default_factory=list)
    seconds: float = 0.0
    chunk_size: int = 0


@dataclass
class PopulationState:
    """One training step of a chunk of the population, as ``penalty`` and ``monitor`` see it.

    Shapes carry the chunk's ``P`` first (its members are ``members``, indices into ``models``).
    ``params``: the stacked weights by name (``router.weight (P, N, D)``, ``router.bias``, ``w1``, ``b1``,
    ``w2``, ``b2``, for a SmoothMoE ``theta``; dense members ``p0, p1, ...``), live: inside ``penalty``
    they carry gradients, inside ``monitor`` they are already updated. ``x (P, B, D)``, ``target``,
    ``output (P, B, O)`` and ``loss (P,)`` (the data loss, before any balancing term or penalty) are
    this step's minibatch and forward pass. For an MoE: ``logits (P, N, B)`` (tempered),
    ``indices (P, k, B)`` (``None`` for a dense softmax or smoothed router), ``combine (P, N, B)`` (routing
    weights, zero off the active set), ``expert_outputs (P, N, O, B)`` and ``bias (P, N)`` (the
    selection bias of loss-free balancing, ``None`` without it).
    """

    step: int
    members: list
    params: dict
    x: torch.Tensor
    target: torch.Tensor
    output: torch.Tensor
    loss: torch.Tensor
    logits: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    combine: torch.Tensor | None = None
    expert_outputs: torch.Tensor | None = None
    bias: torch.Tensor | None = None


def population_chunk_size(models: Sequence[nn.Module], batch_size: int, *,
                          memory_budget: float = 2**30, max_chunk: int = 64) -> int:
    """Members per chunk so that one chunk's tensors fit ``memory_budget`` bytes.

    Per member: the parameters four times (weights, gradients, Adam's two moments) and the
    activations of one minibatch about three times (forward values, saved tensors, gradients).
    ``max_chunk`` caps it: past about 64 members a step runs out of cache and gets slower per member.
    """
    memory_budget = check_positive_real("memory_budget", memory_budget)
    max_chunk = check_positive_int("max_chunk", max_chunk)
    batch_size = check_positive_int("batch_size", batch_size)
    family = _family(models)
    p0 = family.params_of(models[0])
    item = p0[0].element_size()
    per_member = item * (4 * sum(p.numel() for p in p0) + 3 * batch_size * family.activation_width())
    return int(max(1, min(max_chunk, len(models), memory_budget // per_member)))


def _family(models):
    if isinstance(models, nn.Module) or not isinstance(models, Sequence):
        raise TypeError(f"models must be a list of modules, got {type(models).__name__}")
    if len(models) < 1:
        raise ValueError(f"models must hold P >= 1 members, got P={len(models)}")
    from .discontinuity_smooth import SmoothMoE

    if isinstance(models[0], SmoothMoE):
        return _SmoothFamily(models)
    return _MoEFamily(models) if isinstance(models[0], MoE) else _DenseFamily(models)


def _lr_schedule(lr: float, steps: int, lr_decay: bool, lr_min_ratio: float, warmup_steps: int = 0) -> np.ndarray:
    """The learning rate of each step, from the very scheduler :func:`fit_regressor` uses, times a
    linear warm-up ``min(1, s / warmup_steps)`` over steps ``s = 1, 2, ...`` when ``warmup_steps > 0``."""
    ramp = np.minimum(1.0, np.arange(1, steps + 1) / warmup_steps) if warmup_steps else np.ones(steps)
    if not lr_decay:
        return np.full(steps, lr) * ramp
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr_min_ratio * lr)
    out = np.empty(steps)
    for s in range(steps):
        out[s] = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
    return out * ramp


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a listed requirement
        return None
    return tqdm(total=total, desc="population", unit="step", leave=False)


def fit_population(models: Sequence[nn.Module], x: torch.Tensor | None = None, y: torch.Tensor | None = None, *,
                   seeds: Sequence[int], steps: int = 1000, lr: float | Sequence[float] = 1e-2,
                   batch_size: int | None = None, aux_weight: float = 0.0, lr_decay: bool = True,
                   clip: float | None = 1.0, lr_min_ratio: float = 0.05,
                   sampler: Callable | None = None, keys: Sequence | None = None,
                   evaluate: Callable[[int, nn.Module], dict] | None = None,
                   records_path: str | Path | None = None, memory_budget: float = 2**30, max_chunk: int = 64,
                   keep_losses: bool = True, progress: bool = False, warmup_steps: int = 0,
                   router_noise: float = 0.0, router_noise_steps: int | None = None,
                   revive_dead: Sequence[int] = (), loss: str = "mse", aux_loss: str = "switch",
                   router_temperature: float | Sequence[float] = 1.0, bias_update: float = 0.0,
                   penalty: Callable[[PopulationState], torch.Tensor] | None = None,
                   monitor: Callable[[int, PopulationState], None] | None = None,
                   device=None, dtype=None) -> PopulationResult:
    """Train ``P`` models together; member ``i`` follows ``fit_regressor(models[i], ..., seed=seeds[i])``.

    Parameters
    ----------
    models : list of nn.Module, length P
        Members of one architecture: :class:`~moe_theory.layers.MoE` layers (MLP experts; router
        ``"topk"`` with either weighting, or ``"softmax"``), dense ``nn.Sequential`` nets of
        ``Linear`` layers and ``ReLU``/``Tanh``/``GELU``, or
        :class:`~moe_theory.discontinuity_smooth.SmoothMoE` layers (top-k or smoothed router). Each
        arrives initialised (its own seed); the trained weights are written back into it.
    x, y : torch.Tensor, shapes (T, D) and (T, O), or (P, T, D) and (P, T, O)
        A training set shared by all members, or one per member (omit both with ``sampler``). With
        ``loss="cross_entropy"``, ``y`` holds class indices, shape (T,) or (P, T).
    seeds : sequence of int, length P
        Seed of member ``i``'s minibatch generator (``torch.Generator().manual_seed(seeds[i])``).
    steps, lr, batch_size, aux_weight, lr_decay, clip, lr_min_ratio
        As in :func:`~moe_theory.training.fit_regressor`: Adam with learning rate ``lr`` (one
        value, or one per member), cosine-decayed to ``lr_min_ratio * lr``; per-member gradient
        clipping ``g <- g min(1, clip / (|g| + 1e-6))``; loss ``mean (y - t)^2`` plus
        ``aux_weight * N sum_i f_i P_i`` for an MoE (Fedus et al., 2021). ``aux_weight`` may also be
        one value per member.
    loss : {"mse", "cross_entropy"}
        The data loss: mean squared error, or the mean cross-entropy of the outputs read as class
        scores (``F.cross_entropy``) against integer labels ``y``.
    aux_loss : {"switch", "z_loss", "importance"}
        The balancing loss ``aux_weight`` multiplies (MoE members; ``_MoEFamily.aux_loss``): the Switch
        loss above, the router z-loss (Zoph et al., 2022) or the importance loss ``CV^2`` of the
        experts' gate sums (Shazeer et al., 2017).
    router_temperature : float or sequence of float
        ``tau`` (one value, or one per member; MoE members): the router's probabilities are
        ``softmax(g / tau)``; selection, weights and balancing loss all see ``g / tau``.
    bias_update : float
        ``gamma`` of auxiliary-loss-free balancing (Wang et al., 2024; MoE top-k members): a selection
        bias ``beta`` per member, zero at the start, chooses ``S_k(g + beta)`` while the weights come
        from ``g``; after each step ``beta_i += gamma sign(mean(c) - c_i)``, ``c_i`` the tokens expert
        ``i`` got in that step (:func:`~moe_theory.balancing.aux_free_bias_update`). The record
        holds the final ``selection_bias``. Default 0: no bias.
    penalty : callable, optional
        ``penalty(state) -> Tensor (P_chunk,)``, a differentiable term per member added to the loss
        (``state``: :class:`PopulationState`, with the stacked weights in ``state.params``), e.g. an
        orthogonality penalty on the expert outputs.
    monitor : callable, optional
        ``monitor(step, state)``, called after each update ``step = 1..steps`` with that step's
        forward pass (the weights *before* the update, as in the loss history) and the updated
        weights, and once more with ``step = steps + 1`` and a forward pass of the trained weights on
        the last minibatch; for logs of routing statistics. It must not modify the tensors.
    sampler : callable, optional
        ``sampler(generators, members) -> (xb, yb)`` of shapes (P_c, B, D) and (P_c, B, O): a fresh
        minibatch for each member of a chunk (``members``: their indices in ``models``), drawn
        from that member's generator as the single run's ``sampler(generator)`` would draw it.
    keys : sequence, optional
        JSON-able name of each member (default ``0..P-1``); records are resumed by key.
    evaluate : callable, optional
        ``evaluate(i, model) -> dict``, called on each member after training; merged into its record.
    records_path : path, optional
        JSON-lines file: each finished chunk's records are appended; members whose key is already
        there are not trained again (their record is read back, their model left untouched).
    memory_budget : float
        Bytes one chunk may use (default 1 GiB): see :func:`population_chunk_size`.
    max_chunk : int
        Most members per chunk (default 64).
    keep_losses : bool
        Return each member's loss history.
    progress : bool
        Show a progress bar (``tqdm.auto``: notebook or terminal).
    warmup_steps : int
        Linear learning-rate warm-up over the first ``warmup_steps`` steps (default 0: none, the
        schedule of :func:`~moe_theory.training.fit_regressor`).
    router_noise : float
        Training-time router noise (MoE members only; default 0: none). At step ``s`` the logits get
        ``router_noise * (1 - s / router_noise_steps) * std(W_r x) * xi`` added before routing, ``std(W_r x)``
        the member's logit spread on the minibatch (detached), ``xi`` standard normal from a generator
        of the member's own (seeded from its seed; the data stream is untouched).
    router_noise_steps : int, optional
        Steps over which the noise decays linearly to zero (default ``steps // 3``).
    revive_dead : sequence of int
        Steps after which an MoE member's dead hidden units (silent on every token their expert got in
        that step's minibatch) are redrawn with their kink on the expert's data
        (``_MoEFamily.revive_dead_units``); the record counts them in ``revived_units``.
    device, dtype : optional
        Where and in what precision to train (default: the members' own).

    Returns
    -------
    PopulationResult
    """
    family = _family(models)
    P = len(models)
    seeds = [check_seed(f"seeds[{i}]", s) for i, s in enumerate(_as_list("seeds", seeds, P))]
    keys = list(range(P)) if keys is None else _as_list("keys", keys, P)
    if len({json.dumps(k) for k in keys}) != P:
        raise ValueError("keys must be distinct, got repeated keys")
    steps = check_positive_int("steps", steps)
    lrs = [check_positive_real("lr", v) for v in _broadcast("lr", lr, P)]
    aux_weight = [check_real("aux_weight", v, minimum=0.0) for v in _broadcast("aux_weight", aux_weight, P)]
    taus = [check_positive_real("router_temperature", v) for v in
            _broadcast("router_temperature", router_temperature, P)]
    loss = check_choice("loss", loss, ("mse", "cross_entropy"))
    aux_loss = check_choice("aux_loss", aux_loss, ("switch", "z_loss", "importance"))
    bias_update = check_real("bias_update", bias_update, minimum=0.0)
    for name, fn in (("penalty", penalty), ("monitor", monitor)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable or None, got {type(fn).__name__}")
    lr_decay = check_bool("lr_decay", lr_decay)
    lr_min_ratio = check_real("lr_min_ratio", lr_min_ratio, minimum=0.0, maximum=1.0)
    if clip is not None:
        clip = check_positive_real("clip", clip)
    keep_losses, progress = check_bool("keep_losses", keep_losses), check_bool("progress", progress)
    warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
    router_noise = check_real("router_noise", router_noise, minimum=0.0)
    router_noise_steps = (max(1, steps // 3) if router_noise_steps is None
                          else check_positive_int("router_noise_steps", router_noise_steps))
    if isinstance(revive_dead, (str, bytes)) or not hasattr(revive_dead, "__iter__"):
        raise TypeError(f"revive_dead must be a sequence of step numbers, got {type(revive_dead).__name__}")
    revive_dead = sorted({check_int("revive_dead[]", s_, minimum=1, maximum=steps) for s_ in revive_dead})
    if (router_noise > 0 or revive_dead) and not family.is_moe:
        raise ValueError("router_noise and revive_dead apply to MoE members only, got dense members")
    if revive_dead and family.act is not F.relu:
        raise ValueError("revive_dead needs ReLU experts (a dead unit is a ReLU that never fires)")
    routed = isinstance(family, _MoEFamily) and not isinstance(family, _SmoothFamily)
    if not routed and (any(v != 1.0 for v in taus) or bias_update > 0 or router_noise > 0 or revive_dead):
        raise ValueError("router_temperature, bias_update, router_noise and revive_dead apply to MoE members "
                         f"only, got {type(models[0]).__name__} members")
    if bias_update > 0 and family.router == "softmax":
        raise ValueError("bias_update needs a top-k router (a dense softmax router selects every expert)")
    if evaluate is not None and not callable(evaluate):
        raise TypeError(f"evaluate must be callable or None, got {type(evaluate).__name__}")
    p0 = family.params_of(models[0])
    device = p0[0].device if device is None else resolve_device(device)
    dtype = p0[0].dtype if dtype is None else dtype
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype such as torch.float32, got {dtype!r}")
    x, y = _check_data(x, y, sampler, P, family, device, dtype, loss)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    B_est = batch_size or (x.shape[-2] if x is not None else 512)
    chunk = population_chunk_size(models, B_est, memory_budget=memory_budget, max_chunk=max_chunk)

    done = _read_records(records_path)
    todo = [i for i in range(P) if json.dumps(keys[i]) not in done]
    schedules = {v: _lr_schedule(v, steps, lr_decay, lr_min_ratio, warmup_steps) for v in set(lrs)}
    extras = {"router_noise": router_noise, "router_noise_steps": router_noise_steps, "revive_dead": revive_dead,
              "loss_kind": loss, "aux_kind": aux_loss, "tau": None if all(v == 1.0 for v in taus) else taus,
              "bias_update": bias_update, "penalty": penalty, "monitor": monitor}
    result = PopulationResult(records=[None] * P, losses=[None] * P, chunk_size=chunk)
    for i in range(P):
        if i not in todo:
            result.records[i] = done[json.dumps(keys[i])]
    bar = _progress(steps * math.ceil(len(todo) / chunk), progress)
    start = time.perf_counter()
    for c in range(0, len(todo), chunk):
        members = todo[c:c + chunk]
        t0 = time.perf_counter()
        losses, loads, revived, final_bias = _train_chunk(family, models, members, x, y, sampler, seeds, schedules, lrs, steps,
                                              batch_size, aux_weight, clip, device, dtype, bar, **extras)
        seconds = (time.perf_counter() - t0) / len(members)
        new = []
        for j, i in enumerate(members):
            rec = {"key": keys[i], "seed": seeds[i], "final_train_mse": float(np.mean(losses[j, -50:])),
                   "train_seconds": seconds}
            if loads is not None:
                rec["train_load_fraction"] = loads[j].tolist()
                rec["train_dead_experts"] = int((loads[j] == 0).sum())
            if revive_dead:
                rec["revived_units"] = int(revived[j])
            if final_bias is not None:
                rec["selection_bias"] = final_bias[j].tolist()
            if evaluate is not None:
                rec.update(evaluate(i, models[i]))
            result.records[i] = rec
            result.losses[i] = losses[j].tolist() if keep_losses else None
            new.append(rec)
        if records_path is not None:
            with open(records_path, "a") as fh:
                for rec in new:
                    fh.write(json.dumps(rec) + "\n")
    if bar is not None:
        bar.close()
    result.seconds = time.perf_counter() - start
    return result


def _as_list(name: str, value, P: int) -> list:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"{name} must be a sequence of length P (= {P}), got {type(value).__name__}")
    value = list(value)
    if len(value) != P:
        raise ValueError(f"{name} must have one entry per member: length P (= {P}), got length {len(value)}")
    return value


def _broadcast(name: str, value, P: int) -> list:
    """One value for every member, or one per member (checked by :func:`_as_list`)."""
    return [value] * P if np.isscalar(value) else _as_list(name, value, P)


def _check_data(x, y, sampler, P, family, device, dtype, loss="mse"):
    if sampler is not None:
        if not callable(sampler):
            raise TypeError(f"sampler must be callable or None, got {type(sampler).__name__}")
        if x is not None or y is not None:
            raise ValueError("pass either x and y or a sampler, not both")
        return None, None
    if x is None or y is None:
        raise ValueError("fit_population needs either x and y or a sampler, got neither")
    x = check_tensor("x", x)
    if loss == "cross_entropy":
        if not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise TypeError(f"with loss='cross_entropy', y must be an integer tensor of class indices, got "
                            f"{getattr(y, 'dtype', type(y).__name__)}")
        if x.ndim not in (2, 3) or y.ndim != x.ndim - 1:
            raise ValueError(f"with loss='cross_entropy', x and y must have shapes (T, D) and (T,), or (P, T, D) "
                             f"and (P, T), got {tuple(x.shape)} and {tuple(y.shape)}")
        n_classes = getattr(family, "O", None)
        if n_classes is not None and y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            raise ValueError(f"y must hold class indices in [0, {n_classes}) (the members' output width), "
                             f"got values in [{int(y.min())}, {int(y.max())}]")
    else:
        y = check_tensor("y", y)
        if x.ndim not in (2, 3) or y.ndim != x.ndim:
            raise ValueError(f"x and y must both have shape (T, *) or both (P, T, *), got shapes "
                             f"{tuple(x.shape)} and {tuple(y.shape)}")
    if x.ndim == 3 and (x.shape[0] != P or y.shape[0] != P):
        raise ValueError(f"per-member data must have P (= {P}) rows first, got shapes {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    rows_y = y.shape[1] if x.ndim == 3 else y.shape[0]
    if x.shape[-2] != rows_y:
        raise ValueError(f"x and y must have the same number of rows, got {x.shape[-2]} and {rows_y}")
    if x.shape[-1] != family.D:
        raise ValueError(f"x must have D (= {family.D}) columns, the members' input width, got {x.shape[-1]}")
    y = y.to(device=device) if loss == "cross_entropy" else y.to(device=device, dtype=dtype)
    return x.to(device=device, dtype=dtype), y


def _read_records(path) -> dict:
    if path is None or not Path(path).exists():
        return {}
    out = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out[json.dumps(rec["key"])] = rec
    return out


def _train_chunk(family, models, members, x, y, sampler, seeds, schedules, lrs, steps, batch_size, aux_weight,
                 clip, device, dtype, bar, router_noise=0.0, router_noise_steps=1, revive_dead=(), loss_kind="mse",
                 aux_kind="switch", tau=None, bias_update=0.0, penalty=None, monitor=None):
    Pc = len(members)
    with torch.no_grad():
        params = [torch.stack([family.params_of(models[i])[j].detach() for i in members]).to(device, dtype)
                  .requires_grad_(True) for j in range(len(family.params_of(models[members[0]])))]
    _check_consistent(family, models, members, params, device, dtype)
    exp_avg = [torch.zeros_like(p) for p in params]
    exp_avg_sq = [torch.zeros_like(p) for p in params]
    gens = [torch.Generator().manual_seed(seeds[i]) for i in members]
    lr_table = torch.as_tensor(np.stack([schedules[lrs[i]] for i in members], 1), dtype=dtype)  # (steps, Pc)
    same_lr = len({lrs[i] for i in members}) == 1
    aux_w = torch.as_tensor([aux_weight[i] for i in members], dtype=dtype, device=device)  # (Pc,)
    taus = None if tau is None else torch.as_tensor([tau[i] for i in members], dtype=dtype,
                                                    device=device).view(Pc, 1, 1)
    bias = torch.zeros(Pc, family.N, dtype=dtype, device=device) if bias_update > 0 else None
    losses = torch.empty(steps, Pc, dtype=torch.float64)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    use_aux = family.is_moe and bool((aux_w > 0).any())
    T = None if x is None else x.shape[-2]
    info = {}
    # generators of the remedies, apart from the data streams (so those are unchanged)
    aux_gens = [torch.Generator().manual_seed(seeds[i] + _REMEDY_SEED_OFFSET) for i in members]
    revived = torch.zeros(Pc, dtype=torch.long)
    names = getattr(family, "names", None) or [f"p{j}" for j in range(len(params))]
    for step in range(1, steps + 1):
        xb, yb = _draw(x, y, sampler, gens, members, batch_size, T, device, dtype, loss_kind)
        noise = None
        if router_noise > 0 and step <= router_noise_steps:
            with torch.no_grad():
                g0 = torch.bmm(params[0], xb.transpose(1, 2))  # (Pc, N, B): the spread of the logits
                xi = torch.stack([torch.randn(g0.shape[1:], generator=gen, dtype=torch.float64) for gen in aux_gens])
                scale = router_noise * (1 - step / router_noise_steps) * g0.std(dim=(1, 2), keepdim=True)
                noise = scale * xi.to(device, dtype)  # (Pc, N, B)
        pred, info = family.forward(params, xb, noise, tau=taus, bias=bias)
        loss = _data_loss(pred, yb, loss_kind)  # (Pc,)
        total = loss.sum()
        if use_aux:
            total = total + (aux_w * family.aux_loss(info, aux_kind)).sum()
        state = None
        if penalty is not None or monitor is not None:
            state = PopulationState(step, list(members), dict(zip(names, params)), xb, yb, pred, loss, bias=bias,
                                    **info)
        if penalty is not None:
            total = total + _check_penalty(penalty(state), Pc).sum()
        grads = torch.autograd.grad(total, params)
        with torch.no_grad():
            if clip is not None:
                norm = torch.sqrt(sum(gr.reshape(Pc, -1).pow(2).sum(1) for gr in grads))  # (Pc,)
                coef = torch.clamp(clip / (norm + 1e-6), max=1.0)
                grads = [gr * coef.view(Pc, *[1] * (gr.ndim - 1)) for gr in grads]
            bc1, bc2 = 1 - beta1 ** step, 1 - beta2 ** step
            lr_now = lr_table[step - 1].to(device)
            for p, gr, m, v in zip(params, grads, exp_avg, exp_avg_sq):
                m.lerp_(gr, 1 - beta1)
                v.mul_(beta2).addcmul_(gr, gr, value=1 - beta2)
                denom = (v.sqrt() / math.sqrt(bc2)).add_(eps)
                if same_lr:
                    p.addcdiv_(m, denom, value=-float(lr_table[step - 1, 0]) / bc1)
                else:
                    p.sub_((lr_now / bc1).view(Pc, *[1] * (p.ndim - 1)) * m / denom)
            losses[step - 1] = loss.detach().to("cpu", torch.float64)
            if bias is not None:  # loss-free balancing: raise the bias of under-loaded experts
                c = family.counts(info["indices"]).to(dtype)  # (Pc, N)
                bias = bias + bias_update * torch.sign(c.mean(1, keepdim=True) - c)
            if step in revive_dead:
                revived += family.revive_dead_units(params, (exp_avg, exp_avg_sq), xb, info.get("indices"),
                                                    aux_gens).cpu()
            if monitor is not None:
                monitor(step, state)
        if bar is not None and (step % 50 == 0 or step == steps):
            bar.update(50 if step % 50 == 0 else step % 50)
    if monitor is not None:  # the trained weights, once more, without an update
        with torch.no_grad():
            pred, fin = family.forward(params, xb, tau=taus, bias=bias)
            monitor(steps + 1, PopulationState(steps + 1, list(members), dict(zip(names, params)), xb, yb, pred,
                                               _data_loss(pred, yb, loss_kind), bias=bias, **fin))
    loads = family.loads(info).cpu().numpy() if family.is_moe else None
    with torch.no_grad():
        for j, i in enumerate(members):
            for p_model, p_pop in zip(family.params_of(models[i]), params):
                p_model.copy_(p_pop[j].to(p_model.device, p_model.dtype))
    final_bias = None if bias is None else bias.cpu().numpy()
    return losses.T.numpy(), loads, revived.numpy(), final_bias


def _data_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-member data loss, shape (P,): mean squared error, or mean cross-entropy of class scores."""
    if kind == "mse":
        return ((pred - target) ** 2).mean(dim=(1, 2))
    P, B, C = pred.shape
    return F.cross_entropy(pred.reshape(P * B, C), target.reshape(P * B), reduction="none").view(P, B).mean(1)


def _check_penalty(value, Pc: int) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.shape != (Pc,):
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"penalty must return a tensor of shape (P_chunk,) = ({Pc},), one value per member, "
                         f"got {shape}")
    return value


def _draw(x, y, sampler, gens, members, batch_size, T, device, dtype, loss_kind="mse"):
    """One minibatch per member, each from the member's generator exactly as fit_regressor draws it."""
    if sampler is not None:
        xb, yb = sampler(gens, members)
        return xb.to(device, dtype), (yb.to(device, dtype) if loss_kind == "mse" else yb.to(device))
    if x.ndim == 2:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    if batch_size is None or batch_size >= T:
        if x.shape[0] == 1:
            return x.expand(len(members), *x.shape[1:]), y.expand(len(members), *y.shape[1:])
        rows = torch.as_tensor(members, device=x.device)
        return x[rows], y[rows]
    idx = torch.stack([torch.randint(0, T, (batch_size,), generator=gen) for gen in gens]).to(device)  # (Pc, B)
    if x.shape[0] == 1:
        return x[0][idx], y[0][idx]
    rows = torch.as_tensor(members, device=device)[:, None]
    return x[rows, idx], y[rows, idx]


def _check_consistent(family, models, members, params, device, dtype, n: int = 8):
    """The stacked forward must equal each member's own forward (guards the parameter layout)."""
    gen = torch.Generator().manual_seed(0)
    probe = torch.randn(len(members), n, family.D, generator=gen, dtype=torch.float64).to(device, dtype)
    with torch.no_grad():
        ours = family.forward(params, probe)[0]
        for j, i in enumerate(members):
            m = models[i]
            theirs = m(probe[j].to(next(m.parameters()).device, next(m.parameters()).dtype)).to(device, dtype)
            if not torch.allclose(ours[j], theirs, rtol=1e-4, atol=1e-5):
                raise ValueError(f"models[{i}]: the population's forward pass differs from the model's own "
                                 f"(max diff {float((ours[j] - theirs).abs().max()):.3g}); its parameter "
                                 f"layout is not the one this trainer knows")
