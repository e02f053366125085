"""Experiment I: model helpers, population = single runs, the transplant check, statistics, command."""

import itertools
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from moe_theory import fit_regressor
from moe_theory.experiments import manifold as exp
from moe_theory.experiments.manifold import (SPREAD, evaluate_circle, init_experts_from_data, init_first_layer_spread,
                                             init_router_from_data, make_regressor, train_circle_regressor)
from moe_theory.manifold import (circle_embedding, circle_target, count_parameters, equal_parameter_width,
                                 expert_assignment, sample_circle)

TINY = replace(exp.Exp1Config(), steps=60, seeds=(0, 1, 2), batch_size=64, n_test=256, dtype="float64", revive_dead=())


def test_top1_moe_output_is_the_selected_expert_with_weight_one():
    layer = make_regressor("moe", 16, seed=0, weighting="renormalized", dtype=torch.float64)
    x = torch.as_tensor(sample_circle(200, circle_embedding(16), seed=1)[0])
    y, routing = layer(x, return_routing=True)
    assert torch.equal(routing.weights, torch.ones_like(routing.weights))
    sel = torch.stack([layer.expert(int(i), x[n:n + 1])[0] for n, i in enumerate(routing.indices[:, 0])])
    assert torch.allclose(y, sel, atol=1e-12)


def test_make_regressor_is_seeded_bias_free_and_counts_parameters():
    a = make_regressor("moe", 32, seed=3)
    b = make_regressor("moe", 32, seed=3)
    state = torch.random.get_rng_state()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert torch.equal(state, torch.random.get_rng_state())  # the global generator is untouched
    assert a.router.bias is None  # the paper's gate g = W_R x
    assert count_parameters(a) == 4 * 32 + 4 * (10 * 34 + 1)
    dense = make_regressor("dense", 32, width=equal_parameter_width(32), seed=0)
    assert abs(count_parameters(dense) - count_parameters(make_regressor("moe", 32, seed=0, router_bias=True))) <= 34
    with pytest.raises(ValueError, match="kind must be one of"):
        make_regressor("cnn", 8, seed=0)
    with pytest.raises(ValueError, match="width must be >= 1"):
        make_regressor("moe", 8, width=0, seed=0)
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= n_experts \(= 4\), got k=5"):
        make_regressor("moe", 8, k=5, seed=0)


def test_circle_target_numpy_and_torch_are_one_function():
    theta = np.linspace(0, 2 * np.pi, 50)
    np.testing.assert_allclose(circle_target(torch.as_tensor(theta)).numpy(), circle_target(theta), rtol=0, atol=0)


def test_trained_moe_learns_the_circle_target_at_small_and_large_D(one_thread):
    for D in (16, 128):
        Q = circle_embedding(D, "random", seed=D)
        model = make_regressor("moe", D, seed=0)
        init_router_from_data(model, sample_circle(64, Q, seed=1)[0])
        before = evaluate_circle(model, Q, n_test=512)["test_mse"]
        res = train_circle_regressor(model, Q, steps=200, lr=1e-2, seed=0)
        ev = evaluate_circle(model, Q, n_test=512)
        assert ev["test_mse"] < 0.2 * before and len(res.losses) == 200
        assert math.isclose(sum(ev["load_fraction"]), 1.0) and ev["dead_experts"] == 0
        assert len(np.unique(expert_assignment(model, Q, np.linspace(0, 2 * np.pi, 400, endpoint=False)))) == 4


def test_run_cell_population_equals_run_one_for_every_seed(one_thread):
    for kind, emb in (("moe", "random"), ("dense-total", "axis")):
        recs = exp.run_cell(TINY, kind, emb, 8)
        for s, rec in zip(TINY.seeds, recs):
            single = exp.run_one(TINY, kind, emb, 8, s)
            assert math.isclose(rec["test_mse"], single["test_mse"], rel_tol=1e-8)
            assert math.isclose(rec["final_train_mse"], single["final_train_mse"], rel_tol=1e-8)


