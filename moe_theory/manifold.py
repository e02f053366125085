"""Shallow MoE on low-dimensional manifolds (Wang & E, 2025, Sections 3-4 and Experiment I).

Three groups of functions, in the order the chapter uses them:

* **Manifolds in R^D.** Samplers for the circle, the ``d``-sphere and the flat torus, placed in
  ``R^D`` by an isometric embedding ``x = Q z`` (``Q`` with orthonormal columns: the first
  coordinate axes, or a random isometry).
* **Atlases and the constructive MoE.** Arc charts of the circle, a partition of unity, the
  Voronoi gate ``g_i(x) = c_i^T x - |c_i|^2 / 2`` and the chart-based MoE of the (reconstructed)
  proof: bias-free Voronoi gate, tangent-projection charts ``t = u_i^T x``, 1-D ReLU-spline experts.
  Numpy, float64.
* **Helpers for the trained models of Experiment I** (parameter counts, the learned atlas and its
  picture); building, training and evaluating them is :mod:`moe_theory.experiments.manifold`.

Notation as in the book: ``N`` experts (= charts), ``D`` ambient and ``d`` intrinsic dimension,
``m`` knots (width) per expert, ``g`` gate logits, ``E_i`` expert ``i``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ._validation import (check_array, check_choice, check_int, check_positive_int, check_positive_real,
                          check_real, check_rng)
from .device import resolve_device
from .layers import MoE

__all__ = [
    "random_isometry", "check_isometry", "circle_embedding", "embed", "sample_circle", "circle_grid",
    "sample_sphere", "sample_torus", "circle_target", "voronoi_gate", "partition_of_unity",
    "argmax_routing_is_exact", "CircleAtlas", "circle_atlas", "ChartMoE", "build_chart_moe",
    "chart_moe_sup_error", "chart_moe_to_layer", "equal_parameter_width",
    "count_parameters", "expert_assignment", "plot_circle_moe",
]

_EMBEDDINGS = ("axis", "random")


# --------------------------------------------------------------------------- embeddings and samplers
def random_isometry(D: int, d: int, *, seed) -> np.ndarray:
    """A random ``Q in R^{D x d}`` with orthonormal columns (``Q^T Q = I_d``).

    Notes
    -----
    ``Q`` is the QR factor of a Gaussian matrix with the signs of ``diag(R)`` moved into ``Q``,
    which makes it Haar-distributed on the Stiefel manifold. ``z -> Q z`` preserves distances.

    Examples
    --------
    >>> Q = random_isometry(5, 2, seed=0); bool(np.allclose(Q.T @ Q, np.eye(2)))
    True
    """
    D, d = check_positive_int("D", D), check_positive_int("d", d)
    if d > D:
        raise ValueError(f"manifold dimension must not exceed the ambient dimension: need d <= D, got d={d}, D={D}")
    A = check_rng(seed, name="seed").standard_normal((D, d))
    Q, R = np.linalg.qr(A)
    return Q * np.sign(np.diag(R))


def check_isometry(Q, *, name: str = "Q", tol: float = 1e-10) -> np.ndarray:
    """Return ``Q`` as a float64 array after checking ``Q^T Q = I`` to ``tol``."""
    Q = check_array(name, Q, ndim=2)
    if Q.shape[1] > Q.shape[0]:
        raise ValueError(f"{name} must have at most as many columns as rows (d <= D), got shape {Q.shape}")
    err = np.abs(Q.T @ Q - np.eye(Q.shape[1])).max()
    if err > tol:
        raise ValueError(f"{name} must have orthonormal columns (Q^T Q = I), got max |Q^T Q - I| = {err:.3g}")
    return Q


def circle_embedding(D: int, embedding: str = "axis", *, seed=0) -> np.ndarray:
    """``Q in R^{D x 2}`` placing the unit circle in ``R^D``: first two axes or a random isometry."""
    D = check_int("D", D, minimum=2)
    embedding = check_choice("embedding", embedding, _EMBEDDINGS)
    return np.eye(D)[:, :2] if embedding == "axis" else random_isometry(D, 2, seed=seed)


def embed(z, Q) -> np.ndarray:
    """``x = z Q^T``: points ``z`` of shape (n, d) mapped isometrically into ``R^D``."""
    Q = check_isometry(Q)
    z = check_array("z", z, shape=(Q.shape[1],), ndim=2)
    return z @ Q.T  # (n, D)


def circle_target(theta, freqs=(5.0, 3.0)):
    """Experiment I's target on the circle, ``f = sin(a z_1) + cos(b z_2)`` with ``z = (cos t, sin t)``.

    ``theta`` may be a NumPy array (float64 result) or a torch tensor (result of its dtype and
    device, differentiable): one formula for the test grid and the training batches.

    Examples
    --------
    >>> bool(circle_target(np.array([0.0]))[0] == np.sin(5.0) + 1.0)
    True
    """
    a, b = (check_real("freqs[0]", freqs[0]), check_real("freqs[1]", freqs[1]))
    if isinstance(theta, torch.Tensor):
        return torch.sin(a * torch.cos(theta)) + torch.cos(b * torch.sin(theta))
    theta = check_array("theta", theta)
    return np.sin(a * np.cos(theta)) + np.cos(b * np.sin(theta))


def sample_circle(n: int, Q, *, seed) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points with uniform angle on the unit circle embedded by ``Q``: returns ``(x, theta)``.

    ``x = Q (cos theta, sin theta)`` with ``theta ~ U[0, 2 pi)`` drawn from ``seed``.

    Examples
    --------
    >>> x, theta = sample_circle(3, circle_embedding(8), seed=0); x.shape
    (3, 8)
    """
    n = check_positive_int("n", n)
    theta = check_rng(seed, name="seed").uniform(0.0, 2 * np.pi, n)
    return embed(np.stack([np.cos(theta), np.sin(theta)], 1), Q), theta


