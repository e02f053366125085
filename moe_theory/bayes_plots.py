"""Figures of chapter ``book/bayes.md`` (each returns the matplotlib Figure it draws)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ._validation import check_int, check_positive_int, check_positive_real
from .plotting import expert_colors

__all__ = ["plot_truncation", "simplex_grid", "plot_switch_simplex", "plot_training_curves",
           "plot_em_history", "plot_aggregate_split"]


def plot_truncation(routers: dict, *, ax=None):
    """``KL(q^(k) || p) = -log p(S_k)`` against ``k``, with the bounds ``H(p)`` and ``log(N/k)``.

    Parameters
    ----------
    routers : dict
        Label -> probability vector ``p`` (shape ``(N,)``; all the same ``N``).
    """
    import matplotlib.pyplot as plt

    from .bayes import entropy, kl_divergence, topk_posterior

    if not isinstance(routers, dict) or not routers:
        raise TypeError("routers must be a non-empty dict label -> probability vector")
    fig, ax = (plt.subplots(figsize=(6.2, 3.6)) if ax is None else (ax.figure, ax))
    colors = expert_colors(len(routers) + 1)
    for c, (label, p) in zip(colors, routers.items()):
        p = torch.as_tensor(p, dtype=torch.float64)
        N = p.shape[-1]
        ks = np.arange(1, N + 1)
        kl = [float(kl_divergence(topk_posterior(p, k), p)) for k in ks]
        ax.plot(ks, kl, "o-", color=c, label=f"{label}: $-\\log p(S_k)$")
        ax.axhline(float(entropy(p)), color=c, ls=":", lw=1.2, label=f"{label}: $H(p)$")
    ax.plot(ks, np.log(N / ks), "k--", lw=1, label=r"$\log(N/k)$")
    ax.set_xlabel("active experts $k$")
    ax.set_ylabel(r"$\mathrm{KL}(q^{(k)}\,\|\,p)$ (nats)")
    ax.set_title("Truncating a router costs $-\\log p(S_k)$,\nbelow both $H(p)$ and $\\log(N/k)$")
    ax.legend(fontsize=7, ncol=2)
    return fig


def simplex_grid(n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """Points of the 2-simplex (barycentric, shape (M, 3)) and their 2-D drawing coordinates."""
    n = check_int("n", n, minimum=2)
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = i + j <= n
    bary = np.stack([i[keep], j[keep], n - i[keep] - j[keep]], 1) / n  # (M, 3)
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    return bary, bary @ corners


def plot_switch_simplex(n: int = 90):
    """Relaxed Switch loss over ``P_bar`` and hard Switch loss of a two-token batch, ``N = 3``.

    Left: ``3 sum_i P_bar_i^2`` at each ``P_bar`` of the simplex (minimum 1 at the centre).
    Right: ``3 sum_i l_i P_bar_i`` for the batch of two tokens ``p = (p_1, p_2, p_3)`` and
    ``p' = (p_1, p_3, p_2)`` (experts 2 and 3 swapped), at each ``p`` of the simplex; the contour
    marks the value 1 that every batch with uniform load has. Its minimum, ``3/4``, lies at
    ``p -> (1/2, 0, 1/2)``: the ghost construction with one ghost expert.

    Returns
    -------
    fig : Figure
    hard_min : float
        The smallest hard loss on the grid.
    """
    import matplotlib.pyplot as plt
    import matplotlib.tri as mtri

    from .balancing import relaxed_switch_loss, switch_load_balancing_loss

    bary, xy = simplex_grid(check_positive_int("n", n))
    inner = bary.min(1) > 1e-9  # logits need p > 0
    bary, xy = bary[inner], xy[inner]
    logp = torch.from_numpy(np.log(bary))  # (M, 3)
    relaxed = np.array([float(relaxed_switch_loss(row[None])) for row in logp])
    hard = np.array([float(switch_load_balancing_loss(torch.stack([row, row[[0, 2, 1]]]), 1)) for row in logp])
    tri = mtri.Triangulation(xy[:, 0], xy[:, 1])
    fig, axes = plt.subplots(1, 2, figsize=(6.5, 3.3))
    for ax, val, title in ((axes[0], relaxed, "relaxed: $3\\sum_i \\bar p_i^2$ over $\\bar p$"),
                           (axes[1], hard, "hard: $3\\sum_i \\ell_i\\bar p_i$, batch $\\{p, p'\\}$")):
        im = ax.tricontourf(tri, val, levels=np.linspace(0.75, 3.0, 19), cmap="viridis")
        ax.tricontour(tri, val, levels=[1.0], colors="w", linewidths=1.2)
        best = int(np.argmin(val))
        ax.plot(*xy[best], "r*", ms=10)
        ax.set_aspect("equal"), ax.set_xticks([]), ax.set_yticks([])
        ax.set_xlim(-0.12, 1.12), ax.set_ylim(-0.14, 1.0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        for (cx, cy, va), name in zip([(0, -0.02, "top"), (1, -0.02, "top"), (0.5, 0.875, "bottom")],
                                      ["expert 1", "expert 2", "expert 3"]):
            ax.text(cx, cy, name, ha="center", va=va, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"red star: grid minimum {val[best]:.3f}", fontsize=8, labelpad=12)
    fig.colorbar(im, ax=axes, shrink=0.8, label="loss value")
    fig.suptitle("Relaxed Switch loss is smallest at uniform $\\bar p$;\n"
                 "the hard loss falls below 1, towards 3/4", fontsize=10)
    return fig, float(hard.min())


def plot_training_curves(histories: dict, band: str = "quartiles"):
    """Median over seeds of four routing quantities during training, with a shaded band.

    Parameters
    ----------
    histories : dict
        Balancing rule -> list of :class:`~moe_theory.bayes_training.RoutingHistory` (one per seed).
    band : {"quartiles", "range"}
        Shade the middle half of the runs (25th to 75th percentile, default) or [min, max].
    """
    import matplotlib.pyplot as plt

    if not isinstance(histories, dict) or not histories:
        raise TypeError("histories must be a non-empty dict rule -> list of RoutingHistory")
    if band not in ("quartiles", "range"):
        raise ValueError(f"band must be 'quartiles' or 'range', got {band!r}")
    panels = [("max_load_deviation", r"$\max_i|\ell_i - k/N|$", "load imbalance"),
              ("cond_entropy", r"$H(Z\mid X)$ (nats)", "ambiguity: per-token entropy"),
              ("mutual_information", r"$I(X;Z)$ (nats)", "throughput: mutual information"),
              ("train_mse", "training MSE", "training error")]
    fig, axes = plt.subplots(2, 2, figsize=(6.5, 5.2), sharex=True)
    colors = expert_colors(len(histories))
    for ax, (attr, ylabel, title) in zip(axes.flat, panels):
        for c, (rule, runs) in zip(colors, histories.items()):
            vals = np.stack([getattr(h, attr) for h in runs])  # (seeds, L)
            steps = runs[0].steps
            ax.plot(steps, np.median(vals, 0), color=c, label=rule)
            lo, hi = ((np.percentile(vals, 25, 0), np.percentile(vals, 75, 0)) if band == "quartiles"
                      else (vals.min(0), vals.max(0)))
            ax.fill_between(steps, lo, hi, color=c, alpha=0.15)
        ax.set_ylabel(ylabel), ax.set_title(title, fontsize=9)
    axes[0, 1].axhline(0, color="k", lw=0.5)
    axes[1, 0].axhline(math.log(runs[0].load.shape[1]), color="k", ls="--", lw=0.8)
    axes[1, 1].set_yscale("log")
    for ax in axes[1]:
        ax.set_xlabel("training step")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Balancing rules fix the load; the ambiguity $H(Z|X)$ is not reduced by them", fontsize=10)
    fig.tight_layout()
    return fig


def plot_em_history(runs: list):
    """Log-likelihood, top-1 ELBO, ``KL(varpi || p)`` (varpi: posterior), agreement per EM step."""
    import matplotlib.pyplot as plt

    if not isinstance(runs, list) or not runs:
        raise TypeError("runs must be a non-empty list of EMHistory")
    fig, axes = plt.subplots(1, 3, figsize=(6.5, 2.6))
    it = np.arange(len(runs[0].log_likelihood))
    for j, h in enumerate(runs):
        kw = dict(color="C0", alpha=0.6, lw=1)
        axes[0].plot(it, h.log_likelihood, **kw, label="$\\log p(t|x)$" if j == 0 else None)
        axes[0].plot(it, h.elbo_top1, color="C3", alpha=0.6, lw=1, ls="--",
                     label="ELBO$(q^{(1)})$" if j == 0 else None)
        axes[1].plot(it, h.kl_posterior_router, **kw)
        axes[2].plot(it, h.agreement, **kw)
    axes[0].set_ylabel("nats per token"), axes[0].legend(fontsize=7)
    axes[1].set_ylabel(r"$\mathrm{KL}(\varpi\,\|\,p)$ (nats)")
    axes[2].set_ylabel("share of tokens")
    titles = ["likelihood and sparse bound", "router vs posterior",
              "argmax r = argmax p"]
    for ax, title in zip(axes, titles):
        ax.set_xlabel("EM iteration"), ax.set_title(title, fontsize=9)
    fig.suptitle("EM: the router learns to predict the posterior over experts", fontsize=10)
    fig.tight_layout()
    return fig


def plot_aggregate_split(batches: dict):
    """Bars ``I(X; Z)`` + ``log N - H(P_bar)`` per batch; ``mean_t KL(p(x_t) || U)`` as a tick.

    Parameters
    ----------
    batches : dict
        Label -> router probabilities of a batch, shape ``(T, N)``.
    """
    import matplotlib.pyplot as plt

    from .bayes import kl_divergence, marginal_entropy, routing_mutual_information

    if not isinstance(batches, dict) or not batches:
        raise TypeError("batches must be a non-empty dict label -> (T, N) probabilities")
    fig, ax = plt.subplots(figsize=(5.8, 2.6))
    for j, (name, p) in enumerate(batches.items()):
        N = p.shape[-1]
        mi = float(routing_mutual_information(p))
        imbalance = math.log(N) - float(marginal_entropy(p))
        mean_kl = float(kl_divergence(p, torch.full_like(p, 1.0 / N)).mean())
        ax.barh(j, mi, color="C0", label="$I(X;Z)$" if j == 0 else None)
        ax.barh(j, imbalance, left=mi, color="C1",
                label=r"$\log N - H(\bar p)$" if j == 0 else None)
        ax.plot(mean_kl, j, "k|", ms=28, mew=2,
                label=r"mean KL$(p(x)\,\|\,\mathcal{U})$" if j == 0 else None)
    ax.set_yticks(range(len(batches)), list(batches))
    ax.set_xlabel("nats")
    ax.set_title("Mean divergence from uniform = information + imbalance", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return fig
