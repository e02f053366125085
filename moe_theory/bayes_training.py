"""Small seeded training loops for chapter ``book/bayes.md``.

* :func:`train_routed_moe`: a top-k :class:`~moe_theory.layers.MoE` trained on squared error with
  one of the balancing rules of :mod:`moe_theory.balancing` (or none), a router temperature
  ``tau``, and routing metrics (load, ``H(Z|X)``, ``H(P_bar)``, ``I(X; Z)``) logged during training.
* :func:`fit_mixture_em`: the same layer with a dense softmax router read as a probabilistic
  mixture of Gaussian experts and trained by generalised EM, so that the posterior over experts
  can be compared with the router.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ._validation import (check_choice, check_k, check_positive_int, check_positive_real, check_real,
                          check_rng, check_seed, check_seeds, check_tensor, per_seed)
from .balancing import (aux_free_bias_update, biased_topk_route, importance_loss, router_z_loss,
                        switch_load_balancing_loss)
from .device import resolve_device
from .layers import MoE

__all__ = ["cluster_regression_data", "make_routed_moe", "routed_forward", "train_routed_moe", "train_routed_population",
           "RoutingHistory", "fit_mixture_em", "EMHistory", "BALANCE_RULES"]

#: The balancing rules :func:`train_routed_moe` knows.
BALANCE_RULES = ("none", "switch", "z_loss", "importance", "aux_free")


def cluster_regression_data(n: int, *, n_clusters: int = 4, spread: float = 0.3, noise: float = 0.05,
                            seed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D inputs from Gaussian clusters, each cluster with its own affine target.

    Cluster ``c`` has centre ``1.5 (cos, sin)(2 pi c / n_clusters + pi/4)``, isotropic spread
    ``spread`` and target ``t = a_c . x + b_c + noise``, with ``a_c, b_c`` standard normal drawn
    from ``seed`` (the same for every ``n``), so the data has a natural split into experts.

    Returns
    -------
    x : ndarray (n, 2), t : ndarray (n,), labels : ndarray (n,) of int
    """
    n = check_positive_int("n", n)
    C = check_positive_int("n_clusters", n_clusters)
    spread = check_positive_real("spread", spread)
    noise = check_real("noise", noise, minimum=0.0)
    seed = check_seed("seed", seed)
    coef = np.random.default_rng(10_000 + C).standard_normal((C, 3))  # fixed per C: a_c, b_c
    rng = check_rng(seed)
    labels = rng.integers(0, C, n)
    angle = 2 * np.pi * np.arange(C) / C + np.pi / 4
    centres = 1.5 * np.stack([np.cos(angle), np.sin(angle)], 1)  # (C, 2)
    x = centres[labels] + spread * rng.standard_normal((n, 2))  # (n, 2)
    t = (coef[labels, :2] * x).sum(1) + coef[labels, 2] + noise * rng.standard_normal(n)
    return x, t, labels