def test_axis_embedding_transplant_reproduces_the_small_D_run(one_thread):
    """For the axis embedding D enters training only through the initial weights: a D = 128 model
    whose weights on the two data columns are a D = 16 model's (other columns zero) trains identically."""
    small = make_regressor("moe", 16, seed=5, dtype=torch.float64)
    init_router_from_data(small, sample_circle(64, circle_embedding(16), seed=1)[0])
    big = exp.transplant_axis_model(small, 128)
    assert float(next(big.parameters()).detach()[..., 2:].abs().sum()) == 0.0
    runs = [train_circle_regressor(m, circle_embedding(m.d_model), steps=80, lr=1e-2, batch_size=64, seed=3,
                                   dtype=torch.float64) for m in (small, big)]
    np.testing.assert_allclose(runs[0].losses, runs[1].losses, rtol=1e-10)
    x = torch.as_tensor(sample_circle(100, circle_embedding(16), seed=2)[0])
    x_big = torch.cat([x, x.new_zeros(100, 112)], 1)
    torch.testing.assert_close(small(x), big(x_big), rtol=1e-10, atol=1e-12)
    with pytest.raises(TypeError, match="model must be an MoE"):
        exp.transplant_axis_model(torch.nn.Linear(16, 1), 128)


@pytest.mark.parametrize("embedding", ["axis", "random"])
def test_spread_init_makes_first_layer_outputs_independent_of_D(embedding):
    for kind, D in itertools.product(("moe", "dense"), (16, 128)):
        Q = circle_embedding(D, embedding, seed=1)
        data = sample_circle(256, Q, seed=2)[0]
        model = make_regressor(kind, D, seed=0, dtype=torch.float64)
        c = init_first_layer_spread(model, data)
        W, b = exp._first_layer(model)[0]
        pre = torch.einsum("td,...hd->...th", torch.as_tensor(data), W) + b[..., None, :]
        assert math.isclose(float(pre.detach().std()), SPREAD, rel_tol=1e-12)
        assert 0.3 * math.sqrt(D / 2) < c < 3 * math.sqrt(D / 2)  # PyTorch's scale on the data is ~ 1/sqrt(D)
    with pytest.raises(ValueError, match="spread must be > 0"):
        init_first_layer_spread(model, data, spread=0)
    with pytest.raises(TypeError, match="model must be an MoE or an nn.Sequential"):
        init_first_layer_spread(torch.nn.Linear(4, 1), data)


def test_expert_init_from_data_puts_every_kink_on_the_experts_arc():
    Q = circle_embedding(16, "random", seed=0)
    data = sample_circle(256, Q, seed=1)[0]
    model = make_regressor("moe", 16, seed=0, dtype=torch.float64)
    init_router_from_data(model, data)
    init_experts_from_data(model, data, seed=0)
    ev = evaluate_circle(model, Q, n_test=2048, dtype=torch.float64)
    assert ev["dead_units"] == 0
    with pytest.raises(TypeError, match="model must be an MoE"):
        init_experts_from_data(torch.nn.Linear(16, 1), data, seed=0)


def test_best_of_r_matches_brute_force_over_all_subsets():
    rng = np.random.default_rng(0)
    train, test = rng.random(9), rng.random(9)
    vals, prob = exp.best_of_r(train, test, 4)
    assert math.isclose(prob.sum(), 1.0)
    brute = {}
    for sub in itertools.combinations(range(9), 4):
        j = min(sub, key=lambda i: train[i])
        brute[test[j]] = brute.get(test[j], 0) + 1 / math.comb(9, 4)
    for v, p in zip(vals, prob):
        assert math.isclose(brute.get(v, 0.0), p, abs_tol=1e-12)
    with pytest.raises(ValueError, match="r must satisfy 1 <= r <= 9"):
        exp.best_of_r(train, test, 10)


