"""Routing as sparse subset selection: coherence, greedy and exhaustive selection, orthogonality.

Choosing ``k`` of ``N`` experts is read as choosing ``k`` columns ("atoms") of a dictionary
``A`` (shape ``(D, N)``, column ``a_i``) to approximate a target ``t`` in ``R^D``. The book's
chapter *The coherence barrier* uses the symbols below; all selection routines work on the
unit atoms ``a_i / ||a_i||`` and return the sorted support with the squared residual
``||t - Pi_S t||^2`` (``Pi_S``: orthogonal projection onto the span of the chosen atoms).

Sources: Tropp, *Greed is good* (IEEE Trans. IT 2004); Donoho and Elad (PNAS 2003); Welch
(IEEE Trans. IT 1974); Natarajan (SIAM J. Comput. 1995); Elad, *Sparse and Redundant
Representations* (2010). Batched helpers (leading axis ``B``) serve the chapter's sweeps.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np
import torch

from ._validation import check_array, check_int, check_k, check_positive_int, check_real, check_tensor

__all__ = [
    "Selection", "mutual_coherence", "normalize_columns", "welch_bound", "greedy_select",
    "topk_correlation_select", "exhaustive_select", "captured_energy", "equiangular_dictionary",
    "adversarial_dictionary", "gaussian_shared_dictionary", "simplex_frame", "erc",
    "erc_failure_target", "erc_coherence_bound", "restricted_isometry_constant",
    "energy_ratio_bound", "orthogonality_penalty", "frame_penalty_bound", "MAX_SUBSETS",
]

#: Largest number of subsets ``C(N, k)`` :func:`exhaustive_select` fits by default (a few
#: seconds on one CPU core for ``D <= 64``, ``k <= 8``).
MAX_SUBSETS = 200_000


class Selection(NamedTuple):
    """A chosen set of atoms: ``support`` (sorted tuple of column indices) and
    ``residual`` = ``||t - Pi_S t||^2``, the squared least-squares residual."""

    support: tuple[int, ...]
    residual: float


# -- checks ---------------------------------------------------------------------------------
def _check_dictionary(A, name: str = "A", min_atoms: int = 1) -> np.ndarray:
    A = check_array(name, A, ndim=2)
    D, N = A.shape
    if D < 1 or N < min_atoms:
        raise ValueError(f"{name} must have at least {min_atoms} column(s) (atoms) and one row, "
                         f"got shape ({D}, {N})")
    norms = np.linalg.norm(A, axis=0)
    if np.any(norms == 0):
        j = int(np.flatnonzero(norms == 0)[0])
        raise ValueError(f"{name} must have no zero columns (the angle to a zero atom is "
                         f"undefined), got column {j} with norm 0")
    return A


def _check_target(t, D: int) -> np.ndarray:
    t = check_array("t", t, ndim=1)
    if t.shape[0] != D:
        raise ValueError(f"t must have length D = {D} (the number of rows of A), "
                         f"got shape ({t.shape[0]},)")
    return t


def _check_support(support, N: int, *, proper: bool = True) -> np.ndarray:
    s = check_array("support", support, ndim=1, dtype=float)
    if s.size == 0 or np.any(s != np.round(s)) or np.any(s < 0) or np.any(s >= N) \
            or len(set(s.tolist())) != s.size or (proper and s.size >= N):
        top = N - 1 if proper else N
        raise ValueError(f"support must be 1 to {top} distinct column indices in [0, {N - 1}], "
                         f"got {list(support)!r}")
    return np.sort(s.astype(int))


def normalize_columns(A) -> np.ndarray:
    """Unit atoms ``a_i / ||a_i||`` of a dictionary ``A`` (shape ``(D, N)``); zero columns are refused."""
    A = _check_dictionary(A)
    return A / np.linalg.norm(A, axis=0)


# -- coherence --------------------------------------------------------------------------------
def mutual_coherence(A) -> float:
    """Mutual coherence of the columns of ``A``.

    Parameters
    ----------
    A : array (D, N), N >= 2, no zero column

    Returns
    -------
    float
        ``mu(A) = max_{i != j} |<a_i, a_j>| / (||a_i|| ||a_j||)``, in ``[0, 1]``.

    Notes
    -----
    Invariant to scaling and sign changes of the atoms. For ``N > D`` it is at least the Welch
    bound :func:`welch_bound` (Welch 1974). Donoho and Elad (2003); Tropp (2004).

    Examples
    --------
    >>> round(mutual_coherence([[1.0, 1.0], [0.0, 1.0]]), 4)
    0.7071
    """
    U = normalize_columns(_check_dictionary(A, min_atoms=2))
    G = np.abs(U.T @ U)  # (N, N) |cosines|
    np.fill_diagonal(G, 0.0)
    return float(min(G.max(), 1.0))


def welch_bound(D: int, N: int) -> float:
    """Welch's lower bound ``sqrt((N - D) / (D (N - 1)))`` on the coherence of ``N`` unit
    vectors in ``R^D`` (``0`` when ``N <= D``); equality for equiangular tight frames."""
    D, N = check_positive_int("D", D), check_int("N", N, minimum=2)
    return math.sqrt((N - D) / (D * (N - 1))) if N > D else 0.0


# -- batched least squares --------------------------------------------------------------------
def _energy(U: np.ndarray, t: np.ndarray, supports: np.ndarray) -> np.ndarray:
    """``||Pi_S t||^2`` for unit dictionaries ``U (B, D, N)``, targets ``t (B, D)`` and index
    sets ``supports (B, S, k)`` -> ``(B, S)``."""
    G = np.einsum("bdi,bdj->bij", U, U)  # (B, N, N) Gram matrix
    return _energy_gram(G, np.einsum("bdn,bd->bn", U, t), supports)


def _energy_gram(G: np.ndarray, c: np.ndarray, supports: np.ndarray) -> np.ndarray:
    """``C(S) = c_S^T G_S^{-1} c_S`` with ``c = U^T t``: batched ``k x k`` solves.

    A ridge of ``1e-13 k`` keeps exactly dependent atoms well defined: ``c_S`` lies in the range
    of ``G_S``, so the ridge solution tends to the pseudo-inverse one (duplicate atoms count once).
    """
    B, S, k = supports.shape
    b = np.arange(B)[:, None, None]
    GS = G[b[..., None], supports[..., :, None], supports[..., None, :]]  # (B, S, k, k)
    cS = c[b, supports]  # (B, S, k)
    sol = np.linalg.solve(GS + 1e-13 * k * np.eye(k), cS[..., None])[..., 0]  # (B, S, k)
    return np.sum(cS * sol, axis=-1)


def _threshold(U: np.ndarray, t: np.ndarray, k: int) -> np.ndarray:
    """One-shot top-k of ``|U^T t|`` (ties: smaller index), sorted, shape (B, k)."""
    corr = np.abs(np.einsum("bdn,bd->bn", U, t))  # (B, N)
    return np.sort(np.argsort(-corr, axis=1, kind="stable")[:, :k], axis=1)


def _omp(U: np.ndarray, t: np.ndarray, k: int):
    """Orthogonal matching pursuit on a batch: unit atoms U (B, D, N), targets
    t (B, D). Returns the sorted supports (B, k) and the picks in order (B, k)."""
    B = U.shape[0]
    r = t.copy()                                   # residual, (B, D)
    picks = np.zeros((B, 0), dtype=int)
    taken = np.zeros((B, U.shape[2]), dtype=bool)  # (B, N)
    for _ in range(k):
        corr = np.abs(np.einsum("bdn,bd->bn", U, r))  # (B, N): |<a_j, r>|
        corr[taken] = -np.inf                      # never pick an atom twice
        j = np.argmax(corr, axis=1)                # ties: the smaller index
        taken[np.arange(B), j] = True
        picks = np.column_stack([picks, j])
        US = np.take_along_axis(U, picks[:, None, :], axis=2)  # (B, D, j)
        # refit on all picked atoms by least squares, then a new residual
        coef = np.linalg.pinv(US, rcond=1e-12) @ t[:, :, None]  # (B, j, 1)
        r = t - (US @ coef)[:, :, 0]
    return np.sort(picks, axis=1), picks


def _exhaustive(U: np.ndarray, t: np.ndarray, k: int, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Best k-subset by captured energy, batched: supports (B, k) and best energies (B,)."""
    B, _, N = U.shape
    subsets = np.array(list(itertools.combinations(range(N), k)), dtype=int)  # (S, k), lex order
    G, c = np.einsum("bdi,bdj->bij", U, U), np.einsum("bdn,bd->bn", U, t)  # (B, N, N), (B, N)
    best_e = np.full(B, -np.inf)
    best_s = np.zeros((B, k), dtype=int)
    for lo in range(0, len(subsets), chunk):
        part = subsets[lo:lo + chunk]
        e = _energy_gram(G, c, np.broadcast_to(part, (B,) + part.shape))  # (B, S)
        i = np.argmax(e, axis=1)
        better = e[np.arange(B), i] > best_e + 1e-12 * np.sum(t * t, axis=1)  # ties: first subset
        best_e[better], best_s[better] = e[better, i[better]], part[i[better]]
    return best_s, best_e


