"""The trials of a search as a table, from its experiment folder alone: :func:`load`.

>>> from hytnas.results import load
>>> load("experiments/quickstart", pareto=True)[["arch_id", "val_accuracy", "params_k"]]

Ray-free and MLflow-free: it reads files only, so it works on a finished search, one still
running and one that was killed.

Where the rows come from, in this order:

1. ``trials.csv`` (written when a search ends, :func:`hytnas.report.write_report`): its rows and
   its ``feasible`` / ``pareto`` flags as the search computed them.
2. Otherwise Tune's trial folders ``<dir>/tune/trial_*/``: the trial config from
   ``params.json``, the last result from ``result.json`` (one JSON object per line), the newest
   ``checkpoint_*`` folder holding a ``trial.json``. The status comes from Tune's newest
   ``experiment_state-*.json`` when it names the trial (``error.txt`` in the folder means
   failed), else from the result alone (complete: done; partial: stopped; none: pending); a
   killed search therefore shows the trials that were training as ``running``. The ``feasible`` and
   ``pareto`` flags are recomputed (:func:`hytnas.report.trials_frame`) from the saved
   ``experiment.yaml``: its objectives, its constraints and, when ``hardware.memory_constraints``
   is on, the device profile's memory limits.

The frame has the arch-table layout of ``trials.csv``: the 23 gene columns, the metric columns
(:data:`hytnas.report.METRIC_COLUMNS` and any objective), then ``trial_id``, ``arch_id``,
``status``, ``feasible`` (bool), ``pareto`` (bool) and ``checkpoint`` (relative to the folder,
``""`` when none). With ``pareto=True`` only the Pareto-optimal rows, best first objective first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from hytnas.config import ExperimentConfig, parse_experiment
from hytnas.errors import ConfigError, DataError
from hytnas.hardware.profile import get_profile, memory_constraints
from hytnas.objectives import Constraint
from hytnas.report import INFO_COLUMNS, sort_front, trials_frame
from hytnas.space import GENES
from hytnas.table import arch_table_frame, read_arch_table
from hytnas.trial import CONFIG_FILE, STATE_FILE, TUNE_DIR, trial_status

TRIALS_FILE = "trials.csv"
#: columns read back as text from ``trials.csv`` (a hex trial id may look like a number)
TEXT_COLUMNS = ("trial_id", "arch_id", "status", "checkpoint")


def load_saved_experiment(experiment_dir: str | Path) -> ExperimentConfig:
    """The effective config saved in an experiment folder (``experiment.yaml``).

    :class:`~hytnas.errors.ConfigError` naming ``EXPERIMENT_DIR`` when the folder holds no
    readable ``experiment.yaml``.
    """
    d = Path(experiment_dir)
    path = d / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"EXPERIMENT_DIR: {d} is not a hytnas experiment folder (no {CONFIG_FILE})")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise ConfigError(f"EXPERIMENT_DIR: {path} is unreadable") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"EXPERIMENT_DIR: {path} is not an experiment config")
    return parse_experiment(data)


def search_constraints(cfg: ExperimentConfig) -> tuple[Constraint, ...]:
    """The constraints the search applied: the config's plus the device's memory limits (when
    ``hardware.memory_constraints``), as :func:`hytnas.devices.device_wiring` adds them."""
    out = tuple(cfg.get_constraints())
    if cfg.hardware.memory_constraints:
        out += memory_constraints(get_profile(cfg.hardware.device))
    return out


def load(experiment_dir: str | Path, pareto: bool = False) -> pd.DataFrame:
    """All trials of the search in ``experiment_dir`` (or its Pareto front); see the module docstring.

    Raises :class:`~hytnas.errors.ConfigError` (no ``experiment.yaml``) or
    :class:`~hytnas.errors.DataError` (an unreadable ``trials.csv``, or neither ``trials.csv``
    nor a ``tune/`` folder: no search ran there yet). A search with no trial yet gives an
    empty frame with the columns.
    """
    d = Path(experiment_dir)
    if not d.is_dir():
        raise ConfigError(f"EXPERIMENT_DIR: {d} is not a folder")
    cfg = load_saved_experiment(d)
    space = cfg.build_space()
    objectives = cfg.get_objectives()
    if (d / TRIALS_FILE).is_file():
        df = _from_trials_csv(d / TRIALS_FILE, space)
    elif (d / TUNE_DIR).is_dir():
        records = list(_tune_records(d, cfg.training.epochs))
        archs, frame = trials_frame(records, space, objectives, search_constraints(cfg))
        df = arch_table_frame(space, archs, frame.to_dict("records"))
        if not records:
            df = pd.DataFrame(columns=[*GENES, *frame.columns])
    else:
        raise DataError(
            f"EXPERIMENT_DIR: {d} holds neither {TRIALS_FILE} nor a {TUNE_DIR}/ folder: no search ran there"
        )
    if pareto:
        df = sort_front(df[df["pareto"]], objectives).reset_index(drop=True)
    return df


def _from_trials_csv(path: Path, space: Any) -> pd.DataFrame:
    _, df = read_arch_table(path, space)
    missing = [c for c in INFO_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"table {path}: missing column {missing[0]!r}; not a trials table of hytnas search")
    text = pd.read_csv(path, comment="#", dtype=str, keep_default_na=False, usecols=list(TEXT_COLUMNS))
    for col in TEXT_COLUMNS:
        df[col] = text[col].astype(str)
    for col in ("feasible", "pareto"):
        df[col] = df[col].map(_flag).astype(bool)
    return df


def _flag(v: Any) -> bool:
    return str(v).strip().lower() in ("true", "1", "1.0")


# ------------------------------------------------------------------------------ Tune's trial folders
def _tune_records(d: Path, max_epochs: int) -> Iterator[dict[str, Any]]:
    """One trial record (:func:`hytnas.report.trials_frame`) per ``tune/trial_*`` folder with a
    ``params.json``, ordered by the folders' creation (their ``params.json`` time)."""
    tune_dir = d / TUNE_DIR
    statuses = _tune_statuses(tune_dir)
    folders = [f for f in tune_dir.glob("trial_*") if (f / "params.json").is_file()]
    for folder in sorted(folders, key=lambda f: ((f / "params.json").stat().st_mtime, f.name)):
        config = _read_json(folder / "params.json")
        if not isinstance(config, Mapping):
            raise DataError(f"{folder / 'params.json'}: not a trial config")
        metrics = last_result(folder / "result.json")
        trial_id = str(metrics.get("trial_id") or folder.name.removeprefix("trial_"))
        failed = (folder / "error.txt").is_file() or (folder / "error.pkl").is_file()
        tune_status = statuses.get(trial_id)
        if tune_status is not None or failed:
            status = trial_status(tune_status or "ERROR", metrics, error=failed, max_epochs=max_epochs)
        elif metrics.get("val_accuracy") is None:
            status = "pending"
        else:
            status = trial_status("TERMINATED", metrics, max_epochs=max_epochs)
        ckpt = _newest_checkpoint(folder)
        yield {
            "trial_id": trial_id,
            "status": status,
            "config": config,
            "metrics": metrics,
            "checkpoint": str(ckpt.relative_to(d)) if ckpt is not None else None,
        }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise DataError(f"{path}: unreadable JSON") from None