def circle_grid(n: int, Q) -> tuple[np.ndarray, np.ndarray]:
    """The fixed test grid ``theta_j = 2 pi (j + 1/2) / n`` on the embedded circle: ``(x, theta)``."""
    n = check_positive_int("n", n)
    theta = 2 * np.pi * (np.arange(n) + 0.5) / n
    return embed(np.stack([np.cos(theta), np.sin(theta)], 1), Q), theta


def sample_sphere(n: int, d: int, D: int, *, embedding: str = "axis", seed) -> np.ndarray:
    """``n`` uniform points of the unit ``d``-sphere ``S^d subset R^{d+1}``, embedded in ``R^D``."""
    n, d, D = check_positive_int("n", n), check_positive_int("d", d), check_positive_int("D", D)
    if d + 1 > D:
        raise ValueError(f"manifold dimension d={d} needs an ambient dimension D >= d + 1 = {d + 1}, got D={D}")
    rng = check_rng(seed, name="seed")
    z = rng.standard_normal((n, d + 1))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    Q = np.eye(D)[:, :d + 1] if check_choice("embedding", embedding, _EMBEDDINGS) == "axis" \
        else random_isometry(D, d + 1, seed=rng)
    return embed(z, Q)


def sample_torus(n: int, D: int, *, embedding: str = "axis", seed) -> np.ndarray:
    """``n`` uniform points of the flat torus ``(cos a, sin a, cos b, sin b) / sqrt 2`` (``d = 2``) in ``R^D``."""
    n, D = check_positive_int("n", n), check_positive_int("D", D)
    if D < 4:
        raise ValueError(f"the flat torus (d=2) lives in R^4: need D >= 4, got D={D}")
    rng = check_rng(seed, name="seed")
    a, b = rng.uniform(0, 2 * np.pi, (2, n))
    z = np.stack([np.cos(a), np.sin(a), np.cos(b), np.sin(b)], 1) / np.sqrt(2)
    Q = np.eye(D)[:, :4] if check_choice("embedding", embedding, _EMBEDDINGS) == "axis" \
        else random_isometry(D, 4, seed=rng)
    return embed(z, Q)