def _selection(U: np.ndarray, t: np.ndarray, support: np.ndarray) -> Selection:
    US = U[:, support]  # (D, k): the final residual by an SVD-based least-squares fit
    r = t - US @ np.linalg.lstsq(US, t, rcond=None)[0]
    return Selection(tuple(int(i) for i in support), float(r @ r))


def _prepare(A, t, k):
    A = _check_dictionary(A)
    t = _check_target(t, A.shape[0])
    k = check_k(k, A.shape[1], n_name="the number of columns of A")
    return A / np.linalg.norm(A, axis=0), t, k


def greedy_select(A, t, k: int) -> Selection:
    """Orthogonal matching pursuit: ``k`` rounds of "pick the atom most correlated with the
    residual, refit on all picked atoms by least squares".

    Parameters
    ----------
    A : array (D, N)
        Dictionary; its columns (atoms) are normalised first.
    t : array (D,)
        Target.
    k : int
        Number of atoms, ``1 <= k <= N``.

    Returns
    -------
    Selection
        Sorted support and squared residual ``||t - Pi_S t||^2``.

    Notes
    -----
    Round ``j`` picks ``argmax_{i not in S} |<a_i, r>|`` with ``r = t - Pi_S t`` (ties: the
    smaller index). Pati, Rezaiifar and Krishnaprasad (1993); recovery guarantees: Tropp (2004).

    Examples
    --------
    >>> greedy_select(np.eye(3), [0.0, 2.0, -1.0], 2)
    Selection(support=(1, 2), residual=0.0)
    """
    U, t, k = _prepare(A, t, k)
    return _selection(U, t, _omp(U[None], t[None], k)[0][0])


