"""Benchmark: forward+backward time and peak memory of the MoE layer against its baselines.

CPU, float32, ``torch.set_num_threads(2)``, SwiGLU experts. For each configuration the
candidates are

* ``limit``: one dense SwiGLU block of width ``d_hidden`` on ``tokens * k`` rows -- the
  same active arithmetic as the MoE layer's experts with no routing at all (the limit);
* ``limit + router``: the limit plus the gate's matmul ``g = x W^T + b`` on the ``tokens``
  rows, forward and backward -- all the arithmetic of a top-k MoE layer, with no selection,
  sorting or gathering (for information: at ``d_model = 16, N = 64`` the gate's matmul is a
  third of the experts' arithmetic);
* ``moe_theory``: :class:`moe_theory.MoE` with ``expert="swiglu"``, ``dispatch="auto"``
  (and, for information, each explicit strategy);
* ``transformers eager`` / ``transformers grouped_mm``: ``MixtralSparseMoeBlock`` of
  transformers 5.x with the same weights, with its two CPU experts implementations;
* ``reference``: :meth:`moe_theory.MoE.forward_reference` (the loop over experts).

Timing: candidates are interleaved round by round (so load changes hit all of them), each
timed on one forward+backward with fresh gradients, and the median over rounds is reported;
the machine load (``os.getloadavg()``) is printed and saved with the results.

Peak memory: each candidate runs once more in a fresh subprocess with glibc's mmap threshold
set to 64 KiB (so freed tensors leave the resident set at once); after a warm-up step and
dropping the gradients, the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``) and
the peak resident memory of one forward+backward above the resident memory before it is
reported (it counts everything the step allocates: activations, gradients, kernel buffers, and
the scratch memory the block kernel keeps between calls, which is dropped before the step).

Run ``.venv/bin/python benchmarks/bench_moe.py [--quick] [--save]``; ``--save`` writes
``benchmarks/results.json`` (read by ``benchmarks/RESULTS.md``'s generator and the book's
appendix).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a machine shared with other jobs, a spinning
# thread burns the core a descheduled peer needs (many small ops then slow down several-fold). Set
# before torch starts its thread pool; an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from moe_theory import MoE  # noqa: E402

THREADS = 2

# name: sizes and the design targets (ratio to the limit; speed-up over transformers' best).
CONFIGS = {
    "small experts, many": dict(d_model=16, d_hidden=32, n_experts=64, k=2, tokens=4096,
                                max_vs_limit=2.0, min_speedup_vs_transformers=1.5),
    "N=64, k=8, wide": dict(d_model=256, d_hidden=512, n_experts=64, k=8, tokens=2048,
                            max_vs_limit=1.5, min_speedup_vs_transformers=None),
    "Mixtral-like, N=8": dict(d_model=256, d_hidden=512, n_experts=8, k=2, tokens=4096,
                              max_vs_limit=1.15, min_speedup_vs_transformers=1.0),
}
CANDIDATES = ("limit", "limit + router", "moe_theory", "moe_theory sorted", "moe_theory padded",
              "transformers eager", "transformers grouped_mm", "reference")


def _sizes(cfg: dict) -> tuple[int, int, int, int, int]:
    return cfg["d_model"], cfg["d_hidden"], cfg["n_experts"], cfg["k"], cfg["tokens"]


def build(cfg: dict, candidate: str, seed: int = 0):
    """Return ``step()``: one forward+backward of ``candidate`` (gradients reset to None first)."""
    D, H, N, k, T = _sizes(cfg)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if candidate in ("limit", "limit + router"):
        w13 = (torch.rand(2 * H, D, generator=gen) * 2 - 1).div_(D ** 0.5).requires_grad_()
        w2 = (torch.rand(D, H, generator=gen) * 2 - 1).div_(H ** 0.5).requires_grad_()
        x = torch.randn(T * k, D, generator=gen, requires_grad=True)
        gy = torch.randn(T * k, D, generator=gen)
        # "limit + router" adds the one matmul every top-k MoE must do besides its experts: the
        # gate's logits g = x W^T + b on the T tokens, forward and backward (no selection).
        wg = (torch.rand(N, D, generator=gen) * 2 - 1).div_(D ** 0.5).requires_grad_()
        bg = torch.zeros(N, requires_grad=True)
        xg = torch.randn(T, D, generator=gen, requires_grad=True)
        gg = torch.randn(T, N, generator=gen)
        router = candidate == "limit + router"

        def step():
            w13.grad = w2.grad = x.grad = None
            gate, up = F.linear(x, w13).split(H, dim=-1)
            F.linear(F.silu(gate) * up, w2).backward(gy)
            if router:
                wg.grad = bg.grad = xg.grad = None
                F.linear(xg, wg, bg).backward(gg)
        return step
    layer = MoE(D, H, N, k, expert="swiglu", device="cpu", dtype=torch.float32,
                dispatch={"moe_theory sorted": "sorted", "moe_theory padded": "padded"}.get(candidate, "auto"))
    x = torch.randn(T, D, generator=gen, requires_grad=True)
    gy = torch.randn(T, D, generator=gen)
    if candidate.startswith("transformers"):
        block = mixtral_block(layer, candidate.split()[1])
        x3, gy3 = x.detach().view(1, T, D).requires_grad_(), gy.view(1, T, D)

        def step():
            block.zero_grad(set_to_none=True)
            x3.grad = None
            block(x3).backward(gy3)
        return step
    forward = layer.forward_reference if candidate == "reference" else layer.forward

    def step():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        forward(x).backward(gy)
    return step


def mixtral_block(layer: MoE, implementation: str):
    """transformers' ``MixtralSparseMoeBlock`` holding ``layer``'s weights (same function)."""
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
    config = MixtralConfig(hidden_size=layer.d_model, intermediate_size=layer.d_hidden,
                           num_local_experts=layer.n_experts, num_experts_per_tok=layer.k,
                           router_jitter_noise=0.0)
    config._experts_implementation = implementation
    block = MixtralSparseMoeBlock(config)
    with torch.no_grad():
        block.gate.weight.copy_(layer.router.weight)
        block.experts.gate_up_proj.copy_(layer.w13)  # (N, 2H, D): gate rows first, then up
        block.experts.down_proj.copy_(layer.w2)  # (N, D, H)
    return block


def check_same_function(cfg: dict) -> float:
    """Largest |difference| between moe_theory's layer and the Mixtral block on the benchmark input."""
    D, H, N, k, T = _sizes(cfg)
    layer = MoE(D, H, N, k, expert="swiglu", device="cpu", dtype=torch.float32)
    x = torch.randn(min(T, 512), D, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diffs = [float((layer(x) - mixtral_block(layer, impl)(x[None])[0]).abs().max())
                 for impl in ("eager", "grouped_mm")]
    return max(diffs)


def time_candidates(cfg: dict, candidates, rounds: int, slow_every: int) -> dict:
    """Median seconds per forward+backward, interleaving candidates round by round."""
    steps = {c: build(cfg, c) for c in candidates}
    for step in steps.values():  # warm-up
        step()
    times = {c: [] for c in candidates}
    for r in range(rounds):
        for c, step in steps.items():
            if c == "reference" and r % slow_every:
                continue
            start = time.perf_counter()
            step()
            times[c].append(time.perf_counter() - start)
    return {c: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "n": len(t)}
            for c, t in times.items()}


