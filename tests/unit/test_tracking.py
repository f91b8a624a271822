"""MLflow tracking without Ray: child-run names and params, the pareto tags, the queue of a lost
store (a local sqlite store, fake Tune trials), the tracking-server probe."""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace

import pytest

from hytnas.errors import ConfigError
from hytnas.space import GENES, get_space
from hytnas.tracking import (
    DERIVED_PARAMS,
    PENDING_FILE,
    MlflowLogger,
    check_tracking_server,
    derived_params,
    run_name,
    ui_command,
)


@pytest.fixture(scope="module")
def space():
    return get_space("hytnas", input_size=28)


def _trial(space, arch, tid, status="RUNNING", epoch=None):
    result = {} if epoch is None else {"epoch": epoch, "val_accuracy": 0.5, "hostname": "h1", "node_ip": "1.2.3.4"}
    return SimpleNamespace(trial_id=tid, config=space.to_config(arch), status=status, last_result=result)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_name_and_derived_params():
    genes = {"n2": 2, "t3": 2, "t4": 2, "t5": 1, "c1": 16, "c2": 24, "c3": 32, "c4": 48, "c5": 64}
    d = derived_params(genes, "abcdef123456")
    assert d == {"arch_id": "abcdef123456", "depth": 6 + 5, "conv_blocks": 6, "transformer_layers": 5,
                 "widths": "16.24.32.48.64"}
    assert set(d) == set(DERIVED_PARAMS)
    assert run_name(genes, "abcdef123456") == "d11-w16.24.32.48.64-t2.2.1-abcdef"


def test_child_runs_params_tags_and_pareto_updates(tmp_path, space):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = {"name": "t", "training": {"epochs": 1}, "resources": {"cpu": 1, "gpu": 0}}
    logger = MlflowLogger(uri, "t", tmp_path, cfg, space)
    logger.setup()
    archs = space.sample(3, seed=0)
    trials = [_trial(space, a, f"t{i}") for i, a in enumerate(archs)]
    for t in trials:
        logger.on_trial_start(0, trials, t)
    for t in trials:
        t.last_result = {"epoch": 1, "val_accuracy": 0.5, "hostname": "h1", "node_ip": "1.2.3.4"}
        logger.on_trial_result(0, trials, t, t.last_result)
        t.status = "TERMINATED"
        logger.on_trial_complete(0, trials, t)
        logger.set_front(["t0"] if t.trial_id == "t0" else ["t1", "t2"], trials)
    client = MlflowClient(uri)
    runs = {r.data.tags["ray_trial_id"]: r for r in client.search_runs([logger.experiment_id])
            if "ray_trial_id" in r.data.tags}
    assert set(runs) == {"t0", "t1", "t2"}
    for tid, run in runs.items():
        arch = archs[int(tid[1])]
        aid = space.arch_id(arch)
        assert run.info.run_name == run_name(space.to_config(arch), aid)
        assert set(run.data.params) == set(GENES) | set(DERIVED_PARAMS)
        tags = run.data.tags
        assert tags["arch_id"] == aid and tags["status"] == "completed" and tags["device"] == "cpu"
        assert tags["hostname"] == "h1" and tags["node_ip"] == "1.2.3.4"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1]
    # t0 entered the front, then left it when t1 and t2 finished
    assert {tid: r.data.tags["pareto"] for tid, r in runs.items()} == {"t0": "false", "t1": "true", "t2": "true"}
    logger.on_experiment_end(trials)
    assert client.get_run(logger.parent_run_id).info.status == "FINISHED"
    assert not (tmp_path / PENDING_FILE).exists()


def test_lost_store_queues_records_and_writes_them_at_the_end(tmp_path, space, caplog):
    uri = f"http://127.0.0.1:{_free_port()}"
    logger = MlflowLogger(uri, "t", tmp_path, {"name": "t"}, space)
    t = _trial(space, space.sample(1, seed=1)[0], "t0", status="TERMINATED", epoch=1)
    logger.setup()  # does not raise
    logger.on_trial_start(0, [t], t)
    logger.on_trial_result(0, [t], t, t.last_result)
    logger.on_trial_complete(0, [t], t)
    warnings = [r for r in caplog.records if "MLflow call failed" in r.getMessage()]
    assert len(warnings) == 1  # one line per outage
    logger.on_experiment_end([t])
    lines = [json.loads(x) for x in (tmp_path / PENDING_FILE).read_text().splitlines()]
    assert [r["op"] for r in lines] == ["start", "trial", "trial", "trial"]
    assert lines[2]["metrics"][0][:2] == ["val_accuracy", 0.5] and lines[3]["terminate"] == "FINISHED"


def test_unreachable_server_is_one_line(tmp_path):
    uri = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(ConfigError) as e:
        check_tracking_server(uri, timeout_s=2)
    msg = str(e.value)
    assert "\n" not in msg and uri in msg and msg.startswith("mlflow.tracking_uri:")
    check_tracking_server(f"sqlite:///{tmp_path / 'x.db'}")  # local stores are not probed
    assert not list(tmp_path.iterdir())


def test_ui_command_of_a_server():
    assert ui_command("http://127.0.0.1:5000") == "open http://127.0.0.1:5000"


def test_front_model_loads_without_hytnas(tmp_path, space):
    import os
    import subprocess
    import sys

    import torch
    from mlflow import MlflowClient

    from hytnas.models import build_model
    from hytnas.tracking import MODEL_TAG, log_front_models
    from hytnas.trial import new_state, write_trial_files

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = MlflowLogger(uri, "t", tmp_path, {"name": "t"}, space)
    logger.setup()
    arch = space.sample(1, seed=2)[0]
    t = _trial(space, arch, "t0")
    logger.on_trial_start(0, [t], t)
    aid = space.arch_id(arch)
    model = build_model(space.to_arch_cfg(arch), num_classes=10, in_channels=1, input_size=28).eval()
    write_trial_files(tmp_path / "ckpt", model, new_state(space, arch, aid, 28, 10, 1, 1.0))
    uris = log_front_models(uri, logger.parent_run_id, tmp_path, [{"trial_id": "t0", "checkpoint": "ckpt"}], space)
    assert len(uris) == 1
    assert MlflowClient(uri).get_run(logger._children["t0"]).data.tags[MODEL_TAG] == uris[0]
    x = torch.randn(3, 1, 28, 28)
    torch.save(x, tmp_path / "x.pt")
    with torch.inference_mode():
        torch.save(model(x), tmp_path / "y.pt")
    code = ("import sys; sys.modules['hytnas'] = None\n"
            "import mlflow.pytorch, torch\n"
            "m = mlflow.pytorch.load_model(sys.argv[1])\n"
            "x, y = torch.load(sys.argv[2]), torch.load(sys.argv[3])\n"
            "print(type(m).__name__, float((m(x) - y).abs().max()))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["MLFLOW_TRACKING_URI"] = uri
    p = subprocess.run([sys.executable, "-I", "-c", code, uris[0], str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
                       cwd=tmp_path / "ckpt", env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    name, diff = p.stdout.split()[-2:]
    assert name == "RecursiveScriptModule" and float(diff) < 1e-4
