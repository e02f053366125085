"""Experiment II of Wang & E (2025), reproduced at full scale: depth against width on a 3x3 target.

Target on ``[0, 3]^2``: ``f(x) = p_{i_1}(x_1) + q_{i_2}(x_2)`` (:class:`moe_theory.compositional.
CompositionalTarget` with families ``("p", "q")``): 9 pieces from 6 sub-functions. Models
(:func:`moe_theory.compositional_train.architecture`), each at expert width
``m in {16, 32, 64, 128}`` and over 20 seeds, trained as populations:

* ``2-3-MoE``: two MoE layers of 3 ReLU experts (``R^2 -> R^2 -> R``), top-1, Switch weights;
* ``1-6-MoE``: one MoE layer of 6 experts (``R^2 -> R``);
* ``2-1-stack``: the 2-3-MoE's stack with one expert per layer (depth, no routing);
* ``dense``: a one-hidden-layer ReLU net with the 2-3-MoE's active parameter count;
* ``2-3-MoE-x``: the 2-3-MoE whose gates both read the input ``x`` (not the state).

Run ``python -m moe_theory.experiments.compositional`` (full sweep; writes
``results/compositional_exp2.json`` and ``results/compositional_exp2.png``) or ``--quick``
(seconds). The committed sweep took 5140 s of training in all (saved as ``total_seconds``); it
was run as three processes over disjoint ``--models``/``--widths`` and merged with ``--merge``
(the same numbers as one run: every cell is seeded on its own), 45 min of wall time on a 2-core
CPU shared with other jobs (load 10-14). The 2-3-MoE-x variant was run at ``m = 16, 32, 128``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .._validation import check_choice
from ..compositional import CompositionalTarget, grid_midpoints
from ..seed_stats import cell_statistics, stalled_mask
from ..compositional_train import (DeepMoEPopulation, architecture, evaluate_population, init_stripe_gates,
                                   routing_scores, train_population)

__all__ = ["Exp2Config", "QUICK", "RESULTS_PATH", "run_cell", "run_experiment", "summarise", "load_results",
           "results_rows", "routing_rows", "plot_results", "plot_routing_maps", "resummarise", "ATTEMPTS",
           "ATTEMPTS_PATH", "run_attempts", "attempts_rows", "main"]

RESULTS_PATH = Path(__file__).resolve().parents[2] / "results" / "compositional_exp2.json"
LABELS = {"2-3-MoE": "2-3-MoE (2 layers x 3 experts)", "1-6-MoE": "1-6-MoE (1 layer x 6 experts)",
          "2-1-stack": "2-1 stack (depth, no routing)", "dense": "dense, 2-3-MoE's active params",
          "2-3-MoE-x": "2-3-MoE, gates read x"}
COLORS = {"2-3-MoE": "#1f77b4", "1-6-MoE": "#d62728", "2-1-stack": "#2ca02c", "dense": "#7f7f7f",
          "2-3-MoE-x": "#9467bd"}
MAP_SIDE = 30  # routing maps saved on a MAP_SIDE x MAP_SIDE grid of cell midpoints


@dataclass(frozen=True)
class Exp2Config:
    """Everything that defines a run of Experiment II (saved with the results).

    Stated by the paper: domain ``[0,3]^2`` with 9 cells, 2-3-MoE against 1-6-MoE, two-layer ReLU
    experts of width ``m in {16, 32, 64, 128}``, top-1. Our choices: the target's formula, the
    inter-layer width 2, no residual, Switch weights and load balancing, the optimiser settings,
    fresh samples each step, 20 seeds, the controls.
    """

    widths: tuple = (16, 32, 64, 128)
    models: tuple = ("2-3-MoE", "1-6-MoE", "2-1-stack", "dense", "2-3-MoE-x")
    seeds: tuple = tuple(range(20))
    families: tuple = ("p", "q")
    steps: int = 4000
    lr: float = 1e-2
    lr_min_ratio: float = 0.01
    rescale: bool = True
    batch_size: int = 128
    aux_weight: float = 0.01
    clip: float = 1.0
    weighting: str = "softmax"
    n_test_side: int = 90
    restarts: int = 5
    stall_factor: float = 10.0
    dtype: str = "float32"
    gate_init: str = "torch"
    curriculum_steps: int = 0


#: A small configuration for the chapter's live cell and smoke tests.
QUICK = Exp2Config(widths=(32,), models=("2-3-MoE", "1-6-MoE", "2-1-stack"), seeds=(0, 1, 2, 3), steps=1500,
                   n_test_side=60)


#: Where the routing attempts are saved (``--attempts``).
ATTEMPTS_PATH = RESULTS_PATH.with_name("compositional_routing.json")
#: What might make training find the compositional routing: one change each, at ``m = 32`` with
#: seeds 0-9 (``python -m moe_theory.experiments.compositional --attempts``). Nothing tuned.
ATTEMPTS = {
    "2-3-MoE": ("2-3-MoE", {}),
    "2-3-MoE, 4x longer training": ("2-3-MoE", {"steps": 16000}),
    "2-3-MoE, layer-1 gate started on x1-stripes": ("2-3-MoE", {"gate_init": "stripes"}),
    "2-3-MoE, curriculum (1000 steps on the x1 part first)": ("2-3-MoE", {"curriculum_steps": 1000}),
    "2-3-MoE-x (gates read x)": ("2-3-MoE-x", {}),
    "2-3-MoE-x, both gates started on stripes": ("2-3-MoE-x", {"gate_init": "stripes"}),
}


def run_attempts(names=None, *, m: int = 32, seeds=tuple(range(10)), steps_scale: float = 1.0, device=None,
                 log=print) -> dict:
    """Train each of :data:`ATTEMPTS` (all of them by default) and summarise it like a sweep cell.

    ``steps_scale`` multiplies every attempt's number of steps (1 for the saved results; small for tests).
    """
    names = list(ATTEMPTS) if names is None else [check_choice("names entry", n, tuple(ATTEMPTS)) for n in names]
    rows, start = [], time.perf_counter()
    for name in names:
        model, over = ATTEMPTS[name]
        cfg = replace(Exp2Config(), seeds=tuple(seeds), widths=(m,), models=(model,), **over)
        cfg = replace(cfg, steps=max(1, round(cfg.steps * steps_scale)))
        recs, info = run_cell(cfg, model, m, device=device)
        row = {"attempt": name, "model": model, "m": m, "config": asdict(cfg), **summarise(recs, cfg), **info,
               "per_seed": recs}
        rows.append(row)
        if log is not None:
            log(f"[{time.perf_counter() - start:6.0f} s] {name}: test {row['test_mse']:.2e}, compositional "
                f"{row['compositional_fraction']:.0%}, paths {row['paths_median']:.0f}")
    return {"m": m, "seeds": list(seeds), "results": rows, "total_seconds": time.perf_counter() - start,
            "command": "python -m moe_theory.experiments.compositional --attempts",
            "environment": {"torch": torch.__version__, "python": platform.python_version(),
                            "threads": torch.get_num_threads()}}


def attempts_rows(data: dict) -> tuple[list[str], list[list]]:
    """Header and rows of the attempts table: the compositional fraction, the stripe score, paths, errors."""
    header = ["attempt", "compositional runs", "stripe score (median)", "paths (median)", "test MSE (median)",
              "best of 5"]
    rows = []
    for r in data["results"]:
        stripe = float(np.median([max(max(v) for v in s["layer_stripe"]) for s in r["per_seed"]]))
        rows.append([r["attempt"], f"{r['compositional_fraction']:.0%}", f"{stripe:.2f}", f"{r['paths_median']:.0f}",
                     f"{r['test_mse']:.1e}", f"{r['best_of_restarts']['test_mse']:.1e}"])
    return header, rows


def _map_string(codes: np.ndarray, n_experts: int) -> str:
    """Path ids ``j_1 N + j_2`` of a ``MAP_SIDE^2`` grid as a string of digits (row = x_1 index)."""
    ids = codes[:, 0] * n_experts + (codes[:, 1] if codes.shape[1] > 1 else 0)
    return "".join(str(int(v)) for v in ids)


def run_cell(cfg: Exp2Config, model_name: str, m: int, *, device=None, return_model: bool = False):
    """Train one population (all seeds) of one model at one width; per-seed records."""
    model_name = check_choice("model_name", model_name, tuple(LABELS))
    target = CompositionalTarget(3, cfg.families)
    spec = architecture(model_name, m)
    pop = DeepMoEPopulation(spec, cfg.seeds, weighting=cfg.weighting, device=device, dtype=getattr(torch, cfg.dtype))
    if check_choice("gate_init", cfg.gate_init, ("torch", "stripes")) == "stripes":
        init_stripe_gates(pop)
    if cfg.curriculum_steps:  # first the target of coordinate 1 alone: layer 1 can learn its stripes
        first = CompositionalTarget(3, (cfg.families[0],) + ("zero",) * (len(cfg.families) - 1))
        train_population(pop, first, steps=cfg.curriculum_steps, lr=cfg.lr, batch_size=cfg.batch_size,
                         aux_weight=cfg.aux_weight, clip=cfg.clip, lr_min_ratio=cfg.lr_min_ratio, rescale=cfg.rescale,
                         data_seeds=[s + 104_729 for s in cfg.seeds])
    res = train_population(pop, target, steps=cfg.steps, lr=cfg.lr, batch_size=cfg.batch_size,
                           aux_weight=cfg.aux_weight, clip=cfg.clip, lr_min_ratio=cfg.lr_min_ratio,
                           rescale=cfg.rescale)
    ev = evaluate_population(pop, target, n_side=cfg.n_test_side, rescale=cfg.rescale)
    tail = max(1, cfg.steps // 100)
    recs = []
    maps = None
    if ev["codes"] is not None and ev["codes"].shape[2] == 2:
        small = evaluate_population(pop, target, n_side=MAP_SIDE, rescale=cfg.rescale)
        maps = [_map_string(small["codes"][p], 3) for p in range(pop.P)]
    for p, seed in enumerate(cfg.seeds):
        rec = {"seed": int(seed), "test_mse": float(ev["test_mse"][p]), "sup_error": float(ev["sup_error"][p]),
               "train_mse": float(res.losses[-tail:, p].mean())}
        if ev["codes"] is not None:
            codes = ev["codes"][p]
            sc = routing_scores(codes, ev["cells"])
            rec.update(path_cell=sc["path_cell"], layer_stripe=sc["layer_stripe"], compositional=sc["compositional"],
                       paths=sc["paths"], paths_all=sc["paths_all"],
                       load=[np.bincount(codes[:, l], minlength=spec.n_experts[l]).tolist()
                             for l in range(codes.shape[1])])
        if maps is not None:
            rec["routing_map"] = maps[p]
        recs.append(rec)
    info = {"n_params": spec.n_params(), "n_active_params": spec.n_params(active=True), "width": spec.width,
            "train_seconds": res.seconds}
    return (recs, info, pop, res) if return_model else (recs, info)


def summarise(recs: list[dict], cfg: Exp2Config) -> dict:
    """Median and [min, max] over seeds with a bootstrap 90% interval of the median; the stalled
    fraction (test MSE above ``cfg.stall_factor`` times the cell's best run, the rule of the manifold
    chapter); the exact distribution of the best of ``cfg.restarts`` restarts chosen by training loss
    over all draws of the seeds (:func:`moe_theory.seed_stats.best_of_r`): its median, 5% and 95%."""
    test = np.array([r["test_mse"] for r in recs])
    train = np.array([r["train_mse"] for r in recs])
    st = cell_statistics(test, train, restarts=min(cfg.restarts, len(recs)))
    stalled = stalled_mask(test, factor=cfg.stall_factor)
    out = {"test_mse": st["test_mse_median"], "test_mse_ci90": st["test_mse_ci90"], "test_mse_min": st["test_mse_min"],
           "test_mse_max": st["test_mse_max"], "train_mse": float(np.median(train)), "train_mse_min": float(train.min()),
           "train_mse_max": float(train.max()), "stalled_fraction": float(stalled.mean()),
           "test_mse_median_not_stalled": float(np.median(test[~stalled])),
           "best_of_restarts": {"R": st["restarts"], "test_mse": st["best_of_r_median"], "q05": st["best_of_r_q05"],
                                "q95": st["best_of_r_q95"]}}
    if "path_cell" in recs[0]:
        out["compositional_fraction"] = float(np.mean([r["compositional"] for r in recs]))
        out["path_cell_median"] = float(np.median([r["path_cell"] for r in recs]))
        out["paths_median"] = float(np.median([r["paths"] for r in recs]))
    return out


def run_experiment(cfg: Exp2Config = Exp2Config(), *, device=None, log=print, on_row=None) -> dict:
    """Run the whole sweep; returns the JSON-ready result (see the module docstring)."""
    if not isinstance(cfg, Exp2Config):
        raise TypeError(f"cfg must be an Exp2Config, got {type(cfg).__name__}")
    start = time.perf_counter()
    rows = []
    for name in cfg.models:
        for m in cfg.widths:
            recs, info = run_cell(cfg, name, m, device=device)
            row = {"model": name, "m": m, **summarise(recs, cfg), **info, "per_seed": recs}
            rows.append(row)
            if log is not None:
                log(f"[{time.perf_counter() - start:7.1f} s] {name:>9} m={m:<4} test MSE median {row['test_mse']:.2e} "
                    f"[{row['test_mse_min']:.1e}, {row['test_mse_max']:.1e}] train {row['train_mse']:.2e} "
                    f"stalled {row['stalled_fraction']:.2f}"
                    + (f" compositional {row['compositional_fraction']:.2f}" if "compositional_fraction" in row else ""))
            if on_row is not None:
                on_row(rows)
    return {"config": asdict(cfg), "seeds": list(cfg.seeds), "results": rows,
            "total_seconds": time.perf_counter() - start,
            "environment": {"torch": torch.__version__, "python": platform.python_version(),
                            "threads": torch.get_num_threads(), "device": str(device or "cpu")}}


def merge_results(parts: list[dict]) -> dict:
    """Merge sweeps of one configuration run over disjoint (model, width) cells (e.g. in parallel).

    Every cell is trained from its own seeds, so a merged sweep has the numbers of a single run of
    the union. ``total_seconds`` of the result is the *sum* of the cells' training times.
    """
    if len(parts) < 1:
        raise ValueError("parts must contain at least one result, got none")
    strip = lambda d: {k: v for k, v in d["config"].items() if k not in ("models", "widths")}  # noqa: E731
    for d in parts[1:]:
        if strip(d) != strip(parts[0]) or d["seeds"] != parts[0]["seeds"]:
            raise ValueError("parts must have the same configuration and seeds apart from models and widths")
    rows = [r for d in parts for r in d["results"]]
    keys = [(r["model"], r["m"]) for r in rows]
    if len(set(keys)) != len(keys):
        raise ValueError(f"parts must not repeat a (model, m) cell, got {sorted(keys)}")
    order = {name: i for i, name in enumerate(LABELS)}
    rows.sort(key=lambda r: (order[r["model"]], r["m"]))
    config = {**parts[0]["config"], "models": list(dict.fromkeys(r["model"] for r in rows)),
              "widths": sorted({r["m"] for r in rows})}
    return {"config": config, "seeds": parts[0]["seeds"], "results": rows,
            "total_seconds": float(sum(r["train_seconds"] for r in rows)),
            "environment": parts[-1].get("environment", {}), "merged_from": len(parts)}


def load_results(path=None) -> dict:
    """The saved results (default: the committed ``results/compositional_exp2.json``)."""
    path = RESULTS_PATH if path is None else Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path {path} does not exist: run `python -m moe_theory.experiments.compositional`")
    return json.loads(path.read_text())


def _name(model: str) -> str:
    return model.replace("-", "\u2011")  # non-breaking hyphens: table cells do not wrap inside names


def results_rows(data: dict, *, models=None) -> tuple[list[str], list[list]]:
    """Header and rows for :func:`moe_theory.result_table`: errors, one row per (model, m).

    Columns: median, min and max test MSE over seeds, median final training MSE, the stalled
    fraction, and the median test MSE of best-of-R restarts chosen by training loss.
    """
    header = ["model", "m", "test MSE", "min", "max", "train MSE", "stalled", "best of 5"]
    rows = []
    for r in data["results"]:
        if models is not None and r["model"] not in models:
            continue
        b = r["best_of_restarts"]["test_mse"]
        rows.append([_name(r["model"]), r["m"], f"{r['test_mse']:.1e}", f"{r['test_mse_min']:.1e}",
                     f"{r['test_mse_max']:.1e}", f"{r['train_mse']:.1e}", f"{r['stalled_fraction']:.0%}",
                     "-" if b is None else f"{b:.1e}"])
    return header, rows


def routing_rows(data: dict) -> tuple[list[str], list[list]]:
    """Header and rows for the routing of the two-layer MoEs: compositional runs, paths used
    (median; by at least 0.5% of the grid), median ``I(path; square) / H(square)``, and the median
    of each layer's best stripe score ``max_c I(j_l; i_c) / H(i_c)``."""
    header = ["model", "m", "compositional runs", "paths used", "path-square score",
              "layer-1 stripe score", "layer-2 stripe score"]
    rows = []
    for r in data["results"]:
        per = r["per_seed"]
        if "layer_stripe" not in per[0] or len(per[0]["layer_stripe"]) != 2:
            continue
        stripe = [np.median([max(s["layer_stripe"][l]) for s in per]) for l in (0, 1)]
        rows.append([_name(r["model"]), r["m"], f"{sum(s['compositional'] for s in per)} / {len(per)}",
                     f"{np.median([s['paths'] for s in per]):.0f}",
                     f"{np.median([s['path_cell'] for s in per]):.2f}", f"{stripe[0]:.2f}", f"{stripe[1]:.2f}"])
    return header, rows


