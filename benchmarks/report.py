"""Read the saved benchmark results (``benchmarks/results.json``) into tables and a figure.

Used by ``benchmarks/run_all.py --save`` (it writes ``benchmarks/RESULTS.md``) and by the
book's performance appendix, so every number shown comes from the saved file.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"

#: Candidates in display order, with short labels.
LABELS = {
    "limit": "limit (dense SwiGLU, same active FLOPs)",
    "limit + router": "limit + the router's matmul (all the arithmetic)",
    "moe_theory": "moe_theory MoE (dispatch='auto')",
    "moe_theory sorted": "moe_theory, dispatch='sorted'",
    "moe_theory padded": "moe_theory, dispatch='padded'",
    "transformers eager": "transformers Mixtral block, eager",
    "transformers grouped_mm": "transformers Mixtral block, grouped_mm",
    "reference": "moe_theory forward_reference (loop)",
}


def load_results(path: str | Path | None = None) -> dict:
    """The saved results (default ``benchmarks/results.json``, found from this file, not the cwd)."""
    path = Path(path) if path is not None else RESULTS
    if not path.exists():
        raise FileNotFoundError(f"no benchmark results at {path}: run benchmarks/run_all.py --save")
    return json.loads(path.read_text())


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


def plot_results(results: dict, ax=None):
    """Bar chart: forward+backward time of each candidate relative to the limit, per configuration."""
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(results["configs"])
    cands = [c for c in LABELS if all(c in results["configs"][n]["timing"] for n in names)]
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.8))
    width = 0.8 / len(cands)
    colors = plt.get_cmap("tab10").colors
    for j, cand in enumerate(cands):
        vals = [results["configs"][n]["timing"][cand]["median_s"] / results["configs"][n]["timing"]["limit"]["median_s"]
                for n in names]
        ax.bar(np.arange(len(names)) + (j - (len(cands) - 1) / 2) * width, vals, width, label=LABELS[cand],
               color=colors[j % 10])
    for i, n in enumerate(names):
        target = results["configs"][n]["config"]["max_vs_limit"]
        ax.hlines(target, i - 0.42, i + 0.42, colors="k", linestyles="--", linewidth=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n + "\n" + config_line(n, results["configs"][n]).split(": ", 1)[1].replace(", N=", "\nN=")
                        for n in names], fontsize=8)
    ax.set_ylabel("time / limit (log scale)")
    ax.set_title("Forward+backward time relative to the dense SwiGLU limit (dashed: the target)")
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False)
    return ax


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
`tokens * k` rows (the same active arithmetic as the experts, with no routing: the issue's limit),
"limit + the router's matmul" adds the gate's logits `x W^T + b` on the `tokens` rows (all the
arithmetic of the layer, with no selection or data movement); peak MB is the peak resident memory
of one forward+backward above the resident memory before it, in a fresh process.

The machine is shared with other jobs, and timings are noisy. A yardstick for the noise:
`dispatch='auto'` runs exactly the code of the strategy it picks (`padded` for the small
configuration, `sorted` for the two wide ones), so the gap between those two rows is noise alone.

{markdown_tables(results)}
"""
    path.write_text(text)
    return path


if __name__ == "__main__":
    print(write_results_md())


def html_tables(results: dict) -> str:
    """The tables of :func:`markdown_tables` as HTML (for notebook output)."""
    import html

    parts = []
    for name, res in results["configs"].items():
        timing, mem = res["timing"], res.get("peak_memory_bytes", {})
        limit, ours = timing["limit"]["median_s"], timing["moe_theory"]["median_s"]
        rows = []
        for cand in LABELS:
            if cand not in timing:
                continue
            t = timing[cand]["median_s"]
            bold = cand in ("moe_theory", "limit")
            cells = [LABELS[cand], _fmt_ms(t), str(timing[cand]["n"]), f"{t / limit:.2f}", f"{t / ours:.2f}",
                     _fmt_mb(mem.get(cand))]
            tds = "".join(f"<td style='text-align:{'left' if i == 0 else 'right'}'>"
                          f"{'<b>' if bold else ''}{html.escape(c)}{'</b>' if bold else ''}</td>"
                          for i, c in enumerate(cells))
            rows.append(f"<tr>{tds}</tr>")
        head = "".join(f"<th>{h}</th>" for h in ("candidate", "median ms (fwd+bwd)", "runs", "× limit",
                                                  "× moe_theory", "peak MB"))
        parts.append(f"<p><b>{html.escape(config_line(name, res))}</b></p>"
                     f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
                     f"<p>{html.escape(targets_sentence(res))}</p>")
    return "\n".join(parts)


def auto_dispatch_choices(results: dict, *, device="cpu") -> dict[str, str]:
    """The strategy ``dispatch="auto"`` picks on each benchmark configuration (one forward, no grad)."""
    import torch

    from moe_theory import MoE

    out = {}
    for name, res in results["configs"].items():
        c = res["config"]
        torch.manual_seed(0)  # the initialisation bench_moe.build uses
        layer = MoE(c["d_model"], c["d_hidden"], c["n_experts"], c["k"], expert="swiglu", device=device,
                    dtype=torch.float32)
        x = torch.randn(c["tokens"], c["d_model"], generator=torch.Generator().manual_seed(0)).to(device)
        with torch.no_grad():
            layer(x)
        out[name] = layer.last_dispatch
    return out