def test_summarise_counts_stalls_against_ten_times_the_best():
    recs = [{"test_mse": v, "final_train_mse": v, "sup_error": 1.0} for v in (1e-4, 2e-4, 5e-4, 2e-3, 5e-2)]
    s = exp.summarise(recs, restarts=2)
    assert s["stalled_fraction"] == pytest.approx(0.4) and s["test_mse_median_not_stalled"] == pytest.approx(2e-4)
    assert s["test_mse_min"] <= s["best_of_r_median"] <= s["test_mse_median"]
    assert s["test_mse_ci90"][0] <= s["test_mse_median"] <= s["test_mse_ci90"][1]


def test_training_helpers_reject_bad_input():
    model = make_regressor("moe", 8, seed=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        train_circle_regressor(model, circle_embedding(8), batch_size=0, seed=0)
    with pytest.raises(ValueError, match=r"Q must have orthonormal columns"):
        train_circle_regressor(model, np.ones((8, 2)), seed=0)
    with pytest.raises(ValueError, match="x must have at least n_experts"):
        init_router_from_data(model, np.ones((2, 8)))
    with pytest.raises(TypeError, match="model must be an MoE"):
        init_router_from_data(torch.nn.Linear(8, 1), np.ones((8, 8)))
    with pytest.raises(TypeError, match="model must be an MoE"):
        expert_assignment(torch.nn.Linear(8, 1), circle_embedding(8), np.zeros(3))
    with pytest.raises(ValueError, match="n_test must be >= 1"):
        evaluate_circle(model, circle_embedding(8), n_test=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        exp.circle_sampler([circle_embedding(8)], 0)
    with pytest.raises(ValueError, match="fit_regressor needs either x and y or a sampler"):
        fit_regressor(model)


def test_experiment_command_writes_the_schema_and_resumes(tmp_path, one_thread):
    out = tmp_path / "exp1.json"
    args = ["--quick", "--steps", "5", "--seeds", "3", "--dims", "4", "8", "--out", str(out)]
    assert exp.main(args) == 0
    data = json.loads(out.read_text())
    assert data["config"]["steps"] == 5 and data["wall_seconds"] > 0
    rows = data["results"]
    assert {(r["D"], r["kind"]) for r in rows} == {(4, "moe"), (8, "moe")}
    for r in rows:
        assert {"model", "embedding", "D", "test_mse", "stalled_fraction", "best_of_r_median", "per_seed"} <= set(r)
        assert len(r["per_seed"]) == 3
    assert {t["kind"] for t in data["rank_tests"]} == {"moe"}
    assert out.with_suffix(".png").stat().st_size > 1000
    table = exp.results_table(data).markdown  # one model: no model column
    assert table.startswith("| embedding | D | median test MSE") and table.count("\n") == 3
    data["results"].append({**data["results"][0], "kind": "dense-total", "model": "dense-total"})
    assert "| model |" in exp.results_table(data).markdown
    with pytest.raises(FileNotFoundError, match="does not exist"):
        exp.load_results(tmp_path / "missing.json")
    with pytest.raises(TypeError, match="cfg must be an Exp1Config"):
        exp.run_experiment({})
    with pytest.raises(ValueError, match="kind must be one of"):
        exp.run_one(exp.QUICK, "cnn", "axis", 4, 0)


def test_committed_results_have_the_required_schema():
    data = exp.load_results()
    assert len(data["seed"]) >= 30 and data["config"]["dims"] == [16, 32, 64, 128]
    assert data["config"]["router_bias"] is False
    cells = {(r["model"], r["embedding"], r["D"]) for r in data["results"]}
    assert {("1-4-MoE", e, D) for e in ("axis", "random") for D in (16, 32, 64, 128)} <= cells
    for r in data["results"]:
        assert len(r["per_seed"]) == len(data["seed"])
        assert r["test_mse_min"] <= r["test_mse_median"] <= r["test_mse_max"]
        assert r["test_mse"] == r["best_of_r_median"]


def test_experiment_command_resumes_from_its_records(tmp_path, one_thread):
    out = tmp_path / "exp1.json"
    records = out.with_suffix(".records.jsonl")
    args = ["--quick", "--steps", "5", "--seeds", "2", "--dims", "4", "--out", str(out)]
    exp.main(["--recorded-only", *args])  # writes the settings stamp, trains nothing
    assert json.loads(out.read_text())["results"] == []
    first = exp.run_cell(replace(exp.QUICK, steps=5, seeds=(0, 1)), "moe", "random", 4, records_path=records)
    stamp = out.with_suffix(".records.config.json")
    stamp.write_text(json.dumps({k: v for k, v in json.loads(json.dumps(exp.asdict(replace(exp.QUICK, steps=5))))
                                 .items() if k not in ("dims", "embeddings", "kinds", "seeds")}))
    assert exp.main(["--recorded-only", *args]) == 0  # the records survive the settings check
    (row,) = json.loads(out.read_text())["results"]
    assert [r["test_mse"] for r in row["per_seed"]] == [r["test_mse"] for r in first]


@pytest.mark.parametrize("D", [16, 128])
def test_prop_mfd_axis_spread_rescaled_weights_do_not_depend_on_the_initial_scale(D):
    """prop-mfd-axis-spread: after init_first_layer_spread the first layer on the data is the same
    whatever the initial scale a (PyTorch's a = 1/sqrt(D)); with the transplant test (columns 3..D never
    matter) this makes the axis-aligned experiment's law independent of D."""
    Q = circle_embedding(D, "axis")
    data = sample_circle(256, Q, seed=2)[0]
    out = []
    for a in (1.0, 1 / math.sqrt(D), 7.3):
        model = make_regressor("moe", D, seed=0, dtype=torch.float64)
        W, b = exp._first_layer(model)[0]
        with torch.no_grad():
            W.mul_(a)
            b.mul_(a)
        init_first_layer_spread(model, data)
        out.append(torch.cat([W.detach()[..., :2].reshape(-1), b.detach().reshape(-1)]))
    torch.testing.assert_close(out[0], out[1], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(out[0], out[2], rtol=1e-12, atol=1e-14)


def test_committed_variants_are_the_configured_ones_with_their_settings():
    variants = json.loads(exp.VARIANTS_PATH.read_text())
    assert set(variants) == set(exp.VARIANTS)
    for name, over in exp.VARIANTS.items():
        data = variants[name]
        cfg = json.loads(json.dumps(exp.asdict(replace(exp.Exp1Config(), **over))))
        for key in ("steps", "init", "expert_init", "warmup_steps", "router_noise", "revive_dead", "seeds"):
            assert data["config"][key] == cfg[key], (name, key)
        cells = {(e, D) for e in over.get("embeddings", ("random",)) for D in over.get("dims", (16, 128))}
        assert {(r["embedding"], r["D"]) for r in data["results"]} == cells
        assert data["command"].endswith(f"--variants '{name}'")
        for r in data["results"]:
            assert 0.0 <= r["stalled_fraction"] <= 1.0 and len(r["per_seed"]) == len(data["seed"])


def test_compare_table_counts_stalls_against_the_baseline_best():
    def sweep(tests):
        per = [{"test_mse": t, "final_train_mse": t} for t in tests]
        return {"results": [{"kind": "moe", "embedding": "random", "D": 16, "per_seed": per, "test_mse_min": min(tests),
                             "test_mse_median": float(np.median(tests)), "best_of_r_median": min(tests),
                             "train_mse_median": float(np.median(tests))}]}
    base, better = sweep([1.0, 2.0, 50.0]), sweep([0.01, 2.0, 50.0])
    got = exp.stalled_against({"base": base, "better": better}, "base")
    assert got[("base", "random", 16)]["stalled"] == pytest.approx(1 / 3)
    assert got[("better", "random", 16)]["stalled"] == pytest.approx(1 / 3)  # not 2/3: fixed threshold 10
    html = exp.compare_table({"base": base, "better": better}, baseline="base").markdown
    assert html.count("33%") == 2 and "| embedding |" not in html  # one embedding: no column
    with pytest.raises(ValueError, match="baseline must be one of"):
        exp.compare_table({"base": base}, baseline="other")


def test_parallel_jobs_give_the_numbers_of_one_process(one_thread):
    cfg = replace(TINY, steps=20, seeds=(0, 1), dims=(4, 8), embeddings=("random",), kinds=("moe",))
    one = exp.run_experiment(cfg, log=None)
    two = exp.run_experiment(cfg, log=None, jobs=2)
    for a, b in zip(one["results"], two["results"]):
        assert (a["D"], a["kind"]) == (b["D"], b["kind"])
        assert [s["test_mse"] for s in a["per_seed"]] == [s["test_mse"] for s in b["per_seed"]]
    with pytest.raises(ValueError, match="jobs > 1 cannot return trained models"):
        exp.run_experiment(cfg, jobs=2, models={})


def test_restrict_keeps_the_chosen_runs_and_recomputes_their_statistics():
    per = [{"seed": s, "test_mse": t, "final_train_mse": t, "sup_error": 1.0} for s, t in enumerate([1.0, 2.0, 3.0, 40.0])]
    data = {"config": {"restarts": 5}, "results": [{"kind": "moe", "embedding": "random", "D": 16, "per_seed": per},
                                                   {"kind": "dense-total", "embedding": "random", "D": 16, "per_seed": per}]}
    sub = exp.restrict(data, seeds=(0, 3))
    (row,) = sub["results"]
    assert [s["seed"] for s in row["per_seed"]] == [0, 3] and sub["seed"] == [0, 3]
    assert row["test_mse_median"] == pytest.approx(20.5) and row["stalled_fraction"] == 0.5
    assert row["best_of_r_median"] == 1.0  # r = min(5, 2): both runs, the one of least training loss
    with pytest.raises(ValueError, match="no run of the cell"):
        exp.restrict(data, seeds=(9,))


def _variants():
    return json.loads(exp.VARIANTS_PATH.read_text())


def test_obs_mfd_best_of_5_flat_in_d():
    """obs-mfd-best-of-5-flat-in-d: in the saved sweep (dead units revived) the median best of 5
    restarts by training loss varies by less than 1.5x over D = 16..128 in each embedding, and stays
    within 5x of the paper's order 1e-4."""
    data = exp.load_results()
    assert data["config"]["revive_dead"] == list(exp.REVIVE_STEPS)
    for emb in ("axis", "random"):
        b5 = [r["best_of_r_median"] for r in data["results"] if r["kind"] == "moe" and r["embedding"] == emb]
        assert len(b5) == 4
        assert max(b5) / min(b5) < 1.5, (emb, b5)
        assert max(b5) < 5e-4, (emb, b5)


def test_obs_mfd_reviving_dead_units_removes_most_stalls():
    """obs-mfd-reviving-dead-units-removes-most-stalls: against the fixed thresholds of the run
    without a remedy, reviving dead units at least halves the stalled fraction at D = 16 and 128
    (random embedding), and it has the fewest stalls by training error of the remedies tried."""
    variants = _variants()
    pair = dict(embedding="random", dims=(16, 128))
    compared = {"no remedy": exp.restrict(variants["no remedy"], **pair),
                **{v: variants[v] for v in ("kinks on data", "warm-up", "router noise")},
                "dead units revived": exp.restrict(exp.load_results(), **pair)}
    frac = exp.stalled_against(compared, "no remedy")
    for D in (16, 128):
        assert frac[("dead units revived", "random", D)]["stalled"] <= 0.5 * frac[("no remedy", "random", D)]["stalled"]
    train = {v: np.mean([frac[(v, "random", D)]["stalled_train"] for D in (16, 128)]) for v in compared if v != "no remedy"}
    assert min(train, key=train.get) == "dead units revived", train


def test_run_cell_revives_dead_units_at_the_configured_steps_only(one_thread):
    recs = exp.run_cell(replace(TINY, revive_dead=(10, 20, 500)), "moe", "random", 8)  # 500 > steps: dropped
    assert all("revived_units" in r and r["revived_units"] >= 0 for r in recs)
    plain = exp.run_cell(TINY, "moe", "random", 8)
    assert all("revived_units" not in r for r in plain)
    assert exp.Exp1Config().revive_dead == exp.REVIVE_STEPS