def plot_results(data: dict, ax=None, *, models=None, title: str | None = None):
    """Test MSE against ``m`` on log-log axes: median, band = min..max over seeds."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2))
    names = [n for n in dict.fromkeys(r["model"] for r in data["results"]) if models is None or n in models]
    for name in names:
        rows = sorted((r for r in data["results"] if r["model"] == name), key=lambda r: r["m"])
        ms = [r["m"] for r in rows]
        ax.plot(ms, [r["test_mse"] for r in rows], "o-", color=COLORS[name], label=LABELS[name])
        ax.fill_between(ms, [r["test_mse_min"] for r in rows], [r["test_mse_max"] for r in rows],
                        color=COLORS[name], alpha=0.12)
    ax.set(xscale="log", yscale="log", xlabel="expert width $m$", ylabel="test MSE")
    ms = sorted({r["m"] for r in data["results"]})
    ax.set_xticks(ms, [str(v) for v in ms])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    n = len(data["seeds"])
    ax.set_title(title or f"Experiment II: test MSE vs $m$ (median, band min-max, {n} seeds)", fontsize=10)
    ax.figure.tight_layout()
    return ax.figure


def plot_routing_maps(maps: list[str], titles: list[str], *, n_experts: int = 3):
    """Per-layer expert maps of 2-layer MoEs from saved routing-map strings: one column per run,
    rows: layer 1, layer 2, path (``j_1 N + j_2``)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from ..plotting import expert_colors, plot_region_map

    k = len(maps)
    fig, axes = plt.subplots(3, k, figsize=(min(6.5, 1.45 * k + 0.7), 5.0), squeeze=False)
    path_cmap = ListedColormap(plt.get_cmap("tab10").colors[:n_experts ** 2 - 1] + ("#444444",))
    for c, (s, t) in enumerate(zip(maps, titles)):
        ids = np.array([int(ch) for ch in s]).reshape(MAP_SIDE, MAP_SIDE).T  # rows: x_2, columns: x_1
        for r, (img, nc) in enumerate(((ids // n_experts, n_experts), (ids % n_experts, n_experts),
                                       (ids, n_experts ** 2))):
            ax = axes[r, c]
            if r < 2:
                plot_region_map(ax, img, (0, 3, 0, 3), n_colors=nc, xlabel="", ylabel="")
            else:
                ax.imshow(img, origin="lower", extent=(0, 3, 0, 3), cmap=path_cmap, vmin=-0.5,
                          vmax=n_experts ** 2 - 0.5, interpolation="nearest")
            for v in (1, 2):
                ax.axvline(v, color="w", lw=0.6)
                ax.axhline(v, color="w", lw=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(t, fontsize=8)
        axes[0, 0].set_ylabel("layer 1\n$x_2$", fontsize=8)
        axes[1, 0].set_ylabel("layer 2\n$x_2$", fontsize=8)
        axes[2, 0].set_ylabel("path\n$x_2$", fontsize=8)
    for ax in axes[2]:
        ax.set_xlabel("$x_1$", fontsize=8)
    _ = expert_colors
    return fig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small configuration (QUICK): seconds")
    parser.add_argument("--seeds", type=int, help="number of seeds (0..n-1)")
    parser.add_argument("--widths", type=int, nargs="+", help="expert widths m")
    parser.add_argument("--models", nargs="+", help="model names")
    parser.add_argument("--steps", type=int, help="training steps per run")
    parser.add_argument("--out", default=str(RESULTS_PATH), help="output JSON (the figure goes next to it, .png)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--merge", nargs="+", metavar="PART",
                        help="merge result files (or .partial.json checkpoints) of disjoint --models runs")
    parser.add_argument("--attempts", nargs="*", choices=list(ATTEMPTS),
                        help="train the routing attempts (all if none is named) and write " + ATTEMPTS_PATH.name)
    parser.add_argument("--resummarise", action="store_true",
                        help="no training: recompute every cell's statistics of --out from its saved per-seed records")
    args = parser.parse_args(argv)
    if args.resummarise:
        return _resummarise(Path(args.out))
    if args.attempts is not None:
        torch.set_num_threads(args.threads)
        data = run_attempts(args.attempts or None, device=args.device)
        ATTEMPTS_PATH.write_text(json.dumps(data))
        print(f"total {data['total_seconds']:.0f} s; wrote {ATTEMPTS_PATH}")
        return 0
    if args.merge:
        data = merge_results([json.loads(Path(p).read_text()) for p in args.merge])
        data["command"] = ("python -m moe_theory.experiments.compositional (run as "
                           f"{len(args.merge)} processes over disjoint --models, merged with --merge)")
        return _write(data, Path(args.out))
    cfg = QUICK if args.quick else Exp2Config()
    overrides = {k: v for k, v in (("seeds", args.seeds and tuple(range(args.seeds))),
                                   ("widths", args.widths and tuple(args.widths)),
                                   ("models", args.models and tuple(args.models)), ("steps", args.steps)) if v}
    cfg = replace(cfg, **overrides)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial.json")

    def checkpoint(rows):
        partial.write_text(json.dumps({"config": asdict(cfg), "seeds": list(cfg.seeds), "results": rows}))

    data = run_experiment(cfg, device=args.device, on_row=checkpoint)
    partial.unlink(missing_ok=True)
    data["command"] = ("python -m moe_theory.experiments.compositional "
                       + " ".join(sys.argv[1:] if argv is None else argv)).strip()
    return _write(data, out)


def resummarise(data: dict) -> dict:
    """``data`` with every cell's statistics recomputed by :func:`summarise` from its per-seed records
    (the statistics' rules may change; the trained runs do not)."""
    cfg = replace(Exp2Config(), restarts=data["config"]["restarts"], stall_factor=data["config"]["stall_factor"])
    rows = [{**row, **summarise(row["per_seed"], cfg)} for row in data["results"]]
    return {**data, "results": rows}


def _resummarise(out: Path) -> int:
    data = resummarise(load_results(out))
    data["summarised_by"] = "python -m moe_theory.experiments.compositional --resummarise"
    return _write(data, out)


def _write(data: dict, out: Path) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data))
    import matplotlib
    matplotlib.use("Agg")
    plot_results(data).savefig(out.with_suffix(".png"), dpi=110, bbox_inches="tight")
    print(f"total {data['total_seconds']:.0f} s; wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
