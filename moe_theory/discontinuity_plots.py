"""Figures of the chapter "Discontinuities of sparse MoE" (orders map, line cuts, paths).

The computations are in :mod:`moe_theory.discontinuity` and :mod:`moe_theory.discontinuity_smooth`;
these helpers only draw them, so the chapter's cells stay short.
"""

from __future__ import annotations

import numpy as np
import torch

from . import discontinuity as dc
from .discontinuity_smooth import SmoothMoE, band_count, smoothed_topk_weights, topk_softmax_weights
from ._validation import check_array, check_k

__all__ = ["plot_order_map", "crossing_line", "line_cut", "plot_line_cut", "plot_first_hits"]

ORDER_COLORS = {1: "black", 2: "#d62728", 3: "#9467bd"}


def plot_order_map(ax, W, b, k, *, half_width=2.0, center=(0.0, 0.0), resolution=160, eps=None):
    """Routing regions of a planar router (light coalition colours) with the exact strata on top.

    ``Sigma_1`` segments are black lines, ``Sigma_2`` points red dots. With ``eps`` the near-order
    tubes ``{r_eps >= 1}`` (dark grey) and ``{r_eps >= 2}`` (red) are shaded. The window is the
    square of half-width ``half_width`` around ``center``. Returns (segments, points).
    """
    from .tropical import coalition_color

    W = check_array("W", W, shape=(None, 2), ndim=2)
    k = check_k(k, W.shape[0], n_name="N")
    cx, cy = check_array("center", center, shape=(2,), ndim=1)
    box = (cx - half_width, cx + half_width, cy - half_width, cy + half_width)
    ux, uy = np.linspace(box[0], box[1], resolution), np.linspace(box[2], box[3], resolution)
    X = np.stack(np.meshgrid(ux, uy, indexing="xy"), -1).reshape(-1, 2)     # (r*r, 2)
    g = X @ W.T + b                                                          # (r*r, N)
    S = np.sort(np.argsort(-g, axis=-1, kind="stable")[:, :k], axis=-1)
    keys, inv = np.unique(S, axis=0, return_inverse=True)
    colors = np.array([coalition_color(tuple(s), W.shape[0]) for s in keys])
    img = 0.45 + 0.55 * colors[inv.reshape(-1)].reshape(resolution, resolution, 3)   # lightened
    ax.imshow(img, origin="lower", extent=box, interpolation="nearest")
    if eps is not None:
        r = dc.discontinuity_order(g, k, eps).reshape(resolution, resolution)
        shade = np.zeros(r.shape + (4,))
        shade[r >= 1] = (0.15, 0.15, 0.15, 0.55)
        shade[r >= 2] = (0.84, 0.15, 0.16, 0.95)
        ax.imshow(shade, origin="lower", extent=box, interpolation="nearest")
    segs = dc.switching_segments(W, b, k, box)
    pts, _ = dc.order2_points(W, b, k, box)
    for s in segs:
        ax.plot([s[2][0], s[3][0]], [s[2][1], s[3][1]], color=ORDER_COLORS[1], lw=1.2)
    if len(pts):
        ax.plot(pts[:, 0], pts[:, 1], "o", color=ORDER_COLORS[2], ms=5, mec="white", label="order 2")
    ax.set(xlim=box[:2], ylim=box[2:], xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
    return segs, pts


def crossing_line(W, segments, *, offset=0.6):
    """A line across the longest segment of ``Sigma_1``: start ``x0`` and unit direction ``v``.

    ``x0`` is the segment's midpoint moved back by ``offset`` along the unit normal ``v`` of the
    wall ``g_i = g_j``, so ``x0 + t v`` crosses the wall at ``t = offset``.
    """
    W = check_array("W", W, shape=(None, 2), ndim=2)
    if not len(segments):
        raise ValueError("segments must contain at least one segment of Sigma_1, got none")
    i, j, p, q = max(segments, key=lambda s: np.linalg.norm(s[3] - s[2]))
    v = (W[i] - W[j]) / np.linalg.norm(W[i] - W[j])
    return (p + q) / 2 - offset * v, v


@torch.no_grad()
def line_cut(model: SmoothMoE, x0, v, ts, *, eta=None, release_dispatch=False):
    """Output ``y(x0 + t v)`` (first coordinate), top-k weights' output and the band size along a line.

    Returns ``(y_topk, y_smooth, n_active)``, arrays of shape ``(len(ts),)``; ``y_smooth`` and
    ``n_active`` are ``None`` when ``eta`` is ``None``. Each point is routed on its own (a batch of
    one), so ``release_dispatch`` shows the released code's behaviour for single tokens.
    """
    x0, v, ts = (check_array(n, a, ndim=1) for n, a in (("x0", x0), ("v", v), ("ts", ts)))
    p = next(model.parameters())
    X = torch.tensor(x0[None] + ts[:, None] * v[None], dtype=p.dtype, device=p.device)   # (T, D)
    g, E = model.logits(X), model.expert_outputs(X)                                       # (T, N), (T, N, o)
    y_top = torch.einsum("tn,tno->to", topk_softmax_weights(g, model.k), E)[:, 0].cpu().numpy()
    if eta is None:
        return y_top, None, None
    if release_dispatch:
        pi = torch.cat([smoothed_topk_weights(g[i:i + 1], model.k, eta, release_dispatch=True)
                        for i in range(len(g))])
    else:
        pi = smoothed_topk_weights(g, model.k, eta)
    y_s = torch.einsum("tn,tno->to", pi, E)[:, 0].cpu().numpy()
    return y_top, y_s, band_count(g, model.k, eta).cpu().numpy()


def plot_line_cut(ax, model, x0, v, ts, eta, *, release_dispatch=False):
    """Draw :func:`line_cut`: top-k (grey) and smoothed (blue) output, active experts on a twin axis."""
    y_top, y_s, n = line_cut(model, x0, v, ts, eta=eta, release_dispatch=release_dispatch)
    ax.plot(ts, y_top, color="0.5", lw=2.5, label="top-k (TK-SM)")
    ax.plot(ts, y_s, color="#1f77b4", lw=1.3, label=f"smoothed, $\\eta$={eta:g}" +
            (" (release dispatch)" if release_dispatch else ""))
    ax2 = ax.twinx()
    ax2.step(ts, n, where="mid", color="#ff7f0e", lw=1, alpha=0.8)
    ax2.set_ylabel("experts with weight > 0", color="#ff7f0e")
    ax2.set_ylim(0, model.n_experts + 0.5)
    ax.set(xlabel="position $t$ along the line $x_0 + t v$", ylabel="output $y$")
    ax.legend(fontsize=8, loc="upper left")
    return ax2


def plot_first_hits(ax, W, b, k, x0, result, *, n_show=30, tol_index=-1, half_width=1.0):
    """Draw the order map around ``x0`` and the first ``n_show`` paths' hit points by near-order."""
    plot_order_map(ax, W, b, k, half_width=half_width, center=x0, resolution=160)
    hit = np.isfinite(result.times)
    idx = np.flatnonzero(hit)[:n_show]
    r = result.near_orders[idx, tol_index]
    for order, marker in ((1, "x"), (2, "s")):
        sel = idx[r == order] if order == 1 else idx[r >= 2]
        if len(sel):
            ax.plot(result.points[sel, 0], result.points[sel, 1], marker, color=ORDER_COLORS[order], ms=6,
                    label=f"first hit, near-order {order if order == 1 else '>= 2'}")
    ax.plot(*x0, "*", color="gold", ms=14, mec="k", label="start $x_0$")
    ax.legend(fontsize=7, loc="lower left")
