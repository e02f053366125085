"""The smoothed top-k router of Tran Huu et al. (Smooth SMoE), a small dense MoE using it, and training.

Part of the chapter "Discontinuities of sparse MoE" (see :mod:`moe_theory.discontinuity`).
The formula, constants and initialisation follow the public reference code
(GitHub ``thotranhuu99/Smooth_SMoE``, ``tutel/gates/smooth_top.py`` and ``smooth_routing`` in
``tutel/impls/moe_layer.py``). Its dispatch helper ``extract_critical_smooth`` keeps one slot too
few (see :func:`smoothed_topk_weights`, ``release_dispatch``); the book keeps every positive
weight, as the paper's mathematics says, and emulates the release only behind that flag.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._validation import check_choice, check_int, check_k, check_positive_int, check_positive_real, \
    check_real, check_rng, check_tensor

__all__ = [
    "log_smoothing_ramp", "smoothing_ramp", "smoothed_topk_weights", "band_count", "budget_loss",
    "topk_softmax_weights", "SmoothMoE", "two_moons", "train_classifier", "noise_robustness",
    "compare_routers", "train_classifiers_population", "comparison_table", "posthoc_smoothing", "median_range",
]


def _eta(eta):
    if isinstance(eta, torch.Tensor):
        if eta.numel() != 1 or not bool(eta.detach() > 0):
            raise ValueError(f"eta must be a positive scalar, got eta={eta.detach().cpu().numpy()}")
        return eta
    return check_positive_real("eta", eta)


def log_smoothing_ramp(u: torch.Tensor, a: float = 1.0, b: float = 50.0, *, clamp: float = 0.0) -> torch.Tensor:
    r"""``log chi(u)``: ``-inf`` for ``u <= 0``, ``0`` for ``u >= 1``, and in between

    .. math:: \log\chi(u) = -\operatorname{softplus}\big(b \log(1 - u) - a \log u\big),
              \qquad \chi(u) = \frac{u^a}{u^a + (1 - u)^b}.

    ``a = 1, b = 50`` are the reference's constants. The reference clamps ``u`` at ``1e-6`` inside
    the logs (``clamp=1e-6`` reproduces it); the default ``clamp=0`` is the exact formula.
    """
    u = check_tensor("u", u, finite=False)
    a, b = check_positive_real("a", a), check_positive_real("b", b)
    clamp = check_real("clamp", clamp, minimum=0.0, maximum=0.5)
    mid = (u > 0) & (u < 1)
    us = torch.where(mid, u, torch.full_like(u, 0.5)).clamp(min=clamp)        # safe inside the logs
    inner = b * torch.log1p(-us) - a * torch.log(us)
    val = -F.softplus(inner)
    return torch.where(mid, val, torch.where(u >= 1, torch.zeros_like(u), torch.full_like(u, -math.inf)))


def smoothing_ramp(u: torch.Tensor, a: float = 1.0, b: float = 50.0) -> torch.Tensor:
    """The ramp ``chi(u) = exp(log_smoothing_ramp(u))``: 0 for ``u <= 0``, 1 for ``u >= 1``."""
    return torch.exp(log_smoothing_ramp(u, a, b))


def _kth_largest(g: torch.Tensor, k: int) -> torch.Tensor:
    return torch.topk(g.detach(), k, dim=-1).values[..., k - 1:k]          # (..., 1), no gradient


def smoothed_topk_weights(logits: torch.Tensor, k: int, eta, a: float = 1.0,
                          b: float = 50.0, *,
                          release_dispatch: bool = False) -> torch.Tensor:
    r"""Routing weights of the smoothed top-``k`` router (Smooth SMoE).

    .. math::

        u_i = 1 - \frac{g_{(k)} - g_i}{\eta}, \qquad
        \pi_i = \frac{e^{g_i}\,\chi(u_i)}{\sum_{j \le N} e^{g_j}\,\chi(u_j)}
              = \operatorname{softmax}\big(g + \log\chi(u)\big)_i .

    The top ``k`` have ``u >= 1`` (full weight); experts less than ``eta``
    below ``g_(k)`` (the *band*) get a partial weight; the rest get 0. As
    in the reference, ``u`` comes from detached logits and a no-grad
    ``g_(k)`` (``eta`` keeps its gradient). Where ``delta_k >= eta`` the
    weights are exactly top-k-then-softmax; for ``eta > 0`` they are
    continuous in ``g``.

    Parameters
    ----------
    logits : torch.Tensor, shape (..., N)
    k : int
    eta : float or 0-d tensor, > 0
        Smoothing width.
    a, b : float
        Exponents of the ramp (reference: 1 and 50).
    release_dispatch : bool
        Emulate the released ``extract_critical_smooth`` on a batch
        ``(T, N)``: find the last sorted slot ``j*`` (0-based) positive for
        any token and keep ``j*`` slots, not ``j* + 1``, renormalising only
        if more than one is kept. This brings jumps back and makes a
        token's weights depend on its batch; with ``k = 1`` and no band
        expert no slot is kept (the release fails with an index error;
        here a ``ValueError``). Demonstration only.

    Returns
    -------
    torch.Tensor, shape (..., N)

    Notes
    -----
    Tran Huu et al., ICML 2026 (arXiv:2606.19036); public code
    ``thotranhuu99/Smooth_SMoE``.

    Examples
    --------
    >>> g = torch.tensor([1.0, 0.0, -0.45, -3.0], dtype=torch.float64)
    >>> smoothed_topk_weights(g, 2, 0.5).numpy().round(4)   # 2 in the band
    array([0.6286, 0.2312, 0.1402, 0.    ])
    """
    g = check_tensor("logits", logits, min_ndim=1)
    k = check_k(k, g.shape[-1], n_name="logits.shape[-1]")
    eta = _eta(eta)
    gk = _kth_largest(g, k)                                  # (..., 1)
    u = (g.detach() - gk + eta) / eta                        # (..., N)
    pi = torch.softmax(g + log_smoothing_ramp(u, a, b), -1)  # (..., N)
    if release_dispatch:
        pi = _release_dispatch(pi)
    return pi


def _release_dispatch(pi: torch.Tensor) -> torch.Tensor:
    """The released dispatch's slot rule on weights ``pi`` of shape (T, N)."""
    if pi.ndim != 2:
        raise ValueError(f"release_dispatch needs logits of shape (T, N), "
                         f"got shape {tuple(pi.shape)}")
    vals, idx = torch.sort(pi, dim=-1, descending=True)     # (T, N)
    j_star = int((vals > 0).sum(-1).max()) - 1   # last slot > 0 for a token
    if j_star == 0:
        raise ValueError("release_dispatch keeps j* = 0 slots here (k=1 and no "
                         "band expert in the batch); the released code fails "
                         "with an index error in this case")
    kept = vals[:, :j_star]                                 # (T, j*)
    if j_star > 1:
        eps = torch.finfo(kept.dtype).eps
        kept = kept / kept.sum(-1, keepdim=True).clamp(min=eps)
    return torch.zeros_like(pi).scatter(-1, idx[:, :j_star], kept)


