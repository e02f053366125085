"""Statistics of a cell of trained runs: the numbers every experiment of the book reports.

A trained model's error is a distribution over seeds, often bimodal (some runs *stall* an order of
magnitude above the rest). For a cell of ``n`` runs (one configuration, ``n`` seeds) the book
reports the median test error with a bootstrap 90% interval, its minimum and maximum, the stalled
fraction, and the distribution of what a practitioner keeps: the best of ``R`` restarts chosen by
*training* loss. The manifold and compositional experiments both use these functions.
"""

from __future__ import annotations

import math

import numpy as np

from ._validation import check_array, check_int, check_positive_real, check_seed

__all__ = ["best_of_r", "weighted_quantile", "stalled_mask", "bootstrap_median_ci", "cell_statistics"]


def best_of_r(train, test, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact distribution of "best of ``r`` restarts, chosen by training loss" over the runs of a cell.

    Drawing ``r`` of the ``n`` runs without replacement and keeping the one of least training loss
    picks the run of training rank ``j`` (0 = best) with probability ``C(n - 1 - j, r - 1) / C(n, r)``.
    Returns the test errors sorted by training loss and these probabilities (they sum to 1).
    """
    train, test = check_array("train", train, ndim=1), check_array("test", test, shape=(len(train),), ndim=1)
    r = check_int("r", r, minimum=1, maximum=len(train))
    order = np.argsort(train, kind="stable")
    n = len(train)
    prob = np.array([math.comb(n - 1 - j, r - 1) for j in range(n)], dtype=float) / math.comb(n, r)
    return test[order], prob


def weighted_quantile(values, weights, q: float) -> float:
    """The smallest value whose cumulative weight reaches ``q`` of the total (a lower quantile)."""
    order = np.argsort(values)
    v, w = np.asarray(values)[order], np.asarray(weights)[order]
    return float(v[np.searchsorted(np.cumsum(w), q * w.sum() - 1e-12)])


def stalled_mask(test, *, factor: float = 10.0, reference: float | None = None) -> np.ndarray:
    """Runs whose test error exceeds ``factor`` times ``reference`` (default: the cell's best run)."""
    test = check_array("test", test, ndim=1)
    factor = check_positive_real("factor", factor)
    return test > factor * (test.min() if reference is None else reference)


def bootstrap_median_ci(values, *, level: float = 0.9, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the median (``n_boot`` resamples, seeded)."""
    values = check_array("values", values, ndim=1)
    rng = np.random.default_rng(check_seed("seed", seed))
    boot = np.median(rng.choice(values, (n_boot, len(values))), axis=1)
    return float(np.quantile(boot, (1 - level) / 2)), float(np.quantile(boot, (1 + level) / 2))


def cell_statistics(test, train, *, restarts: int = 5, seed: int = 0, n_boot: int = 2000) -> dict:
    """The book's statistics of one cell: median test error with a bootstrap 90% interval, min and
    max, median training error, the stalled fraction (test > 10x the cell's best) and the median of
    the other runs, and the median, 5% and 95% points of the best of ``restarts`` by training loss."""
    test, train = check_array("test", test, ndim=1), check_array("train", train, shape=(len(test),), ndim=1)
    stalled = stalled_mask(test)
    vals, prob = best_of_r(train, test, min(restarts, len(test)))
    return {"n_seeds": len(test), "test_mse_median": float(np.median(test)),
            "test_mse_ci90": list(bootstrap_median_ci(test, n_boot=n_boot, seed=seed)),
            "test_mse_min": float(test.min()), "test_mse_max": float(test.max()),
            "train_mse_median": float(np.median(train)), "stalled_fraction": float(stalled.mean()),
            "test_mse_median_not_stalled": float(np.median(test[~stalled])),
            "best_of_r_median": weighted_quantile(vals, prob, 0.5), "best_of_r_q05": weighted_quantile(vals, prob, 0.05),
            "best_of_r_q95": weighted_quantile(vals, prob, 0.95), "restarts": restarts}
