"""The saved speed measurements of the MoE layer, as the book's performance appendix shows them.

``benchmarks/bench_moe.py --save`` times one forward+backward pass of a SwiGLU MoE layer against
yardsticks measured in the same run and writes ``benchmarks/results.json``; this module reads that
file (found from the library's location, not the working directory) and turns it into tables
(:func:`timing_table`, :func:`ratio_table`) and a figure (:func:`plot_ratios`). Nothing here
measures anything: every number comes from the saved file.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._validation import check_choice
from .tables import ResultTable, result_table

__all__ = ["RESULTS_PATH", "POPULATION_PATH", "LABELS", "load_benchmark_results", "machine_summary", "timing_table",
           "ratio_table", "plot_ratios", "auto_dispatch_choices", "load_population_results", "population_table",
           "sweep_time", "CHAPTER_LOOPS_PATH", "load_chapter_loops_results", "chapter_loops_table"]

RESULTS_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "results.json"
#: The population trainer's benchmark (``benchmarks/bench_population.py --save``).
POPULATION_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "population_results.json"
#: The chapters' multi-seed loops, one at a time against the population (``bench_chapter_loops.py --save``).
CHAPTER_LOOPS_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "chapter_loops_results.json"

#: Candidates in display order, with short labels.
LABELS = {
    "limit": "limit (dense SwiGLU, same active FLOPs)",
    "limit + router": "limit + the router's matmul",
    "moe_theory": "moe_theory MoE (dispatch='auto')",
    "moe_theory sorted": "moe_theory, dispatch='sorted'",
    "moe_theory padded": "moe_theory, dispatch='padded'",
    "transformers eager": "transformers Mixtral block, eager",
    "transformers grouped_mm": "transformers Mixtral block, grouped_mm",
    "reference": "moe_theory forward_reference (loop)",
}


def load_benchmark_results(path: str | Path | None = None) -> dict:
    """The saved results (default: ``benchmarks/results.json`` beside the library)."""
    path = Path(path) if path is not None else RESULTS_PATH
    if not path.exists():
        raise FileNotFoundError(f"no benchmark results at {path}: run benchmarks/run_all.py --save")
    return json.loads(path.read_text())


def _config(results: dict, name: str) -> dict:
    return results["configs"][check_choice("name", name, tuple(results["configs"]))]


def config_line(results: dict, name: str) -> str:
    """``"d_model=16, d_hidden=32, N=64, k=2, 4096 tokens"`` for configuration ``name``."""
    c = _config(results, name)["config"]
    return f"d_model={c['d_model']}, d_hidden={c['d_hidden']}, N={c['n_experts']}, k={c['k']}, {c['tokens']} tokens"


def machine_summary(results: dict) -> str:
    """One sentence on where and when the results were measured (CPU, threads, versions, load)."""
    m = results["machine"]
    load = results.get("load_before")
    return (f"{m['cpu']} ({m['cpu_count']} cores, {m['cpu_capability']}); torch {m['torch']} with "
            f"{m['torch_threads']} threads, transformers {m['transformers']}; {m['dtype']} on {m['device']}; "
            f"run started {results['started']}, median of {results['rounds']} interleaved rounds"
            + (f", load average {load[0]:.2f} before it" if load else ""))


def _fmt_ms(seconds: float) -> str:
    ms = 1e3 * seconds
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def timing_table(results: dict, name: str) -> ResultTable:
    """Every candidate of configuration ``name``: median time, ratios to the limit and to ``MoE``, memory."""
    res = _config(results, name)
    timing, mem = res["timing"], res.get("peak_memory_bytes", {})
    limit, ours = timing["limit"]["median_s"], timing["moe_theory"]["median_s"]
    rows = []
    for cand, label in LABELS.items():
        if cand in timing:
            t = timing[cand]["median_s"]
            mb = "-" if mem.get(cand) is None else f"{mem[cand] / 2**20:.1f}"
            rows.append([label, _fmt_ms(t), f"{t / limit:.2f}", f"{t / ours:.2f}", mb])
    return result_table(["candidate", "ms (fwd+bwd)", "× limit", "× moe_theory", "peak MB"], rows)


def ratio_table(results: dict) -> ResultTable:
    """One row per configuration: ``MoE``'s time over the yardsticks', and its speed-ups."""
    rows = []
    for name, res in results["configs"].items():
        r = res["ratios"]
        c = res["config"]
        sizes = f"{c['d_model']}, {c['d_hidden']}, {c['n_experts']}, {c['k']}, {c['tokens']}"
        rows.append([name, sizes, f"{r['moe_vs_limit']:.2f}",
                     f"{r['moe_vs_limit_with_router']:.2f}", f"{r['speedup_vs_transformers']:.2f}",
                     f"{r['speedup_vs_reference']:.1f}"])
    return result_table(["configuration", "D, m, N, k, T", "÷ limit", "÷ (limit + router)", "faster than transformers",
                         "faster than the loop"], rows)


def plot_ratios(results: dict, ax=None):
    """Bar chart: each candidate's forward+backward time over the limit's, per configuration (log scale)."""
    import matplotlib.pyplot as plt  # imported here: `import moe_theory` does not load matplotlib
    import numpy as np

    names = list(results["configs"])
    cands = [c for c in LABELS if all(c in results["configs"][n]["timing"] for n in names)]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2))
    width = 0.8 / len(cands)
    colors = plt.get_cmap("tab10").colors
    for j, cand in enumerate(cands):
        vals = [results["configs"][n]["timing"][cand]["median_s"] / results["configs"][n]["timing"]["limit"]["median_s"]
                for n in names]
        ax.bar(np.arange(len(names)) + (j - (len(cands) - 1) / 2) * width, vals, width, label=LABELS[cand],
               color=colors[j % 10])
    ax.axhline(1.0, color="k", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel("time / limit (log scale)")
    ax.set_title("MoE layer: within a small factor of the dense limit,\nfar below the loop over experts",
                 fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    return ax


def auto_dispatch_choices(results: dict, *, device=None) -> dict[str, str]:
    """The strategy ``dispatch="auto"`` picks on each benchmark configuration (one forward, no grad)."""
    import torch

    from .layers import MoE

    out = {}
    for name, res in results["configs"].items():
        c = res["config"]
        torch.manual_seed(0)  # the initialisation bench_moe.build uses
        layer = MoE(c["d_model"], c["d_hidden"], c["n_experts"], c["k"], expert="swiglu", device=device,
                    dtype=torch.float32)
        x = torch.randn(c["tokens"], c["d_model"], generator=torch.Generator().manual_seed(0)).to(layer.w2.device)
        with torch.no_grad():
            layer(x)
        out[name] = layer.last_dispatch
    return out


def _load_saved(path, default: Path, what: str, script: str) -> dict:
    """A benchmark's saved json (``default`` unless ``path``), or a FileNotFoundError naming its command."""
    path = Path(path) if path is not None else default
    if not path.exists():
        raise FileNotFoundError(f"no {what} benchmark at {path}: run benchmarks/{script} --save")
    return json.loads(path.read_text())


