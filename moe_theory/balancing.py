"""Load-balancing losses used in practice, and DeepSeek's auxiliary-loss-free bias update.

Each function states its formula and source. ``router_logits`` are the gate logits ``g`` of ``T``
tokens, shape ``(T, N)``; ``p = softmax(g)``; ``P_bar = (1/T) sum_t p(x_t)`` is the *aggregate*
routing distribution. Chapter ``book/bayes.md`` reads each loss as a regulariser of ``P_bar``.
"""

from __future__ import annotations

import math

import torch

from ._validation import check_choice, check_k, check_positive_int, check_real, check_tensor
from .layers import topk_route

__all__ = [
    "switch_load_balancing_loss", "relaxed_switch_loss", "router_z_loss", "importance_loss",
    "noisy_topk_load_loss", "cv_squared", "biased_topk_route", "aux_free_bias_update",
    "ghost_batch_logits", "two_expert_batch_logits",
]


_WEIGHTINGS = ("softmax", "renormalized")


def _logits(router_logits) -> torch.Tensor:
    g = check_tensor("router_logits", router_logits, ndim=2)
    if g.shape[0] == 0:
        raise ValueError("router_logits must hold at least one token, got shape (0, N)")
    return g


def switch_load_balancing_loss(router_logits: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Switch Transformer auxiliary loss ``N * sum_i f_i P_i`` (multiply by ``alpha`` yourself).

    Parameters
    ----------
    router_logits : torch.Tensor, shape (T, N)
        Gate logits ``g``.
    k : int
        Active experts per token.

    Returns
    -------
    torch.Tensor (scalar)

    Notes
    -----
    ``P_i = (1/T) sum_t softmax(g(x_t))_i`` and ``f_i = (1/T) #{t : i in S_k(g(x_t))}``, the
    fraction of tokens whose top-k set holds expert ``i`` (so ``sum_i f_i = k``; ``f`` carries no
    gradient). Fedus, Zoph and Shazeer, *Switch Transformers*, arXiv:2101.03961, eq. (4) (``k = 1``);
    the same convention as ``transformers``' ``load_balancing_loss_func`` for ``k > 1``.
    :func:`moe_theory.layers.load_balancing_loss` normalises ``f`` to sum to 1 instead, so it is
    this loss divided by ``k``. At uniform load (``f_i = k/N``) the value is ``k`` whatever ``P``;
    it is *not* minimal there (:func:`ghost_batch_logits`).

    Examples
    --------
    >>> float(switch_load_balancing_loss(torch.zeros(4, 2) + torch.tensor([[1., 0], [0, 1]] * 2)))
    1.0
    """
    g = _logits(router_logits)
    k = check_k(k, g.shape[1], n_name="router_logits.shape[1]")
    N = g.shape[1]
    P = torch.softmax(g, -1).mean(0)  # (N,)
    idx = topk_route(g.detach(), k)[0]  # (T, k)
    f = torch.zeros(N, dtype=g.dtype, device=g.device).index_add_(
        0, idx.reshape(-1), torch.ones(idx.numel(), dtype=g.dtype, device=g.device)) / g.shape[0]  # (N,)
    return N * (f * P).sum()


def relaxed_switch_loss(router_logits: torch.Tensor) -> torch.Tensor:
    """The Switch loss with the hard loads ``f`` replaced by ``P_bar``: ``N sum_i P_bar_i^2``.

    Notes
    -----
    ``N sum_i P_bar_i^2 = 1 + chi^2(P_bar || u) = N exp(-H_2(P_bar)) >= exp(KL(P_bar || u)) >= 1``,
    equality iff ``P_bar`` is uniform (book, ``prop-bayes-relaxed-switch``): minimising it maximises
    the Renyi-2 entropy of the aggregate routing distribution.
    """
    g = _logits(router_logits)
    P = torch.softmax(g, -1).mean(0)  # (N,)
    return g.shape[1] * (P * P).sum()


def router_z_loss(router_logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE router z-loss ``(1/T) sum_t (log sum_j exp g_j(x_t))^2``.

    Zoph et al., *ST-MoE*, arXiv:2202.08906, eq. (5). Softmax ignores a common shift of the
    logits; the z-loss fixes that shift (its minimum over shifts is at ``g = log p``) and keeps
    logits small, for low-precision numerics. It does not act on ``p`` directly.
    """
    g = _logits(router_logits)
    return (torch.logsumexp(g, -1) ** 2).mean()


def cv_squared(v: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation ``Var(v) / mean(v)^2`` (population variance).

    For ``v_hat = v / sum v``: ``CV^2 = N sum_i v_hat_i^2 - 1 = chi^2(v_hat || u)``.
    """
    v = check_tensor("v", v, ndim=1)
    if v.numel() < 2 or bool((v < 0).any()) or float(v.detach().sum()) <= 0:
        raise ValueError(f"v must be a non-negative vector of length >= 2 with a positive sum, "
                         f"got {v.tolist()}")
    return v.var(unbiased=False) / v.mean() ** 2


def importance_loss(gates: torch.Tensor) -> torch.Tensor:
    """Importance loss of noisy top-k gating: ``CV(v)^2`` of the per-expert gate sums ``v``.

    Parameters
    ----------
    gates : torch.Tensor, shape (T, N)
        Routing weights of every expert for every token (0 off the active set), e.g.
        ``Routing.combine_matrix()``.

    Notes
    -----
    ``v_i = sum_t gates_{t i}``; Shazeer et al., *Outrageously Large Neural Networks*,
    arXiv:1701.06538, eq. (6) (multiply by ``w_importance`` yourself).
    """
    gates = check_tensor("gates", gates, ndim=2)
    if bool((gates < 0).any()):
        raise ValueError("gates must be non-negative routing weights")
    return cv_squared(gates.sum(0))


def noisy_topk_load_loss(clean_logits: torch.Tensor, noisy_logits: torch.Tensor,
                         noise_std: torch.Tensor, k: int) -> torch.Tensor:
    """Smooth load loss of noisy top-k gating: ``CV(load)^2`` with ``load_i = sum_t P(x_t, i)``.

    Parameters
    ----------
    clean_logits, noisy_logits : torch.Tensor, shape (T, N)
        Logits before and after the Gaussian noise of noisy top-k gating.
    noise_std : torch.Tensor, shape (T, N)
        The noise scale ``softplus(x W_noise)`` (positive).
    k : int
        Active experts, ``1 <= k < N``.

    Notes
    -----
    ``P(x, i) = Phi((g_i(x) - kth_excluding(h(x), k, i)) / s_i(x))`` is the probability that expert
    ``i`` stays in the top k when only its own noise is redrawn: the threshold is the k-th largest
    *other* noisy logit, i.e. the (k+1)-th largest noisy logit if ``i`` is in the top k and the
    k-th otherwise. Shazeer et al., arXiv:1701.06538, Appendix A, eqs. (8)-(11).
    """
    g = check_tensor("clean_logits", clean_logits, ndim=2)
    h = check_tensor("noisy_logits", noisy_logits, shape=tuple(g.shape))
    s = check_tensor("noise_std", noise_std, shape=tuple(g.shape))
    if bool((s <= 0).any()):
        raise ValueError("noise_std must be positive")
    N = g.shape[1]
    if N < 2:
        raise ValueError(f"noisy_topk_load_loss needs N >= 2 experts, got N={N}")
    k = check_k(k, N - 1, n_name="N - 1")
    top = torch.topk(h, k + 1, dim=-1).values  # (T, k+1)
    thr_in, thr_out = top[:, k:k + 1], top[:, k - 1:k]  # (T, 1) each
    normal = torch.distributions.Normal(torch.zeros((), dtype=g.dtype, device=g.device), 1.0)
    prob = torch.where(h > thr_in, normal.cdf((g - thr_in) / s), normal.cdf((g - thr_out) / s))  # (T, N)
    return cv_squared(prob.sum(0))


def biased_topk_route(router_logits, bias, k: int, *, weighting="softmax"):
    """Top-k *selection* on ``g + beta``, routing *weights* from ``g`` alone.

    Parameters
    ----------
    router_logits : torch.Tensor, shape (T, N)
        Gate logits ``g``.
    bias : torch.Tensor, shape (N,)
        Selection bias ``beta`` (no gradient flows into it).
    k : int
    weighting : {"softmax", "renormalized"}
        ``pi_i = p_i`` (Switch, DeepSeek: unrenormalised) or ``p_i / sum_{j in S} p_j``.

    Returns
    -------
    indices : LongTensor, shape (T, k)
        ``S_k(g + beta)``, ties to the smaller index.
    weights : torch.Tensor, shape (T, k)
        ``pi`` from ``p = softmax(g)``; the bias never enters them.

    Notes
    -----
    Wang et al., *Auxiliary-Loss-Free Load Balancing Strategy for Mixture-of-Experts*,
    arXiv:2408.15664, eq. (3); DeepSeek-V3, arXiv:2412.19437, Section 2.1.2 (there with sigmoid
    affinities; here with the softmax router of this book).
    """
    g = _logits(router_logits)  # (T, N)
    beta = check_tensor("bias", bias, shape=(g.shape[1],), ndim=1)  # (N,)
    k = check_k(k, g.shape[1], n_name="router_logits.shape[1]")
    weighting = check_choice("weighting", weighting, _WEIGHTINGS)
    idx = topk_route((g + beta).detach(), k)[0]  # (T, k): selection sees beta
    w = torch.softmax(g, -1).gather(-1, idx)  # (T, k): weights do not
    if weighting == "renormalized":
        w = w / w.sum(-1, keepdim=True)
    return idx, w


def aux_free_bias_update(bias, load, gamma: float) -> torch.Tensor:
    """One step ``beta_i <- beta_i + gamma * sign(mean(c) - c_i)`` of loss-free balancing.

    Parameters
    ----------
    bias : torch.Tensor, shape (N,)
        Current selection bias ``beta``.
    load : torch.Tensor, shape (N,)
        Tokens ``c_i`` each expert received in the last batch.
    gamma : float
        Update speed (``gamma = 0.001`` in Wang et al., arXiv:2408.15664, Algorithm 1).

    Returns
    -------
    torch.Tensor, shape (N,)
        The new bias (a new tensor; ``bias`` is not modified).
    """
    beta = check_tensor("bias", bias, ndim=1)  # (N,)
    c = check_tensor("load", load, shape=beta.shape, ndim=1, floating=False)
    gamma = check_real("gamma", gamma, minimum=0.0)
    c = c.to(beta.dtype)  # token counts c_i
    return beta + gamma * torch.sign(c.mean() - c)  # raise under-loaded experts


def ghost_batch_logits(n_experts: int, n_ghosts: int, *, eps: float = 1e-3,
                       dtype=torch.float64) -> torch.Tensor:
    """Logits of a batch on which the hard Switch loss falls to ``N / ((G + 1)(N - G))``.

    ``G`` "ghost" experts receive no token; the batch has one token per active expert ``j``, whose
    probabilities are near-uniform on the ghosts and ``j``: ``p_j = 1/(G+1) + eps``, each ghost
    ``1/(G+1) - eps/G``, the rest 0 (here ``exp(-40)`` relative, so the logits are finite).
    As ``eps -> 0``: ``f_j = 1/(N-G)``, ``P_bar_j = 1/((G+1)(N-G))``, loss ``-> N/((G+1)(N-G))``.
    """
    N = check_positive_int("n_experts", n_experts)
    G = check_k(n_ghosts, N - 1, name="n_ghosts", n_name="n_experts - 1") if N > 1 else None
    if G is None:
        raise ValueError(f"n_experts must be >= 2 for a ghost batch, got n_experts={N}")
    eps = check_real("eps", eps, minimum=0.0, allow_equal_min=False)
    if eps >= 1 / (G + 1):
        raise ValueError(f"eps must be < 1/(n_ghosts + 1) = {1 / (G + 1):.3g}, got eps={eps}")
    g = torch.full((N - G, N), -40.0, dtype=dtype)  # (T, N), T = N - G tokens
    for t in range(N - G):
        g[t, :G] = math.log(1 / (G + 1) - eps / G)
        g[t, G + t] = math.log(1 / (G + 1) + eps)
    return g


def two_expert_batch_logits(*, eps: float = 1e-3, dtype=torch.float64) -> torch.Tensor:
    """Four tokens, ``N = 2``: three at ``p = (1/2 + eps, 1/2 - eps)``, one at ``(eps, 1 - eps)``.

    Loads ``f = (3/4, 1/4)``, ``P_bar -> (3/8, 5/8)``: the hard Switch loss tends to ``7/8 < 1``.
    """
    eps = check_real("eps", eps, minimum=0.0, allow_equal_min=False)
    if eps >= 0.5:
        raise ValueError(f"eps must be < 0.5, got eps={eps}")
    p = torch.tensor([[0.5 + eps, 0.5 - eps]] * 3 + [[eps, 1 - eps]], dtype=dtype)  # (4, 2)
    return torch.log(p)
