"""Bayesian and information-theoretic routing (chapter ``book/bayes.md``).

Top-k routing read as a sparse approximation of a posterior over experts, routing read as a
channel from tokens to experts, and the ELBO of a mixture of experts. The load-balancing losses
live in :mod:`moe_theory.balancing` and the training loops in :mod:`moe_theory.bayes_training`;
both are re-exported here, so ``bayes.switch_load_balancing_loss`` works.

Notation (book/notation.md): ``p = softmax(g)`` router probabilities, ``S_k`` the top-k set (ties
to the smaller index), ``q^(k)`` the renormalised top-k router, ``P_bar`` the mean of ``p`` over
the ``T`` tokens of a batch, ``lik_i(t | x)`` the likelihood of expert ``i``, ``varpi`` the posterior
over experts. Entropies in nats.

Sources: Su and Liu, *Variational Inference, Entropy, and Orthogonality: A Unified Theory of
Mixture-of-Experts*, arXiv:2601.03577 (the programme); Jordan and Jacobs (1994) for the ELBO of a
mixture of experts; Csiszar (1975) for I-projections; Hoffman and Johnson (2016) for the
aggregate-posterior decomposition; Blahut (1972) and Arimoto (1972) for channel capacity.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._validation import check_array, check_int, check_k, check_positive_int, check_real, check_tensor
from .layers import topk_route

__all__ = [
    "topk_posterior", "kl_divergence", "entropy", "renyi2_entropy", "routing_entropy",
    "marginal_entropy", "routing_mutual_information", "plugin_entropy",
    "plugin_routing_mutual_information", "posterior_responsibilities", "mixture_log_likelihood",
    "mixture_elbo", "channel_capacity",
]


# --------------------------------------------------------------------------- checks
def _as_tensor(name: str, value, *, min_ndim: int = 1) -> torch.Tensor:
    """A floating tensor (array-likes become float64 tensors), at least ``min_ndim`` dimensional."""
    if isinstance(value, torch.Tensor):
        return check_tensor(name, value, min_ndim=min_ndim)
    return torch.from_numpy(check_array(name, value, min_ndim=min_ndim))


def _check_probs(name: str, p, *, ndim: int | None = None) -> torch.Tensor:
    """Probability vectors along the last axis: non-negative entries that sum to 1."""
    p = _as_tensor(name, p, min_ndim=1)
    if ndim is not None and p.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions (tokens, experts), got shape {tuple(p.shape)}")
    if p.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(p.shape)}")
    if bool((p < 0).any()):
        raise ValueError(f"{name} must have non-negative entries (probabilities), "
                         f"got a minimum of {float(p.min()):.3g}")
    tol = 1e-4 if p.dtype in (torch.float16, torch.bfloat16, torch.float32) else 1e-8
    sums = p.sum(-1)
    if bool(((sums - 1).abs() > tol * p.shape[-1]).any()):
        raise ValueError(f"{name} must sum to 1 along its last axis (probability vectors), "
                         f"got sums in [{float(sums.min()):.6g}, {float(sums.max()):.6g}]")
    return p


# --------------------------------------------------------------------------- top-k as a posterior
def topk_posterior(p, k: int) -> torch.Tensor:
    """The renormalised top-k router ``q^(k)``: ``p`` kept on ``S_k`` and renormalised.

    Parameters
    ----------
    p : tensor or array, shape (..., N)
        Router probabilities (non-negative, summing to 1 along the last axis).
    k : int
        Active experts, ``1 <= k <= N``.

    Returns
    -------
    torch.Tensor, shape (..., N)
        ``q^(k)_i = p_i / p(S_k)`` for ``i in S_k``, else 0.

    Notes
    -----
    ``S_k`` holds the ``k`` largest entries, ties broken by the smaller index
    (:func:`moe_theory.layers.topk_route`). Because softmax is monotone,
    ``q^(k) = softmax(g restricted to S_k(g))``: "top-k then softmax" (Mixtral) equals "softmax,
    top-k, renormalise". Among all ``q`` with at most ``k`` non-zero entries, ``q^(k)`` minimises
    the *reverse* divergence ``KL(q || p)``, with minimum ``-log p(S_k)`` (book, theorem
    ``thm-bayes-topk-reverse-kl``; Su and Liu, arXiv:2601.03577, state it in words).

    Examples
    --------
    >>> topk_posterior(torch.tensor([0.5, 0.3, 0.2]), 2)
    tensor([0.6250, 0.3750, 0.0000])
    """
    p = _check_probs("p", p)
    k = check_k(k, p.shape[-1], n_name="p.shape[-1]")
    idx = topk_route(p, k)[0]  # (..., k)
    mass = p.gather(-1, idx)  # (..., k)
    q = mass / mass.sum(-1, keepdim=True)  # (..., k) renormalised on S_k
    return torch.zeros_like(p).scatter(-1, idx, q)


def kl_divergence(q, p) -> torch.Tensor:
    """``KL(q || p) = sum_i q_i log(q_i / p_i)`` along the last axis, in nats.

    Terms with ``q_i = 0`` are 0 (``0 log 0 = 0``); a term with ``q_i > 0 = p_i`` is ``+inf``.
    So ``kl_divergence(p, topk_posterior(p, k))`` is ``inf`` whenever ``p`` has more than ``k``
    non-zero entries: in the forward direction no k-sparse ``q`` is a finite approximation.

    Parameters
    ----------
    q, p : tensor or array, shape (..., N)
        Probability vectors along the last axis, of the same shape.

    Returns
    -------
    torch.Tensor, shape (...)

    Examples
    --------
    >>> kl_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]))
    tensor(0.6931)
    """
    q, p = _check_probs("q", q), _check_probs("p", p)
    if q.shape != p.shape:
        raise ValueError(f"q and p must have the same shape, got q.shape={tuple(q.shape)} "
                         f"and p.shape={tuple(p.shape)}")
    dt = torch.promote_types(q.dtype, p.dtype)
    q, p = q.to(dt), p.to(dt)
    return (torch.special.xlogy(q, q) - torch.special.xlogy(q, p)).sum(-1)


def entropy(p) -> torch.Tensor:
    """Shannon entropy ``H(p) = -sum_i p_i log p_i`` (nats, ``0 log 0 = 0``) along the last axis."""
    p = _check_probs("p", p)
    return -torch.special.xlogy(p, p).sum(-1)


def renyi2_entropy(p) -> torch.Tensor:
    """Renyi entropy of order 2, ``H_2(p) = -log sum_i p_i^2`` (nats); ``H_2 <= H``."""
    p = _check_probs("p", p)
    return -torch.log((p * p).sum(-1))


def routing_entropy(p) -> torch.Tensor:
    """Mean per-token entropy ``H(Z | X) = (1/T) sum_t H(p(x_t))``: the routing ambiguity.

    Parameters
    ----------
    p : tensor or array, shape (T, N)
        Router probabilities of ``T`` tokens.
    """
    p = _check_probs("p", p, ndim=2)
    return entropy(p).mean()


def marginal_entropy(p) -> torch.Tensor:
    """``H(P_bar)``, the entropy of the mean routing distribution ``P_bar = (1/T) sum_t p(x_t)``.

    Parameters
    ----------
    p : tensor or array, shape (T, N)
    """
    p = _check_probs("p", p, ndim=2)
    return entropy(p.mean(0))


def routing_mutual_information(p) -> torch.Tensor:
    """Mutual information of the routing channel ``I(X; Z) = H(P_bar) - H(Z | X)`` (nats).

    Parameters
    ----------
    p : tensor or array, shape (T, N)
        Router probabilities ``p(z | x_t)`` of ``T`` tokens.

    Returns
    -------
    torch.Tensor (scalar)
        ``H((1/T) sum_t p(x_t)) - (1/T) sum_t H(p(x_t))``, between 0 and ``min(log N, log T)``.

    Notes
    -----
    Exact for the empirical input distribution of the batch (no density estimate: ``p(z | x)``
    is known). As an estimate of the population value it is biased (the ``T`` tokens are a
    sample). For hard routing use :func:`plugin_routing_mutual_information`.
    Reference: Cover and Thomas, *Elements of Information Theory*, eq. (2.43).
    """
    p = _check_probs("p", p, ndim=2)
    return entropy(p.mean(0)) - entropy(p).mean()


def plugin_entropy(counts, *, miller_madow: bool = False) -> float:
    """Plug-in entropy of a histogram, ``-sum (c_i/n) log(c_i/n)``, optionally Miller-Madow corrected.

    The plug-in estimate is biased low, by about ``(m - 1) / (2 n)`` for ``m`` occupied bins and
    ``n`` samples (Paninski, Neural Computation 2003); ``miller_madow=True`` adds that term.

    Parameters
    ----------
    counts : array-like of non-negative integers, shape (N,)
    miller_madow : bool
    """
    c = check_array("counts", counts, ndim=1)
    if c.size == 0 or np.any(c < 0) or np.any(c != np.round(c)) or c.sum() == 0:
        raise ValueError(f"counts must be non-negative integers with a positive total, got {c.tolist()}")
    n = c.sum()
    f = c[c > 0] / n
    h = float(-(f * np.log(f)).sum())
    return h + (np.count_nonzero(c) - 1) / (2 * n) if miller_madow else h


def plugin_routing_mutual_information(indices, n_experts: int, *, miller_madow: bool = False) -> float:
    """``I(X; Z)`` of a hard top-1 router: ``H(Z | X) = 0``, so ``I = H(load)``, by the plug-in.

    Parameters
    ----------
    indices : LongTensor or int array, shape (T,) or (T, 1)
        The expert chosen for each token.
    n_experts : int
        ``N``.
    miller_madow : bool
        Add the bias correction ``(m - 1) / (2 T)`` (see :func:`plugin_entropy`).
    """
    n_experts = check_positive_int("n_experts", n_experts)
    idx = np.asarray(indices.detach().cpu() if isinstance(indices, torch.Tensor) else indices)
    if idx.ndim == 2 and idx.shape[1] == 1:
        idx = idx[:, 0]
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"indices must be a non-empty integer array of shape (T,) or (T, 1), "
                         f"got shape {idx.shape} and dtype {idx.dtype}")
    if idx.min() < 0 or idx.max() >= n_experts:
        raise ValueError(f"indices must lie in 0..n_experts-1 (= {n_experts - 1}), "
                         f"got values in [{idx.min()}, {idx.max()}]")
    return plugin_entropy(np.bincount(idx, minlength=n_experts), miller_madow=miller_madow)


# --------------------------------------------------------------------------- the ELBO of a mixture
def _check_pair(log_prior, log_lik) -> tuple[torch.Tensor, torch.Tensor]:
    log_prior = _as_tensor("log_prior", log_prior)
    log_lik = check_tensor("log_lik", log_lik, finite=False) if isinstance(log_lik, torch.Tensor) \
        else torch.from_numpy(check_array("log_lik", log_lik, finite=False))
    if log_prior.shape != log_lik.shape:
        raise ValueError(f"log_prior and log_lik must have the same shape, got "
                         f"{tuple(log_prior.shape)} and {tuple(log_lik.shape)}")
    if bool(torch.isnan(log_lik).any()) or bool((log_lik == math.inf).any()):
        raise ValueError("log_lik must not contain NaN or +inf (-inf, a zero likelihood, is allowed)")
    if bool(((torch.logsumexp(log_prior, -1)).abs() > 1e-4).any()):
        raise ValueError("log_prior must be log-probabilities (logsumexp over the last axis = 0), "
                         "e.g. torch.log_softmax(g, -1)")
    return log_prior, log_lik


def posterior_responsibilities(log_prior, log_lik) -> torch.Tensor:
    """Posterior over experts ``varpi_i(x, t) = p_i(x) lik_i(t | x) / sum_j p_j(x) lik_j(t | x)``.

    Parameters
    ----------
    log_prior : tensor, shape (..., N)
        ``log p(x)``, e.g. ``torch.log_softmax(g, -1)``.
    log_lik : tensor, shape (..., N)
        ``log lik_i(t | x)`` of each expert.

    Notes
    -----
    The E-step of EM for a mixture of experts (Jordan and Jacobs, Neural Computation 1994).
    """
    log_prior, log_lik = _check_pair(log_prior, log_lik)
    return torch.softmax(log_prior + log_lik, -1)


def mixture_log_likelihood(log_prior, log_lik) -> torch.Tensor:
    """``log p(t | x) = log sum_i p_i(x) lik_i(t | x)`` (computed with ``logsumexp``)."""
    log_prior, log_lik = _check_pair(log_prior, log_lik)
    return torch.logsumexp(log_prior + log_lik, -1)


def mixture_elbo(q, log_prior, log_lik) -> torch.Tensor:
    """Evidence lower bound of a mixture of experts with a categorical latent expert ``z``.

    ``ELBO(q) = sum_i q_i log lik_i(t | x) - KL(q || p(x)) = log p(t | x) - KL(q || varpi)``.

    Parameters
    ----------
    q : tensor, shape (..., N)
        Any distribution over experts (may be sparse, e.g. :func:`topk_posterior`).
    log_prior, log_lik : tensor, shape (..., N)
        ``log p(x)`` and ``log lik_i(t | x)``.

    Returns
    -------
    torch.Tensor, shape (...)
        ``-inf`` if ``q`` puts mass on an expert with zero likelihood.

    Notes
    -----
    Jordan and Jacobs (1994); Blei, Kucukelbir and McAuliffe, arXiv:1601.00670, eq. (13).
    """
    log_prior, log_lik = _check_pair(log_prior, log_lik)
    q = _check_probs("q", q)
    if q.shape != log_prior.shape:
        raise ValueError(f"q must have the shape of log_prior {tuple(log_prior.shape)}, got {tuple(q.shape)}")
    on = q > 0
    terms = torch.where(on, q * (log_lik + log_prior - torch.log(torch.where(on, q, 1.0))), 0.0)
    return terms.sum(-1)  # sum_i q_i (log lik_i + log p_i - log q_i)


# --------------------------------------------------------------------------- channel capacity
def channel_capacity(W, *, tol: float = 1e-10, max_iter: int = 10_000) -> tuple[float, np.ndarray]:
    """Shannon capacity ``C = max_rho I(rho, W)`` of a discrete channel, by Blahut-Arimoto.

    Parameters
    ----------
    W : array-like, shape (m, N)
        Row ``x`` is the channel's output law ``p(z | x)`` (here: the router's probabilities at
        ``m`` input prototypes).
    tol : float
        Stop when the upper and lower capacity bounds differ by less than ``tol`` nats.
    max_iter : int

    Returns
    -------
    C : float
        Capacity in nats, ``C <= log min(m, N)``.
    rho : ndarray, shape (m,)
        A capacity-achieving input law.

    Notes
    -----
    ``rho <- rho * exp(D_x) / Z`` with ``D_x = KL(W_x || rho W)``; at every step
    ``log sum_x rho_x exp(D_x) >= C >= sum_x rho_x D_x`` (Blahut, IEEE Trans. IT 1972; Arimoto,
    same issue; Cover and Thomas, Section 10.8).

    Examples
    --------
    >>> round(channel_capacity(np.eye(3))[0], 6) == round(np.log(3), 6)
    True
    """
    W = _check_probs("W", W, ndim=2).detach().cpu().double().numpy()  # (m, N)
    tol = check_real("tol", tol, minimum=0.0, allow_equal_min=False)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    rho = np.full(W.shape[0], 1.0 / W.shape[0])
    for _ in range(max_iter):
        out = rho @ W  # (N,) output law
        with np.errstate(divide="ignore", invalid="ignore"):
            D = np.where(W > 0, W * np.log(W / out), 0.0).sum(1)  # (m,) KL(W_x || out)
        upper, lower = math.log(float(rho @ np.exp(D))), float(rho @ D)
        if upper - lower < tol:
            break
        rho = rho * np.exp(D)
        rho /= rho.sum()
    return lower, rho


# Losses and training loops, re-exported so that the chapter needs one import.
from .balancing import *  # noqa: E402,F401,F403
from .balancing import __all__ as _balancing_all  # noqa: E402
from .bayes_training import *  # noqa: E402,F401,F403
from .bayes_training import __all__ as _training_all  # noqa: E402

__all__ = __all__ + list(_balancing_all) + list(_training_all)
