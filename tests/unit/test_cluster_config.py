"""configs/cluster.yaml is a Ray cluster-launcher config with the keys `ray up` needs, and it
installs the package on every node."""
from __future__ import annotations

from pathlib import Path

import yaml

from hytnas.config import is_uri, parse_experiment

CLUSTER = Path(__file__).resolve().parents[2] / "configs" / "cluster.yaml"


def test_cluster_yaml_has_the_launcher_keys():
    cfg = yaml.safe_load(CLUSTER.read_text())
    assert {"cluster_name", "provider", "available_node_types", "head_node_type", "setup_commands"} <= set(cfg)
    assert cfg["provider"]["type"] in ("aws", "gcp")
    assert cfg["head_node_type"] in cfg["available_node_types"]
    for name, node in cfg["available_node_types"].items():
        assert {"resources", "node_config"} <= set(node), name
    assert any("pip install" in c and "hytnas" in c for c in cfg["setup_commands"])
    assert cfg["max_workers"] >= max(n.get("max_workers", 0) for n in cfg["available_node_types"].values())


def test_storage_uri_is_kept_and_driver_files_stay_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = parse_experiment({"name": "s3run", "storage_path": "s3://bucket/path"})
    assert cfg.storage_path == "s3://bucket/path" == cfg.storage_uri == cfg.tune_storage
    assert cfg.storage_dir == tmp_path / "experiments" / "s3run"
    assert cfg.tracking_uri == f"sqlite:///{tmp_path / 'experiments' / 's3run' / 'mlflow.db'}"
    local = parse_experiment({"name": "loc", "storage_path": "runs/x"})
    assert local.storage_uri is None and local.tune_storage == str(tmp_path / "runs" / "x")
    assert is_uri("gs://b/p") and not is_uri("/abs/path") and not is_uri("rel/s3:/x")
