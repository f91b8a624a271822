"""benchmarks/accuracy_predictor.py: its random splits are the CLI's seeded splits, the fresh
protocol tests exactly the rows after K, and the results file holds every protocol."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from hytnas.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "benchmarks" / "data" / "fmnist-hytnas-v1.csv.gz"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("accuracy_predictor", ROOT / "benchmarks" / "accuracy_predictor.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["accuracy_predictor"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_protocols_and_results_file(bench, tmp_path, capsys):
    out = tmp_path / "acc.json"
    assert bench.main(["--table", str(TABLE), "--models", "gp", "--n-train", "20", "--repeats", "2", "--cv", "0",
                       "--fresh-after", "280", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["protocols"]) == {"random", "fresh"} and res["n_archs"] == 300
    assert res["protocols"]["fresh"]["n_test"] == 20 and res["protocols"]["random"]["n_test"] == 280
    rand = res["protocols"]["random"]
    assert len(rand["models"]["gp"]["per_split"]) == 2 and set(rand["baselines"]) == {"params_k", "macs_m"}
    assert "| fresh (2 splits) | 20 | gp |" in capsys.readouterr().out
    # split 1 is what `hytnas predictor eval --train-size 20 --seed 1` scores
    assert cli(["predictor", "eval", "--data", str(TABLE), "--target", "val_accuracy", "--model", "gp",
                "--train-size", "20", "--seed", "1", "--json"]) == 0
    tau = json.loads(capsys.readouterr().out)[0]["kendall_tau"]
    assert rand["models"]["gp"]["per_split"][1] == pytest.approx(tau, abs=1e-12)


def test_fresh_after_out_of_range_is_one_line(bench, tmp_path):
    with pytest.raises(SystemExit, match="--fresh-after: must be between --n-train"):
        bench.main(["--table", str(TABLE), "--n-train", "20", "--fresh-after", "10", "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("extra, expect", [
    (["--models", "gp,oracle"], "--models: oracle; choose from"),
    (["--models", "lut"], "--models: lut; choose from"),
    (["--baselines", "energy_mj"], "missing metric column 'energy_mj'"),
    (["--target", "source"], "row 2, column source: 'sobol' is not a number"),
])
def test_bad_arguments_are_one_line(bench, tmp_path, extra, expect):
    out = tmp_path / "x.json"
    with pytest.raises(SystemExit) as exc:
        bench.main(["--table", str(TABLE), "--n-train", "20", "--repeats", "1", "--cv", "0", *extra, "--out", str(out)])
    msg = str(exc.value)
    assert msg.startswith("accuracy_predictor: ") and expect in msg and "\n" not in msg
    assert not out.exists()
