"""moe_theory.performance: the appendix's tables come from the saved benchmark file, unchanged."""

import json

import pytest

from moe_theory import performance as perf


def test_tables_show_the_saved_ratios_and_times():
    results = perf.load_benchmark_results()
    ratios = perf.ratio_table(results)
    assert [row[0] for row in ratios.rows] == list(results["configs"])
    for row, res in zip(ratios.rows, results["configs"].values()):
        assert row[2] == f"{res['ratios']['moe_vs_limit']:.2f}"
        assert row[4] == f"{res['ratios']['speedup_vs_transformers']:.2f}"
    name = next(iter(results["configs"]))
    timing = perf.timing_table(results, name)
    limit = results["configs"][name]["timing"]["limit"]["median_s"]
    by_label = {row[0]: row for row in timing.rows}
    for cand, t in results["configs"][name]["timing"].items():
        assert by_label[perf.LABELS[cand]][2] == f"{t['median_s'] / limit:.2f}"
    assert "torch" in perf.machine_summary(results) and "tokens" in perf.config_line(results, name)


def test_plot_and_auto_choices_on_a_small_saved_file(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    results = perf.load_benchmark_results()
    name = next(iter(results["configs"]))
    tiny = {**results, "configs": {name: {**results["configs"][name],
                                          "config": {**results["configs"][name]["config"], "tokens": 8}}}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(tiny))
    loaded = perf.load_benchmark_results(path)
    ax = perf.plot_ratios(loaded)
    assert ax.get_ylabel() == "time / limit (log scale)" and len(ax.patches) > 0
    assert perf.auto_dispatch_choices(loaded, device="cpu") == {name: "dense"}  # 8 tokens: a tiny layer


def test_performance_rejects_a_missing_file_and_an_unknown_configuration(tmp_path):
    with pytest.raises(FileNotFoundError, match="no benchmark results at .*run_all.py --save"):
        perf.load_benchmark_results(tmp_path / "missing.json")
    results = perf.load_benchmark_results()
    with pytest.raises(ValueError, match="name must be one of .*got name='nope'"):
        perf.timing_table(results, "nope")


def test_population_table_reads_the_saved_population_benchmark():
    from moe_theory import performance as perf

    res = perf.load_population_results()
    table = perf.population_table(res)
    assert f"{res['speedup']:.1f}x" in table.markdown
    ratio = res["ms_per_member_step_sequential"] / res["ms_per_member_step_population"]
    assert abs(ratio - res["speedup"]) < 1e-6 * ratio  # the saved ratio is the two saved times' ratio


def test_population_table_bad_input():
    from moe_theory import performance as perf

    with pytest.raises(ValueError, match="population benchmark with a 'P' entry"):
        perf.population_table({"speedup": 2.0})


def test_chapter_loops_table_reads_the_saved_benchmark_of_the_three_chapters(tmp_path):
    from moe_theory import performance as perf

    res = perf.load_chapter_loops_results()
    assert [r["chapter"] for r in res["rows"]] == ["bayes", "coherence", "discontinuity"]
    md = perf.chapter_loops_table(res).markdown
    for r in res["rows"]:
        assert f"{r['sequential_s'] / r['population_s']:.1f}x" in md
    with pytest.raises(ValueError, match="chapter-loops benchmark with a 'rows' entry"):
        perf.chapter_loops_table({"speedup": 2.0})
    with pytest.raises(FileNotFoundError, match="bench_chapter_loops.py --save"):
        perf.load_chapter_loops_results(tmp_path / "missing.json")


def test_sweep_time_reads_the_saved_sweep_and_rejects_an_unfinished_one(tmp_path):
    from moe_theory.performance import sweep_time

    t = sweep_time()
    assert t["runs"] == t["cells"] * t["seeds"] and t["wall_minutes"] > 0 and t["jobs"] >= 1
    (tmp_path / "x.json").write_text('{"results": []}')
    with pytest.raises(ValueError, match="not a finished Experiment I sweep"):
        sweep_time(tmp_path / "x.json")
    with pytest.raises(FileNotFoundError, match="no saved sweep"):
        sweep_time(tmp_path / "missing.json")
