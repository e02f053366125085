"""Run every benchmark of the book, each against baselines measured in the same run.

    .venv/bin/python benchmarks/run_all.py            # every benchmarks/bench_*.py, full size
    .venv/bin/python benchmarks/run_all.py --quick    # a smoke run: few repetitions, no memory
    .venv/bin/python benchmarks/run_all.py --save     # ... and record: results.json, RESULTS.md

Each ``bench_*.py`` runs in its own process (so one benchmark's threads, allocations and
imports do not disturb the next) and prints its own table of times and ratios. ``--quick``
and ``--save`` are passed on to the scripts whose ``--help`` lists them. After a saving run
``benchmarks/RESULTS.md`` is regenerated from ``benchmarks/results.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _flags(script: Path, wanted: list[str]) -> list[str]:
    """The flags among ``wanted`` that ``script --help`` mentions."""
    try:
        out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                             timeout=120, cwd=HERE.parent).stdout
    except subprocess.TimeoutExpired:
        return []
    return [f for f in wanted if f in out]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run of every benchmark")
    parser.add_argument("--save", action="store_true", help="record the results (benchmarks that support it)")
    parser.add_argument("--only", nargs="*", default=None, help="names of bench_*.py to run (default: all)")
    args = parser.parse_args(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem in args.only or s.name in args.only]
    wanted = (["--quick"] if args.quick else []) + (["--save"] if args.save else [])
    print(f"run_all: {len(scripts)} benchmarks ({', '.join(s.name for s in scripts)}); "
          f"load average {tuple(round(v, 2) for v in os.getloadavg())}", flush=True)
    failures = []
    for script in scripts:
        flags = _flags(script, wanted)
        print(f"\n=== {script.name} {' '.join(flags)}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script), *flags], cwd=HERE.parent)
        print(f"=== {script.name}: exit {rc} after {time.perf_counter() - start:.0f} s; "
              f"load average {tuple(round(v, 2) for v in os.getloadavg())}", flush=True)
        if rc:
            failures.append(script.name)
    if args.save and (HERE / "results.json").exists():
        from benchmarks.report import write_results_md  # noqa: E402  (after the runs: fresh file)
        print(f"\nwrote {write_results_md()}")
    if failures:
        print(f"failed: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main())
