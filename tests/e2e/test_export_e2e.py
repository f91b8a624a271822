"""Results and export end to end: a tiny real search (Ray, real Fashion-MNIST subset, 3 trials x
1 epoch), then ``hytnas results`` in every format and ``hytnas export`` as ONNX with int8
quantization (checked with ONNX Runtime) and as TorchScript."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch

from hytnas.cli import main
from hytnas.config import parse_experiment
from hytnas.export import ORT_TOLERANCE, SIZE_TOLERANCE

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def search(tmp_path_factory, fmnist_tiny, ray_local):
    from hytnas.search import run_search

    tmp = tmp_path_factory.mktemp("export-e2e")
    cfg = parse_experiment({
        "name": "export-e2e", "storage_path": str(tmp / "exp"), "space": {"name": "hytnas", "input_size": 28},
        "dataset": {"name": "fashion-mnist", "root": str(fmnist_tiny), "train_size": 512, "val_size": 256,
                    "test_size": 256},
        "training": {"epochs": 1, "batch_size": 64}, "objectives": ["val_accuracy", "params_k"],
        "constraints": ["macs_m <= 3"], "search": {"algorithm": "random", "seed": 0, "options": {}},
        "budget": {"num_samples": 3, "max_concurrent_trials": 2}, "hardware": {"latency_runs": 3},
        "mlflow": {"enabled": False},
    })
    result = run_search(cfg, quiet=True)
    assert result.num_done == 3
    return cfg, result, tmp


def test_results_in_every_format(search, capsys):
    cfg, result, tmp = search
    d = str(cfg.storage_dir)
    assert main(["results", d]) == 0
    table = capsys.readouterr().out
    assert all(t in table for t in result.trials["trial_id"])
    assert main(["results", d, "--format", "csv"]) == 0
    rows = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"trial_id": str})
    assert sorted(rows["trial_id"]) == sorted(result.trials["trial_id"])
    assert main(["results", d, "--pareto", "--format", "json", "--out", str(tmp / "front.json")]) == 0
    front = json.loads((tmp / "front.json").read_text())
    assert {r["trial_id"] for r in front} == set(result.pareto["trial_id"])


def test_export_onnx_int8_and_torchscript(search, capsys):
    cfg, result, tmp = search
    d = str(cfg.storage_dir)
    assert main(["export", d, "--pareto", "--format", "onnx", "--quantize", "int8", "--out", str(tmp / "onnx")]) == 0
    folders = sorted((tmp / "onnx").iterdir())
    assert len(folders) == len(result.pareto) >= 1
    import onnxruntime as ort

    for folder in folders:
        rep = json.loads((folder / "export.json").read_text())
        assert rep["check"]["passed"] and rep["check"]["max_abs_diff"] < ORT_TOLERANCE
        assert 0 <= rep["accuracy"]["int8"] <= 1 and 0 <= rep["accuracy"]["fp32"] <= 1
        assert rep["accuracy"]["images"] == 256  # the whole validation split (< 1000 images)
        assert rep["size_check"]["passed"] and rep["size_check"]["relative_difference"] <= SIZE_TOLERANCE
        assert rep["schedule"] == {"epochs": 1, "train_size": 512, "dataset": "fashion-mnist", "subset_seed": 0,
                                   "retrained": False}
        readme = (folder / "README.md").read_text()
        assert "not** a full-schedule retrain" in readme and "onnxruntime" in readme and "int8" in readme
        for name in ("arch.json", "weights.pt", "model.onnx", "model.int8.onnx"):
            assert (folder / name).is_file(), name
        sess = ort.InferenceSession(str(folder / "model.int8.onnx"), providers=["CPUExecutionProvider"])
        assert sess.run(None, {"input": np.zeros((3, 1, 28, 28), np.float32)})[0].shape == (3, 10)
    assert "int8" in capsys.readouterr().out

    trial = result.pareto["trial_id"].iloc[0]
    assert main(["export", d, "--trial", trial, "--format", "torchscript", "--out", str(tmp / "ts")]) == 0
    (folder,) = (tmp / "ts").iterdir()
    rep = json.loads((folder / "export.json").read_text())
    assert rep["check"]["passed"] and rep["trial_id"] == trial
    from hytnas.models import ArchCfg, build_model

    meta = json.loads((folder / "arch.json").read_text())
    model = build_model(ArchCfg.from_dict(meta["arch_cfg"]), meta["num_classes"], meta["in_channels"], meta["input_size"])
    model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    model.eval()
    scripted = torch.jit.load(str(folder / "model.ts"))
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.allclose(scripted(x), model(x), atol=1e-5)

    # bad input: one line, exit 2
    assert main(["export", d, "--trial", "no-such-trial"]) == 2
    assert main(["export", d, "--pareto", "--out", "/proc/hytnas-no-such"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--trial" in err[0] and "--out" in err[1]
