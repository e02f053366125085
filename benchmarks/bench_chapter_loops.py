"""The chapters' multi-seed training loops: one seed at a time against the population trainer.

For each of the bayes, coherence and discontinuity chapters' experiments, the same seeds are trained
(a) one after the other with the single-run function and (b) together with its population version,
in the same process and thread count, at the chapter's settings; printed as ratios.

    .venv/bin/python benchmarks/bench_chapter_loops.py            # 5 seeds per setting (the old chapters)
    .venv/bin/python benchmarks/bench_chapter_loops.py --quick    # 2 seeds, short runs
    .venv/bin/python benchmarks/bench_chapter_loops.py --save     # ... and write chapter_loops_results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    sys.path.insert(0, str(HERE.parent))
    from moe_theory import bayes_training as bt
    from moe_theory import coherence_experiments as cx
    from moe_theory import discontinuity_smooth as sm

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 seeds, short runs")
    parser.add_argument("--save", action="store_true", help="write benchmarks/chapter_loops_results.json")
    args = parser.parse_args(argv)
    n = 2 if args.quick else 5
    scale = 0.2 if args.quick else 1.0
    seeds = list(range(n))
    load_before = os.getloadavg()
    rows = []

    x, t, _ = bt.cluster_regression_data(256, seed=0)
    rules = {"none": {}, "switch": {"lam": 1.0}, "z_loss": {"lam": 0.01}, "importance": {"lam": 1.0},
             "aux_free": {"gamma": 0.05}}
    steps = int(150 * scale)
    seq = _time(lambda: [bt.train_routed_moe(x, t, balance=r, seed=s, steps=steps, lr=0.05, **kw)
                         for r, kw in rules.items() for s in seeds])
    pop = _time(lambda: [bt.train_routed_population(x, t, balance=r, seeds=seeds, steps=steps, lr=0.05, **kw)
                         for r, kw in rules.items()])
    rows.append({"chapter": "bayes", "experiment": f"5 balancing rules x {n} seeds, {steps} steps",
                 "runs": 5 * n, "sequential_s": seq, "population_s": pop})

    cfg = cx.PenaltyConfig(steps=int(200 * scale))
    lams = (0.0, 0.03)
    seq = _time(lambda: [cx.train_penalised_moe(lam, s, cfg) for lam in lams for s in seeds])
    pop = _time(lambda: cx.train_penalised_population([lam for lam in lams for _ in seeds],
                                                      [s for _ in lams for s in seeds], cfg))
    rows.append({"chapter": "coherence", "experiment": f"2 penalties x {n} seeds, {cfg.steps} steps",
                 "runs": 2 * n, "sequential_s": seq, "population_s": pop})

    steps = int(250 * scale)
    seq = _time(lambda: sm.compare_routers(seeds=seeds, steps=steps, population=False))
    pop = _time(lambda: sm.compare_routers(seeds=seeds, steps=steps))
    rows.append({"chapter": "discontinuity", "experiment": f"2 routers x {n} seeds, {steps} steps, with evaluation",
                 "runs": 2 * n, "sequential_s": seq, "population_s": pop})

    print(f"chapter loops, {n} seeds per setting, {torch.get_num_threads()} torch thread(s), "
          f"load average {tuple(round(v, 2) for v in load_before)}")
    for r in rows:
        r["speedup"] = r["sequential_s"] / r["population_s"]
        print(f"{r['chapter']:14s} {r['experiment']:48s} one at a time {r['sequential_s']:6.2f} s, "
              f"population {r['population_s']:6.2f} s: {r['speedup']:.1f}x")
    if args.save:
        out = {"rows": rows, "seeds": n, "threads": torch.get_num_threads(), "torch": torch.__version__,
               "python": platform.python_version(), "load_before": load_before, "load_after": os.getloadavg(),
               "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        (HERE / "chapter_loops_results.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