def topk_correlation_select(A, t, k: int) -> Selection:
    """Thresholding: the ``k`` atoms with the largest ``|<a_i, t>|`` in one shot, as a router
    whose scores are correlations does (ties: the smaller index).

    Parameters and return value as :func:`greedy_select`.

    Examples
    --------
    >>> topk_correlation_select(np.eye(3), [0.0, 2.0, -1.0], 1)
    Selection(support=(1,), residual=1.0)
    """
    U, t, k = _prepare(A, t, k)
    return _selection(U, t, _threshold(U[None], t[None], k)[0])


def exhaustive_select(A, t, k: int, *, max_subsets: int = MAX_SUBSETS) -> Selection:
    """The best ``k``-subset: ``argmin_{|S| = k} ||t - Pi_S t||^2`` over all ``C(N, k)`` subsets.

    Parameters
    ----------
    A, t, k
        As :func:`greedy_select`.
    max_subsets : int
        Refuse (``ValueError``) when ``C(N, k)`` is larger: the problem is NP-hard in general
        (Natarajan 1995) and the cost grows like ``C(N, k)``.

    Returns
    -------
    Selection
        Exact optimum (ties: the lexicographically first subset, within ``1e-12 ||t||^2``).

    Examples
    --------
    >>> exhaustive_select(np.eye(3), [0.0, 2.0, -1.0], 1)
    Selection(support=(1,), residual=1.0)
    """
    U, t, k = _prepare(A, t, k)
    max_subsets = check_positive_int("max_subsets", max_subsets)
    N = U.shape[1]
    if math.comb(N, k) > max_subsets:
        raise ValueError(f"exhaustive_select would fit C(N, k) = C({N}, {k}) = {math.comb(N, k)} "
                         f"subsets (N={N}, k={k}), more than max_subsets = {max_subsets}, which "
                         "takes more than a few seconds; use greedy_select, or raise max_subsets")
    return _selection(U, t, _exhaustive(U[None], t[None], k)[0][0])


def captured_energy(A, t, support) -> float:
    """``C(S) = ||Pi_S t||^2``, the energy of ``t`` in the span of the atoms ``a_i``, ``i in S``."""
    A = _check_dictionary(A)
    t = _check_target(t, A.shape[0])
    s = _check_support(support, A.shape[1], proper=False)
    return float(_energy(A[None] / np.linalg.norm(A, axis=0), t[None], s[None, None])[0, 0])


