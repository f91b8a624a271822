"""A search end to end on real Ray, real MLflow (sqlite in tmp_path), real BoTorch and real
Fashion-MNIST images (a small subset): 4 trials x 1 epoch, then the same search interrupted
after 2 trials and resumed."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from ray.tune import Callback

from hytnas.cli import main
from hytnas.config import parse_experiment
from hytnas.models import build_model
from hytnas.space import GENES
from hytnas.table import read_arch_table
from hytnas.tracking import DERIVED_PARAMS

pytestmark = pytest.mark.e2e

METRICS = ("val_accuracy", "val_loss", "latency_ms", "params_k", "macs_m", "peak_sram_kb", "model_size_kb",
           "test_accuracy")


def _config(tmp_path: Path, data: Path, **over):
    cfg = {
        "name": "e2e", "storage_path": str(tmp_path / "exp"),
        "space": {"name": "hytnas", "input_size": 28},
        "dataset": {"name": "fashion-mnist", "root": str(data), "train_size": 512, "val_size": 256,
                    "test_size": 256},
        "training": {"epochs": 1, "batch_size": 64},
        "objectives": ["val_accuracy", "params_k"],
        "constraints": ["macs_m <= 3"],
        "search": {"algorithm": "mobo", "seed": 0, "options": {"n_initial": 2}},
        "budget": {"num_samples": 4, "max_concurrent_trials": 2},
        "hardware": {"latency_runs": 5},
    }
    for key, value in over.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_experiment(cfg)


def _mlflow_runs(cfg):
    from mlflow import MlflowClient

    client = MlflowClient(cfg.tracking_uri)
    exp = client.get_experiment_by_name(cfg.mlflow_experiment)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def test_search_end_to_end(tmp_path, fmnist_tiny, ray_local, capsys):
    from hytnas.search import run_search

    cfg = _config(tmp_path, fmnist_tiny)
    result = run_search(cfg)
    out = capsys.readouterr().out
    assert "[hytnas] finished" in out and "mlflow ui --backend-store-uri sqlite:///" in out
    assert "--host 127.0.0.1" in out

    # every trial completed, with the reported metrics
    assert not result.interrupted
    trials = result.trials
    assert len(trials) == 4 and (trials["status"] == "done").all()
    assert trials["arch_id"].nunique() == 4
    assert (trials["macs_m"] <= 3).all()
    for m in METRICS:
        assert trials[m].notna().all(), m
    assert trials["val_accuracy"].between(0, 1).all()

    # the files: CSVs in the arch-table format, the plot
    space = cfg.build_space()
    archs, all_rows = read_arch_table(cfg.storage_dir / "trials.csv", space, metrics=["val_accuracy", "params_k"])
    assert len(archs) == 4 and sorted(all_rows["trial_id"].astype(str)) == sorted(trials["trial_id"])
    p_archs, pareto = read_arch_table(cfg.storage_dir / "pareto.csv", space, metrics=["val_accuracy", "params_k"])
    assert 1 <= len(pareto) == int(trials["pareto"].sum())
    for _, p in pareto.iterrows():  # no trial dominates a Pareto-optimal one
        better = (all_rows["val_accuracy"] >= p["val_accuracy"]) & (all_rows["params_k"] <= p["params_k"])
        strictly = (all_rows["val_accuracy"] > p["val_accuracy"]) | (all_rows["params_k"] < p["params_k"])
        assert not (better & strictly).any()
    png = cfg.storage_dir / "pareto.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # MLflow: one parent run, exactly one child run per trial with the genes and the metrics
    client, parents, children = _mlflow_runs(cfg)
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags["hytnas.search"] == "e2e"
    assert parent.data.params["budget.num_samples"] == "4"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "experiment.yaml", "trials.csv", "pareto.csv", "pareto.png"}
    assert {c.data.tags["ray_trial_id"] for c in children} == set(trials["trial_id"])
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert set(child.data.params) == set(GENES) | set(DERIVED_PARAMS)
        row = trials[trials["trial_id"] == child.data.tags["ray_trial_id"]].iloc[0]
        assert child.data.params["arch_id"] == row["arch_id"]
        assert set(METRICS) <= set(child.data.metrics)
        assert child.data.metrics["val_accuracy"] == pytest.approx(row["val_accuracy"], abs=1e-6)
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        assert [h.step for h in history] == [1]

    # export: one folder per Pareto-optimal model, weights load (weights_only) into the arch
    assert main(["export", str(cfg.storage_dir), "--out", str(tmp_path / "models")]) == 0
    folders = sorted((tmp_path / "models").iterdir())
    assert len(folders) == len(pareto)
    import json

    from hytnas.models import ArchCfg

    for folder in folders:
        meta = json.loads((folder / "arch.json").read_text())
        assert set(meta["genes"]) == set(GENES) and meta["arch_id"] in set(trials["arch_id"])
        arch = ArchCfg.from_dict(meta["arch_cfg"])
        assert arch.arch_id == meta["arch_id"]
        model = build_model(arch, meta["num_classes"], meta["in_channels"], meta["input_size"])
        model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
        model.eval()
        assert model(torch.zeros(2, meta["in_channels"], 28, 28)).shape == (2, 10)


class InterruptMidTrial(Callback):
    """Test-only Tune callback: once ``n_done`` trials completed, SIGUSR1 (Tune's graceful stop)
    once the next trial saved its epoch-1 checkpoint, i.e. in the middle of its training.

    Tune stores callbacks with the experiment and uses the stored copies on resume, so the
    "already interrupted" flag lives in a file, not in the object."""

    def __init__(self, n_done: int, flag: Path) -> None:
        self.n_done, self.flag = n_done, flag

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        done = sum(t.status == "TERMINATED" for t in trials)
        if done >= self.n_done and trial.last_result.get("epoch") == 1 and not self.flag.exists():
            self.flag.write_text(trial.trial_id)
            os.kill(os.getpid(), signal.SIGUSR1)


def test_interrupted_search_resumes_without_losing_or_repeating_work(tmp_path, fmnist_tiny, ray_local, capsys):

    from hytnas.search import run_search

    cfg = _config(tmp_path, fmnist_tiny, search={"algorithm": "random", "options": {}}, training={"epochs": 2},
                  budget={"num_samples": 4, "max_concurrent_trials": 1})
    flag = tmp_path / "interrupted.flag"
    first = run_search(cfg, callbacks=[InterruptMidTrial(2, flag)])
    assert first.interrupted and first.num_done == 2
    assert "--resume" in capsys.readouterr().out
    cut = flag.read_text()  # the trial stopped after its first epoch

    second = run_search(cfg, resume=True)
    assert not second.interrupted
    trials = second.trials
    assert len(trials) == 4 and (trials["status"] == "done").all() and (trials["epoch"] == 2).all()
    assert trials["trial_id"].nunique() == 4 and trials["arch_id"].nunique() == 4
    assert set(first.trials.loc[first.trials["status"] == "done", "trial_id"]) < set(trials["trial_id"])
    assert cut in set(trials["trial_id"])

    client, parents, children = _mlflow_runs(cfg)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4
    assert {c.data.tags["ray_trial_id"] for c in children} == set(trials["trial_id"])
    assert all(c.info.status == "FINISHED" for c in children)
    # the cut trial continued from its epoch-1 checkpoint: epochs 1, 2 once each, latency measured once
    run = next(c for c in children if c.data.tags["ray_trial_id"] == cut)
    assert [h.step for h in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1, 2]
    assert len({h.value for h in client.get_metric_history(run.info.run_id, "latency_ms")}) == 1


def test_asha_with_fractional_cpus(tmp_path, fmnist_tiny, ray_local, capsys):
    """ASHA on epochs (training_iteration) with half a CPU per trial: stopped trials are recorded
    as such (Tune marks their last result done=True too) and never reach the Pareto front."""
    from hytnas.search import run_search

    cfg = _config(tmp_path, fmnist_tiny, search={"algorithm": "random", "seed": 1, "options": {}}, training={"epochs": 2},
                  scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2},
                  budget={"num_samples": 4, "max_concurrent_trials": 4}, resources={"cpu": 0.5},
                  mlflow={"enabled": False})
    result = run_search(cfg, quiet=True)
    assert capsys.readouterr().out == ""
    trials = result.trials
    assert len(trials) == 4 and set(trials["status"]) <= {"done", "stopped"}
    done, stopped = trials[trials["status"] == "done"], trials[trials["status"] == "stopped"]
    assert len(done) >= 1
    assert (done["epoch"] == 2).all() and done["test_accuracy"].notna().all()
    assert (stopped["epoch"] < 2).all() and stopped["test_accuracy"].isna().all()
    assert not trials.loc[trials["pareto"], "status"].ne("done").any()
    assert result.tracking_uri is None and not (cfg.storage_dir / "mlflow.db").exists()
