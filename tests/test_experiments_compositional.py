"""Experiment II (moe_theory.experiments.compositional): the command, the summary, the saved results."""

import json
from dataclasses import replace

import numpy as np
import pytest

from moe_theory.experiments import compositional as exp2

TINY = replace(exp2.QUICK, widths=(4,), models=("2-3-MoE", "dense"), seeds=(0, 1, 2, 3, 4), steps=3, n_test_side=6)


def test_command_writes_results_in_the_documented_format(tmp_path):
    out = tmp_path / "exp2.json"
    assert exp2.main(["--quick", "--widths", "4", "--steps", "3", "--seeds", "5", "--models", "2-3-MoE", "dense",
                      "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["seeds"] == [0, 1, 2, 3, 4] and data["config"]["steps"] == 3
    assert out.with_suffix(".png").exists() and not out.with_suffix(".partial.json").exists()
    for row in data["results"]:
        assert {"model", "m", "test_mse", "test_mse_min", "test_mse_max", "train_mse", "per_seed"} <= set(row)
        per = [r["test_mse"] for r in row["per_seed"]]
        assert row["test_mse"] == pytest.approx(np.median(per)) and row["test_mse_min"] == min(per)
    moe = next(r for r in data["results"] if r["model"] == "2-3-MoE")
    assert len(moe["per_seed"][0]["routing_map"]) == exp2.MAP_SIDE ** 2
    assert "compositional_fraction" in moe


def test_summarise_reports_stalls_and_best_of_restarts_chosen_by_training_loss():
    recs = [{"test_mse": t, "train_mse": tr} for t, tr in
            [(5.0, 1.0), (2.0, 0.05), (3.0, 0.5), (4.0, 2.0), (6.0, 3.0),
             (1.0, 0.9), (9.0, 0.2), (8.0, 0.3), (7.0, 0.4), (6.5, 0.6)]]
    s = exp2.summarise(recs, replace(exp2.Exp2Config(), restarts=5, stall_factor=10.0))
    # best by *training* loss: group 1 -> seed 1 (test 2.0), group 2 -> seed 6 (test 9.0, not the best test)
    assert s["best_of_restarts"]["groups"] == 2
    assert s["best_of_restarts"]["test_mse"] == pytest.approx(5.5)
    assert s["best_of_restarts"]["test_mse_max"] == 9.0
    assert s["stalled_fraction"] == pytest.approx(0.5)  # train > 10 * 0.05 = 0.5: 5 of 10
    assert s["test_mse"] == pytest.approx(5.5) and s["test_mse_min"] == 1.0


def test_merged_parts_equal_one_run_of_the_union(tmp_path):
    both = exp2.run_experiment(TINY, log=None)
    a = exp2.run_experiment(replace(TINY, models=("dense",)), log=None)
    b = exp2.run_experiment(replace(TINY, models=("2-3-MoE",)), log=None)
    merged = exp2.merge_results([a, b])
    assert [r["model"] for r in merged["results"]] == ["2-3-MoE", "dense"]
    for r, s in zip(merged["results"], both["results"]):
        assert [x["test_mse"] for x in r["per_seed"]] == [x["test_mse"] for x in s["per_seed"]]
    with pytest.raises(ValueError, match="must not repeat a"):
        exp2.merge_results([a, a])
    with pytest.raises(ValueError, match="same configuration and seeds apart from models and widths"):
        exp2.merge_results([a, exp2.run_experiment(replace(TINY, models=("2-3-MoE",), steps=2), log=None)])
    out = tmp_path / "m.json"
    (tmp_path / "a.json").write_text(json.dumps(a)); (tmp_path / "b.json").write_text(json.dumps(b))
    assert exp2.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(out)]) == 0
    assert "merged with --merge" in json.loads(out.read_text())["command"]


def test_bad_input_is_rejected():
    with pytest.raises(TypeError, match="cfg must be an Exp2Config"):
        exp2.run_experiment({"steps": 3})
    with pytest.raises(ValueError, match="model_name must be one of"):
        exp2.run_cell(TINY, "3-3-MoE", 4)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        exp2.load_results("/nonexistent/exp2.json")


@pytest.mark.skipif(not exp2.RESULTS_PATH.exists(), reason="the full results are not generated yet")
def test_committed_results_are_the_full_sweep():
    data = exp2.load_results()
    assert len(data["seeds"]) >= 20
    cells = {(r["model"], r["m"]) for r in data["results"]}
    for model in ("2-3-MoE", "1-6-MoE", "2-1-stack", "dense"):
        for m in (16, 32, 64, 128):
            assert (model, m) in cells
    for row in data["results"]:
        assert len(row["per_seed"]) == len(data["seeds"])
        per = [r["test_mse"] for r in row["per_seed"]]
        assert row["test_mse"] == pytest.approx(np.median(per))
        assert row["test_mse_min"] <= row["test_mse"] <= row["test_mse_max"]
        if "compositional_fraction" in row:
            assert all(1 <= r["paths"] <= 9 for r in row["per_seed"])  # at most N^L = 9 paths
    assert data["command"].startswith("python -m moe_theory.experiments.compositional")
