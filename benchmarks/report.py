"""Read the saved benchmark results (``benchmarks/results.json``) into Markdown tables (``RESULTS.md``).

Used by ``benchmarks/run_all.py --save`` (it writes ``benchmarks/RESULTS.md``); the book's
performance appendix reads the same file through :mod:`moe_theory.performance`.
"""

from __future__ import annotations

import json
from pathlib import Path

from moe_theory.performance import (LABELS, chapter_loops_table, load_benchmark_results, population_table,
                                    sweep_time)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"


def load_results(path: str | Path | None = None) -> dict:
    """The saved results (default ``benchmarks/results.json``)."""
    return load_benchmark_results(path if path is not None else RESULTS)


def _fmt_ms(seconds: float) -> str:
    ms = 1e3 * seconds
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def _fmt_mb(nbytes) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:.1f}"


def config_line(name: str, cfg: dict) -> str:
    c = cfg["config"]
    return (f"{name}: d_model={c['d_model']}, d_hidden={c['d_hidden']}, N={c['n_experts']}, k={c['k']}, "
            f"{c['tokens']} tokens")


def markdown_tables(results: dict) -> str:
    """One Markdown table per configuration: median time, ratios, peak memory."""
    parts = []
    for name, res in results["configs"].items():
        timing, mem = res["timing"], res.get("peak_memory_bytes", {})
        limit, ours = timing["limit"]["median_s"], timing["moe_theory"]["median_s"]
        lines = [f"**{config_line(name, res)}**", "",
                 "| candidate | median ms (fwd+bwd) | runs | × limit | × moe_theory | peak MB |",
                 "|---|---:|---:|---:|---:|---:|"]
        for cand in LABELS:
            if cand not in timing:
                continue
            t = timing[cand]["median_s"]
            lines.append(f"| {LABELS[cand]} | {_fmt_ms(t)} | {timing[cand]['n']} | {t / limit:.2f} | "
                         f"{t / ours:.2f} | {_fmt_mb(mem.get(cand))} |")
        lines.append("")
        lines.append(targets_sentence(res))
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def targets_sentence(res: dict) -> str:
    r, c, met = res["ratios"], res["config"], res["targets_met"]
    words = [f"moe_theory / limit = {r['moe_vs_limit']:.2f} (target ≤ {c['max_vs_limit']}: "
             f"{'met' if met['vs_limit'] else 'NOT met'})"]
    if r.get("moe_vs_limit_with_router") is not None:
        words.append(f"moe_theory / (limit + router's matmul) = {r['moe_vs_limit_with_router']:.2f} "
                     "(for information, no target)")
    if "vs_transformers" in met:
        words.append(f"speed-up over the faster transformers block ({r['transformers_best'].split()[-1]}) = "
                     f"{r['speedup_vs_transformers']:.2f} (target ≥ {c['min_speedup_vs_transformers']}: "
                     f"{'met' if met['vs_transformers'] else 'NOT met'})")
    else:
        words.append(f"speed-up over the faster transformers block = {r['speedup_vs_transformers']:.2f}")
    words.append(f"speed-up over the reference loop = {r['speedup_vs_reference']:.1f}")
    t = res["timing"]
    words.append(f"by the fastest run instead of the median: moe_theory / limit = "
                 f"{t['moe_theory']['min_s'] / t['limit']['min_s']:.2f}")
    la = res.get("load_during")
    if la:
        words.append(f"load average (1 min) {la[0][0]:.2f} before, {la[1][0]:.2f} after"
                     + (f", measured {res['measured_at']}" if res.get("measured_at") else ""))
    return "; ".join(words) + "."


def summary_rows(results: dict) -> list[dict]:
    """One row per configuration: the headline ratios and whether each target is met."""
    rows = []
    for name, res in results["configs"].items():
        r, met = res["ratios"], res["targets_met"]
        rows.append({"configuration": name, "moe_vs_limit": r["moe_vs_limit"],
                     "target_vs_limit": res["config"]["max_vs_limit"],
                     "speedup_vs_transformers": r["speedup_vs_transformers"],
                     "target_speedup_vs_transformers": res["config"]["min_speedup_vs_transformers"],
                     "speedup_vs_reference": r["speedup_vs_reference"], **{f"met_{k}": v for k, v in met.items()}})
    return rows


