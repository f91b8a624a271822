"""`hytnas search` / `hytnas export` on bad input: one line naming the field, exit 2, nothing created."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hytnas.cli import main
from hytnas.errors import ConfigError

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


# ------------------------------------------------------------------ preflight: one table of bad inputs
def _edit(path: Path, section: str, key: str, value) -> None:
    data = yaml.safe_load(path.read_text())
    data.setdefault(section, {})[key] = value
    path.write_text(yaml.safe_dump(data))


def _storage_under_a_file(tmp_path: Path, exp_yaml: Path) -> list[str]:
    (tmp_path / "afile").write_text("not a folder")
    return ["search", str(exp_yaml), "--set", f"storage_path={tmp_path / 'afile' / 'exp'}"]


def _unwritable_storage(tmp_path: Path, exp_yaml: Path) -> list[str]:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # root: os.access reports every folder writable (the file case covers root)
        ro.chmod(0o700)
        pytest.skip("running as root: a 0o500 folder is still writable")
    return ["search", str(exp_yaml), "--set", f"storage_path={ro / 'exp'}"]


def _empty_root(tmp_path: Path, exp_yaml: Path) -> list[str]:
    (tmp_path / "empty").mkdir()
    return ["search", str(exp_yaml), "--set", f"dataset.root={tmp_path / 'empty'}"]


def _no_gpu(tmp_path: Path, exp_yaml: Path) -> list[str]:
    import torch

    if torch.cuda.device_count() > 0:
        pytest.skip("this machine has a CUDA GPU")
    return ["search", str(exp_yaml), "--set", "resources.gpu=1"]


def _export_out_under_a_file(tmp_path: Path, exp_yaml: Path) -> list[str]:
    from hytnas.config import load_experiment

    done = tmp_path / "done"  # a finished search's folder, as far as export reads it before writing
    done.mkdir()
    (done / "experiment.yaml").write_text(load_experiment(exp_yaml).to_yaml())
    (done / "pareto.csv").write_text("")
    (tmp_path / "afile").write_text("not a folder")
    return ["export", str(done), "--out", str(tmp_path / "afile" / "models")]


PREFLIGHT = [
    ("quoted-number", lambda t, y: (_edit(y, "budget", "num_samples", "4"), ["search", str(y)])[1],
     "budget.num_samples: must be an integer, not the string '4'"),
    ("quoted-bool", lambda t, y: (_edit(y, "training", "channels_last", "yes"), ["search", str(y)])[1],
     "training.channels_last: must be true or false, not the string 'yes'"),
    ("cpu-too-large", lambda t, y: ["search", str(y), "--set", f"resources.cpu={len(os.sched_getaffinity(0)) + 1}"],
     "resources.cpu: "),
    ("gpu-without-gpu", _no_gpu, "resources.gpu: 1 GPUs per trial, but this machine has no CUDA GPU"),
    ("storage-under-a-file", _storage_under_a_file, "storage_path: "),
    ("storage-unwritable", _unwritable_storage, "storage_path: "),
    ("train-size-too-large", lambda t, y: ["search", str(y), "--set", "dataset.train_size=100000"],
     "dataset.train_size: 100000 is more than the 59968 images of fashion-mnist"),
    ("empty-explicit-root", _empty_root, "dataset.root: "),
    ("address-nothing-listens", lambda t, y: ["search", str(y), "--address", "127.0.0.1:1"], "--address: "),
    ("export-out-unwritable", _export_out_under_a_file, "--out: "),
]


@pytest.mark.parametrize("make_argv,message", [c[1:] for c in PREFLIGHT], ids=[c[0] for c in PREFLIGHT])
def test_preflight_refuses_bad_input_before_anything_is_created(exp_yaml, tmp_path, capsys, make_argv, message):
    """Exit 2, one line naming the field, no experiment folder (and so no Ray run), within 30 s."""
    argv = make_argv(tmp_path, exp_yaml)
    before = _listing(tmp_path)
    t0 = time.monotonic()
    assert main(argv) == 2
    elapsed = time.monotonic() - t0
    assert _one_error_line(capsys).startswith(message)
    assert _listing(tmp_path) == before
    assert not (tmp_path / "exp").exists()
    assert elapsed < 30, f"took {elapsed:.1f} s"


# ------------------------------------------------------------------ failed trials
def test_failed_trial_is_one_line_retried_then_aborts_the_search(exp_yaml, tmp_path, ray_local, capfd, monkeypatch):
    from hytnas.config import load_experiment
    from hytnas.runtime import QUIET_ENV
    from hytnas.search import _collect, build_tuner, failure_message, preflight

    for var, value in QUIET_ENV.items():  # as init_ray sets them (ray_local started Ray without it)
        monkeypatch.setenv(var, value)
    cfg = load_experiment(exp_yaml, ["budget.num_samples=3", "mlflow.enabled=false", "failure.max_failures=1",
                                     "failure.max_failed_trials=0"])

    def boom(config):  # local: pickled by value, the Ray worker need not import this test module
        raise ValueError("boom happened\nsecond line of the message")

    plan = preflight(cfg)
    grid = build_tuner(cfg, plan=plan, trainable=boom).fit()
    result = _collect(cfg, plan, grid, 1.0)
    out, err = capfd.readouterr()
    trial = result.error_files[0].parent.name
    assert f"[hytnas] trial {trial} failed (ValueError: boom happened); retrying it from its last checkpoint (retry 1 of 1)" in out
    assert f"[hytnas] trial {trial} failed: ValueError: boom happened; traceback: {tmp_path / 'exp' / 'tune' / trial / 'error.txt'}" in out
    assert "Traceback" not in out + err and "second line" not in out + err  # the traceback is in error.txt only
    assert result.aborted and not result.interrupted and result.num_failed == 1 and len(result.trials) == 1
    assert result.error_files == (tmp_path / "exp" / "tune" / trial / "error.txt",)
    assert "second line of the message" in result.error_files[0].read_text()
    assert failure_message(result, cfg) == (
        f"the search was aborted: 1 trials failed, more than failure.max_failed_trials=0; traceback: {result.error_files[0]}")


@pytest.mark.parametrize("statuses,code,message", [
    (["done", "done"], 0, None),
    (["done", "stopped"], 0, None),
    (["done", "failed"], 1, "1 of 2 trials failed; traceback: "),
])
def test_exit_code_tells_whether_every_trial_succeeded(exp_yaml, tmp_path, capsys, monkeypatch, statuses, code, message):
    import pandas as pd

    import hytnas.search
    from hytnas.search import SearchResult

    errors = tuple(tmp_path / f"t{i}" / "error.txt" for i, s in enumerate(statuses) if s == "failed")
    result = SearchResult(tmp_path / "exp", pd.DataFrame({"status": statuses}), pd.DataFrame(), {}, None, None,
                          False, 1.0, (), False, errors)
    monkeypatch.setattr(hytnas.search, "run_search", lambda cfg, **kw: result)
    assert main(["search", str(exp_yaml)]) == code
    err = capsys.readouterr().err.strip()
    if message is None:
        assert err == ""
    else:
        assert err == f"hytnas: error: {message}{errors[0]}"


def test_printed_commands_are_shell_quoted(tmp_path):
    import shlex

    from hytnas.config import parse_experiment
    from hytnas.search import resume_command
    from hytnas.tracking import ui_command

    cfg = parse_experiment({"name": "x", "storage_path": str(tmp_path / "my runs" / "x")})
    assert shlex.split(resume_command(cfg)) == ["hytnas", "search", str(tmp_path / "my runs" / "x" / "experiment.yaml"),
                                                "--resume"]
    assert shlex.split(ui_command(cfg.tracking_uri))[:3] == ["mlflow", "ui", "--backend-store-uri"]
    assert shlex.split(ui_command(cfg.tracking_uri))[3] == f"sqlite:///{tmp_path / 'my runs' / 'x' / 'mlflow.db'}"


def test_a_trial_no_node_can_hold_is_refused_after_connecting(ray_local):
    from hytnas.config import parse_experiment
    from hytnas.search import check_cluster_resources

    cpus = max(n["Resources"].get("CPU", 0) for n in ray_local.nodes() if n["Alive"])
    check_cluster_resources(parse_experiment({"name": "x", "resources": {"cpu": cpus}}))
    with pytest.raises(ConfigError, match=r"^resources.cpu: .* CPUs per trial, but the largest node of the Ray cluster"):
        check_cluster_resources(parse_experiment({"name": "x", "resources": {"cpu": cpus + 1}}))
