"""Experiment I of Wang & E (2025), reproduced: a shallow MoE on a circle in R^D.

Inputs on the unit circle embedded in ``R^D`` (first two axes, or a random isometry), target
``f(x) = sin(5 z_1) + cos(3 z_2)``, a 1-layer MoE with one linear router and ``N = 4`` two-layer
ReLU experts of width 10, top-1; test MSE for ``D in {16, 32, 64, 128}`` over several seeds, next
to dense ReLU nets of equal active width (10) and of equal parameter count.

Run ``python -m moe_theory.experiments.manifold`` (full sweep, writes
``results/manifold_exp1.json`` and ``results/manifold_exp1.png``) or add ``--quick``.
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
from ..manifold import (circle_embedding, count_parameters, equal_parameter_width, evaluate_circle,
                        init_router_from_data, make_regressor, sample_circle, train_circle_regressor)

__all__ = ["Exp1Config", "QUICK", "RESULTS_PATH", "run_one", "run_experiment", "summarise", "load_results",
           "results_table", "plot_results", "main"]

#: Where the committed full results live (resolved from this file, not from the cwd).
RESULTS_PATH = Path(__file__).resolve().parents[2] / "results" / "manifold_exp1.json"
KINDS = ("moe", "dense-active", "dense-total")
KIND_LABELS = {"moe": "MoE, 4 experts x width 10 (top-1)", "dense-active": "dense, width 10 (equal active)",
               "dense-total": "dense, equal parameter count"}


@dataclass(frozen=True)
class Exp1Config:
    """Everything that defines a run of Experiment I (saved with the results).

    Settings the paper states: circle in R^D, the target, ``N = 4`` experts of width 10, top-1, one
    linear router, ``D`` sweep. Settings it does not state (our choices): the rest.
    """

    dims: tuple = (16, 32, 64, 128)
    embeddings: tuple = ("axis", "random")
    kinds: tuple = KINDS
    seeds: tuple = (0, 1, 2, 3, 4)
    n_experts: int = 4
    width: int = 10
    k: int = 1
    freqs: tuple = (5.0, 3.0)
    steps: int = 3000
    lr: float = 1e-2
    lr_min_ratio: float = 1e-3
    batch_size: int = 512
    aux_weight: float = 0.01
    weighting: str = "softmax"
    router_init: str = "data"
    n_test: int = 4096
    dtype: str = "float32"


#: A small configuration for the chapter and smoke tests (seconds, not minutes).
QUICK = Exp1Config(dims=(16, 128), embeddings=("random",), kinds=("moe", "dense-total"), seeds=(0,), steps=600)


def _width(kind: str, D: int, cfg: Exp1Config) -> int:
    return {"moe": cfg.width, "dense-active": cfg.width,
            "dense-total": equal_parameter_width(D, n_experts=cfg.n_experts, width=cfg.width)}[kind]


def run_one(cfg: Exp1Config, kind: str, embedding: str, D: int, seed: int, *, device=None,
            return_model: bool = False):
    """Train and evaluate one model; returns the per-seed record (and the model and ``Q`` if asked)."""
    kind = check_choice("kind", kind, KINDS)
    Q = circle_embedding(D, embedding, seed=10_000 + seed)
    width = _width(kind, D, cfg)
    model = make_regressor("moe" if kind == "moe" else "dense", D, width=width, n_experts=cfg.n_experts, k=cfg.k,
                           weighting=cfg.weighting, seed=seed, device=device, dtype=getattr(torch, cfg.dtype))
    if kind == "moe" and cfg.router_init == "data":
        init_router_from_data(model, sample_circle(256, Q, seed=20_000 + seed)[0])
    res = train_circle_regressor(model, Q, freqs=cfg.freqs, steps=cfg.steps, lr=cfg.lr, batch_size=cfg.batch_size,
                                 aux_weight=cfg.aux_weight if kind == "moe" else 0.0,
                                 lr_min_ratio=cfg.lr_min_ratio, seed=seed)
    ev = evaluate_circle(model, Q, freqs=cfg.freqs, n_test=cfg.n_test)
    rec = {"seed": seed, "test_mse": ev["test_mse"], "sup_error": ev["sup_error"],
           "train_seconds": res.seconds, "final_train_mse": float(np.mean(res.losses[-50:])),
           "width": width, "n_params": count_parameters(model)}
    if "load_fraction" in ev:
        rec["load_fraction"] = ev["load_fraction"]
        rec["dead_experts"] = int(sum(f == 0 for f in ev["load_fraction"]))
    return (rec, model, Q) if return_model else rec


def summarise(records: list[dict]) -> dict:
    """Mean, median, standard deviation, min and max of the per-seed test MSE (and median sup error)."""
    mse = np.array([r["test_mse"] for r in records])
    return {"test_mse": float(mse.mean()), "test_mse_median": float(np.median(mse)),
            "test_mse_std": float(mse.std(ddof=1)) if len(mse) > 1 else 0.0,
            "test_mse_min": float(mse.min()), "test_mse_max": float(mse.max()),
            "log10_mse_std": float(np.log10(mse).std(ddof=1)) if len(mse) > 1 else 0.0,
            "sup_error_median": float(np.median([r["sup_error"] for r in records])),
            "train_seconds": float(np.mean([r["train_seconds"] for r in records]))}


def run_experiment(cfg: Exp1Config = Exp1Config(), *, device=None, log=print, on_row=None,
                   models: dict | None = None) -> dict:
    """Run the whole sweep; returns the JSON-ready result (see the module docstring).

    ``on_row(rows)``, if given, is called with the finished rows after each one (checkpointing).
    ``models``, if a dict, receives ``(kind, embedding, D, seed) -> (model, Q)`` for every run.
    """
    if not isinstance(cfg, Exp1Config):
        raise TypeError(f"cfg must be an Exp1Config, got {type(cfg).__name__}")
    start = time.perf_counter()
    rows = []
    for embedding in cfg.embeddings:
        for kind in cfg.kinds:
            for D in cfg.dims:
                recs = []
                for s in cfg.seeds:
                    rec, model, Q = run_one(cfg, kind, embedding, D, s, device=device, return_model=True)
                    recs.append(rec)
                    if models is not None:
                        models[(kind, embedding, D, s)] = (model, Q)
                row = {"D": D, "kind": kind, "embedding": embedding, **summarise(recs),
                       "width": recs[0]["width"], "n_params": recs[0]["n_params"], "per_seed": recs}
                rows.append(row)
                if log is not None:
                    log(f"[{time.perf_counter() - start:7.1f} s] {embedding:>6} {kind:>12} D={D:<4} "
                        f"median test MSE {row['test_mse_median']:.2e} "
                        f"(min {row['test_mse_min']:.1e}, max {row['test_mse_max']:.1e})")
                if on_row is not None:
                    on_row(rows)
    return {"config": asdict(cfg), "seed": list(cfg.seeds), "results": rows,
            "total_seconds": time.perf_counter() - start,
            "environment": {"torch": torch.__version__, "python": platform.python_version(),
                            "threads": torch.get_num_threads(), "device": str(device or "cpu")}}


def load_results(path=None) -> dict:
    """The saved results (default: the committed ``results/manifold_exp1.json``)."""
    path = RESULTS_PATH if path is None else Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path {path} does not exist: run `python -m moe_theory.experiments.manifold`")
    return json.loads(path.read_text())


def results_table(data: dict) -> str:
    """A plain-text table: median test MSE (min..max over seeds), rows ``(embedding, D)``, columns models."""
    kinds = list(dict.fromkeys(r["kind"] for r in data["results"]))
    cells = {(r["embedding"], r["D"], r["kind"]): r for r in data["results"]}
    lines = [f"{'embed.':<7}{'D':>4}" + "".join(f"{k:>22}" for k in kinds)]
    for emb, D in dict.fromkeys((r["embedding"], r["D"]) for r in data["results"]):
        row = ""
        for k in kinds:
            c = cells.get((emb, D, k))
            row += (f"{c['test_mse_median']:>9.1e} [{c['test_mse_min']:.0e},{c['test_mse_max']:.0e}]"
                    if c else f"{'-':>22}")
        lines.append(f"{emb:<7}{D:>4}" + row)
    return "\n".join(lines)


def plot_results(data: dict, axes=None, *, title: str | None = None):
    """Test MSE against ``D`` (median, band = min..max over seeds), one panel per embedding."""
    import matplotlib.pyplot as plt

    embeddings = list(dict.fromkeys(r["embedding"] for r in data["results"]))
    if axes is None:
        fig, axes = plt.subplots(1, len(embeddings), figsize=(5.2 * len(embeddings), 3.8), squeeze=False,
                                 sharey=True)
        axes = axes[0]
    colors = {"moe": "#1f77b4", "dense-active": "#7f7f7f", "dense-total": "#d62728"}
    n_seeds = len(data["seed"]) if isinstance(data["seed"], list) else 1
    for ax, emb in zip(axes, embeddings):
        for kind in dict.fromkeys(r["kind"] for r in data["results"]):
            rows = sorted((r for r in data["results"] if r["embedding"] == emb and r["kind"] == kind),
                          key=lambda r: r["D"])
            D = [r["D"] for r in rows]
            ax.plot(D, [r["test_mse_median"] for r in rows], "o-", color=colors[kind], label=KIND_LABELS[kind])
            if n_seeds > 1:
                ax.fill_between(D, [r["test_mse_min"] for r in rows], [r["test_mse_max"] for r in rows],
                                color=colors[kind], alpha=0.15)
        ax.set(xscale="log", yscale="log", xlabel="ambient dimension $D$", ylabel="test MSE",
               title=f"{'axis-aligned' if emb == 'axis' else 'random isometric'} embedding")
        ax.set_xticks(D, [str(d) for d in D])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    fig = axes[0].figure
    fig.suptitle(title or f"Experiment I: test MSE vs $D$ (median, band min-max over {n_seeds} seed(s))")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small configuration (QUICK): seconds")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default: 0 1 2 3 4)")
    parser.add_argument("--dims", type=int, nargs="+", help="ambient dimensions D")
    parser.add_argument("--steps", type=int, help="training steps per run")
    parser.add_argument("--out", default=str(RESULTS_PATH), help="output JSON (the figure goes next to it, .png)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny models: 1 is fastest)")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else Exp1Config()
    overrides = {k: v for k, v in (("seeds", args.seeds and tuple(args.seeds)), ("dims", args.dims and tuple(args.dims)),
                                   ("steps", args.steps)) if v}
    cfg = replace(cfg, **overrides)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial.json")

    def checkpoint(rows):
        partial.write_text(json.dumps({"config": asdict(cfg), "seed": list(cfg.seeds), "results": rows}, indent=1))

    data = run_experiment(cfg, device=args.device, on_row=checkpoint)
    partial.unlink(missing_ok=True)
    data["command"] = "python -m moe_theory.experiments.manifold " + " ".join(sys.argv[1:] if argv is None else argv)
    out.write_text(json.dumps(data, indent=1))
    import matplotlib
    matplotlib.use("Agg")
    plot_results(data).savefig(out.with_suffix(".png"), dpi=110, bbox_inches="tight")
    print(results_table(data))
    print(f"total {data['total_seconds']:.0f} s; wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
