"""`hytnas search` / `hytnas export` on bad input: one line naming the field, exit 2, nothing created."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hytnas.cli import main

HYTNAS = Path(sys.executable).parent / "hytnas"


@pytest.fixture
def exp_yaml(tmp_path, fmnist_dir):
    """A valid experiment file whose experiment folder is ``tmp_path/exp``."""
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "name": "cli-test", "storage_path": str(tmp_path / "exp"),
        "space": {"name": "hytnas", "input_size": 32},
        "dataset": {"name": "fashion-mnist", "root": str(fmnist_dir), "train_size": 64, "val_size": 32},
        "search": {"algorithm": "random"}, "budget": {"num_samples": 2},
    }))
    return path


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("hytnas: error: ")
    return err[0].removeprefix("hytnas: error: ")


BAD = [
    (["budget.num_samples=-3"], "budget.num_samples: must be > 0 (got -3)"),
    (["training.epochs=abc"], "training.epochs: must be an integer (got 'abc')"),
    (["budget.num_sampels=3"], "budget.num_sampels: unknown key"),
    (["dataset.name=mnist"], "dataset.name: must be one of fashion-mnist, cifar10, vww, imagefolder (got 'mnist')"),
    (["search.algorithm=bo"], "search.algorithm: must be one of mobo, random,"),
    (["dataset.root=/nonexistent/fmnist"], "dataset.root: folder /nonexistent/fmnist does not exist"),
    (["search.options={bogus: 1}"], "search.options: searcher random: unknown option 'bogus'"),
    (["budget.num_samples"], "--set 'budget.num_samples': expected KEY=VALUE"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(exp_yaml, tmp_path, capsys, overrides, message):
    before = _listing(tmp_path)
    argv = ["search", str(exp_yaml)] + [a for o in overrides for a in ("--set", o)]
    assert main(argv) == 2
    assert _one_error_line(capsys).startswith(message)
    assert _listing(tmp_path) == before


def test_missing_config_file(tmp_path, capsys):
    assert main(["search", str(tmp_path / "nope.yaml")]) == 2
    assert _one_error_line(capsys).startswith(f"config {tmp_path / 'nope.yaml'}: file not found")
    assert _listing(tmp_path) == set()


def test_unknown_key_in_the_file(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text("name: x\nstorage_path: out\ntraining:\n  epochs: 2\n  lr_schedule: cosine\n")
    assert main(["search", str(path)]) == 2
    assert _one_error_line(capsys).startswith("training.lr_schedule: unknown key; allowed keys here: epochs,")
    assert _listing(tmp_path) == {"exp.yaml"}


def test_data_folder_without_the_dataset(exp_yaml, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    before = _listing(tmp_path)
    assert main(["search", str(exp_yaml), "--set", "dataset.name=imagefolder", "--set", f"dataset.root={empty}"]) == 2
    line = _one_error_line(capsys)
    assert str(empty) in line
    assert _listing(tmp_path) == before


def test_existing_search_needs_resume_and_resume_needs_a_search(exp_yaml, tmp_path, capsys):
    assert main(["search", str(exp_yaml), "--resume"]) == 2
    assert _one_error_line(capsys).startswith(f"--resume: {tmp_path / 'exp'} holds no search to resume")
    (tmp_path / "exp" / "tune").mkdir(parents=True)
    (tmp_path / "exp" / "tune" / "tuner.pkl").write_bytes(b"")  # what Tune checks for a restorable run
    (tmp_path / "exp" / "experiment.yaml").write_text("name: cli-test\n")
    before = {p: p.read_bytes() for p in (tmp_path / "exp").rglob("*") if p.is_file()}
    assert main(["search", str(exp_yaml)]) == 2
    assert _one_error_line(capsys).startswith(f"storage_path: {tmp_path / 'exp'} already holds the search 'cli-test'; add --resume")
    assert {p: p.read_bytes() for p in (tmp_path / "exp").rglob("*") if p.is_file()} == before


def test_non_empty_folder_is_not_a_storage_path(exp_yaml, tmp_path, capsys):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "notes.txt").write_text("mine")
    assert main(["search", str(exp_yaml)]) == 2
    assert _one_error_line(capsys).startswith(f"storage_path: {tmp_path / 'exp'} exists and is not an empty folder")


def test_export_of_a_folder_without_a_search(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert _one_error_line(capsys) == f"EXPERIMENT_DIR: {tmp_path} is not a hytnas experiment folder (no experiment.yaml)"
    assert _listing(tmp_path) == set()


def test_console_script_reports_bad_input(exp_yaml, tmp_path):
    proc = subprocess.run([str(HYTNAS), "search", str(exp_yaml), "--set", "budget.num_samples=0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "hytnas: error: budget.num_samples: must be > 0 (got 0)"
    assert not (tmp_path / "exp").exists()


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["search", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--set", "--address", "--resume", "CONFIG"):
        assert flag in out


def test_a_run_that_failed_before_tune_started_can_start_again(exp_yaml, tmp_path):
    from hytnas.config import load_experiment
    from hytnas.search import preflight

    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "experiment.yaml").write_text("name: cli-test\n")  # all such a run leaves
    plan = preflight(load_experiment(exp_yaml))
    assert plan.num_classes == 10 and plan.in_channels == 1 and not plan.resume
