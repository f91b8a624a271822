"""End to end: build a tiny benchmark table through the real pipeline (real Ray Tune trials, real
MLflow in sqlite, real Lightning training on a small real Fashion-MNIST subset), interrupt and
resume it, then replay searchers on it and check the exact true-front hypervolume."""
from __future__ import annotations

import json

import pytest
import torch

from hytnas.benchmark.archlist import build_items
from hytnas.benchmark.build import build_table
from hytnas.benchmark.config import load_build_config
from hytnas.benchmark.run import RunSpec, run_benchmark
from hytnas.benchmark.table import BenchmarkTable, read_header
from hytnas.table import read_arch_table

pytestmark = pytest.mark.e2e

CONFIG = """
benchmark:
  n_archs: 3
  seed: 5
  replicate: 1
  seeds: 2
  table: {out}/tiny.csv.gz
  max_concurrent_trials: 2
experiment:
  name: bench-e2e
  space: {{name: hytnas-tiny, input_size: 16}}
  dataset: {{name: fashion-mnist, root: {data}, train_size: 128, val_size: 64, test_size: 64}}
  training: {{epochs: 1, batch_size: 32}}
  resources: {{cpu: 1}}
  hardware: {{latency_runs: 3}}
  storage_path: {out}/exp
"""


def brute_force_hv(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """2-D hypervolume (both maximised) by a sweep over the points sorted by the first objective."""
    area, best = 0.0, ref[1]
    for a, b in sorted(points, key=lambda p: -p[0]):
        if a > ref[0] and b > best:
            area += (a - ref[0]) * (b - best)
            best = b
    return area


@pytest.fixture(scope="module")
def built(tmp_path_factory, fmnist_tiny, ray_local):
    out = tmp_path_factory.mktemp("bench")
    path = out / "bench.yaml"
    path.write_text(CONFIG.format(out=out, data=fmnist_tiny))
    cfg = load_build_config(path)
    first = build_table(cfg, max_trials=3)  # the 3 base-seed trials; the replicate is left
    partial = build_table(cfg, write_partial=True)  # trains nothing
    assert partial.trained == 0 and not partial.complete and partial.seeds_table is None
    assert read_header(partial.table)["complete"] == "False" and len(BenchmarkTable.load(partial.table)) == 3
    second = build_table(load_build_config(path))
    assert read_header(second.table)["complete"] == "True"
    return cfg, first, second


def test_build_is_resumable_and_reproduces_the_list(built):
    cfg, first, second = built
    assert not first.complete and first.trained == 3 and first.recorded == 3
    assert second.complete and second.trained == 1 and second.recorded == 4 and not second.failed
    space = cfg.experiment.build_space()
    items = build_items(space, 3, seed=5, replicate=1, seeds=2)
    archs, table = read_arch_table(second.table, space, metrics=["val_accuracy", "test_accuracy", "latency_ms",
                                                                 "params_k", "val_accuracy_e1", "train_time_s"])
    assert archs == [i.arch for i in items if i.replicate == 0]  # same list, list order
    assert list(table["seed"]) == [5, 5, 5]
    assert ((table["val_accuracy"] >= 0) & (table["val_accuracy"] <= 1)).all()
    assert (table["val_accuracy_e1"] == table["val_accuracy"]).all()  # one epoch: the curve is the final value
    assert (table["latency_ms"] > 0).all() and (table["params_k"] > 0).all()
    seeds_archs, seeds = read_arch_table(second.seeds_table, space, metrics=["seed", "val_accuracy"])
    assert seeds_archs == [items[0].arch] * 2 and sorted(seeds["seed"]) == [5, 6]


def test_build_is_tracked_in_mlflow(built):
    import mlflow

    cfg, _, _ = built
    client = mlflow.MlflowClient(cfg.experiment.tracking_uri)
    exp = client.get_experiment_by_name(cfg.experiment.mlflow_experiment)
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4  # one child run per trained (arch, seed)
    assert all("val_accuracy" in r.data.metrics for r in children)


def test_replay_on_the_table_reaches_the_exact_true_front(built, tmp_path):
    cfg, _, second = built
    table = BenchmarkTable.load(second.table)
    out = tmp_path / "run"
    summaries = run_benchmark(RunSpec(problem="table", table=second.table, searchers=("random", "ax"), budget=3,
                                      seeds=1, pairs=(("val_accuracy", "latency_ms"),), out=out),
                              log=lambda s: None)
    doc = json.loads((out / "val_accuracy-vs-latency_ms" / "curves.json").read_text())
    # exact true front, by brute force on the table's own numbers
    pts = [(float(a), -float(b)) for a, b in zip(table.frame["val_accuracy"], table.frame["latency_ms"])]
    ref = (doc["ref_point"][0], -doc["ref_point"][1])
    worst = (min(p[0] for p in pts), min(p[1] for p in pts))
    best = (max(p[0] for p in pts), max(p[1] for p in pts))
    assert ref == pytest.approx((worst[0] - 0.1 * (best[0] - worst[0]), worst[1] - 0.1 * (best[1] - worst[1])))
    assert doc["true_hypervolume"] == pytest.approx(brute_force_hv(pts, ref), rel=1e-12)
    assert summaries["val_accuracy-vs-latency_ms"]["true_hypervolume"] == doc["true_hypervolume"]
    for name in ("random", "ax"):
        run = doc["runs"][name]["0"]
        assert run["evaluations"] == 3 and sorted(run["arch_ids"]) == sorted(table.frame["arch_id"])
        assert run["curve"][-1] == pytest.approx(doc["true_hypervolume"], rel=1e-12)  # saw every arch
        assert all(b >= a for a, b in zip(run["curve"], run["curve"][1:]))
        assert len(run["suggest_s"]) == 3 and all(t > 0 for t in run["suggest_s"])  # every suggestion timed
    assert (out / "val_accuracy-vs-latency_ms" / "curves.png").stat().st_size > 0
    summary = (out / "val_accuracy-vs-latency_ms" / "summary.md").read_text()
    assert "| random |" in summary and "| median s/suggest | p95 s/suggest |" in summary
    # a second call keeps the finished runs (no Tune run) and its summary still covers every run in the folder
    lines: list[str] = []
    run_benchmark(RunSpec(problem="table", table=second.table, searchers=("random",), budget=3, seeds=1,
                          pairs=(("val_accuracy", "latency_ms"),), out=out), log=lines.append)
    assert any("random seed 0: kept" in line for line in lines)
    again = json.loads((out / "val_accuracy-vs-latency_ms" / "curves.json").read_text())
    assert again["runs"] == doc["runs"]


def test_replay_on_the_surrogate(built, tmp_path):
    _, _, second = built
    out = tmp_path / "sur"
    run_benchmark(RunSpec(problem="surrogate", table=second.table, searchers=("random",), budget=4, seeds=1,
                          pairs=(("val_accuracy", "params_k"),), out=out), log=lambda s: None)
    doc = json.loads((out / "val_accuracy-vs-params_k" / "curves.json").read_text())
    run = doc["runs"]["random"]["0"]
    assert run["evaluations"] == 4
    assert torch.isfinite(torch.tensor(run["curve"])).all()
    assert (out / "surrogate.json").is_file()