def topk_softmax_weights(logits: torch.Tensor, k: int, weighting: str = "renormalized") -> torch.Tensor:
    """Dense ``(..., N)`` top-k weights (TK-SM ``"renormalized"`` or SM-TK ``"softmax"``), ties by index."""
    g = check_tensor("logits", logits, min_ndim=1)
    k = check_k(k, g.shape[-1], n_name="logits.shape[-1]")
    weighting = check_choice("weighting", weighting, ("renormalized", "softmax"))
    idx = torch.sort(g.detach(), dim=-1, descending=True, stable=True)[1][..., :k]
    mask = torch.zeros_like(g, dtype=torch.bool).scatter(-1, idx, True)
    if weighting == "softmax":
        return torch.softmax(g, -1) * mask
    return torch.softmax(g.masked_fill(~mask, -math.inf), -1)


def band_count(logits: torch.Tensor, k: int, eta) -> torch.Tensor:
    """``n(x) = #{i : g_i > g_(k) - eta}``: the experts with positive smoothed weight."""
    g = check_tensor("logits", logits, min_ndim=1)
    k = check_k(k, g.shape[-1], n_name="logits.shape[-1]")
    eta = _eta(eta)
    return (g.detach() > _kth_largest(g, k) - eta).sum(-1)


def budget_loss(logits: torch.Tensor, k: int, eta, h: float = 0.5) -> torch.Tensor:
    r"""The reference's budget loss ``eta (n_bar - (k + h))``; its gradient reaches only ``eta``.

    ``d/d eta = n_bar - k - h``: gradient descent widens the band while fewer than ``k + h`` experts
    are active on average and narrows it otherwise.
    """
    h = check_real("h", h, minimum=0.0)
    n_bar = band_count(logits, k, eta).double().mean().to(logits.dtype)
    return eta * (n_bar - (k + h))