# -- dictionaries with known coherence ----------------------------------------------------------
def equiangular_dictionary(N: int, mu: float, D: int | None = None) -> np.ndarray:
    """``N`` unit atoms with ``<a_i, a_j> = mu`` for all ``i != j``: ``a_i = sqrt(1 - mu) e_i +
    sqrt(mu) e_N`` in ``R^D``, ``D >= N + 1`` (default ``N + 1``); coherence exactly ``mu``."""
    N = check_int("N", N, minimum=2)
    mu = check_real("mu", mu, minimum=0.0)
    if mu >= 1:
        raise ValueError(f"mu must satisfy 0 <= mu < 1 (distinct atoms), got mu={mu}")
    D = N + 1 if D is None else check_int("D", D, minimum=N + 1)
    A = np.zeros((D, N))
    A[np.arange(N), np.arange(N)] = math.sqrt(1 - mu)
    A[N, :] = math.sqrt(mu)
    return A


def adversarial_dictionary(k: int, mu: float) -> np.ndarray:
    """The barrier instance: ``k + 1`` unit atoms in ``R^{k+1}`` with Gram entries
    ``<a_0, a_i> = +mu`` and ``<a_i, a_j> = -mu`` (``1 <= i < j <= k``), by Cholesky.

    For ``t = a_1 + ... + a_k``: ``<a_0, t> = k mu`` and ``<a_i, t> = 1 - (k - 1) mu``, so
    greedy picks the impostor ``a_0`` first exactly when ``mu > 1 / (2k - 1)``. The Gram matrix
    is positive definite iff ``mu < 1 / k`` (determinant ``(1 - k mu)(1 + mu)^k``).
    """
    k = check_int("k", k, minimum=1)
    mu = check_real("mu", mu, minimum=0.0)
    if mu * k >= 1:
        raise ValueError(f"mu must satisfy 0 <= mu < 1/k = {1 / k:.6g} (otherwise the Gram matrix "
                         f"is not positive definite and no such atoms exist), got mu={mu}")
    G = np.full((k + 1, k + 1), -mu)
    G[0, :] = G[:, 0] = mu
    np.fill_diagonal(G, 1.0)
    return np.linalg.cholesky(G).T  # A^T A = L L^T = G


def gaussian_shared_dictionary(D: int, N: int, rho: float, rng) -> np.ndarray:
    """Random unit atoms pulled towards one shared direction ``c``:
    ``a_i ~ sqrt(1 - rho) g_i / ||g_i|| + sqrt(rho) c``, normalised (``g_i`` Gaussian)."""
    from ._validation import check_rng

    D, N = check_positive_int("D", D), check_positive_int("N", N)
    rho = check_real("rho", rho, minimum=0.0, maximum=1.0)
    rng = check_rng(rng)
    G = rng.standard_normal((D, N))
    c = rng.standard_normal(D)
    A = math.sqrt(1 - rho) * G / np.linalg.norm(G, axis=0) + math.sqrt(rho) * (c / np.linalg.norm(c))[:, None]
    return A / np.linalg.norm(A, axis=0)


def simplex_frame(D: int) -> np.ndarray:
    """``D + 1`` unit vectors in ``R^D`` with all inner products ``-1/D`` (the regular simplex):
    coherence ``1/D``, equal to the Welch bound."""
    D = check_positive_int("D", D)
    E = np.eye(D + 1) - 1.0 / (D + 1)  # centred standard basis, columns sum to zero
    Q, _ = np.linalg.qr(E[:, :D])  # orthonormal basis of the sum-zero hyperplane
    A = Q.T @ E  # (D, D + 1)
    return A / np.linalg.norm(A, axis=0)


# -- recovery conditions -------------------------------------------------------------------------
def erc(A, support) -> float:
    """Tropp's exact-recovery quantity ``ERC(S) = max_{j not in S} ||A_S^+ a_j||_1`` (unit atoms).

    ``ERC(S) < 1`` makes OMP recover every target whose exact representation is supported on
    ``S`` (Tropp 2004, Theorem 3.1).
    """
    U = normalize_columns(_check_dictionary(A, min_atoms=2))
    s = _check_support(support, U.shape[1])
    out = np.setdiff1d(np.arange(U.shape[1]), s)
    return float(np.abs(np.linalg.pinv(U[:, s]) @ U[:, out]).sum(axis=0).max())


def erc_failure_target(A, support) -> np.ndarray:
    """A target ``t`` in the span of ``A_S`` on which OMP's *first* pick leaves ``S`` when
    ``ERC(S) > 1``: ``t = A_S G_S^{-1} sign(A_S^+ a_j)`` for the worst ``j`` (unit atoms); every
    atom of ``S`` then has ``|<a_i, t>| = 1`` and ``<a_j, t> = ||A_S^+ a_j||_1``."""
    U = normalize_columns(_check_dictionary(A, min_atoms=2))
    s = _check_support(support, U.shape[1])
    out = np.setdiff1d(np.arange(U.shape[1]), s)
    Z = np.linalg.pinv(U[:, s]) @ U[:, out]  # (k, N - k): columns A_S^+ a_j
    j = int(np.argmax(np.abs(Z).sum(axis=0)))
    x = np.linalg.solve(U[:, s].T @ U[:, s], np.sign(Z[:, j]))
    return U[:, s] @ x


