"""Benchmark run bookkeeping (curves, summary) and the CLI's bad-input paths (no Ray needed)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_benchmark_table import data_start, make_table, rewrite  # same folder (pytest prepends it to sys.path)

from hytnas.benchmark.run import RunSpec, TimedSearcher, format_summary, summarize
from hytnas.cli import main
from hytnas.errors import ConfigError
from hytnas.mo import curve_of, true_front
from hytnas.objectives import get_objectives

OBJS = get_objectives(["val_accuracy", "latency_ms"])


def test_curve_counts_every_evaluation_and_pads_an_early_end():
    ref = torch.tensor([0.5, -10.0], dtype=torch.float64)
    results = [
        {"val_accuracy": 0.6, "latency_ms": 5.0, "done": True},
        {"error": True},  # a failed trial is an evaluation that adds nothing
        {"val_accuracy": 0.9, "latency_ms": 2.0},  # not final (no done): adds nothing
        {"val_accuracy": 0.7, "latency_ms": 1.0, "done": True},
    ]
    curve = curve_of(results, OBJS, ref, budget=6)
    first = (0.6 - 0.5) * (10 - 5)
    both = first + (0.7 - 0.5) * (10 - 1) - (0.6 - 0.5) * (10 - 5)
    assert curve == pytest.approx([first, first, first, both, both, both])
    assert curve_of([], OBJS, ref, budget=2) == [0.0, 0.0]


def test_summary_milestones_and_targets():
    doc = {"true_hypervolume": 2.0, "budget": 60, "seeds": 2, "runs": {
        "a": {"0": {"curve": [1.0] * 49 + [1.9] * 10 + [2.0]}, "1": {"curve": [0.5] * 60}},
        "b": {"0": {"curve": [2.0] * 60}},
    }}
    rows = {r["searcher"]: r for r in summarize(doc)}
    assert rows["a"]["hv@50"] == pytest.approx((0.95 + 0.25) / 2)
    assert rows["a"]["hv@50_std"] == pytest.approx(math.sqrt(2) * 0.35)
    assert rows["a"]["evals_to_95%"] == 50 and rows["a"]["reached_95%"] == 1
    assert rows["a"]["evals_to_99%"] == 60 and rows["a"]["reached_99%"] == 1
    assert rows["a"]["hv@60"] == pytest.approx((1.0 + 0.25) / 2)  # the budget itself is a milestone
    assert "hv@100" not in rows["a"]
    assert rows["b"]["evals_to_95%"] == 1 and rows["b"]["hv@50_std"] == 0.0
    text = format_summary(list(rows.values()), doc)
    assert "| searcher | seeds | HV@50 | HV@60 | evals to 95% | evals to 99% |" in text
    assert "| a | 2 | 0.6000 ± 0.4950 | 0.6250 ± 0.5303 | 50 (1/2) | 60 (1/2) |" in text


def test_summary_counts_the_true_pareto_archs_found():
    ids = [f"x{i}" for i in range(120)]
    doc = {"true_hypervolume": 1.0, "budget": 120, "seeds": 2, "true_front_arch_ids": ["x3", "x70", "x110", "y"],
           "runs": {"s": {"0": {"curve": [1.0] * 120, "arch_ids": ids},
                          "1": {"curve": [1.0] * 120, "arch_ids": list(reversed(ids))}}}}
    (row,) = summarize(doc)
    assert row["front_found@50"] == pytest.approx((1 / 4 + 2 / 4) / 2)  # x3 | x110, x70 (x119..x70)
    assert row["front_found@100"] == pytest.approx((2 / 4 + 2 / 4) / 2)  # x3, x70 | x110, x70
    assert "| true front found @50 | true front found @100 |" in format_summary([row], doc)
    assert format_summary([row], doc).rstrip().endswith("| 38% | 50% |")


def test_summary_reports_suggestion_times_when_runs_have_them():
    doc = {"true_hypervolume": 1.0, "budget": 4, "seeds": 2, "runs": {
        "timed": {"0": {"curve": [1.0] * 4, "suggest_s": [0.1, 0.3]}, "1": {"curve": [1.0] * 4, "suggest_s": [0.2, 5.0]}},
        "old": {"0": {"curve": [1.0] * 4}},  # a run written before suggestions were timed
    }}
    rows = {r["searcher"]: r for r in summarize(doc)}
    assert rows["timed"]["median_suggest_s"] == pytest.approx(0.25)
    assert rows["timed"]["p95_suggest_s"] == pytest.approx(0.3)  # sorted [0.1, 0.2, 0.3, 5.0][int(0.95 * 3)]
    assert math.isnan(rows["old"]["median_suggest_s"])
    text = format_summary(list(rows.values()), doc)
    assert text.splitlines()[0].endswith("| median s/suggest | p95 s/suggest |")
    assert text.splitlines()[2].endswith("| 0.250 | 0.300 |") and text.splitlines()[3].endswith("| n/a | n/a |")
    untimed = format_summary([rows["old"]], doc)
    assert "s/suggest" not in untimed


def test_timed_searcher_times_only_the_suggestions_that_gave_a_trial():
    from ray.tune.search import Searcher

    class Script(Searcher):
        def __init__(self):
            super().__init__(metric="m", mode="max")
            self.answers = [{"x": 1}, None, {"x": 2}, Searcher.FINISHED]

        def suggest(self, trial_id):
            return self.answers.pop(0)

        def on_trial_complete(self, trial_id, result=None, error=False):
            pass

    t = TimedSearcher(Script())
    assert t.suggest("a") == {"x": 1}
    t.on_trial_complete("a", {"m": 1.0})
    assert t.suggest("b") is None and t.suggest("c") == {"x": 2}
    t.on_trial_complete("c", {"m": 1.0})
    assert t.suggest("d") == Searcher.FINISHED
    assert len(t.suggest_s) == 2 and all(v >= 0 for v in t.suggest_s)


def test_curve_of_a_whole_table_ends_at_the_true_hypervolume(tmp_path):
    _, rows = make_table(tmp_path / "t.csv.gz", n=20, seed=4)
    Y = torch.tensor([[r["val_accuracy"], r["latency_ms"]] for r in rows], dtype=torch.float64)
    tf = true_front(Y, OBJS)
    results = [{**r, "done": True} for r in reversed(rows)]
    assert curve_of(results, OBJS, tf.ref_point, budget=20)[-1] == pytest.approx(tf.hypervolume, rel=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    ({"problem": "grid"}, "--problem: must be one of table, surrogate"),
    ({"searchers": ("mobo", "bogo")}, "--searchers: unknown searcher 'bogo'"),
    ({"budget": 0}, "--budget: must be >= 1"),
    ({"seeds": 0}, "--seeds: must be >= 1"),
    ({"pairs": (("val_accuracy",),)}, "--objectives: give at least two"),
    ({"pairs": (("val_accuracy", "energy"),)}, "objectives.energy: unknown metric"),
])
def test_run_spec_errors(kwargs, message):
    spec = RunSpec(**{"problem": "table", "table": Path("t.csv"), "searchers": ("random",), "budget": 5,
                      "seeds": 1, **kwargs})
    with pytest.raises(ConfigError, match=message):
        spec.check()


def test_cli_bad_table_is_one_line_and_exit_2(tmp_path, capsys):
    good = tmp_path / "t.csv.gz"
    make_table(good, n=6)

    def nan_latency(lines):
        k = data_start(lines)
        j = lines[k].split(",").index("latency_ms")
        row = lines[k + 2].split(",")
        row[j] = "NaN"
        return lines[: k + 2] + [",".join(row)] + lines[k + 3:]

    bad = rewrite(good, tmp_path / "bad.csv", nan_latency)
    out = tmp_path / "out"
    code = main(["benchmark", "run", "--problem", "table", "--searchers", "random", "--budget", "3", "--seeds", "1",
                 "--table", str(bad), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("hytnas: error: table ") and "row 3, column latency_ms: value is NaN" in err
    assert len(err.splitlines()) == 1
    assert not out.exists()  # nothing written
    assert main(["benchmark", "info", str(good)]) == 0
    assert "true-front HV" in capsys.readouterr().out


def test_cli_build_bad_config_exit_2(tmp_path, capsys):
    cfg = tmp_path / "b.yaml"
    cfg.write_text("benchmark: {n_archs: -1}\nexperiment: {name: x}\n")
    assert main(["benchmark", "build", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "hytnas: error: benchmark.n_archs: must be >= 1 (got -1)"
