"""A search tracked by a real MLflow tracking server (``mlflow server`` on 127.0.0.1, sqlite
backend, served artifacts): 4 trials x 1 epoch on the Fashion-MNIST subset, checked through
``MlflowClient`` and the REST API; the front's models load with ``mlflow.pytorch.load_model`` in
an isolated interpreter that cannot import hytnas. And a server that does not answer: exit 2,
one line, nothing created."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from hytnas.cli import main
from hytnas.space import GENES
from hytnas.tracking import DERIVED_PARAMS, MODEL_TAG

pytestmark = pytest.mark.e2e

MLFLOW = Path(sys.executable).with_name("mlflow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (127.0.0.1 only)
        return r.read()


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'srv.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--serve-artifacts"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if _get(f"{url}/health", timeout=2).strip() == b"OK":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _config(tmp_path: Path, data: Path, uri: str) -> dict:
    return {
        "name": "srv", "storage_path": str(tmp_path / "exp"),
        "space": {"name": "hytnas", "input_size": 28},
        "dataset": {"name": "fashion-mnist", "root": str(data), "train_size": 512, "val_size": 256, "test_size": 256},
        "training": {"epochs": 1, "batch_size": 64},
        "objectives": ["val_accuracy", "params_k"], "constraints": ["macs_m <= 3"],
        "search": {"algorithm": "random", "seed": 0},
        "budget": {"num_samples": 4, "max_concurrent_trials": 2},
        "hardware": {"latency_runs": 5},
        "mlflow": {"tracking_uri": uri, "register_name": "srv-front"},
    }


def test_search_tracked_by_a_server(tmp_path, fmnist_tiny, ray_local, mlflow_server, capsys):
    from mlflow import MlflowClient

    from hytnas.config import parse_experiment
    from hytnas.search import run_search

    cfg = parse_experiment(_config(tmp_path, fmnist_tiny, mlflow_server))
    result = run_search(cfg)
    out = capsys.readouterr().out
    assert f"MLflow:  open {mlflow_server}" in out
    assert not (cfg.storage_dir / "mlartifacts").exists() and not (cfg.storage_dir / "mlflow-pending.jsonl").exists()
    trials = result.trials
    assert len(trials) == 4 and (trials["status"] == "done").all()
    front_ids = set(trials.loc[trials["pareto"], "trial_id"])
    assert front_ids and front_ids == set(result.pareto["trial_id"])

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("srv")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    tids = [c.data.tags["ray_trial_id"] for c in children]
    assert sorted(tids) == sorted(trials["trial_id"])  # one run per trial, no duplicates
    for c in children:
        row = trials[trials["trial_id"] == c.data.tags["ray_trial_id"]].iloc[0]
        assert set(c.data.params) == set(GENES) | set(DERIVED_PARAMS)
        assert c.info.run_name.endswith(row["arch_id"][:6]) and c.info.run_name.startswith("d")
        assert c.data.tags["arch_id"] == row["arch_id"] and c.data.tags["status"] == "completed"
        assert c.data.tags["device"] == "cpu" and "hostname" in c.data.tags
        assert [h.step for h in client.get_metric_history(c.info.run_id, "val_accuracy")] == [1]
    tagged = {c.data.tags["ray_trial_id"] for c in children if c.data.tags.get("pareto") == "true"}
    assert tagged == front_ids and all(c.data.tags.get("pareto") in ("true", "false") for c in children)

    # the REST API says the same
    req = urllib.request.Request(f"{mlflow_server}/api/2.0/mlflow/runs/search", method="POST",
                                 data=json.dumps({"experiment_ids": [exp.experiment_id], "max_results": 100}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 (127.0.0.1 only)
        rest = json.loads(r.read())["runs"]
    rest_tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in rest]
    assert sorted(t["ray_trial_id"] for t in rest_tags if "ray_trial_id" in t) == sorted(tids)
    assert {t["ray_trial_id"] for t in rest_tags if t.get("pareto") == "true"} == front_ids

    # parent: refreshed artifacts and metrics
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"pareto.png", "hypervolume.png", "trials.csv", "pareto.csv", "experiment.yaml"} <= arts
    hv = client.get_metric_history(parent.info.run_id, "hypervolume")
    assert hv and max(h.step for h in hv) == 4 and hv[-1].value > 0
    assert "hytnas.hv_reference_point" in parent.data.tags
    assert parent.data.metrics["models_logged"] == len(front_ids)
    assert {"tracking_ms_median", "tracking_ms_p95"} <= set(parent.data.metrics)

    # the front's models: one per member, registered, loadable without hytnas
    model_uris = [c.data.tags[MODEL_TAG] for c in children if MODEL_TAG in c.data.tags]
    assert len(model_uris) == len(front_ids)
    assert {c.data.tags["ray_trial_id"] for c in children if MODEL_TAG in c.data.tags} == front_ids
    assert len(client.search_model_versions("name='srv-front'")) == len(front_ids)
    code = ("import sys; sys.modules['hytnas'] = None\n"
            "import mlflow.pytorch, torch\n"
            "m = mlflow.pytorch.load_model(sys.argv[1])\n"
            "print(type(m).__name__, tuple(m(torch.zeros(3, 1, 28, 28)).shape))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["MLFLOW_TRACKING_URI"] = mlflow_server
    iso = tmp_path / "iso"
    iso.mkdir()
    p = subprocess.run([sys.executable, "-I", "-c", code, model_uris[0]], cwd=iso, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip().splitlines()[-1] == "RecursiveScriptModule (3, 10)"


def test_unreachable_server_is_one_line_and_creates_nothing(tmp_path, fmnist_tiny, capsys):
    uri = f"http://127.0.0.1:{_free_port()}"
    path = tmp_path / "srv.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path, fmnist_tiny, uri)))
    t0 = time.monotonic()
    assert main(["search", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hytnas: error: mlflow.tracking_uri:") and uri in err[0]
    assert not (tmp_path / "exp").exists()
    assert time.monotonic() - t0 < 60
