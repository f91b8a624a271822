"""Ray clusters and local Ray, for real (docs/cluster.md).

- A two-node cluster on this machine (``ray start --head`` + ``ray start --address``, one CPU
  each, token authentication with a fresh token, their own temp dir and ports), driven by the CLI
  (``hytnas search --address ... --ship-code``): trials run on both nodes; then the worker node is
  SIGKILLed while a trial runs on it, the trial is retried on the head and the search completes.
  The nodes' packages come from ``--ship-code`` only (no PYTHONPATH on the nodes).
- The data check on every node names the node and the path.
- A local Ray started by ``init_ray()`` listens on the loopback interface only.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
CLI = "import sys; from hytnas.cli import main; sys.exit(main(sys.argv[1:]))"


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_ports(ports: list[int]) -> list[str]:
    names = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port")
    return [x for name, p in zip(names, ports) for x in (name, str(p))]


def _processes_of(marker: str) -> list[psutil.Process]:
    """Every process whose command line names ``marker`` (the cluster's temp dir), and their children."""
    out: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            if marker in " ".join(p.info["cmdline"] or []):
                out[p.pid] = p
                out.update({c.pid: c for c in p.children(recursive=True)})
        except psutil.Error:
            continue
    return list(out.values())


def _kill(procs: list[psutil.Process]) -> None:
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(procs, timeout=10)


@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node (1 CPU each); every process started for them is killed at the end."""
    tmp = tempfile.mkdtemp(prefix="hytnas-ray-", dir="/tmp")  # short: Ray's socket paths must fit
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16), RAY_health_check_period_ms="2000",
               RAY_health_check_failure_threshold="5")  # a SIGKILLed node is seen dead within ~10 s
    gcs, client, *ports = _free_ports(14)
    base = 20000 + secrets.randbelow(20000)
    worker_raylet_port = ports[6]
    try:
        subprocess.run([RAY, "start", "--head", "--port", str(gcs), "--ray-client-server-port", str(client),
                        "--temp-dir", tmp, "--include-dashboard", "false", "--num-cpus", "1", "--disable-usage-stats",
                        "--min-worker-port", str(base), "--max-worker-port", str(base + 99), *_node_ports(ports[:6])],
                       env=env, cwd=tmp, check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", "--address", f"127.0.0.1:{gcs}", "--num-cpus", "1", "--disable-usage-stats",
                        "--min-worker-port", str(base + 100), "--max-worker-port", str(base + 199),
                        *_node_ports(ports[6:12])], env=env, cwd=tmp, check=True, capture_output=True, timeout=120)
        yield {"address": f"127.0.0.1:{gcs}", "env": env, "tmp": tmp, "worker_raylet_port": worker_raylet_port}
    finally:
        _kill(_processes_of(tmp))
        shutil.rmtree(tmp, ignore_errors=True)


def _write_config(tmp_path: Path, data: Path, name: str, epochs: int) -> Path:
    cfg = {
        "name": name, "storage_path": str(tmp_path / name),
        "space": {"name": "hytnas", "input_size": 28},
        "dataset": {"name": "fashion-mnist", "root": str(data), "train_size": 512, "val_size": 256, "test_size": 256},
        "training": {"epochs": epochs, "batch_size": 64},
        "constraints": ["macs_m <= 3"],
        "search": {"algorithm": "random", "seed": 0},
        "budget": {"num_samples": 4, "max_concurrent_trials": 2},
        "resources": {"cpu": 1},
        "hardware": {"latency_runs": 3},
        "mlflow": {"enabled": False},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _search(cluster, config: Path) -> subprocess.Popen:
    env = {**cluster["env"], "PYTHONPATH": str(REPO)}  # the driver runs this checkout; the nodes get --ship-code
    return subprocess.Popen([sys.executable, "-c", CLI, "search", str(config), "--address",
                             cluster["address"], "--ship-code"], env=env, cwd=config.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _node_ids(cluster) -> set[str]:
    out = subprocess.run([sys.executable, "-c", "import ray, json, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
                          "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))", cluster["address"]],
                         env=cluster["env"], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_trials_run_on_both_nodes(cluster, tmp_path, fmnist_tiny):
    nodes = _node_ids(cluster)
    assert len(nodes) == 2
    proc = _search(cluster, _write_config(tmp_path, fmnist_tiny, "two-nodes", epochs=2))
    try:
        out, _ = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-3000:]
    trials = pd.read_csv(tmp_path / "two-nodes" / "trials.csv", comment="#")
    assert len(trials) == 4 and (trials["status"] == "done").all()
    assert set(trials["node_id"]) == nodes, out[-2000:]  # reported by the shipped trainable on both nodes
    assert trials["hostname"].eq(socket.gethostname()).all()
    print("node ids:", sorted(nodes))


def _trial_on(raylet: psutil.Process) -> bool:
    for child in raylet.children(recursive=True):
        try:
            if any("ImplicitFunc" in part or "train_arch" in part for part in child.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


def test_node_killed_mid_search_is_retried_elsewhere(cluster, tmp_path, fmnist_tiny):
    (raylet,) = [p for p in _processes_of(cluster["tmp"]) if p.name() == "raylet"
                 and f"--node_manager_port={cluster['worker_raylet_port']}" in " ".join(p.cmdline())]
    proc = _search(cluster, _write_config(tmp_path, fmnist_tiny, "node-killed", epochs=2))
    try:
        deadline = time.monotonic() + 180
        while not _trial_on(raylet):
            assert proc.poll() is None and time.monotonic() < deadline, "no trial reached the worker node"
            time.sleep(0.5)
        time.sleep(3)  # in the middle of its training
        _kill([raylet, *raylet.children(recursive=True)])  # SIGKILL: the node and its workers die at once
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-3000:]
    trials = pd.read_csv(tmp_path / "node-killed" / "trials.csv", comment="#")
    assert len(trials) == 4 and (trials["status"] == "done").all(), out[-3000:]
    errors = list((tmp_path / "node-killed" / "tune").glob("*/error.txt"))
    print("trials with an error file (retried):", [e.parent.name for e in errors])
    print(trials[["trial_id", "node_id", "status"]].to_string())


def test_data_check_names_the_node_and_the_path(tmp_path, ray_local):
    from hytnas.cluster import check_data_on_nodes
    from hytnas.config import parse_experiment
    from hytnas.errors import DataError

    empty = tmp_path / "no-data"  # exists (the driver's check_paths passes) but holds no CIFAR-10
    empty.mkdir()
    cfg = parse_experiment({"name": "x", "dataset": {"name": "cifar10", "root": str(empty)}})
    with pytest.raises(DataError) as err:
        check_data_on_nodes(cfg.to_plain(), 32)
    node = ray_local.nodes()[0]
    message = str(err.value)
    assert message.startswith(f"node {node['NodeManagerAddress']} ({node['NodeID']}): ")
    assert str(empty / "cifar-10-batches-py") in message and "\n" not in message


LISTENERS = textwrap.dedent("""
    import json, sys, psutil, ray
    from hytnas.runtime import init_ray
    init_ray(num_cpus=1, _temp_dir=sys.argv[1])
    ray.get(ray.remote(lambda: 1).remote())  # a worker process too
    tree = [psutil.Process(), *psutil.Process().children(recursive=True)]
    pids = {p.pid: p.name() for p in tree}
    print(json.dumps([[c.laddr.ip, c.laddr.port, pids[c.pid]] for c in psutil.net_connections("inet")
                      if c.status == psutil.CONN_LISTEN and c.pid in pids]))
    ray.shutdown()
""")


def test_local_ray_listens_on_loopback_only():
    tmp = tempfile.mkdtemp(prefix="hytnas-ray-", dir="/tmp")
    proc = subprocess.Popen([sys.executable, "-c", LISTENERS, tmp], env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
        _kill(_processes_of(tmp))
        shutil.rmtree(tmp, ignore_errors=True)
    assert proc.returncode == 0, err[-3000:]
    listeners = json.loads(out.strip().splitlines()[-1])
    names = {name for _, _, name in listeners}
    assert {"gcs_server", "raylet"} <= names, listeners
    assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for ip, _, _ in listeners), listeners
    print("listeners:", listeners)