class SmoothMoE(nn.Module):
    r"""A small MoE with MLP experts and a top-k or smoothed top-k router, computed densely.

    ``y(x) = sum_i pi_i(x) E_i(x)`` with ``g = W x + b`` and ``E_i(x) = W2_i relu(W1_i x + b1_i) + b2_i``.
    Every expert is evaluated on every input (a toy for the chapter's small experiments; the book's
    :class:`moe_theory.MoE` dispatches sparsely). ``router="smooth"`` learns
    ``eta = softplus(theta)``; the reference starts at ``theta = -9`` (``eta ~ 1.234e-4``);
    ``eta_init`` starts elsewhere.

    Parameters
    ----------
    d_model, d_hidden, n_experts, k, d_out : int
    router : {"topk", "smooth"}
    eta_init : float, optional
    generator : torch.Generator, optional
        Source of the initial weights (the global generator is never read).
    """

    def __init__(self, d_model: int, d_hidden: int, n_experts: int, k: int = 2, d_out: int = 1, *,
                 router: str = "topk", eta_init: float | None = None, generator: torch.Generator | None = None,
                 device=None, dtype=None):
        super().__init__()
        self.d_model, self.d_hidden = check_positive_int("d_model", d_model), check_positive_int("d_hidden", d_hidden)
        self.n_experts = check_positive_int("n_experts", n_experts)
        self.k, self.d_out = check_k(k, self.n_experts), check_positive_int("d_out", d_out)
        self.router = check_choice("router", router, ("topk", "smooth"))
        theta0 = -9.0 if eta_init is None else math.log(math.expm1(check_positive_real("eta_init", eta_init)))
        fk = {"device": device, "dtype": dtype}
        N, m, D = self.n_experts, self.d_hidden, self.d_model
        self.gate_weight, self.gate_bias = nn.Parameter(torch.empty(N, D, **fk)), nn.Parameter(torch.empty(N, **fk))
        self.w1, self.b1 = nn.Parameter(torch.empty(N, m, D, **fk)), nn.Parameter(torch.empty(N, m, **fk))
        self.w2 = nn.Parameter(torch.empty(N, self.d_out, m, **fk))
        self.b2 = nn.Parameter(torch.empty(N, self.d_out, **fk))
        self.theta = nn.Parameter(torch.tensor(theta0, **fk), requires_grad=self.router == "smooth")
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Uniform ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` weights, as :class:`torch.nn.Linear`."""
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p, fan in ((self.gate_weight, self.d_model), (self.gate_bias, self.d_model), (self.w1, self.d_model),
                           (self.b1, self.d_model), (self.w2, self.d_hidden), (self.b2, self.d_hidden)):
                p.copy_((torch.rand(p.shape, generator=gen, dtype=torch.float64) * 2 - 1) / math.sqrt(fan))

    def set_gate(self, W, b) -> "SmoothMoE":
        """Copy a router ``g(x) = W x + b`` (arrays of shape (N, D) and (N,)) into the gate; returns self."""
        with torch.no_grad():
            self.gate_weight.copy_(torch.as_tensor(np.asarray(W, dtype=float)))
            self.gate_bias.copy_(torch.as_tensor(np.asarray(b, dtype=float)))
        return self

    @property
    def eta(self) -> torch.Tensor:
        """The smoothing width ``softplus(theta)``."""
        return F.softplus(self.theta)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.gate_weight.T + self.gate_bias              # (T, N)

    def expert_outputs(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(torch.einsum("nmd,td->tnm", self.w1, x) + self.b1)   # (T, N, m)
        return torch.einsum("nom,tnm->tno", self.w2, h) + self.b2           # (T, N, d_out)

    def weights(self, x: torch.Tensor, eta=None) -> torch.Tensor:
        g = self.logits(x)                                                  # (T, N)
        if self.router == "topk":
            return topk_softmax_weights(g, self.k)
        return smoothed_topk_weights(g, self.k, self.eta if eta is None else eta)

    def forward(self, x: torch.Tensor, eta=None) -> torch.Tensor:
        """``y(x)``; with ``eta`` given, route with the smoothed router of that width, whatever
        ``router`` is (to smooth a trained top-k model after training)."""
        x = check_tensor("x", x, shape=(self.d_model,), ndim=2)
        if eta is None:
            pi = self.weights(x)                                                         # (T, N)
        else:
            pi = smoothed_topk_weights(self.logits(x), self.k, eta)                     # (T, N)
        return torch.einsum("tn,tno->to", pi, self.expert_outputs(x))                   # (T, d_out)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_hidden={self.d_hidden}, n_experts={self.n_experts}, k={self.k}, "
                f"d_out={self.d_out}, router={self.router!r}")


def two_moons(n: int, *, noise: float = 0.1, seed: int = 0, device=None, dtype=torch.float32):
    """``n`` points of the two-moons data set (labels 0/1), standardised, from a seed."""
    n = check_positive_int("n", n)
    noise = check_real("noise", noise, minimum=0.0)
    rng = check_rng(seed, name="seed")
    y = rng.integers(0, 2, n)
    t = rng.uniform(0, math.pi, n)
    x = np.where(y[:, None] == 0, np.stack([np.cos(t), np.sin(t)], 1), np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1))
    x = x + noise * rng.standard_normal((n, 2))
    x = (x - np.array([0.5, 0.25])) / np.array([0.87, 0.5])
    return torch.tensor(x, device=device, dtype=dtype), torch.tensor(y, device=device)


def train_classifier(model: SmoothMoE, x: torch.Tensor, y: torch.Tensor, *, steps: int = 400, lr: float = 1e-2,
                     budget_weight: float | None = None, h: float = 0.5):
    """Full-batch Adam on cross-entropy; a smoothed router also gets the budget loss.

    ``budget_weight`` defaults to the reference's ``0.01 * T`` (the budget loss is multiplied by the
    token count and added to the balancing loss, weighted 0.01).

    Returns
    -------
    dict of lists: ``loss``, ``eta`` and ``n_bar`` per step.
    """
    steps = check_positive_int("steps", steps)
    lr = check_positive_real("lr", lr)
    bw = 0.01 * len(x) if budget_weight is None else check_real("budget_weight", budget_weight, minimum=0.0)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    hist = {"loss": [], "eta": [], "n_bar": []}
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        total = loss
        g = model.logits(x)
        if model.router == "smooth":
            total = loss + bw * budget_loss(g, model.k, model.eta, h)
        total.backward()
        opt.step()
        eta = model.eta.item() if model.router == "smooth" else 0.0
        hist["loss"].append(loss.item())
        hist["eta"].append(eta)
        hist["n_bar"].append(float(band_count(g, model.k, eta).float().mean()) if eta > 0 else float(model.k))
    return hist


@torch.no_grad()
def noise_robustness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, noise_levels, *, n_draws: int = 4,
                     seed: int = 0, probabilities: bool = True):
    r"""Accuracy under input noise and the size of the output change ``||y(x + nu xi) - y(x)||``.

    With ``probabilities=True`` (default) the change is measured on the class probabilities
    ``softmax(y)``, which are bounded, rather than on the raw class scores.

    Returns
    -------
    list of dict, one per noise level ``nu``: ``nu``, ``accuracy``, ``rms`` and ``p99`` (the root
    mean square and the 99th percentile of the output change over points and draws).
    """
    n_draws = check_positive_int("n_draws", n_draws)
    gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    f = (lambda z: torch.softmax(model(z), -1)) if probabilities else model
    base = f(x)
    out = []
    for nu in noise_levels:
        nu = check_real("noise_levels", nu, minimum=0.0)
        acc, dist = [], []
        for _ in range(n_draws):
            xi = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
            o = f(x + nu * xi)
            acc.append(float((o.argmax(-1) == y).float().mean()))
            dist.append((o - base).norm(dim=-1).cpu())
        d = torch.cat(dist).double()
        out.append({"nu": nu, "accuracy": float(np.mean(acc)), "rms": float(d.pow(2).mean().sqrt()),
                    "p99": float(torch.quantile(d, 0.99))})
    return out


def compare_routers(seeds=(0, 1, 2, 3, 4), *, n_train: int = 256, n_test: int = 1000, steps: int = 300,
                    noise_levels=(0.05, 0.1, 0.2), n_experts: int = 4, k: int = 2, d_hidden: int = 8,
                    eta_init: float = 0.1, device=None, dtype=torch.float32, population: bool = True):
    """Train a top-k and a smoothed MoE on the same two-moons data for each seed and measure both.

    Each seed draws the data (training set from ``seed``, test set from ``seed + 1000``) and the
    initial weights, shared by the two routers. Every model is :func:`train_classifier`'s run; with
    ``population=True`` (default) all seeds of a router are trained together by
    :func:`train_classifiers_population` (the same numbers, a float64 test checks them to 1e-8),
    with ``population=False`` one at a time. Returns one dict per (router, seed) with the training
    and test accuracy, :func:`noise_robustness` on the test set, the final ``eta`` and ``n_bar``, and
    the training history.
    """
    seeds = [check_int("seeds", seed, minimum=0) for seed in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed, got none")
    data = {seed: (two_moons(n_train, seed=seed, device=device, dtype=dtype),
                   two_moons(n_test, seed=seed + 1000, device=device, dtype=dtype)) for seed in seeds}
    runs = {}
    for router in ("topk", "smooth"):
        models = [SmoothMoE(2, d_hidden, n_experts, k, 2, router=router, eta_init=eta_init,
                            generator=torch.Generator().manual_seed(seed), device=device, dtype=dtype)
                  for seed in seeds]
        if population:
            xs = torch.stack([data[s][0][0] for s in seeds])
            ys = torch.stack([data[s][0][1] for s in seeds])
            hists = train_classifiers_population(models, xs, ys, steps=steps)
        else:
            hists = [train_classifier(m, *data[s][0], steps=steps) for m, s in zip(models, seeds)]
        for seed, model, hist in zip(seeds, models, hists):
            (x, y), (xt, yt) = data[seed]
            with torch.no_grad():
                train_acc = float((model(x).argmax(-1) == y).float().mean())
            rob = noise_robustness(model, xt, yt, (0.0,) + tuple(noise_levels), seed=seed)
            runs[router, seed] = {"router": router, "seed": seed, "train_acc": train_acc,
                                  "test_acc": rob[0]["accuracy"], "robustness": rob[1:], "eta": hist["eta"][-1],
                                  "n_bar": hist["n_bar"][-1], "hist": hist, "model": model}
    return [runs[router, seed] for seed in seeds for router in ("topk", "smooth")]


def train_classifiers_population(models, x: torch.Tensor, y: torch.Tensor, *, steps: int = 400, lr: float = 1e-2,
                                 budget_weight: float | None = None, h: float = 0.5) -> list[dict]:
    """:func:`train_classifier` for every model of ``models`` at once, on the population trainer.

    ``models`` are :class:`SmoothMoE` layers of one architecture and router; ``x (P, T, D)`` and
    ``y (P, T)`` one training set per model (or ``(T, D)`` and ``(T,)`` shared). Member ``i`` follows
    ``train_classifier(models[i], x[i], y[i], ...)``: full-batch Adam on cross-entropy, for a smoothed
    router plus ``budget_weight`` times the budget loss with the member's own ``eta``
    (:func:`~moe_theory.population.fit_population`, ``loss="cross_entropy"``, a ``penalty``). The
    trained weights are written back into the models.

    Returns
    -------
    list of dict, one per model, as :func:`train_classifier` returns (``loss``, ``eta``, ``n_bar``).
    """
    from .population import fit_population

    if isinstance(models, nn.Module) or not isinstance(models, (list, tuple)) or not models:
        raise TypeError("models must be a non-empty list of SmoothMoE layers")
    steps = check_positive_int("steps", steps)
    lr = check_positive_real("lr", lr)
    T = x.shape[-2] if isinstance(x, torch.Tensor) and x.ndim >= 2 else 0
    bw = 0.01 * T if budget_weight is None else check_real("budget_weight", budget_weight, minimum=0.0)
    h = check_real("h", h, minimum=0.0)
    P, k = len(models), models[0].k
    smooth = getattr(models[0], "router", None) == "smooth"
    hists = [{"loss": [], "eta": [], "n_bar": []} for _ in range(P)]

    def band(st, eta):  # n_bar per member: mean over tokens of #{i : g_i > g_(k) - eta}
        g = st.logits.detach().transpose(1, 2)  # (Pc, T, N)
        gk = torch.topk(g, k, dim=-1).values[..., k - 1:k]
        return (g > gk - eta[:, None, None]).sum(-1)  # (Pc, T)

    def penalty(st):
        eta = F.softplus(st.params["theta"])  # (Pc,)
        n_bar = band(st, eta.detach()).double().mean(1).to(eta.dtype)
        return bw * eta * (n_bar - (k + h))

    def monitor(step, st):
        if step > steps:
            return
        eta = F.softplus(st.params["theta"]).detach() if smooth else None
        n_bar = band(st, eta).float().mean(1) if smooth else None
        for j, i in enumerate(st.members):
            hists[i]["loss"].append(float(st.loss[j]))
            e = float(eta[j]) if smooth else 0.0
            hists[i]["eta"].append(e)
            hists[i]["n_bar"].append(float(n_bar[j]) if smooth and e > 0 else float(k))

    fit_population(list(models), x, y, seeds=list(range(P)), steps=steps, lr=lr, lr_decay=False, clip=None,
                   loss="cross_entropy", penalty=penalty if smooth else None, monitor=monitor, keep_losses=False)
    return hists


def comparison_table(runs, kind: str = "accuracy", noise_index: int = 1):
    """Header and rows (median [min, max] over seeds, per router) of :func:`compare_routers`' runs.

    ``kind="accuracy"``: training and test accuracy, and accuracy at every noise level.
    ``kind="robustness"``: RMS and 99th percentile of the output change at the noise level
    ``noise_levels[noise_index]``, the final ``eta`` and ``n_bar``.
    """
    kind = check_choice("kind", kind, ("accuracy", "robustness"))
    nus = [q["nu"] for q in runs[0]["robustness"]]
    if kind == "accuracy":
        header = ["router", "train acc", "test acc"] + [f"acc nu={v:g}" for v in nus]
    else:
        nu = nus[check_int("noise_index", noise_index, minimum=0, maximum=len(nus) - 1)]
        header = ["router", f"RMS change nu={nu:g}", f"p99 change nu={nu:g}", "final eta", "n_bar"]
    rows = []
    for router in ("topk", "smooth"):
        R = [r for r in runs if r["router"] == router]
        if kind == "accuracy":
            rows.append([router, median_range(r["train_acc"] for r in R), median_range(r["test_acc"] for r in R)]
                        + [median_range(r["robustness"][j]["accuracy"] for r in R) for j in range(len(nus))])
        else:
            rows.append([router] + [median_range(r["robustness"][noise_index][key] for r in R) for key in ("rms", "p99")]
                        + [median_range(r["eta"] for r in R), median_range(r["n_bar"] for r in R)])
    return header, rows


def posthoc_smoothing(runs, etas, *, nu: float = 0.1, n_test: int = 1000):
    """Smooth the trained top-k models of :func:`compare_routers` after training, at fixed widths.

    For each ``eta`` (``0`` means plain top-k) and each top-k run, the same experts and gate are
    routed with :func:`smoothed_topk_weights`; returns header and rows with test accuracy and the
    RMS and 99th percentile of the change of class probabilities under noise ``nu``
    (median [min, max] over seeds), and the mean number of experts with positive weight. Test data
    and noise are drawn as in :func:`compare_routers` (the same noise levels in the same order, ``nu``
    appended if it is not one of them), so the ``eta = 0`` row repeats its top-k numbers.
    """
    nu = check_real("nu", nu, minimum=0.0)
    rows = []
    for eta in etas:
        eta = check_real("etas", eta, minimum=0.0)
        acc, rms, p99, nbar = [], [], [], []
        for r in (r for r in runs if r["router"] == "topk"):
            model = r["model"]
            xt, yt = two_moons(n_test, seed=r["seed"] + 1000, device=model.w1.device)
            f = model if eta == 0 else (lambda z, m=model, e=eta: m(z, eta=e))
            levels = [0.0] + [z["nu"] for z in r["robustness"]]
            levels += [] if nu in levels[1:] else [nu]
            q = noise_robustness(f, xt, yt, levels, seed=r["seed"])
            at = q[1 + levels[1:].index(nu)]
            acc.append(q[0]["accuracy"]); rms.append(at["rms"]); p99.append(at["p99"])
            with torch.no_grad():
                g = model.logits(xt)
            nbar.append(float(band_count(g, model.k, eta).float().mean()) if eta > 0 else float(model.k))
        rows.append([eta, median_range(acc), median_range(rms), median_range(p99), median_range(nbar)])
    return ["eta", "test acc", f"RMS change nu={nu:g}", f"p99 change nu={nu:g}", "n_bar"], rows


def median_range(values, digits: int = 3) -> str:
    """``"median [min, max]"`` of a list of numbers, for tables of trained results."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        raise ValueError("values must contain at least one number, got an empty sequence")
    f = f"{{:.{digits}g}}"
    return f"{f.format(np.median(v))} [{f.format(v.min())}, {f.format(v.max())}]"
