"""``storage_path: s3://bucket/path`` end to end against a local S3 server (moto, 127.0.0.1 only):
a 2-trial search (CLI subprocess, local Ray) keeps Tune's state and checkpoints in the bucket and
its driver files in ``./experiments/<name>``; ``--resume`` restores from the bucket; an
unreachable endpoint or a missing bucket is one line and exit code 2 before Ray starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CLI = "import sys; from hytnas.cli import main; sys.exit(main(sys.argv[1:]))"
BUCKET = "hytnas-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3():
    """A moto S3 server on 127.0.0.1 (stopped at the end) and the environment that points pyarrow at it."""
    server_mod = pytest.importorskip("moto.server")
    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
        import pyarrow.fs

        fs = pyarrow.fs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", access_key="testing",
                                     secret_key="testing", region="us-east-1", allow_bucket_creation=True)
        fs.create_dir(BUCKET)
        yield env, fs
    finally:
        server.stop()


def _config(tmp_path: Path, data: Path, storage: str) -> Path:
    cfg = {
        "name": "s3-search", "storage_path": storage,
        "space": {"name": "hytnas", "input_size": 28},
        "dataset": {"name": "fashion-mnist", "root": str(data), "train_size": 256, "val_size": 128, "test_size": 128},
        "training": {"epochs": 1, "batch_size": 64},
        "constraints": ["macs_m <= 3"],
        "search": {"algorithm": "random", "seed": 0},
        "budget": {"num_samples": 2, "max_concurrent_trials": 2},
        "hardware": {"latency_runs": 3},
        "mlflow": {"enabled": False},
    }
    path = tmp_path / "s3.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", CLI, *args], env=full, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_search_with_s3_storage(tmp_path, fmnist_tiny, s3):
    env, fs = s3
    import pyarrow.fs

    config = _config(tmp_path, fmnist_tiny, f"s3://{BUCKET}/exp")
    run = _cli(["search", str(config)], env, tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]

    files = [i.path for i in fs.get_file_info(pyarrow.fs.FileSelector(f"{BUCKET}/exp", recursive=True))]
    print("bucket:", *sorted(files), sep="\n  ")
    assert any(p.startswith(f"{BUCKET}/exp/tune/experiment_state") for p in files)
    assert f"{BUCKET}/exp/tune/tuner.pkl" in files
    assert sum(p.endswith("/model.pt") for p in files) == 2  # one checkpoint per trial

    local = tmp_path / "experiments" / "s3-search"  # the driver's files
    assert (local / "experiment.yaml").is_file() and (local / "pareto.png").is_file()
    trials = pd.read_csv(local / "trials.csv", comment="#")
    assert len(trials) == 2 and (trials["status"] == "done").all()
    assert trials["checkpoint"].str.startswith(f"s3://{BUCKET}/exp/tune/").all()

    again = _cli(["search", str(config)], env, tmp_path)  # the folder already holds the search
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = _cli(["search", str(config), "--resume"], env, tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert "2 trials done" in resumed.stdout


def test_unreachable_s3_endpoint_is_one_line_exit_2(tmp_path, fmnist_tiny, s3):
    env, _ = s3
    config = _config(tmp_path, fmnist_tiny, f"s3://{BUCKET}/exp")
    dead = {**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}"}
    run = _cli(["search", str(config)], dead, tmp_path, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hytnas: error: storage_path: cannot reach s3://"), lines
    assert not (tmp_path / "experiments").exists()

    config = _config(tmp_path, fmnist_tiny, "s3://no-such-bucket/exp")
    run = _cli(["search", str(config)], env, tmp_path, timeout=120)
    assert run.returncode == 2 and "bucket 'no-such-bucket'" in run.stderr, run.stderr[-2000:]
