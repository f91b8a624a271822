"""Hardware-aware search end to end: profile a per-unit latency table of a tiny space on this
machine, make it a device profile (``latency.method: lut``), and run a short search on real Ray,
real MLflow (sqlite), real BoTorch (mobo) and real Fashion-MNIST images whose objectives are
``val_accuracy`` and the LUT latency (a *known* objective) under ``peak_sram_kb <= 256``."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hytnas.config import parse_experiment
from hytnas.costs import arch_costs
from hytnas.devices import latency_fn
from hytnas.hardware import ProfileSettings, get_profile, run_profile
from hytnas.space import get_space
from hytnas.table import read_arch_table

pytestmark = pytest.mark.e2e

#: 512 archs, 55 distinct units at 96 px; about 40 % of the archs satisfy peak_sram_kb <= 256
SPACE = {"name": "e2e-micro", "input_size": 96, "stem_channels": 16, "head_mult": 2, "head_max_channels": 64,
         "choices": {"n": [1], "t": [1], "e": [1, 6], "h": [1], "f": [1], "p": [2]},
         "width": {"c1": [8, 16], "multipliers": [1, 2], "caps": [None, None, 32, 32, 32]}}
SRAM_KB = 256


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> tuple[Path, Path]:
    """A profiled 'board': the space YAML and a device profile YAML pointing at a fresh LUT."""
    root = tmp_path_factory.mktemp("board")
    space_yaml = root / "space.yaml"
    space_yaml.write_text(yaml.safe_dump(SPACE))
    space = get_space(str(space_yaml))
    settings = ProfileSettings(input_size=96, in_channels=1, runs=3, warmup=1, warmup_s=0.5, n_validate=12,
                               validate_runs=3, validate_warmup=1)  # Fashion-MNIST: 1 channel, 10 classes
    run_profile(space, root / "lut", settings, device_name="test-board")
    profile_yaml = root / "test-board.yaml"
    profile_yaml.write_text(yaml.safe_dump({
        "name": "test-board", "kind": "cpu", "description": "this machine, profiled in the test",
        "latency": {"method": "lut", "path": "lut"},  # relative to the profile file
    }))
    return space_yaml, profile_yaml


def test_search_with_lut_latency_and_sram_constraint(tmp_path, board, fmnist_tiny, ray_local):
    from mlflow import MlflowClient

    from hytnas.search import make_searcher, run_search

    space_yaml, profile_yaml = board
    cfg = parse_experiment({
        "name": "hw-e2e", "storage_path": str(tmp_path / "exp"),
        "space": {"name": str(space_yaml)},
        "dataset": {"name": "fashion-mnist", "root": str(fmnist_tiny), "train_size": 128, "val_size": 64,
                    "test_size": 64},
        "training": {"epochs": 1, "batch_size": 32},
        "objectives": ["val_accuracy", "latency_ms"],
        "constraints": [f"peak_sram_kb <= {SRAM_KB}"],
        "search": {"algorithm": "mobo", "seed": 0, "options": {"n_initial": 3}},
        "budget": {"num_samples": 5, "max_concurrent_trials": 2},
        "hardware": {"device": str(profile_yaml), "latency_runs": 3},
    })
    space = cfg.build_space()

    # the searcher sees latency as a known objective computed by the LUT predictor
    searcher = make_searcher(cfg, space, 10, 1)
    problem = searcher.core.problem
    assert {o.name: o.source for o in problem.objectives} == {"val_accuracy": "reported", "latency_ms": "known"}

    result = run_search(cfg, quiet=True)
    trials = result.trials
    assert len(trials) == 5 and (trials["status"] == "done").all() and trials["arch_id"].nunique() == 5

    # every proposed arch satisfies the SRAM constraint, by the exact cost model
    archs, rows = read_arch_table(cfg.storage_dir / "trials.csv", space, metrics=["latency_ms", "peak_sram_kb"])
    peaks = [arch_costs(space.to_arch_cfg(a), 96, 10, 1)["peak_sram_kb"] for a in archs]
    assert all(p <= SRAM_KB for p in peaks), peaks
    assert list(rows["peak_sram_kb"]) == pytest.approx(peaks)

    # the latency the trials report is the device's (LUT + residual correction), not the host's
    fn = latency_fn(get_profile(str(profile_yaml)), space, num_classes=10, in_channels=1)
    assert list(rows["latency_ms"]) == pytest.approx(fn(archs).tolist(), rel=1e-5)  # the CSV keeps 6 digits

    # MLflow (real, sqlite) holds the same device latencies, one child run per trial
    client = MlflowClient(cfg.tracking_uri)
    exp = client.get_experiment_by_name(cfg.mlflow_experiment)
    children = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 5
    logged = sorted(r.data.metrics["latency_ms"] for r in children)
    assert logged == pytest.approx(sorted(rows["latency_ms"]), rel=1e-4)


def test_search_refuses_a_profile_without_its_table(tmp_path, board, fmnist_tiny):
    from hytnas.errors import HardwareError
    from hytnas.search import preflight

    space_yaml, _ = board
    cfg = parse_experiment({
        "name": "hw-e2e-missing", "storage_path": str(tmp_path / "exp"), "space": {"name": str(space_yaml)},
        "dataset": {"name": "fashion-mnist", "root": str(fmnist_tiny), "train_size": 64, "val_size": 32},
        "objectives": ["val_accuracy", "latency_ms"], "hardware": {"device": "raspberry-pi-4"},
    })
    with pytest.raises(HardwareError, match="raspberry-pi-4.*latency.path is not set.*hytnas profile"):
        preflight(cfg)
    assert not (tmp_path / "exp").exists()