# --------------------------------------------------------------------------- gates, atlases, partitions of unity
def voronoi_gate(x, centres, *, bias: bool = True) -> np.ndarray:
    """Gate logits ``g_i(x) = c_i^T x - |c_i|^2 / 2`` (``bias=False`` drops the constant).

    Notes
    -----
    ``argmax_i g_i(x) = argmin_i |x - c_i|^2`` since ``|x - c_i|^2 = |x|^2 - 2 g_i(x)``: the top-1
    cells of this linear gate are the Voronoi cells of the centres. If all ``|c_i|`` are equal the
    bias is a common constant and may be dropped.
    """
    centres = check_array("centres", centres, ndim=2)
    x = check_array("x", x, shape=(centres.shape[1],), ndim=2)
    g = x @ centres.T  # (n, N)
    return g - 0.5 * np.sum(centres**2, 1) if bias else g


def _bump(s: np.ndarray) -> np.ndarray:
    out = np.zeros_like(s)
    inside = s < 1
    out[inside] = np.exp(-1.0 / (1.0 - s[inside] ** 2))
    return out


def partition_of_unity(x, centres, radius: float) -> np.ndarray:
    """Smooth partition of unity subordinate to the balls ``B(c_i, radius)``: returns ``rho`` (n, N).

    Notes
    -----
    ``psi_i(x) = exp(-1 / (1 - s^2))`` with ``s = |x - c_i| / radius`` for ``s < 1`` and ``0`` otherwise
    (a ``C^infinity`` bump), ``rho_i = psi_i / sum_j psi_j``. Then ``rho_i >= 0``,
    ``supp rho_i subset B(c_i, radius)``, ``sum_i rho_i = 1`` and ``max_i rho_i >= 1/N``.
    """
    radius = check_positive_real("radius", radius)
    centres = check_array("centres", centres, ndim=2)
    x = check_array("x", x, shape=(centres.shape[1],), ndim=2)
    s = np.linalg.norm(x[:, None, :] - centres[None], axis=-1) / radius  # (n, N)
    psi = _bump(s)
    total = psi.sum(1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError(f"radius={radius} is too small: some points of x lie in no chart ball B(c_i, radius)")
    return psi / total


def argmax_routing_is_exact(rho, delta) -> np.ndarray:
    """Whether routing by ``argmax(rho + delta)`` lands in the support of ``rho``: ``rho_{j*} > 0``.

    Notes
    -----
    Exact-routing lemma: for a probability vector ``rho`` and ``|delta|_inf < 1/(2N)`` this is always
    True, because ``max_i rho_i >= 1/N``. Ties go to the smaller index (``np.argmax``).

    Examples
    --------
    >>> bool(argmax_routing_is_exact(np.array([0.0, 0.5, 0.5]), np.array([0.2, -0.2, -0.2])))
    True
    """
    rho = check_array("rho", rho, min_ndim=1)
    delta = check_array("delta", delta, shape=rho.shape[-1:], min_ndim=1)
    j = np.argmax(rho + delta, axis=-1)
    return np.take_along_axis(rho, j[..., None], -1)[..., 0] > 0


@dataclass(frozen=True)
class CircleAtlas:
    """``N`` arc charts of the unit circle embedded by ``Q``: centres ``theta_i``, half-width ``alpha``."""

    Q: np.ndarray
    theta: np.ndarray
    alpha: float

    @property
    def n_charts(self) -> int:
        return len(self.theta)

    @property
    def centres(self) -> np.ndarray:
        """``c_i = Q (cos theta_i, sin theta_i)``, shape (N, D)."""
        return embed(np.stack([np.cos(self.theta), np.sin(self.theta)], 1), self.Q)

    @property
    def tangents(self) -> np.ndarray:
        """``u_i = Q (-sin theta_i, cos theta_i)``: chart ``i`` is ``t = u_i^T x``, shape (N, D)."""
        return embed(np.stack([-np.sin(self.theta), np.cos(self.theta)], 1), self.Q)

    @property
    def radius(self) -> float:
        """Chordal radius of the chart balls: ``2 sin(alpha / 2)``."""
        return 2 * math.sin(self.alpha / 2)

    def charts(self, x) -> np.ndarray:
        """Tangent coordinates ``t_i = u_i^T x`` of every point in every chart, shape (n, N)."""
        return check_array("x", x, shape=(self.Q.shape[0],), ndim=2) @ self.tangents.T

    def partition_of_unity(self, x) -> np.ndarray:
        """:func:`partition_of_unity` over the chart balls."""
        return partition_of_unity(x, self.centres, self.radius)


def circle_atlas(n_charts: int, Q, *, overlap: float = 1.25, offset: float = 0.0) -> CircleAtlas:
    """``N`` equally spaced arc charts ``|theta - theta_i| < alpha``, ``alpha = overlap * pi / N``.

    Each chart ``t = u_i^T x = sin(theta - theta_i)`` is strictly monotone on its arc because
    ``alpha < pi / 2``; ``overlap > 1`` makes neighbouring arcs overlap so the arcs cover the circle.
    """
    n_charts = check_int("n_charts", n_charts, minimum=2)
    overlap = check_real("overlap", overlap, minimum=1.0, allow_equal_min=False)
    alpha = overlap * math.pi / n_charts
    if alpha >= math.pi / 2:
        raise ValueError(f"charts must be arcs shorter than pi: need overlap * pi / n_charts < pi / 2, "
                         f"got n_charts={n_charts}, overlap={overlap}")
    theta = check_real("offset", offset) + 2 * np.pi * np.arange(n_charts) / n_charts
    return CircleAtlas(check_isometry(Q), theta, alpha)


# --------------------------------------------------------------------------- the constructive MoE
@dataclass(frozen=True)
class ChartMoE:
    """The chart-based MoE: bias-free gate ``W = (c_i)``, experts ``E_i(x) = b2_i + sum_j w2_ij relu(u_i^T x - t_j)``."""

    atlas: CircleAtlas
    knots: np.ndarray  # (m,)
    w2: np.ndarray  # (N, m - 1) slope increments
    b2: np.ndarray  # (N,) values at the first knot

    @property
    def width(self) -> int:
        """Hidden width of each expert (``m - 1`` ReLU units for ``m`` knots)."""
        return self.w2.shape[1]

    def route(self, x) -> np.ndarray:
        """Top-1 expert ``j*(x) = argmax_i c_i^T x`` (ties to the smaller index)."""
        return np.argmax(voronoi_gate(x, self.atlas.centres, bias=False), axis=1)

    def expert(self, i: int, x) -> np.ndarray:
        """Expert ``i`` as the 2-layer ReLU net it is: ``b2_i + sum_j w2_ij relu(u_i^T x - t_j)``."""
        t = check_array("x", x, shape=(self.atlas.Q.shape[0],), ndim=2) @ self.atlas.tangents[i]  # (n,)
        return self.b2[i] + np.maximum(t[:, None] - self.knots[None, :-1], 0.0) @ self.w2[i]

    def __call__(self, x) -> np.ndarray:
        """``y(x) = E_{j*(x)}(x)``: top-1 routing, weight exactly 1."""
        x = check_array("x", x, shape=(self.atlas.Q.shape[0],), ndim=2)
        j = self.route(x)
        y = np.empty(x.shape[0])
        for i in range(self.atlas.n_charts):
            y[j == i] = self.expert(i, x[j == i])
        return y


def build_chart_moe(n_experts: int, m: int, Q, *, freqs=(5.0, 3.0)) -> ChartMoE:
    """Build the constructive MoE for :func:`circle_target` on the circle embedded by ``Q``.

    Parameters
    ----------
    n_experts : int
        Charts = experts, ``N >= 3`` (arcs shorter than ``pi``).
    m : int
        Knots per expert, ``m >= 2``; expert width ``m - 1``.
    Q : array (D, 2)
        Orthonormal embedding of the circle.

    Notes
    -----
    Expert ``i`` is the piecewise-linear interpolant of ``f~_i(t) = f(theta_i + arcsin t)`` (the
    target read in chart ``i``) at ``m`` equispaced knots on ``[-sin(pi/N), sin(pi/N)]`` (the chart
    image of the Voronoi arc), written as ``s(t) = s(t_0) + sum_j (beta_j - beta_{j-1}) relu(t - t_j)``
    with ``beta_j`` the slope of segment ``j`` (``beta_{-1} = 0``). Linear interpolation has error
    ``<= h^2 max|f~_i''| / 8``,
    ``h = 2 sin(pi/N) / (m - 1)``: the sup error falls as ``m^{-2}``, whatever ``D``.

    Examples
    --------
    >>> moe = build_chart_moe(4, 33, circle_embedding(16))
    >>> moe.width
    32
    """
    Q = check_isometry(Q)
    if Q.shape[1] != 2:
        raise ValueError(f"Q must embed the circle: shape (D, 2), got shape {Q.shape}")
    n_experts = check_int("n_experts", n_experts, minimum=3)
    m = check_int("m", m, minimum=2)
    atlas = circle_atlas(n_experts, Q, overlap=1.0 + 1e-9)
    s = math.sin(math.pi / n_experts)
    knots = np.linspace(-s, s, m)  # (m,)
    values = circle_target(atlas.theta[:, None] + np.arcsin(knots)[None], freqs)  # (N, m)
    slopes = np.diff(values, axis=1) / np.diff(knots)  # (N, m - 1)
    w2 = np.diff(slopes, axis=1, prepend=0.0)  # (N, m - 1)
    return ChartMoE(atlas, knots, w2, values[:, 0].copy())


def chart_moe_sup_error(moe: ChartMoE, *, freqs=(5.0, 3.0), n_test: int = 20_000) -> float:
    """``max |f - y|`` over the test grid :func:`circle_grid` (``n_test`` rounded up to a multiple of ``2N``)."""
    if not isinstance(moe, ChartMoE):
        raise TypeError(f"moe must be a ChartMoE, got {type(moe).__name__}")
    n_test = check_positive_int("n_test", n_test)
    n_test += (-n_test) % (2 * moe.atlas.n_charts)  # no grid point on a Voronoi boundary
    x, theta = circle_grid(n_test, moe.atlas.Q)
    return float(np.abs(moe(x) - circle_target(theta, freqs)).max())


def chart_moe_to_layer(moe: ChartMoE, *, device=None, dtype=torch.float64) -> MoE:
    """The same network as a :class:`~moe_theory.layers.MoE` (top-1, renormalised, bias-free gate)."""
    if not isinstance(moe, ChartMoE):
        raise TypeError(f"moe must be a ChartMoE, got {type(moe).__name__}")
    D, N, H = moe.atlas.Q.shape[0], moe.atlas.n_charts, moe.width
    layer = MoE(D, H, N, 1, d_out=1, router_bias=False, device=device, dtype=dtype)
    p = dict(device=layer.w1.device, dtype=layer.w1.dtype)
    with torch.no_grad():
        layer.router.weight.copy_(torch.as_tensor(moe.atlas.centres, **p))
        layer.w1.copy_(torch.as_tensor(moe.atlas.tangents, **p)[:, None, :].expand(N, H, D))
        layer.b1.copy_(-torch.as_tensor(moe.knots[:-1], **p).expand(N, H))
        layer.w2.copy_(torch.as_tensor(moe.w2, **p)[:, None, :])
        layer.b2.copy_(torch.as_tensor(moe.b2, **p)[:, None])
    return layer


# --------------------------------------------------------------------------- trained models (Experiment I)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def equal_parameter_width(D: int, *, n_experts: int = 4, width: int = 10) -> int:
    """Width ``h`` of a dense ``D -> h -> 1`` ReLU net with about as many parameters as the MoE.

    Notes
    -----
    MoE: ``N (D + 1)`` gate + ``N (width (D + 2) + 1)`` experts; dense: ``h (D + 2) + 1``;
    ``h`` is the rounded solution of equality.

    Examples
    --------
    >>> equal_parameter_width(128)
    44
    """
    D, n_experts, width = (check_positive_int("D", D), check_positive_int("n_experts", n_experts),
                           check_positive_int("width", width))
    total = n_experts * (D + 1) + n_experts * (width * (D + 2) + 1)
    return max(1, round((total - 1) / (D + 2)))


def expert_assignment(model: MoE, Q, theta, *, device=None, dtype=torch.float32) -> np.ndarray:
    """Top-1 expert of the MoE (on ``device``, in ``dtype``) at the circle points of angles ``theta``."""
    if not isinstance(model, MoE):
        raise TypeError(f"model must be an MoE, got {type(model).__name__}")
    theta = check_array("theta", theta, ndim=1)
    x = embed(np.stack([np.cos(theta), np.sin(theta)], 1), Q)
    with torch.no_grad():
        routing = model.router(torch.as_tensor(x, device=resolve_device(device), dtype=dtype))
    return routing.indices[:, 0].cpu().numpy()


def plot_circle_moe(model: MoE, Q, *, freqs=(5.0, 3.0), axes=None, n: int = 720, device=None,
                    dtype=torch.float32, legend: bool = True):
    """Two panels along the angle ``theta``: the target, each expert's output (bold on the arc it owns)
    and the routed output; below, the router's probabilities ``p_i(theta)`` coloured by expert."""
    import matplotlib.pyplot as plt

    from .plotting import expert_colors

    if not isinstance(model, MoE):
        raise TypeError(f"model must be an MoE, got {type(model).__name__}")
    x, theta = circle_grid(check_positive_int("n", n), check_isometry(Q))
    xt = torch.as_tensor(x, device=resolve_device(device), dtype=dtype)  # (n, D)
    with torch.no_grad():
        routing = model.router(xt)
        outs = np.stack([model.expert(i, xt)[:, 0].cpu().double().numpy() for i in range(model.n_experts)])
        y = model(xt)[:, 0].cpu().double().numpy()
    owner, probs = routing.indices[:, 0].cpu().numpy(), routing.probs.cpu().double().numpy()
    if axes is None:
        _, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
    colors = expert_colors(model.n_experts)
    axes[0].plot(theta, circle_target(theta, freqs), color="k", lw=3, alpha=0.25, label="target $f$")
    for i in range(model.n_experts):
        axes[0].plot(theta, outs[i], color=colors[i], lw=0.8, ls=":")
        axes[0].plot(theta, np.where(owner == i, y, np.nan), color=colors[i], lw=2, label=f"expert {i} on its arc")
        axes[1].plot(theta, probs[:, i], color=colors[i], lw=1.5)
        axes[1].fill_between(theta, 0, 1, where=owner == i, color=colors[i], alpha=0.15, lw=0)
    axes[0].set(ylabel="output", ylim=(-2.6, 2.6))
    if legend:
        axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[1].set(xlabel=r"angle $\theta$ on the circle", ylabel="router $p_i$", ylim=(0, 1))
    axes[1].set_xticks(np.pi * np.arange(5) / 2, ["0", r"$\pi/2$", r"$\pi$", r"$3\pi/2$", r"$2\pi$"])
    return axes
