"""Experiments of the chapter *The coherence barrier*: recovery sweeps against the coherence,
descent on the orthogonality penalty, and a small MoE trained with and without it.

Everything is vectorised over trials (a leading batch axis) so the sweeps run live in the book.
The selection rules and penalties are those of :mod:`moe_theory.coherence`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._validation import (check_choice, check_int, check_k, check_positive_int, check_real, check_rng, check_seed,
                          check_seeds, per_seed)
from .coherence import (_energy, _exhaustive, _omp, _threshold, adversarial_dictionary, equiangular_dictionary,
                        normalize_columns, orthogonality_penalty)
from .device import resolve_device
from .layers import MoE

__all__ = ["batch_coherence", "score_selections", "recovery_rates", "recovery_sweep", "sparse_targets", "decorrelate",
           "plot_sweep", "plot_gap", "plot_barrier_instance",
           "PenaltyConfig", "train_penalised_moe", "train_penalised_population"]

FAMILIES = ("adversarial", "equiangular", "gaussian")


def batch_coherence(U: np.ndarray) -> np.ndarray:
    """Mutual coherence of each dictionary in a batch ``U (B, D, N)`` of unit atoms -> ``(B,)``."""
    G = np.abs(np.einsum("bdi,bdj->bij", U, U))  # (B, N, N)
    G[:, np.arange(U.shape[2]), np.arange(U.shape[2])] = 0.0
    return G.max(axis=(1, 2))


def score_selections(U: np.ndarray, t: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Thresholding and OMP against the exhaustive optimum on a batch (unit atoms ``U (B, D, N)``,
    targets ``t (B, D)``).

    Returns per trial: ``success_thr``/``success_omp`` (the rule's residual equals the optimum up
    to ``1e-9 ||t||^2``, so ties count as success) and ``ratio_thr``/``ratio_omp`` =
    ``E(S_rule) / max_S E(S)``, the captured-energy ratio.
    """
    e_opt = _exhaustive(U, t, k)[1]  # (B,)
    tol = 1e-9 * np.sum(t * t, axis=1)
    out = {}
    for name, S in (("thr", _threshold(U, t, k)), ("omp", _omp(U, t, k)[0])):
        e = _energy(U, t, S[:, None, :])[:, 0]  # (B,)
        out[f"success_{name}"] = e >= e_opt - tol
        out[f"ratio_{name}"] = e / e_opt
    return out


