"""Where one forward+backward of the MoE layer spends its time: torch.profiler, op by op.

Profiles the ``limit`` and ``moe_theory`` candidates of :mod:`benchmarks.bench_moe` (same
construction, same threads) for one configuration and prints, per step, the self time of the
most expensive operators with their input shapes, and the number of operator calls. Not a
benchmark (the profiler adds overhead to every call, more to small ones); a map of the time.

Run ``.venv/bin/python benchmarks/profile_moe.py [--config "small experts, many"] [--steps 20]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_moe.py

import torch  # noqa: E402
from torch.profiler import profile  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_moe import CONFIGS, THREADS, build  # noqa: E402


def op_table(step, steps: int, rows: int) -> tuple[list[tuple[str, float, float, str]], float, float]:
    """(name, self µs per step, calls per step, shapes) of the top operators; total µs and calls per step."""
    for _ in range(5):
        step()
    with profile(record_shapes=True) as prof:
        for _ in range(steps):
            step()
    events = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) / steps
    calls = sum(e.count for e in events) / steps
    top = [(e.key, e.self_cpu_time_total / steps, e.count / steps, str(e.input_shapes)) for e in events[:rows]]
    return top, total, calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="small experts, many", choices=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=25, help="operators to list per candidate")
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    for candidate in ("limit", "moe_theory"):
        top, total, calls = op_table(build(CONFIGS[args.config], candidate), args.steps, args.rows)
        print(f"\n{candidate} ({args.config}): {total / 1e3:.2f} ms of operator self time per step "
              f"(profiled), {calls:.0f} operator calls per step")
        for name, us, n, shapes in top:
            print(f"  {name[:34]:34s} {us:8.1f} µs  x{n:4.1f}  {shapes[:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