_MEMORY_CHILD = r"""
import gc, json, sys, torch
sys.path.insert(0, {root!r})
torch.set_num_threads({threads})
from benchmarks.bench_moe import CONFIGS, build
step = build(CONFIGS[{name!r}], {cand!r})
step()  # warm-up: kernels, thread pools
step.__closure__  # keep the module alive
import benchmarks.bench_moe as bm
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
gc.collect()
# drop gradients: they are part of what one step allocates
for cell in step.__closure__ or ():
    obj = cell.cell_contents
    if isinstance(obj, torch.nn.Module):
        obj.zero_grad(set_to_none=True)
    elif isinstance(obj, torch.Tensor):
        obj.grad = None
# the block kernel's reused scratch memory counts as part of a step: start without it
import moe_theory._kernels as kernels
kernels._SCRATCH.__dict__.clear()
gc.collect()
before = rss("VmRSS")
open("/proc/self/clear_refs", "w").write("5")
step()
print(json.dumps({{"peak_bytes": rss("VmHWM") - before}}))
"""


def peak_memory(name: str, candidate: str) -> float | None:
    """Peak extra resident memory (bytes) of one forward+backward, in a fresh process."""
    code = _MEMORY_CHILD.format(root=str(HERE.parent), threads=THREADS, name=name, cand=candidate)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0",
           "OMP_NUM_THREADS": str(THREADS)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=HERE.parent)
    if out.returncode:
        print(f"  memory of {candidate!r} failed: {out.stderr.strip().splitlines()[-1:]}")
        return None
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"])


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import transformers
        tv = transformers.__version__
    except ImportError:
        tv = None
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": tv, "torch_threads": THREADS, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "dtype": "float32", "device": "cpu"}