def last_result(path: Path) -> dict[str, Any]:
    """The last complete line of ``result.json`` (a line cut by a kill is skipped); ``{}`` when none."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError):
        raise DataError(f"{path}: unreadable") from None
    for line in reversed(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            return row
    return {}


def _newest_checkpoint(folder: Path) -> Path | None:
    ckpts = [c for c in folder.glob("checkpoint_*") if (c / STATE_FILE).is_file()]
    return max(ckpts, key=lambda c: c.name) if ckpts else None


def _tune_statuses(tune_dir: Path) -> dict[str, str]:
    """Trial id -> Tune status (``TERMINATED``, ``ERROR``, ``RUNNING`` ...) from the newest
    ``experiment_state-*.json``; ``{}`` when there is none or its layout is not the expected one
    (it is Tune's internal format: the folders' own files are the fallback)."""
    states = sorted(tune_dir.glob("experiment_state-*.json"))
    if not states:
        return {}
    try:
        data = json.loads(states[-1].read_text())
        out = {}
        for entry in data.get("trial_data", []):
            state = json.loads(entry[0]) if isinstance(entry, (list, tuple)) else entry
            if isinstance(state, Mapping) and "trial_id" in state and isinstance(state.get("status"), str):
                out[str(state["trial_id"])] = state["status"]
        return out
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, IndexError, AttributeError):
        return {}


__all__ = ["load", "load_saved_experiment", "search_constraints", "CONFIG_FILE", "TUNE_DIR", "TRIALS_FILE"]
