"""Speed of exact routing-region enumeration, :func:`moe_theory.tropical.realizable_topk_sets`.

Run from the repository root::

    .venv/bin/python benchmarks/bench_tropical.py

For each size ``(N, k, D)`` (a Gaussian router, seed 0) it times, in the same run:

* the baseline: brute force, one HiGHS LP for every one of the ``C(N, k)`` subsets, no probes;
* the library default (``method="auto"``: random probes certify most regions, LPs decide the rest);
* BFS over single swaps from the probed regions (``method="bfs"``);
* the Monte-Carlo estimator with ``2 * 10^4`` Gaussian inputs (fast, but only a lower bound),

and prints times, ratios to the baseline, and the counts each method finds.
"""

from __future__ import annotations

import math
import time

import numpy as np

from moe_theory.tropical import monte_carlo_topk_sets, realizable_topk_sets

SIZES = ((10, 3, 4), (11, 5, 3), (12, 6, 3))


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench(N: int, k: int, D: int, seed: int = 0) -> dict:
    """Time the methods on one Gaussian router; return times (s) and counts."""
    rng = np.random.default_rng(seed)
    W, b = rng.standard_normal((N, D)), rng.standard_normal(N)
    t_base, base = _timed(lambda: realizable_topk_sets(W, b, k, method="brute", n_probe=0))
    t_auto, auto = _timed(lambda: realizable_topk_sets(W, b, k))
    t_bfs, bfs = _timed(lambda: realizable_topk_sets(W, b, k, method="bfs"))
    t_mc, mc = _timed(lambda: monte_carlo_topk_sets(W, b, k, n_samples=20_000, seed=seed, scale=3.0))
    assert auto == base == bfs and set(mc.sets) <= set(base)
    return {"N": N, "k": k, "D": D, "subsets": math.comb(N, k), "rho": len(base), "mc_found": mc.count,
            "brute_s": t_base, "auto_s": t_auto, "bfs_s": t_bfs, "mc_s": t_mc}


def main() -> None:
    print(f"{'N':>3} {'k':>2} {'D':>2} {'C(N,k)':>7} {'rho':>5} | {'brute LPs (s)':>13} "
          f"{'auto (s)':>9} {'ratio':>6} {'bfs (s)':>8} {'ratio':>6} | {'MC 2e4 (s)':>10} {'MC found':>8}")
    for N, k, D in SIZES:
        r = bench(N, k, D)
        print(f"{N:>3} {k:>2} {D:>2} {r['subsets']:>7} {r['rho']:>5} | {r['brute_s']:>13.3f} "
              f"{r['auto_s']:>9.3f} {r['brute_s'] / r['auto_s']:>5.1f}x {r['bfs_s']:>8.3f} "
              f"{r['brute_s'] / r['bfs_s']:>5.1f}x | {r['mc_s']:>10.3f} {r['mc_found']:>8}")
    print("ratio = brute-force time / method time (higher is faster); all exact methods agree (asserted).")


if __name__ == "__main__":
    main()
