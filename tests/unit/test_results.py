"""hytnas.results.load and ``hytnas results`` on synthetic experiment folders: trials.csv, and
Tune's trial folders of a killed search (no trials.csv)."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from hytnas.cli import main
from hytnas.config import parse_experiment
from hytnas.errors import ConfigError, DataError
from hytnas.report import trials_frame, write_report
from hytnas.results import load, search_constraints
from hytnas.space import GENES


def _cfg(tmp_path):
    return parse_experiment({
        "name": "synthetic", "storage_path": str(tmp_path / "exp"), "space": {"name": "hytnas", "input_size": 28},
        "training": {"epochs": 2}, "objectives": ["val_accuracy", "params_k"], "constraints": ["macs_m <= 3"],
        "mlflow": {"enabled": False},
    })


# (trial id, tune folder files): val_accuracy, params_k, macs_m per result line
TRIALS = {
    "aaaa0001": {"results": [(0.50, 50.0, 1.0), (0.60, 50.0, 1.0)], "state": "TERMINATED"},  # done, front
    "aaaa0002": {"results": [(0.40, 20.0, 1.0), (0.55, 20.0, 1.0)], "state": "TERMINATED"},  # done, front
    "aaaa0003": {"results": [(0.30, 80.0, 1.0), (0.50, 80.0, 1.0)], "state": "TERMINATED"},  # done, dominated
    "aaaa0004": {"results": [(0.90, 10.0, 9.0), (0.95, 10.0, 9.0)], "state": "TERMINATED"},  # done, infeasible
    "00000005": {"results": [(0.70, 5.0, 1.0)], "state": "RUNNING"},  # killed mid-training: 1 of 2 epochs
    "aaaa0006": {"results": [], "state": None, "error": True},  # failed before its first report
    "aaaa0007": {"results": [], "state": None},  # never started
}


def _killed_search(tmp_path, state_file=True):
    cfg = _cfg(tmp_path)
    d = cfg.storage_dir
    (d / "tune").mkdir(parents=True)
    (d / "experiment.yaml").write_text(cfg.to_yaml())
    space = cfg.build_space()
    archs = space.sample(len(TRIALS), seed=3)
    trial_data = []
    for (tid, spec), arch in zip(TRIALS.items(), archs):
        folder = d / "tune" / f"trial_{tid}"
        folder.mkdir()
        config = {**space.to_config(arch), "arch_id": space.arch_id(arch)}
        (folder / "params.json").write_text(json.dumps(config))
        lines = []
        for epoch, (acc, params_k, macs) in enumerate(spec["results"], start=1):
            row = {"val_accuracy": acc, "params_k": params_k, "macs_m": macs, "epoch": epoch, "trial_id": tid,
                   "arch_id": config["arch_id"], "config": config, "done": epoch == 2}
            lines.append(json.dumps(row))
            ckpt = folder / f"checkpoint_{epoch - 1:06d}"
            ckpt.mkdir()
            (ckpt / "trial.json").write_text("{}")
        if spec["results"]:
            lines.append('{"val_accuracy": 0.99, "cut by the kill')  # a half-written line is skipped
        (folder / "result.json").write_text("\n".join(lines))
        if spec.get("error"):
            (folder / "error.txt").write_text("boom")
        if spec["state"]:
            trial_data.append([json.dumps({"trial_id": tid, "status": spec["state"]}), "{}"])
    if state_file:
        (d / "tune" / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": trial_data}))
    return cfg, archs


def test_killed_search_without_trials_csv(tmp_path):
    cfg, archs = _killed_search(tmp_path)
    df = load(cfg.storage_dir).set_index("trial_id")
    assert list(load(cfg.storage_dir).columns[:23]) == list(GENES)
    assert set(df.index) == set(TRIALS)
    assert df.loc["aaaa0001", "status"] == "done" and df.loc["aaaa0001", "val_accuracy"] == 0.60
    assert df.loc["00000005", "status"] == "running" and df.loc["00000005", "epoch"] == 1
    assert df.loc["aaaa0006", "status"] == "failed" and math.isnan(df.loc["aaaa0006", "val_accuracy"])
    assert df.loc["aaaa0007", "status"] == "pending"
    assert df.loc["aaaa0001", "checkpoint"] == "tune/trial_aaaa0001/checkpoint_000001"
    assert df.loc["aaaa0007", "checkpoint"] == ""
    assert not df.loc["aaaa0004", "feasible"] and df.loc["aaaa0001", "feasible"]
    assert set(df.index[df["pareto"]]) == {"aaaa0001", "aaaa0002"}
    front = load(cfg.storage_dir, pareto=True)
    assert list(front["trial_id"]) == ["aaaa0001", "aaaa0002"]  # best val_accuracy first
    assert front["pareto"].dtype == bool and front["trial_id"].map(type).eq(str).all()


def test_statuses_without_tune_state_come_from_the_results(tmp_path):
    cfg, _ = _killed_search(tmp_path, state_file=False)
    df = load(cfg.storage_dir).set_index("trial_id")
    assert df.loc["aaaa0001", "status"] == "done" and df.loc["00000005", "status"] == "stopped"
    assert df.loc["aaaa0006", "status"] == "failed" and df.loc["aaaa0007", "status"] == "pending"


def test_trials_csv_is_read_as_written(tmp_path):
    cfg, archs = _killed_search(tmp_path)
    from_tune = load(cfg.storage_dir)
    space = cfg.build_space()
    records = [{"trial_id": r["trial_id"], "status": r["status"],
                "config": space.to_config(space.from_vector([r[g] for g in GENES])),
                "metrics": {c: r[c] for c in ("val_accuracy", "params_k", "macs_m", "epoch")},
                "checkpoint": r["checkpoint"]} for _, r in from_tune.iterrows()]
    archs2, frame = trials_frame(records, space, cfg.get_objectives(), search_constraints(cfg))
    write_report(cfg.storage_dir, space, archs2, frame, cfg.get_objectives())
    from_csv = load(cfg.storage_dir)
    assert list(from_csv.columns) == list(from_tune.columns)
    assert list(from_csv["trial_id"]) == list(from_tune["trial_id"])  # "00000005" stays text
    pd.testing.assert_series_equal(from_csv["pareto"], from_tune["pareto"])
    pd.testing.assert_series_equal(from_csv["val_accuracy"], from_tune["val_accuracy"])
    assert list(load(cfg.storage_dir, pareto=True)["trial_id"]) == ["aaaa0001", "aaaa0002"]


def test_bad_folders(tmp_path):
    with pytest.raises(ConfigError, match="not a hytnas experiment folder"):
        load(tmp_path)
    with pytest.raises(ConfigError, match="not a folder"):
        load(tmp_path / "missing")
    cfg = _cfg(tmp_path)
    cfg.storage_dir.mkdir()
    (cfg.storage_dir / "experiment.yaml").write_text(cfg.to_yaml())
    with pytest.raises(DataError, match="no search ran there"):
        load(cfg.storage_dir)
    (cfg.storage_dir / "tune").mkdir()
    empty = load(cfg.storage_dir)
    assert empty.empty and "pareto" in empty.columns


def test_cli_formats(tmp_path, capsys):
    cfg, _ = _killed_search(tmp_path)
    d = str(cfg.storage_dir)
    assert main(["results", d]) == 0
    out = capsys.readouterr().out
    assert "trial_id" in out.splitlines()[0] and "00000005" in out and "running" in out
    assert main(["results", d, "--pareto", "--format", "csv"]) == 0
    rows = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out), dtype={"trial_id": str})
    assert list(rows["trial_id"]) == ["aaaa0001", "aaaa0002"]
    out_file = tmp_path / "all.json"
    assert main(["results", d, "--format", "json", "--out", str(out_file)]) == 0
    data = json.loads(out_file.read_text())
    assert len(data) == len(TRIALS) and {r["trial_id"] for r in data} == set(TRIALS)
    assert next(r for r in data if r["trial_id"] == "aaaa0007")["val_accuracy"] is None
    assert main(["results", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["results", d, "--out", "/proc/hytnas-no-such/f.csv"]) == 2
    assert "--out" in capsys.readouterr().err
