"""The trial protocol: what every trainable reports and what a trial's checkpoint folder holds.

Ray-free (no Ray, Lightning or MLflow): the trainables (:mod:`trainables.train`,
:mod:`trainables.lookup`, :mod:`trainables.surrogate`) write this protocol; the report, the
MLflow tracker and ``hytnas export`` read it.

Results: every report carries :data:`EPOCH_METRICS` (the lookup and surrogate trainables:
``val_accuracy`` at least), ``epoch`` (1-based), :data:`hytnas.objectives.COST_METRICS`,
``latency_ms`` (``host_latency_ms`` too when a device profile computes ``latency_ms``) and
``arch_id`` (the training trainable also ``node_id`` and ``hostname``: the Ray node and host the
trial ran on); the final report adds :data:`FINAL_METRICS` and ``done: True``.

Checkpoint folder: :data:`CKPT_FILE` (the whole training state), :data:`WEIGHTS_FILE` (the bare
model ``state_dict``, loadable with ``weights_only=True``) and :data:`STATE_FILE` (format
``hytnas-trial`` v1: genes, arch id, input size, classes, channels, latency, last metrics).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from hytnas.errors import DataError
from hytnas.objectives import COST_METRICS
from hytnas.utils import atomic_write_json

#: Metrics reported after every epoch.
EPOCH_METRICS = ("val_accuracy", "val_loss", "train_loss")
#: Metrics the final report adds (with ``done: True``).
FINAL_METRICS = ("test_accuracy", "test_loss", "train_time_s")
#: Every key a trainable reports.
RESULT_KEYS = (
    *EPOCH_METRICS,
    "epoch",
    *COST_METRICS,
    "latency_ms",
    "host_latency_ms",
    "arch_id",
    "node_id",
    "hostname",
    *FINAL_METRICS,
    "done",
)
#: What :func:`trial_status` returns.
STATUSES = ("done", "stopped", "failed", "running", "pending")

#: Trial config key of a trial that continues earlier trials of its arch which the Ray Tune experiment
#: forgot (a killed driver): their ids, comma-separated, newest first (see :mod:`search_algos.record`).
RETRY_OF_KEY = "retry_of"
#: The Ray Tune folder in an experiment folder: ``<storage>/tune/trial_<id>/checkpoint_<n>``.
TUNE_DIR = "tune"
#: The effective config of a search, written once in its experiment folder.
CONFIG_FILE = "experiment.yaml"

CKPT_FILE = "lightning.ckpt"
WEIGHTS_FILE = "model.pt"
STATE_FILE = "trial.json"
STATE_FORMAT = "hytnas-trial"
STATE_VERSION = 1


def is_complete(result: Mapping[str, Any] | None, max_epochs: int | None = None) -> bool:
    """Whether ``result`` is the final, full-fidelity report of a trial: its ``epoch`` reached
    ``max_epochs`` (when known), else its ``done`` flag. Ray Tune also sets ``done: True`` on the
    last result of a trial a scheduler stopped (e.g. ASHA), so ``done`` alone is not enough."""
    result = result or {}
    if max_epochs is not None:
        epoch = result.get("epoch")
        return isinstance(epoch, (int, float)) and epoch >= max_epochs
    return bool(result.get("done"))


def trial_status(
    tune_status: str, last_result: Mapping[str, Any] | None, error: bool = False, max_epochs: int | None = None
) -> str:
    """Map a Ray Tune trial status string (+ the trial's last result) to one of :data:`STATUSES`."""
    if error or tune_status == "ERROR":
        return "failed"
    if tune_status == "TERMINATED":
        return "done" if is_complete(last_result, max_epochs) else "stopped"
    if tune_status == "RUNNING":
        return "running"
    if tune_status == "PAUSED":
        return "stopped"
    return "pending"


def trial_name(trial: Any) -> str:
    """Short trial names and folders: ``trial_<id>`` (the genes are in the trial's params)."""
    return f"trial_{trial.trial_id}"


def retry_of(config: Mapping[str, Any] | None) -> list[str]:
    """The earlier trial ids a trial config continues (:data:`RETRY_OF_KEY`), newest first."""
    value = (config or {}).get(RETRY_OF_KEY) or ""
    return [t for t in str(value).split(",") if t]


def newest_checkpoint(tune_dir: str | Path, trial_ids: list[str]) -> Path | None:
    """The newest complete checkpoint folder of the first of ``trial_ids`` that has one (their
    folders ``<tune_dir>/trial_<id>/checkpoint_<n>``): :data:`CKPT_FILE` and :data:`WEIGHTS_FILE`
    present and its :data:`STATE_FILE` readable; None when there is none."""
    for tid in trial_ids:
        folders = sorted(Path(tune_dir, f"trial_{tid}").glob("checkpoint_*"), reverse=True)
        for folder in folders:
            if (folder / CKPT_FILE).is_file() and (folder / WEIGHTS_FILE).is_file():
                try:
                    read_trial_state(folder)
                except DataError:
                    continue
                return folder
    return None


def prune_checkpoints(trial_dir: str | Path, keep: str | Path) -> list[Path]:
    """Delete the ``checkpoint_*`` folders of ``trial_dir`` other than ``keep`` (the trial's
    latest); returns those deleted. Only for a finished trial whose latest checkpoint a written Ray
    Tune snapshot names (an older snapshot may name an older checkpoint)."""
    keep = Path(keep).resolve()
    gone = []
    for folder in sorted(Path(trial_dir).glob("checkpoint_*")):
        if folder.is_dir() and folder.resolve() != keep:
            shutil.rmtree(folder)
            gone.append(folder)
    return gone


def new_state(
    space: Any, arch: Any, arch_id: str, input_size: int, num_classes: int, in_channels: int, latency_ms: float
) -> dict[str, Any]:
    """The :data:`STATE_FILE` content of a trial (``metrics`` is added per checkpoint)."""
    return {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "arch_id": arch_id,
        "space": space.name,
        "genes": space.to_config(arch),
        "input_size": input_size,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "latency_ms": float(latency_ms),
    }


def write_trial_files(folder: str | Path, model: torch.nn.Module, state: Mapping[str, Any]) -> None:
    """:data:`WEIGHTS_FILE` (CPU ``state_dict``) and :data:`STATE_FILE` (non-finite floats as null) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, folder / WEIGHTS_FILE)
    atomic_write_json(folder / STATE_FILE, _jsonable(state))


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def read_trial_state(checkpoint_dir: str | Path) -> dict[str, Any]:
    """The :data:`STATE_FILE` of a checkpoint folder; :class:`DataError` when unreadable or not v1."""
    path = Path(checkpoint_dir) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{path}: unreadable trial state ({type(exc).__name__}); the checkpoint is incomplete"
        ) from None
    if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise DataError(f"{path}: not a version-{STATE_VERSION} hytnas trial state")
    return state


def error_line(error: Any, limit: int = 300) -> str:
    """One line of a trial's error, at most ``limit`` characters: ``"Type: first line of the
    message"`` of an exception (of its ``cause`` for a Ray task error), or the last line of the
    text of an ``error.txt`` (Tune's ``Failure #`` header skipped)."""
    cause = getattr(error, "cause", None) or error
    if isinstance(cause, str):
        lines = [ln for ln in cause.strip().splitlines() if ln.strip() and not ln.startswith("Failure #")]
        return lines[-1].strip()[:limit] if lines else "unknown error"
    msg = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {msg}"[:limit] if msg else type(cause).__name__
