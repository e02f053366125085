"""Population trainer against sequential fit_regressor runs (benchmarks/README.md).

P width-10 1-4-MoEs (top-1, Switch weighting, load balancing 0.01) at D = 16 on the circle of
Experiment I, batch 512, trained (a) one after the other with ``fit_regressor`` and (b) all at once
with ``fit_population``, in the same process and thread count; printed as a ratio.

    .venv/bin/python benchmarks/bench_population.py            # P = 64, 3000 steps
    .venv/bin/python benchmarks/bench_population.py --quick    # P = 8, 300 steps
    .venv/bin/python benchmarks/bench_population.py --save     # ... and write population_results.json
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


def main(argv=None) -> int:
    sys.path.insert(0, str(HERE.parent))
    from moe_theory.experiments.manifold import Exp1Config, build_members, circle_sampler
    from moe_theory.experiments.manifold import train_circle_regressor
    from moe_theory.population import fit_population

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="P = 8, 300 steps")
    parser.add_argument("--save", action="store_true", help="write benchmarks/population_results.json")
    parser.add_argument("--members", type=int, default=None, help="population size P (default 64)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 3000; 300 with --quick)")
    parser.add_argument("--sequential", type=int, default=None,
                        help="time only this many sequential runs and scale to P (default: all P)")
    args = parser.parse_args(argv)
    P = args.members or (8 if args.quick else 64)
    steps = args.steps or (300 if args.quick else 3000)
    n_seq = min(P, args.sequential or P)
    cfg = Exp1Config(steps=steps, seeds=tuple(range(P)))
    D = 16
    load_before = os.getloadavg()
    # (a) one after the other
    models, Qs = build_members(cfg, "moe", "random", D, list(range(n_seq)))
    t0 = time.perf_counter()
    for s, (model, Q) in enumerate(zip(models, Qs)):
        train_circle_regressor(model, Q, freqs=cfg.freqs, steps=steps, lr=cfg.lr, batch_size=cfg.batch_size,
                               aux_weight=cfg.aux_weight, lr_min_ratio=cfg.lr_min_ratio, seed=s)
    seq = (time.perf_counter() - t0) * P / n_seq
    # (b) all at once
    models, Qs = build_members(cfg, "moe", "random", D, list(range(P)))
    t0 = time.perf_counter()
    fit_population(models, sampler=circle_sampler(Qs, cfg.batch_size, cfg.freqs), seeds=list(range(P)),
                   steps=steps, lr=cfg.lr, batch_size=None, aux_weight=cfg.aux_weight,
                   lr_min_ratio=cfg.lr_min_ratio)
    pop = time.perf_counter() - t0
    ratio = seq / pop
    row = {"P": P, "steps": steps, "D": D, "batch": cfg.batch_size, "sequential_s": seq,
           "sequential_runs_timed": n_seq, "population_s": pop, "speedup": ratio,
           "ms_per_member_step_sequential": 1e3 * seq / (P * steps),
           "ms_per_member_step_population": 1e3 * pop / (P * steps),
           "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
           "load_before": load_before, "load_after": os.getloadavg(),
           "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    print(f"P={P} width-10 1-4-MoEs, D={D}, {steps} steps, batch {cfg.batch_size}, "
          f"{torch.get_num_threads()} threads")
    print(f"sequential fit_regressor: {seq:8.1f} s ({row['ms_per_member_step_sequential']:.3f} ms/member-step"
          f"{'' if n_seq == P else f', {n_seq} runs timed and scaled to {P}'})")
    print(f"fit_population:           {pop:8.1f} s ({row['ms_per_member_step_population']:.3f} ms/member-step)")
    print(f"speed-up {ratio:.1f}x (target >= 8x: {'met' if ratio >= 8 else 'NOT met'}); "
          f"load average {tuple(round(v, 2) for v in load_before)} before, "
          f"{tuple(round(v, 2) for v in row['load_after'])} after")
    if args.save:
        (HERE / "population_results.json").write_text(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