def summarise(name: str, cfg: dict, timing: dict, memory: dict) -> dict:
    med = {c: v["median_s"] for c, v in timing.items()}
    tr = [c for c in med if c.startswith("transformers")]
    best_tr = min(tr, key=med.get) if tr else None
    ours = med["moe_theory"]
    ratios = {"moe_vs_limit": ours / med["limit"],
              "moe_vs_limit_with_router": ours / med["limit + router"] if "limit + router" in med else None,
              "transformers_best": best_tr,
              "speedup_vs_transformers": med[best_tr] / ours if best_tr else None,
              "speedup_vs_reference": med["reference"] / ours if "reference" in med else None}
    met = {"vs_limit": ratios["moe_vs_limit"] <= cfg["max_vs_limit"]}
    if cfg["min_speedup_vs_transformers"] is not None and best_tr:
        met["vs_transformers"] = ratios["speedup_vs_transformers"] >= cfg["min_speedup_vs_transformers"]
    return {"config": {k: v for k, v in cfg.items()}, "timing": timing, "peak_memory_bytes": memory,
            "ratios": ratios, "targets_met": met}


def print_table(name: str, res: dict) -> None:
    timing, mem, r = res["timing"], res["peak_memory_bytes"], res["ratios"]
    limit = timing["limit"]["median_s"]
    ours = timing["moe_theory"]["median_s"]
    print(f"\n{name}: " + ", ".join(f"{k}={v}" for k, v in res["config"].items()))
    print(f"  {'candidate':26s} {'median ms':>10s} {'min ms':>9s} {'n':>3s} {'/limit':>7s} {'/ours':>7s} {'peak MB':>8s}")
    for c, t in timing.items():
        m = mem.get(c)
        print(f"  {c:26s} {1e3 * t['median_s']:10.2f} {1e3 * t['min_s']:9.2f} {t['n']:3d} "
              f"{t['median_s'] / limit:7.2f} {t['median_s'] / ours:7.2f} "
              f"{'-' if m is None else f'{m / 2**20:8.1f}':>8s}")
    sp = r["speedup_vs_transformers"]
    if r.get("moe_vs_limit_with_router") is not None:
        print(f"  moe_theory / (limit + router) = {r['moe_vs_limit_with_router']:.2f} (for information)")
    print(f"  moe_theory / limit = {r['moe_vs_limit']:.2f} (target <= {res['config']['max_vs_limit']}); "
          f"speed-up vs {r['transformers_best']} = {sp:.2f}; vs reference = {r['speedup_vs_reference']:.1f}; "
          f"targets met: {res['targets_met']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few rounds, no memory measurement (a smoke run)")
    parser.add_argument("--save", action="store_true", help="write benchmarks/results.json")
    parser.add_argument("--out", default=str(HERE / "results.json"), help="where --save writes")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), help="subset of configuration names")
    parser.add_argument("--merge", action="store_true",
                        help="with --save: keep the other configurations already in the results file")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per configuration (default 15, quick 3; wide configurations 3/5 of it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    rounds = args.rounds or (3 if args.quick else 15)
    results = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "rounds": rounds,
               "load_before": os.getloadavg(), "configs": {}}
    print(f"bench_moe: {results['machine']['cpu']}, torch {torch.__version__}, {THREADS} threads; "
          f"load average {results['load_before']}")
    for name in args.configs:
        cfg = CONFIGS[name]
        load0 = os.getloadavg()
        diff = check_same_function(cfg)
        small = cfg["d_model"] * cfg["n_experts"] < 4096
        slow_every = 1 if small else 3  # the reference loop: every third round in the wide configurations
        timing = time_candidates(cfg, CANDIDATES, rounds if small else max(3, (rounds * 3) // 5), slow_every)
        memory = {} if args.quick else {c: peak_memory(name, c) for c in CANDIDATES}
        res = summarise(name, cfg, timing, memory)
        res["load_during"] = [load0, os.getloadavg()]
        res["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
        res["max_abs_diff_vs_transformers"] = diff
        results["configs"][name] = res
        print_table(name, res)
        print(f"  load average before/after: {load0} / {res['load_during'][1]}; "
              f"|moe_theory - Mixtral block| = {diff:.1e}")
    results["load_after"] = os.getloadavg()
    if args.save:
        if args.merge and Path(args.out).exists():
            old = json.loads(Path(args.out).read_text())
            merged = {**old.get("configs", {}), **results["configs"]}
            results["configs"] = {name: merged[name] for name in CONFIGS if name in merged}
            results["merged_from"] = old.get("started")
        Path(args.out).write_text(json.dumps(results, indent=1))
        print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
