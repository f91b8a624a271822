"""The search report: Pareto flags, the arch-table files, the progress line; MLflow param helpers."""
from __future__ import annotations

import io
import itertools
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from hytnas.callbacks import ProgressCallback
from hytnas.mo import trials_pareto_mask as pareto_mask
from hytnas.objectives import get_objectives, parse_constraints
from hytnas.report import format_table, progress_line, trials_frame, write_report
from hytnas.space import get_space
from hytnas.table import read_arch_table
from hytnas.tracking import flatten, ui_command
from hytnas.trial import trial_status


def _brute_front(Y: np.ndarray, signs: np.ndarray) -> np.ndarray:
    Z = Y * signs
    out = np.zeros(len(Z), dtype=bool)
    for i, z in enumerate(Z):
        out[i] = not any((w >= z).all() and (w > z).any() for w in Z)
    return out


@pytest.mark.parametrize("senses", list(itertools.product(("max", "min"), repeat=2)))
def test_pareto_mask_matches_brute_force(senses):
    rng = np.random.default_rng(sum(map(len, senses)))
    objs = get_objectives([f"val_accuracy:{senses[0]}", f"params_k:{senses[1]}"])
    Y = rng.integers(0, 6, size=(40, 2)).astype(float)  # ties on purpose
    df = pd.DataFrame({"val_accuracy": Y[:, 0], "params_k": Y[:, 1], "status": "done"})
    expected = _brute_front(Y, np.array([1.0 if s == "max" else -1.0 for s in senses]))
    assert (pareto_mask(df, objs) == expected).all()


def test_pareto_only_over_completed_feasible_finite_rows():
    objs = get_objectives(["val_accuracy", "params_k"])
    cons = parse_constraints(["macs_m <= 5"])
    df = pd.DataFrame({
        "val_accuracy": [0.9, 0.95, 0.99, 0.97, math.nan, 0.5],
        "params_k": [100, 100, 10, 50, 1, 200],
        "macs_m": [1, 1, 1, 9, 1, 1],
        "status": ["done", "done", "stopped", "done", "done", "failed"],
    })
    # row 2 (stopped early) and 3 (infeasible), 4 (no accuracy), 5 (failed) never count
    assert pareto_mask(df, objs, cons).tolist() == [False, True, False, False, False, False]


def _records(space, n=6, seed=0):
    rng = np.random.default_rng(seed)
    recs = []
    for i, arch in enumerate(space.sample(n, seed=seed)):
        status = "failed" if i == n - 1 else "done"
        metrics = {} if status == "failed" else {
            "val_accuracy": float(rng.uniform(0.5, 0.9)), "test_accuracy": float(rng.uniform(0.5, 0.9)),
            "val_loss": 1.0, "latency_ms": float(rng.uniform(1, 5)), "params_k": float(rng.uniform(10, 500)),
            "macs_m": 1.0, "peak_sram_kb": 10.0, "model_size_kb": 20.0, "epoch": 2, "done": True,
            "arch_id": space.arch_id(arch)}
        # Ray trial ids are hex; some are all digits
        recs.append({"trial_id": ["73446872", "a8ccb865"][i % 2] + str(i), "status": status,
                     "config": space.to_config(arch), "metrics": metrics,
                     "checkpoint": None if status == "failed" else f"tune/trial_{i}/checkpoint_000001"})
    return recs


def test_report_files_round_trip(tmp_path):
    space = get_space("hytnas", input_size=32)
    objs = get_objectives(["val_accuracy", "params_k"])
    archs, df = trials_frame(_records(space), space, objs)
    assert df["status"].tolist() == ["done"] * 5 + ["failed"]
    paths = write_report(tmp_path, space, archs, df, objs, comment="test run")
    got_archs, got = read_arch_table(paths["trials"], space, metrics=["params_k"], allow_nan=["params_k"])
    assert got_archs == archs
    assert got["trial_id"].tolist() == df["trial_id"].tolist()  # text ids survive, digits-only included
    assert got["status"].tolist() == df["status"].tolist()
    p_archs, front = read_arch_table(paths["pareto"], space, metrics=["val_accuracy", "params_k"])
    assert len(front) == int(df["pareto"].sum()) >= 1
    assert front["val_accuracy"].is_monotonic_decreasing  # best first objective first
    assert set(front["trial_id"]) == set(df.loc[df["pareto"], "trial_id"])
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"
    table = format_table(df[df["pareto"]], objs)
    assert table.splitlines()[0].split()[:3] == ["arch_id", "val_acc%", "test_acc%"]
    assert len(table.splitlines()) == 2 + len(front)


def test_progress_line_and_callback_summary():
    assert progress_line(83, {"done": 3, "running": 2, "failed": 1}, 12, ("val_accuracy", 0.84123), 2) == (
        "[hytnas] 0:01:23  trials 3/12 done, 2 running, 1 failed  best val_accuracy 0.8412  pareto 2")
    objs = get_objectives(["val_accuracy", "params_k"])
    trials = [
        SimpleNamespace(status="TERMINATED", last_result={"val_accuracy": 0.8, "params_k": 100, "done": True}),
        SimpleNamespace(status="TERMINATED", last_result={"val_accuracy": 0.7, "params_k": 50, "done": True}),
        SimpleNamespace(status="TERMINATED", last_result={"val_accuracy": 0.6, "params_k": 60, "done": True}),
        SimpleNamespace(status="TERMINATED", last_result={"val_accuracy": 0.95, "params_k": 1, "done": False}),
        SimpleNamespace(status="RUNNING", last_result={"val_accuracy": 0.99}),
        SimpleNamespace(status="ERROR", last_result={}),
        SimpleNamespace(status="PENDING", last_result={}),
    ]
    stream = io.StringIO()
    cb = ProgressCallback(objs, total=8, interval_s=0, stream=stream)
    cb.setup(total_num_samples=8)
    cb.on_trial_complete(0, trials, trials[0])
    line = stream.getvalue().strip()
    assert line.endswith("trials 3/8 done, 1 running, 1 failed, 1 stopped, 1 pending  best val_accuracy 0.8000  pareto 2")


@pytest.mark.parametrize("status,result,error,max_epochs,expected", [
    ("TERMINATED", {"done": True}, False, None, "done"),
    ("TERMINATED", {"done": False}, False, None, "stopped"),
    ("TERMINATED", {"done": True, "epoch": 3}, False, 3, "done"),
    # Ray Tune marks the last result of a trial ASHA stopped with done=True: not complete
    ("TERMINATED", {"done": True, "epoch": 1}, False, 3, "stopped"),
    ("RUNNING", {"epoch": 1}, False, 3, "running"),
    ("PENDING", {}, False, 3, "pending"),
    ("ERROR", {}, False, 3, "failed"),
    ("TERMINATED", {"done": True, "epoch": 3}, True, 3, "failed"),
])
def test_trial_status(status, result, error, max_epochs, expected):
    assert trial_status(status, result, error, max_epochs=max_epochs) == expected


def test_mlflow_params_are_flat_strings_and_ui_is_local():
    flat = flatten({"name": "x", "budget": {"num_samples": 4, "time_budget_s": None},
                    "objectives": ["val_accuracy", "params_k"], "search": {"options": {}}})
    assert flat == {"name": "x", "budget.num_samples": "4", "budget.time_budget_s": "null",
                    "objectives": '["val_accuracy", "params_k"]', "search.options": "{}"}
    assert ui_command("sqlite:////a/b/mlflow.db") == (
        "mlflow ui --backend-store-uri sqlite:////a/b/mlflow.db --host 127.0.0.1 --port 5000")