def sparse_targets(U: np.ndarray, k: int, rng, magnitudes=(1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Exactly ``k``-sparse targets ``t = A beta`` for a batch of dictionaries: a uniformly random
    support per trial, ``|beta_i| ~ U[magnitudes]`` and random signs. Returns ``(t (B, D), support (B, k))``."""
    rng = check_rng(rng)
    B, _, N = U.shape
    k = check_k(k, N, n_name="the number of atoms")
    lo, hi = (check_real("magnitudes", m, minimum=0.0) for m in magnitudes)
    if not 0 < lo <= hi:
        raise ValueError(f"magnitudes must be (lo, hi) with 0 < lo <= hi, got {tuple(magnitudes)!r}")
    S = np.sort(np.argsort(rng.random((B, N)), axis=1)[:, :k], axis=1)  # (B, k)
    beta = rng.uniform(lo, hi, (B, k)) * rng.choice([-1.0, 1.0], (B, k))
    t = np.einsum("bdk,bk->bd", np.take_along_axis(U, S[:, None, :], axis=2), beta)
    return t, S


def recovery_rates(A, k: int, *, trials: int = 300, magnitudes=(0.5, 1.5), seed: int = 0) -> dict[str, float]:
    """Success rates of thresholding and OMP (against the exhaustive optimum) on one dictionary
    ``A (D, N)`` over ``trials`` random exactly ``k``-sparse targets (see :func:`sparse_targets`)."""
    U = normalize_columns(A)
    trials = check_positive_int("trials", trials)
    U = np.broadcast_to(U, (trials,) + U.shape).copy()  # (trials, D, N)
    t = sparse_targets(U, k, np.random.default_rng(check_seed("seed", seed)), magnitudes)[0]
    sc = score_selections(U, t, k)
    return {"success_thr": float(sc["success_thr"].mean()), "success_omp": float(sc["success_omp"].mean())}


def recovery_sweep(family: str, values, k: int, *, N: int = 10, D: int = 12, trials: int = 200,
                   magnitudes=(1.0, 1.0), seed: int = 0) -> dict[str, np.ndarray]:
    """Success of thresholding and OMP against the exhaustive optimum as the coherence grows.

    Parameters
    ----------
    family : {"adversarial", "equiangular", "gaussian"}
        ``"adversarial"``: :func:`~moe_theory.coherence.adversarial_dictionary` with
        ``t = a_1 + ... + a_k`` (deterministic, one trial; ``values`` are ``mu < 1/k``);
        ``"equiangular"``: ``N`` atoms with all inner products ``mu`` (``values``) in ``R^{N+1}``;
        ``"gaussian"``: a fresh Gaussian dictionary in ``R^D`` pulled towards a shared direction
        per trial, ``values`` are the pull ``rho``.
    values : sequence of float
    k : int
    N, D, trials : int
    magnitudes : (float, float)
        Range of ``|beta_i|`` of the random ``k``-sparse targets (signs random).
    seed : int

    Returns
    -------
    dict of arrays, one entry per value
        ``mu`` (mean coherence), ``success_thr``, ``success_omp`` (fractions), ``ratio_thr``,
        ``ratio_omp`` (mean captured-energy ratios), ``ratio_thr_min``, ``ratio_omp_min``.
    """
    family = check_choice("family", family, FAMILIES)
    k = check_positive_int("k", k)
    trials, N, D = check_positive_int("trials", trials), check_int("N", N, minimum=2), check_positive_int("D", D)
    rng = np.random.default_rng(check_seed("seed", seed))
    rows = []
    for v in values:
        v = check_real("values", v, minimum=0.0, maximum=1.0)
        if family == "adversarial":
            U = adversarial_dictionary(k, v)[None]  # (1, k+1, k+1)
            t = U[:, :, 1:].sum(axis=2)
        elif family == "equiangular":
            check_k(k, N, n_name="N")
            U = np.broadcast_to(equiangular_dictionary(N, v), (trials, N + 1, N)).copy()
            t = sparse_targets(U, k, rng, magnitudes)[0]
        else:
            check_k(k, N, n_name="N")
            G = rng.standard_normal((trials, D, N))
            c = rng.standard_normal((trials, D, 1))
            A = math.sqrt(1 - v) * G / np.linalg.norm(G, axis=1, keepdims=True) \
                + math.sqrt(v) * c / np.linalg.norm(c, axis=1, keepdims=True)
            U = A / np.linalg.norm(A, axis=1, keepdims=True)  # (trials, D, N)
            t = sparse_targets(U, k, rng, magnitudes)[0]
        sc = score_selections(U, t, k)
        rows.append((batch_coherence(U).mean(), sc["success_thr"].mean(), sc["success_omp"].mean(),
                     sc["ratio_thr"].mean(), sc["ratio_omp"].mean(), sc["ratio_thr"].min(),
                     sc["ratio_omp"].min()))
    keys = ("mu", "success_thr", "success_omp", "ratio_thr", "ratio_omp", "ratio_thr_min", "ratio_omp_min")
    return {key: np.array(col) for key, col in zip(keys, zip(*rows))}


def decorrelate(A, steps: int, *, lr: float = 0.05, record=()) -> dict[int, np.ndarray]:
    """Gradient descent on the orthogonality penalty ``R`` of the columns of ``A``, with the
    columns renormalised after every step.

    Returns ``{step: unit dictionary (D, N)}`` for ``step`` in ``record`` and for ``steps``.
    """
    steps = check_int("steps", steps, minimum=0)
    lr = check_real("lr", lr, minimum=0.0, allow_equal_min=False)
    W = torch.tensor(normalize_columns(A).T, dtype=torch.float64)  # (N, D): atoms as rows
    out = {0: W.T.numpy().copy()} if 0 in record else {}
    for step in range(1, steps + 1):
        W.requires_grad_(True)
        (grad,) = torch.autograd.grad(orthogonality_penalty(W), W)
        with torch.no_grad():
            W = W - lr * grad
            W = W / torch.linalg.vector_norm(W, dim=1, keepdim=True)
        if step in record or step == steps:
            out[step] = W.T.numpy().copy()
    return out


@dataclass(frozen=True)
class PenaltyConfig:
    """The small MoE of the orthogonality experiment: ``t(x) = sin(B x)`` with ``B`` a fixed
    Gaussian ``(D_out, D)`` matrix times ``scale``, ``x ~ N(0, I_D)``."""

    D: int = 4
    d_out: int = 8
    n_experts: int = 6
    k: int = 2
    d_hidden: int = 16
    n_train: int = 256
    n_test: int = 1024
    steps: int = 200
    lr: float = 1e-2
    scale: float = 1.0
    data_seed: int = 0


def _data(cfg: PenaltyConfig, device, dtype):
    g = torch.Generator().manual_seed(cfg.data_seed)
    B = cfg.scale * torch.randn(cfg.d_out, cfg.D, generator=g, dtype=torch.float64)
    x = torch.randn(cfg.n_train + cfg.n_test, cfg.D, generator=g, dtype=torch.float64)
    t = torch.sin(x @ B.T)  # (T, D_out)
    x, t = x.to(device=device, dtype=dtype), t.to(device=device, dtype=dtype)
    return (x[:cfg.n_train], t[:cfg.n_train]), (x[cfg.n_train:], t[cfg.n_train:])


def _expert_outputs(model: MoE, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([model.expert(i, x) for i in range(model.n_experts)], dim=1)  # (T, N, D_out)


def _routing_agreement(Phi: np.ndarray, probs: np.ndarray, chosen: np.ndarray, t: np.ndarray, k: int):
    """Fraction of tokens whose router set is an optimal k-subset for F1 (fit ``t``) and for F2
    (fit the dense mixture ``Phi p``); ties count as agreement."""
    norms = np.linalg.norm(Phi, axis=1, keepdims=True)  # (T, 1, N)
    U = Phi / np.where(norms > 0, norms, 1.0)
    res = []
    for target in (t, np.einsum("tdn,tn->td", Phi, probs)):
        e_opt = _exhaustive(U, target, k)[1]
        e_router = _energy(U, target, np.sort(chosen, axis=1)[:, None, :])[:, 0]
        res.append(float(np.mean(e_router >= e_opt - 1e-9 * np.sum(target ** 2, axis=1))))
    return res


def train_penalised_moe(lam: float, seed: int, config: PenaltyConfig = PenaltyConfig(), *,
                        device=None, dtype=None) -> dict:
    """Train the small MoE of :class:`PenaltyConfig` on ``MSE + lam (mean_x R(Phi(x)) + R(W))``.

    ``Phi(x)`` stacks the expert outputs ``E_i(x)`` of a token (rows), ``W`` is the router's
    weight, ``R`` is :func:`~moe_theory.coherence.orthogonality_penalty`. Adam, full batch.

    Returns
    -------
    dict
        ``train_mse``, ``test_mse``; ``mu_router`` (coherence of the router rows);
        ``mu_experts`` (median over test tokens of the coherence of ``E_1(x), ..., E_N(x)``);
        ``agree_fit``/``agree_mix``: fraction of test tokens whose router top-k set is an
        optimal k-subset of the expert outputs for the target (F1) / for the dense mixture
        ``sum_i p_i E_i(x)`` (F2); ``model``.
    """
    lam = check_real("lam", lam, minimum=0.0)
    seed = check_seed("seed", seed)
    device = resolve_device("cpu" if device is None else device)
    dtype = torch.float32 if dtype is None else dtype
    (x, t), (xt, tt) = _data(config, device, dtype)
    with torch.random.fork_rng(devices=[]):  # initialisation from ``seed``, on CPU; global state untouched
        torch.manual_seed(seed)
        model = MoE(config.D, config.d_hidden, config.n_experts, config.k, d_out=config.d_out,
                    device="cpu", dtype=dtype).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    for _ in range(config.steps):
        opt.zero_grad(set_to_none=True)
        Phi = _expert_outputs(model, x)  # (T, N, D_out): every expert, needed by the penalty
        y = torch.einsum("tn,tno->to", model.router(x).combine_matrix(), Phi)  # = model(x)
        loss = torch.mean((y - t) ** 2)
        if lam > 0:
            pen = orthogonality_penalty(Phi).mean() + orthogonality_penalty(model.router.weight)
            loss = loss + lam * pen
        loss.backward()
        opt.step()
    return _penalised_summary(model, x, t, xt, tt, config)


def _penalised_summary(model: MoE, x, t, xt, tt, config: PenaltyConfig) -> dict:
    """The numbers :func:`train_penalised_moe` reports about a trained model."""
    with torch.no_grad():
        train_mse = float(torch.mean((model(x) - t) ** 2))
        y, routing = model(xt, return_routing=True)
        Phi = _expert_outputs(model, xt).transpose(1, 2).double().cpu().numpy()  # (T, D_out, N)
        probs = routing.probs.double().cpu().numpy()  # (T, N)
        chosen = routing.indices.cpu().numpy()  # (T, k)
        Wr = model.router.weight.double().cpu().numpy()  # (N, D)
    Un = Phi / np.maximum(np.linalg.norm(Phi, axis=1, keepdims=True), 1e-300)
    fit, mix = _routing_agreement(Phi, probs, chosen, tt.double().cpu().numpy(), config.k)
    return {"train_mse": train_mse, "test_mse": float(torch.mean((y - tt) ** 2)),
            "mu_router": float(batch_coherence(normalize_columns(Wr.T)[None])[0]),
            "mu_experts": float(np.median(batch_coherence(Un))),
            "agree_fit": fit, "agree_mix": mix, "model": model}


def train_penalised_population(lam, seeds, config: PenaltyConfig = PenaltyConfig(), *, device=None,
                               dtype=None) -> list[dict]:
    """:func:`train_penalised_moe` for every seed at once, on the population trainer.

    Member ``i`` is ``train_penalised_moe(lam_i, seeds[i], config)`` (same initialisation, full-batch
    Adam steps and penalty; a float64 test checks the results to 1e-8), trained together by
    :func:`~moe_theory.population.fit_population` with the penalty
    ``lam (mean_x R(Phi(x)) + R(W))`` computed on the stacked expert outputs and router weights.
    ``lam`` is one value or one per seed (several penalty strengths in one population).

    Returns
    -------
    list of dict, one per seed, as :func:`train_penalised_moe` returns.
    """
    from .population import fit_population

    seeds = check_seeds("seeds", seeds)
    lams = [check_real("lam", v, minimum=0.0) for v in per_seed("lam", lam, len(seeds))]
    device = resolve_device("cpu" if device is None else device)
    dtype = torch.float32 if dtype is None else dtype
    (x, t), (xt, tt) = _data(config, device, dtype)
    models = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            models.append(MoE(config.D, config.d_hidden, config.n_experts, config.k, d_out=config.d_out,
                              device="cpu", dtype=dtype).to(device))
    lam_all = torch.as_tensor(lams, dtype=dtype, device=device)  # (P,)

    def penalty(st):
        lam_c = lam_all[st.members]  # (Pc,)
        Phi = st.expert_outputs.permute(0, 3, 1, 2)  # (Pc, T, N, D_out): the experts' outputs per token
        pen = orthogonality_penalty(Phi).mean(1) + orthogonality_penalty(st.params["router.weight"])
        return torch.where(lam_c > 0, lam_c * pen, torch.zeros_like(pen))

    fit_population(models, x, t, seeds=seeds, steps=config.steps, lr=config.lr, lr_decay=False, clip=None,
                   penalty=penalty if any(v > 0 for v in lams) else None, keep_losses=False)
    return [_penalised_summary(m, x, t, xt, tt, config) for m in models]


# -- figures of the chapter ----------------------------------------------------------------------------
_FAMILY_COLORS = {"adversarial": "k", "equiangular": "#1f77b4", "Gaussian + shared direction": "#ff7f0e"}


def plot_sweep(ax, sweeps: dict, k: int):
    """Success rate against the mean coherence for each family of :func:`recovery_sweep`
    (solid: thresholding, dashed: OMP), with the line ``mu = 1/(2k - 1)``."""
    k = check_positive_int("k", k)
    for i, (name, sw) in enumerate(sweeps.items()):
        color = _FAMILY_COLORS.get(name, f"C{i + 2}")
        ax.plot(sw["mu"], sw["success_thr"], "-", color=color, lw=2 if name == "adversarial" else 1.5,
                label=f"{name}: thresholding (router)")
        ax.plot(sw["mu"], sw["success_omp"], "--", color=color, lw=1.2, label=f"{name}: OMP")
    ax.axvline(1 / (2 * k - 1), color="r", lw=1, ls=":")
    ax.text(1 / (2 * k - 1) + 0.01, 0.5, f"$1/(2k-1) = {1 / (2 * k - 1):.2f}$", color="r", fontsize=8)
    ax.set(xlabel=r"mutual coherence $\mu$", ylabel="success rate (= exhaustive optimum)",
           xlim=(0, 1), ylim=(-0.03, 1.03))
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    return ax


def plot_gap(ax, sweep: dict, k: int):
    """Mean and worst captured-energy ratio ``E(Thr_k) / E_opt`` of a sweep against ``mu``,
    with the bound ``(1 - (k - 1) mu) / (1 + (k - 1) mu)``."""
    from .coherence import energy_ratio_bound

    k = check_positive_int("k", k)
    mus = np.linspace(0, max(sweep["mu"]), 200)
    ax.plot(sweep["mu"], sweep["ratio_thr"], "o-", label="thresholding: mean")
    ax.plot(sweep["mu"], sweep["ratio_thr_min"], "s--", label="thresholding: worst trial")
    ax.plot(sweep["mu"], sweep["ratio_omp_min"], "^:", label="OMP: worst trial")
    ax.plot(mus, [energy_ratio_bound(m, k) for m in mus], "k-", lw=1,
            label=r"bound $(1-(k-1)\mu)/(1+(k-1)\mu)$")
    ax.axvline(1 / (2 * k - 1), color="r", lw=1, ls=":")
    ax.set(xlabel=r"mutual coherence $\mu$", ylabel=r"$\mathcal{C}(S)\,/\,\mathcal{C}_{\rm opt}$",
           ylim=(-0.03, 1.05))
    ax.legend(fontsize=7, loc="lower left")
    return ax


def plot_barrier_instance(ax, ax_strip, k: int, mu: float):
    """The barrier instance for ``(k, mu)``: bars of ``|<a_j, t>|`` (grey: the impostor ``a_0``),
    OMP's order of picks on the bars, and a strip locating ``mu`` against ``1/(2k-1)`` and ``1/k``."""
    from .coherence import exhaustive_select, greedy_select
    from .plotting import expert_colors

    k = check_int("k", k, minimum=2)
    mu = check_real("mu", mu, minimum=0.0, maximum=1.0)
    lo, hi = 1 / (2 * k - 1), 1 / k
    ax_strip.axvspan(lo, hi, color="r", alpha=0.2)
    ax_strip.axvspan(hi, 0.5, color="0.8", hatch="//", alpha=0.5)
    ax_strip.axvline(mu, color="k", lw=2)
    ax_strip.set(xlim=(0, 0.5), yticks=[], xlabel=r"$\mu$", title="barrier (red), none (grey)")
    ax_strip.title.set_fontsize(9)
    if mu >= hi:
        ax.text(0.5, 0.5, f"no such atoms for mu >= 1/k = {hi:.2f}:\nthe Gram matrix is not positive definite",
                ha="center", va="center", transform=ax.transAxes, fontsize=9)
        ax.set(xticks=[], yticks=[], title=f"k = {k}, mu = {mu:.2f}")
        return ax
    A = adversarial_dictionary(k, mu)
    t = A[:, 1:].sum(axis=1)
    corr = np.abs(A.T @ t)
    colors = ["0.55"] + expert_colors(k + 1)[1:]
    ax.bar(np.arange(k + 1), corr, color=colors)
    picks = _omp(A[None], t[None], k)[1][0]
    for order, j in enumerate(picks, start=1):
        ax.text(j, corr[j] + 0.02, str(order), ha="center", fontsize=9)
    omp, opt = greedy_select(A, t, k), exhaustive_select(A, t, k)
    verdict = "OMP right" if omp.support == opt.support else f"OMP wrong: {omp.support}"
    ax.set(xticks=np.arange(k + 1), xticklabels=["$a_0$"] + [f"$a_{j}$" for j in range(1, k + 1)],
           ylabel=r"$|\langle a_j, t\rangle|$", ylim=(0, 1.15),
           title=f"k = {k}, mu = {mu:.2f}: {verdict}, optimum {opt.support}")
    ax.title.set_fontsize(9)
    return ax