def machine_line(results: dict) -> str:
    m = results["machine"]
    return (f"{m['cpu']} ({m['cpu_count']} cores, {m['cpu_capability']}), {m['platform']}; Python {m['python']}, "
            f"torch {m['torch']}, transformers {m['transformers']}; {m['torch_threads']} torch threads "
            f"(OMP_WAIT_POLICY={m.get('omp_wait_policy')}), "
            f"{m['dtype']} on {m['device']}; run started {results['started']}, {results['rounds']} rounds, "
            f"load average before {tuple(round(v, 2) for v in results['load_before'])}"
            + (f"; configurations not re-run then are from the run started {results['merged_from']}"
               if results.get("merged_from") else ""))


def population_section(path: str | Path | None = None) -> str:
    """The population trainer's benchmark (``population_results.json``) as a Markdown section, if saved."""
    path = Path(path) if path is not None else HERE / "population_results.json"
    if not path.exists():
        return ""
    r = json.loads(path.read_text())
    timed = r.get("sequential_runs_timed", r["P"])
    how = f"{timed} sequential runs timed and scaled to {r['P']}" if timed < r["P"] else f"all {r['P']} runs timed"
    return f"""
## Population trainer (`bench_population.py`)

{r['P']} width-10 1-4-MoEs at D = {r['D']}, batch {r['batch']}, {r['steps']} steps, {r['threads']} torch
thread(s), torch {r['torch']}, measured {r['date']}, load average before
{tuple(round(v, 2) for v in r['load_before'])} ({how}).

{population_table(r).markdown}

Target: at least 8x.
{sweep_section()}{chapter_loops_section()}"""


def chapter_loops_section(path: str | Path | None = None) -> str:
    """The chapters' multi-seed loops (``chapter_loops_results.json``) as a Markdown section, if saved."""
    path = Path(path) if path is not None else HERE / "chapter_loops_results.json"
    if not path.exists():
        return ""
    r = json.loads(path.read_text())
    return f"""
## The chapters' multi-seed loops (`bench_chapter_loops.py`)

{r['seeds']} seeds per setting, at each chapter's settings, {r['threads']} torch thread(s), torch {r['torch']},
measured {r['date']}, load average before {tuple(round(v, 2) for v in r['load_before'])}.

{chapter_loops_table(r).markdown}
"""


def sweep_section() -> str:
    """The saved full Experiment I sweep's wall time (target: 10 minutes on 2 CPU cores)."""
    try:
        t = sweep_time()
    except (FileNotFoundError, ValueError):
        return ""
    return (f"\nThe full Experiment I sweep, {t['runs']} runs ({t['cells']} cells x {t['seeds']} seeds), "
            f"took {t['wall_minutes']:.1f} min wall with {t['jobs']} worker process(es) "
            f"(`{t['command']}`). Target: at most 10 min on 2 CPU cores.\n")


def write_results_md(results: dict | None = None, path: str | Path | None = None) -> Path:
    """Regenerate ``benchmarks/RESULTS.md`` from the saved results (no number typed by hand)."""
    results = results if results is not None else load_results()
    path = Path(path) if path is not None else HERE / "RESULTS.md"
    text = f"""# Benchmark results

Generated by `benchmarks/report.py` from `benchmarks/results.json` (written by
`.venv/bin/python benchmarks/run_all.py --save`); do not edit by hand.

**Machine:** {machine_line(results)}.

What is measured (see `benchmarks/README.md`): one forward+backward pass (fresh gradients) of a
SwiGLU MoE layer, median over interleaved rounds; "limit" is one dense SwiGLU block on
`tokens * k` rows (the same active arithmetic as the experts, with no routing),
"limit + the router's matmul" adds the gate's logits `x W^T + b` on the `tokens` rows (all the
arithmetic of the layer, with no selection or data movement); peak MB is the peak resident memory
of one forward+backward above the resident memory before it, in a fresh process.

The machine is shared with other jobs, and timings are noisy. A yardstick for the noise:
`dispatch='auto'` runs exactly the code of the strategy it picks (`padded` for the small
configuration, `sorted` for the two wide ones), so the gap between those two rows is noise alone.

{markdown_tables(results)}
{population_section()}"""
    path.write_text(text)
    return path


if __name__ == "__main__":
    print(write_results_md())