def erc_coherence_bound(mu: float, k: int) -> float:
    """Upper bound ``k mu / (1 - (k - 1) mu)`` on ``ERC(S)`` for ``|S| = k`` (needs
    ``(k - 1) mu < 1``); it is ``< 1`` exactly when ``mu < 1 / (2k - 1)``."""
    mu = check_real("mu", mu, minimum=0.0, maximum=1.0)
    k = check_positive_int("k", k)
    if (k - 1) * mu >= 1:
        raise ValueError(f"mu must satisfy (k - 1) mu < 1, got mu={mu}, k={k}")
    return k * mu / (1 - (k - 1) * mu)


def restricted_isometry_constant(A, k: int, *, max_subsets: int = MAX_SUBSETS) -> float:
    """``theta_k = max_{|S| = k} ||G_S - I||_2`` for the unit atoms (exact, by enumeration):
    the least ``theta`` with ``(1 - theta)||v||^2 <= ||A_S v||^2 <= (1 + theta)||v||^2``."""
    U = normalize_columns(A)
    k = check_k(k, U.shape[1], n_name="the number of columns of A")
    N = U.shape[1]
    if math.comb(N, k) > check_positive_int("max_subsets", max_subsets):
        raise ValueError(f"restricted_isometry_constant would enumerate C({N}, {k}) = "
                         f"{math.comb(N, k)} subsets (N={N}, k={k}), more than max_subsets = {max_subsets}")
    S = np.array(list(itertools.combinations(range(N), k)))  # (S, k)
    G = (U.T @ U)[S[:, :, None], S[:, None, :]]  # (S, k, k)
    lam = np.linalg.eigvalsh(G)  # (S, k)
    return float(np.max(np.abs(lam - 1)))


def energy_ratio_bound(mu: float, k: int) -> float:
    """``(1 - (k - 1) mu) / (1 + (k - 1) mu)``: lower bound on ``C(Thr_k) / max_S C(S)``
    (0 when ``(k - 1) mu >= 1``, where it says nothing)."""
    mu = check_real("mu", mu, minimum=0.0, maximum=1.0)
    k = check_positive_int("k", k)
    theta = (k - 1) * mu
    return max(0.0, (1 - theta) / (1 + theta))


# -- orthogonality -------------------------------------------------------------------------------
def orthogonality_penalty(W: torch.Tensor) -> torch.Tensor:
    """``R(W) = ||W_hat W_hat^T - I||_F^2`` on the normalised rows of ``W`` (batched over leading axes).

    Parameters
    ----------
    W : Tensor (..., N, D)
        Rows are the vectors to decorrelate (router rows ``w_i``, or expert outputs
        ``E_i(x)`` of one token); no zero row.

    Returns
    -------
    Tensor (...)
        ``2 sum_{i<j} cos^2(w_i, w_j)``: the mean-square counterpart of the coherence ``mu``.
        Differentiable; use it as ``loss + lam * R(W)``.

    Notes
    -----
    For ``N > D`` it is at least ``N (N - D) / D`` (:func:`frame_penalty_bound`), met by unit-norm
    tight frames (Benedetto and Fickus 2003). Bansal, Chen and Wang (NeurIPS 2018) compare it
    with penalties that target ``mu`` itself.

    Examples
    --------
    >>> round(float(orthogonality_penalty(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))), 4)
    1.0
    """
    W = check_tensor("W", W, min_ndim=2)
    norms = torch.linalg.vector_norm(W, dim=-1, keepdim=True)  # (..., N, 1)
    if bool((norms == 0).any()):
        raise ValueError("W must have no zero rows (the angle to a zero vector is undefined)")
    Wh = W / norms
    G = Wh @ Wh.transpose(-1, -2)  # (..., N, N) cosines
    eye = torch.eye(W.shape[-2], dtype=W.dtype, device=W.device)
    return ((G - eye) ** 2).sum(dim=(-1, -2))


def frame_penalty_bound(N: int, D: int) -> float:
    """Least value ``max(0, N (N - D) / D)`` of :func:`orthogonality_penalty` over ``N`` rows in ``R^D``."""
    N, D = check_positive_int("N", N), check_positive_int("D", D)
    return max(0.0, N * (N - D) / D)
