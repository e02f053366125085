"""The tropical chapter's sweep: routing regions against one ReLU layer on random flats.

:func:`flat_capacity_table` counts, exactly, what random ``d``-flats meet, for the chapter's
table of effective capacity against flat dimension; it composes the library's counting functions
(:mod:`moe_theory.tropical_regions`, :mod:`moe_theory.tropical_capacity`).
"""

from __future__ import annotations

import numpy as np

from .._validation import check_positive_int, check_rng
from ..tropical_capacity import random_flat, relu_layer_regions
from ..tropical_regions import realizable_topk_sets

__all__ = ["flat_capacity_table"]


def flat_capacity_table(N: int, k: int, D: int, dims, *, n_flats: int, seed) -> list[dict]:
    """Router vs one ReLU layer of width ``m = N`` (same parameter count ``N (D + 1)``) on random flats.

    For each ``d`` in ``dims``: mean over ``n_flats`` random ``d``-flats of the exact router count
    ``EC`` and of the exact ReLU region count, and their ratios to the ambient counts on ``R^D``.

    Examples
    --------
    >>> rows = flat_capacity_table(4, 2, 3, [1], n_flats=1, seed=0); sorted(rows[0])[:3]
    ['d', 'dense_ambient', 'dense_regions']
    """
    N, D = check_positive_int("N", N), check_positive_int("D", D)
    n_flats = check_positive_int("n_flats", n_flats)
    rng = check_rng(seed, name="seed")
    W, b = rng.standard_normal((N, D)), rng.standard_normal(N)
    W1, b1 = rng.standard_normal((N, D)), rng.standard_normal(N)
    moe_amb = len(realizable_topk_sets(W, b, k))
    dense_amb = relu_layer_regions(W1, b1)
    rows = []
    for d in dims:
        ec, dense = [], []
        for _ in range(n_flats):
            A, c = random_flat(D, d, seed=rng)
            ec.append(len(realizable_topk_sets(W, b, k, A, c)))
            dense.append(relu_layer_regions(W1, b1, A, c))
        rows.append({"d": int(d), "moe_ec": float(np.mean(ec)), "moe_ambient": moe_amb,
                     "r_moe": float(np.mean(ec)) / moe_amb, "dense_regions": float(np.mean(dense)),
                     "dense_ambient": dense_amb, "r_dense": float(np.mean(dense)) / dense_amb})
    return rows