def load_population_results(path: str | Path | None = None) -> dict:
    """The saved population benchmark (default: ``benchmarks/population_results.json``)."""
    return _load_saved(path, POPULATION_PATH, "population", "bench_population.py")


def population_table(results: dict) -> ResultTable:
    """Sequential ``fit_regressor`` runs against one ``fit_population`` run: ms per member-step and the ratio."""
    for key in ("P", "steps", "ms_per_member_step_sequential", "ms_per_member_step_population", "speedup"):
        if key not in results:
            raise ValueError(f"results must be a population benchmark with a {key!r} entry, got keys {sorted(results)}")
    seq, pop = results["ms_per_member_step_sequential"], results["ms_per_member_step_population"]
    timed = results.get("sequential_runs_timed", results["P"])
    how = f"{timed} of {results['P']} runs timed, scaled" if timed < results["P"] else f"all {results['P']} runs"
    return result_table(["trainer", "ms per member-step", "what was timed"],
                        [["fit_regressor, one run after another", f"{seq:.2f}", how],
                         [f"fit_population, P = {results['P']} at once", f"{pop:.2f}",
                          f"{results['P']} members, {results['steps']} steps"],
                         ["speed-up", f"{results['speedup']:.1f}x", ""]])


def load_chapter_loops_results(path: str | Path | None = None) -> dict:
    """The saved chapter-loops benchmark (default: ``benchmarks/chapter_loops_results.json``)."""
    return _load_saved(path, CHAPTER_LOOPS_PATH, "chapter-loops", "bench_chapter_loops.py")


def chapter_loops_table(results: dict) -> ResultTable:
    """Each chapter's multi-seed experiment: seconds one seed at a time, as a population, and the ratio."""
    if not isinstance(results, dict) or "rows" not in results:
        raise ValueError("results must be a chapter-loops benchmark with a 'rows' entry")
    return result_table(["chapter", "experiment", "one at a time (s)", "population (s)", "speed-up"],
                        [[r["chapter"], r["experiment"], f"{r['sequential_s']:.1f}", f"{r['population_s']:.1f}",
                          f"{r['sequential_s'] / r['population_s']:.1f}x"] for r in results["rows"]])


def sweep_time(path: str | Path | None = None) -> dict:
    """How long the saved full Experiment I sweep took (``results/manifold_exp1.json``): its runs,
    wall time, worker processes and torch threads, and the command that made it."""
    path = Path(path) if path is not None else Path(__file__).resolve().parents[1] / "results" / "manifold_exp1.json"
    if not path.exists():
        raise FileNotFoundError(f"no saved sweep at {path}: run python -m moe_theory.experiments.manifold")
    data = json.loads(path.read_text())
    if "wall_seconds" not in data or "results" not in data:
        raise ValueError(f"{path} is not a finished Experiment I sweep (no wall_seconds or results)")
    env = data.get("environment", {})
    return {"runs": sum(len(r["per_seed"]) for r in data["results"]), "cells": len(data["results"]),
            "seeds": len(data["seed"]), "wall_minutes": data["wall_seconds"] / 60, "jobs": env.get("jobs", 1),
            "threads": env.get("threads"), "command": data.get("command", "")}