def make_routed_moe(*, n_experts: int = 4, k: int = 1, d_hidden: int = 8, router: str = "topk", seed,
                    device=None, dtype=torch.float32) -> MoE:
    """A ``2 -> 1`` :class:`MoE` of ReLU experts, Switch weighting (``pi_i = p_i``), seeded init.

    The initialisation is drawn from ``seed`` inside :func:`torch.random.fork_rng`, so the global
    generator is neither read nor changed.
    """
    seed = check_seed("seed", seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MoE(2, d_hidden, n_experts, k, router=router, d_out=1, weighting="softmax",
                   device=resolve_device(device), dtype=dtype)


@contextmanager
def _small_tensor_threads(device: torch.device):
    """Run on one CPU thread (restored afterwards): these tensors are tiny, and thread barriers
    cost more than the arithmetic (3-4x slower on two threads of a busy 2-core machine)."""
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _expert_outputs(model: MoE, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([model.expert(i, x) for i in range(model.n_experts)], 1)  # (T, N, O)


def routed_forward(model: MoE, x: torch.Tensor, *, tau: float = 1.0, bias: torch.Tensor | None = None):
    """The MoE's output with router temperature ``tau`` and an optional selection bias ``beta``.

    ``p = softmax(g(x) / tau)``; ``S = S_k(g / tau + beta)``; ``y = sum_{i in S} p_i E_i(x)``.
    With ``tau = 1`` and no bias this is ``model(x)`` (for Switch weighting; tested).

    Returns
    -------
    y : (T, O), g : (T, N) the tempered logits ``g / tau``, indices : (T, k), weights : (T, k)
    """
    if not isinstance(model, MoE):
        raise TypeError(f"model must be a moe_theory.layers.MoE, got {type(model).__name__}")
    x = check_tensor("x", x, shape=(model.d_model,), ndim=2)
    tau = check_positive_real("tau", tau)
    g = model.router.logits(x) / tau  # (T, N)
    beta = torch.zeros(model.n_experts, dtype=g.dtype, device=g.device) if bias is None else bias
    idx, w = biased_topk_route(g, beta, model.k)  # (T, k), (T, k)
    E = _expert_outputs(model, x)  # (T, N, O)
    picked = E.gather(1, idx[..., None].expand(-1, -1, E.shape[-1]))  # (T, k, O)
    return (w[..., None] * picked).sum(1), g, idx, w


@dataclass
class RoutingHistory:
    """What :func:`train_routed_moe` logged, one row per logged step."""
    steps: np.ndarray             # (L,)
    train_mse: np.ndarray         # (L,)
    load: np.ndarray              # (L, N) fraction of tokens whose top-k holds expert i (sums to k)
    cond_entropy: np.ndarray      # (L,) H(Z | X) = mean per-token entropy of p
    marginal_entropy: np.ndarray  # (L,) H(P_bar)
    mutual_information: np.ndarray  # (L,) I(X; Z) = H(P_bar) - H(Z | X)
    test_mse: float
    bias: np.ndarray              # (N,) final selection bias (zero unless balance="aux_free")
    model: MoE

    @property
    def max_load_deviation(self) -> np.ndarray:
        """``max_i |f_i - k/N|`` at each logged step."""
        k = self.load[0].sum()
        return np.abs(self.load - k / self.load.shape[1]).max(1)


def _train_loop(model, xt, tt, opt, beta, log, balance, lam, tau, k, steps, gamma, log_every):
    """The loop of :func:`train_routed_moe`; returns the final selection bias."""
    n_experts = model.n_experts
    for step in range(steps + 1):
        y, g, idx, w = routed_forward(model, xt, tau=tau, bias=beta)
        mse = ((y - tt) ** 2).mean()
        counts = torch.bincount(idx.reshape(-1), minlength=n_experts)  # (N,)
        if step % log_every == 0 or step == steps:
            with torch.no_grad():
                p = torch.softmax(g, -1).double()  # (T, N)
                hzx = float(-torch.special.xlogy(p, p).sum(-1).mean())
                P = p.mean(0)
                hp = float(-torch.special.xlogy(P, P).sum())
                log["steps"].append(step), log["mse"].append(float(mse)), log["hzx"].append(hzx)
                log["load"].append((counts.double() / xt.shape[0]).cpu().numpy())
                log["hp"].append(hp), log["mi"].append(hp - hzx)
        if step == steps:
            break
        loss = mse
        if balance == "switch":
            loss = loss + lam * switch_load_balancing_loss(g, k)
        elif balance == "z_loss":
            loss = loss + lam * router_z_loss(g)
        elif balance == "importance":
            gates = torch.zeros_like(g).scatter(-1, idx, w)  # (T, N) routing weights, 0 off S
            loss = loss + lam * importance_loss(gates)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if balance == "aux_free":
            beta = aux_free_bias_update(beta, counts, gamma)
    return beta


def train_routed_moe(x, t, *, balance: str = "none", lam: float = 0.01, tau: float = 1.0, k: int = 1,
                     n_experts: int = 4, d_hidden: int = 8, steps: int = 300, lr: float = 0.02,
                     gamma: float = 0.02, log_every: int = 10, x_test=None, t_test=None, seed,
                     device=None, dtype=torch.float32) -> RoutingHistory:
    """Train a top-k MoE on squared error plus one balancing rule; log routing information.

    Parameters
    ----------
    x : array-like (T, 2); t : array-like (T,)
        Training data (full batch).
    balance : {"none", "switch", "z_loss", "importance", "aux_free"}
        ``loss = mse + lam * aux`` with ``aux`` = :func:`switch_load_balancing_loss`,
        :func:`router_z_loss` or :func:`importance_loss` of the (tempered) logits; ``"aux_free"``
        adds no loss and updates the selection bias by :func:`aux_free_bias_update` with step
        ``gamma`` after every step (selection only: the weights ``pi`` never see it).
    lam : float
        Balancing coefficient ``lambda``.
    tau : float
        Router temperature: ``p = softmax(g / tau)``.
    k, n_experts, d_hidden : int
    steps, lr, log_every : training length, Adam learning rate, logging interval.
    x_test, t_test : optional test data for ``test_mse``.
    seed : int
        Initialisation seed (the loop itself is deterministic, full batch).
    device, dtype : torch factory arguments.
    """
    balance = check_choice("balance", balance, BALANCE_RULES)
    lam, gamma = check_real("lam", lam, minimum=0.0), check_real("gamma", gamma, minimum=0.0)
    steps, log_every = check_positive_int("steps", steps), check_positive_int("log_every", log_every)
    lr = check_positive_real("lr", lr)
    k = check_k(k, check_positive_int("n_experts", n_experts))
    model = make_routed_moe(n_experts=n_experts, k=k, d_hidden=d_hidden, seed=seed, device=device, dtype=dtype)
    dev = model.w1.device
    xt = torch.as_tensor(np.asarray(x), device=dev, dtype=dtype)  # (T, 2)
    tt = torch.as_tensor(np.asarray(t), device=dev, dtype=dtype).reshape(-1, 1)  # (T, 1)
    if xt.ndim != 2 or xt.shape[1] != 2 or tt.shape[0] != xt.shape[0]:
        raise ValueError(f"x must have shape (T, 2) and t shape (T,), got {tuple(xt.shape)} and {np.shape(t)}")
    beta = torch.zeros(n_experts, device=dev, dtype=dtype)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    log: dict[str, list] = {key: [] for key in ("steps", "mse", "load", "hzx", "hp", "mi")}
    with _small_tensor_threads(dev):
        beta = _train_loop(model, xt, tt, opt, beta, log, balance, lam, tau, k, steps, gamma,
                           log_every)
    test_mse = math.nan
    if x_test is not None:
        with torch.no_grad():
            xs = torch.as_tensor(np.asarray(x_test), device=dev, dtype=dtype)
            ts = torch.as_tensor(np.asarray(t_test), device=dev, dtype=dtype).reshape(-1, 1)
            test_mse = float(((routed_forward(model, xs, tau=tau, bias=beta)[0] - ts) ** 2).mean())
    return RoutingHistory(np.array(log["steps"]), np.array(log["mse"]), np.stack(log["load"]),
                          np.array(log["hzx"]), np.array(log["hp"]), np.array(log["mi"]), test_mse,
                          beta.cpu().numpy(), model)


def train_routed_population(x, t, *, seeds, balance: str = "none", lam=0.01, tau=1.0, k: int = 1,
                            n_experts: int = 4, d_hidden: int = 8, steps: int = 300, lr: float = 0.02,
                            gamma: float = 0.02, log_every: int = 10, x_test=None, t_test=None,
                            device=None, dtype=torch.float32) -> list[RoutingHistory]:
    """:func:`train_routed_moe` for every seed of ``seeds`` at once, on the population trainer.

    Member ``i`` is ``train_routed_moe(x, t, seed=seeds[i], ...)``: the same initialisation, the same
    full-batch Adam steps, balancing rule, temperature and logs (a float64 test checks them to
    1e-8), trained together by :func:`~moe_theory.population.fit_population` (stacked weights, one
    batched step for all). ``lam`` and ``tau`` may be one value or one per seed (a grid of settings in
    one population); the Switch loss enters as ``aux_weight = k lam`` because the population's
    Switch loss normalises the load to sum to 1 (:func:`switch_load_balancing_loss` sums it to ``k``).

    Returns
    -------
    list of RoutingHistory, one per seed, in the order of ``seeds``.
    """
    from .population import expert_counts, fit_population

    balance = check_choice("balance", balance, BALANCE_RULES)
    seeds = check_seeds("seeds", seeds)
    P = len(seeds)
    lams = [check_real("lam", v, minimum=0.0) for v in per_seed("lam", lam, P)]
    taus = [check_positive_real("tau", v) for v in per_seed("tau", tau, P)]
    gamma = check_real("gamma", gamma, minimum=0.0)
    steps, log_every = check_positive_int("steps", steps), check_positive_int("log_every", log_every)
    lr = check_positive_real("lr", lr)
    k = check_k(k, check_positive_int("n_experts", n_experts))
    models = [make_routed_moe(n_experts=n_experts, k=k, d_hidden=d_hidden, seed=s, device=device, dtype=dtype)
              for s in seeds]
    dev = models[0].w1.device
    xt = torch.as_tensor(np.asarray(x), device=dev, dtype=dtype)  # (T, 2)
    tt = torch.as_tensor(np.asarray(t), device=dev, dtype=dtype).reshape(-1, 1)  # (T, 1)
    if xt.ndim != 2 or xt.shape[1] != 2 or tt.shape[0] != xt.shape[0]:
        raise ValueError(f"x must have shape (T, 2) and t shape (T,), got {tuple(xt.shape)} and {np.shape(t)}")
    aux_kind = {"switch": "switch", "z_loss": "z_loss", "importance": "importance"}.get(balance, "switch")
    aux_weight = [0.0] * P if balance in ("none", "aux_free") else [
        v * (k if balance == "switch" else 1) for v in lams]
    logs = [{key: [] for key in ("steps", "mse", "load", "hzx", "hp", "mi")} for _ in range(P)]
    T = xt.shape[0]

    def monitor(step, st):
        done = step - 1  # the forward pass ran on the weights after ``done`` updates
        if done % log_every and done != steps:
            return
        p = torch.softmax(st.logits.detach().double(), 1)  # (Pc, N, T): softmax over the experts
        hzx = -torch.special.xlogy(p, p).sum(1).mean(1)  # (Pc,)
        Pbar = p.mean(2)  # (Pc, N)
        hp = -torch.special.xlogy(Pbar, Pbar).sum(1)
        counts = expert_counts(st.indices, n_experts)  # (Pc, N)
        for j, i in enumerate(st.members):
            log = logs[i]
            log["steps"].append(done), log["mse"].append(float(st.loss[j])), log["hzx"].append(float(hzx[j]))
            log["load"].append((counts[j] / T).cpu().numpy())
            log["hp"].append(float(hp[j])), log["mi"].append(float(hp[j]) - float(hzx[j]))

    with _small_tensor_threads(dev):
        pop = fit_population(models, xt, tt, seeds=seeds, steps=steps, lr=lr, lr_decay=False, clip=None,
                             aux_weight=aux_weight, aux_loss=aux_kind, router_temperature=taus,
                             bias_update=gamma if balance == "aux_free" else 0.0, monitor=monitor,
                             keep_losses=False)
    out = []
    for i, model in enumerate(models):
        rec = pop.records[i]
        beta = torch.as_tensor(rec.get("selection_bias", [0.0] * n_experts), device=dev, dtype=dtype)
        test_mse = math.nan
        if x_test is not None:
            with torch.no_grad():
                xs = torch.as_tensor(np.asarray(x_test), device=dev, dtype=dtype)
                ts = torch.as_tensor(np.asarray(t_test), device=dev, dtype=dtype).reshape(-1, 1)
                test_mse = float(((routed_forward(model, xs, tau=taus[i], bias=beta)[0] - ts) ** 2).mean())
        log = logs[i]
        out.append(RoutingHistory(np.array(log["steps"]), np.array(log["mse"]), np.stack(log["load"]),
                                  np.array(log["hzx"]), np.array(log["hp"]), np.array(log["mi"]), test_mse,
                                  beta.cpu().numpy(), model))
    return out


@dataclass
class EMHistory:
    """What :func:`fit_mixture_em` logged, one row per EM iteration (before its M-step)."""
    log_likelihood: np.ndarray   # (L,) mean log p(t | x)
    elbo_posterior: np.ndarray   # (L,) mean ELBO(r), equal to the log-likelihood (E-step is exact)
    elbo_top1: np.ndarray        # (L,) mean ELBO(q^(1)(x)) of the router's top-1 choice
    kl_posterior_router: np.ndarray  # (L,) mean KL(varpi || p): how far the router is from the posterior
    agreement: np.ndarray        # (L,) fraction of tokens with argmax r = argmax p
    model: MoE
    log_sigma: np.ndarray        # (N,) learned log noise scale of each expert


def fit_mixture_em(x, t, *, n_experts: int = 4, d_hidden: int = 8, iters: int = 40, m_steps: int = 5,
                   lr: float = 0.02, seed, device=None, dtype=torch.float64) -> EMHistory:
    """Generalised EM for a mixture of Gaussian experts with a softmax router.

    Model: ``z ~ Categorical(p(x))``, ``p = softmax(g(x))``, ``t | z = i ~ N(E_i(x), sigma_i^2)``.
    E-step: ``r = posterior_responsibilities(log p, log phi)`` (exact, so ``ELBO(r) = log p(t|x)``).
    M-step: ``m_steps`` Adam steps on ``mean_t sum_i varpi_i (log p_i + log lik_i)`` with ``varpi`` fixed:
    the router is fitted to the posterior (a cross-entropy), each expert to its responsibility-
    weighted data (Jordan and Jacobs, Neural Computation 1994).
    """
    from .bayes import kl_divergence, mixture_elbo, posterior_responsibilities, topk_posterior

    iters, m_steps = check_positive_int("iters", iters), check_positive_int("m_steps", m_steps)
    lr = check_positive_real("lr", lr)
    model = make_routed_moe(n_experts=n_experts, d_hidden=d_hidden, router="softmax", seed=seed,
                            device=device, dtype=dtype)
    dev = model.w1.device
    xt = torch.as_tensor(np.asarray(x), device=dev, dtype=dtype)  # (T, 2)
    tt = torch.as_tensor(np.asarray(t), device=dev, dtype=dtype).reshape(-1, 1)  # (T, 1)
    if xt.ndim != 2 or xt.shape[1] != 2 or tt.shape[0] != xt.shape[0]:
        raise ValueError(f"x must have shape (T, 2) and t shape (T,), got {tuple(xt.shape)} and {np.shape(t)}")
    log_sigma = torch.zeros(model.n_experts, device=dev, dtype=dtype, requires_grad=True)
    opt = torch.optim.Adam([*model.parameters(), log_sigma], lr=lr)

    def terms():
        lp = torch.log_softmax(model.router.logits(xt), -1)  # (T, N) log p_i(x)
        mu = _expert_outputs(model, xt)[..., 0]  # (T, N)
        ll = -0.5 * ((tt - mu) / log_sigma.exp()) ** 2 - log_sigma - 0.5 * math.log(2 * math.pi)
        return lp, ll  # (T, N) each

    rows = []
    with _small_tensor_threads(dev):
        for _ in range(iters):
            with torch.no_grad():
                lp, ll = terms()
                r = posterior_responsibilities(lp, ll)  # (T, N)
                p = lp.exp()
                q1 = topk_posterior(p, 1)  # the router's own top-1 choice
                rows.append((float(torch.logsumexp(lp + ll, -1).mean()),
                             float(mixture_elbo(r, lp, ll).mean()),
                             float(mixture_elbo(q1, lp, ll).mean()),
                             float(kl_divergence(r, p).mean()),
                             float((r.argmax(-1) == p.argmax(-1)).double().mean())))
            for _ in range(m_steps):
                lp, ll = terms()
                loss = -(r * (lp + ll)).sum(-1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
    cols = [np.array(c) for c in zip(*rows)]
    return EMHistory(*cols, model=model, log_sigma=log_sigma.detach().cpu().numpy())
