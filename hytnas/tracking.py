"""MLflow tracking of a search: the only module that imports ``mlflow``.

:class:`MlflowLogger` holds the Ray Tune callback hooks (Ray-free here;
:class:`hytnas.callbacks.MlflowTracker` is it as a Tune callback on the driver). It uses ``MlflowClient`` with
explicit run ids (never the global active run), so it neither needs nor disturbs a run of the
calling process:

- one **parent run** per search: the effective config as params (dotted keys) and as the
  artifact ``experiment.yaml``, tags ``hytnas.search`` (the experiment name) and
  ``hytnas.storage_path``; at the end the report files as artifacts;
- one **child run** per trial: tags ``ray_trial_id``, ``mlflow.parentRunId``, ``hytnas.arch_id``;
  params the 23 genes + ``arch_id``; metrics of every report with ``step = epoch``; the final
  report carries the objectives and ``test_accuracy``; status ``FINISHED`` (tag
  ``hytnas.status``: ``done`` or ``stopped``) or ``FAILED`` (tag ``hytnas.error``).

Resuming never duplicates runs: the parent run id lives in ``<storage>/tracking.json`` (a
versioned plain dict written atomically), and a trial's child run is found again by its
``ray_trial_id`` tag under that parent.

After a crash (a killed driver): a trial that started after Ray Tune's last experiment snapshot
is unknown to the resumed experiment (running or even finished), but its child run exists. The
searcher's write-ahead record (:mod:`search_algos.record`) hands its arch out again to a new trial
whose config names the lost trial ids (:func:`hytnas.trial.retry_of`); that trial **continues the
lost trial's run** (:meth:`MlflowLogger.earlier_run`): ``ray_trial_id`` is updated, the lost id is
kept in ``hytnas.retried_trial_ids``, and its metric history may hold the lost attempt's epochs
before the retry's. At the end of every (resumed) run, a RUNNING child run whose trial Tune does
not know is closed as KILLED with the tag ``hytnas.killed_reason``
(:meth:`MlflowLogger.close_orphans`); a later retry of its trial still continues it. Result:
one child run per trial and none left RUNNING. The default store is ``sqlite:///<storage>/mlflow.db``
with artifacts in ``<storage>/mlartifacts``.
"""
from __future__ import annotations

import json
import logging
import math
import shlex
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from hytnas.errors import ConfigError
from hytnas.trial import is_complete, retry_of
from hytnas.utils import atomic_write_json

STATE_FILE = "tracking.json"
STATE_FORMAT = "hytnas-tracking"
STATE_VERSION = 1
#: Result keys logged as child-run metrics (when numeric).
LOGGED_METRICS = (
    "val_accuracy", "val_loss", "test_accuracy", "latency_ms", "host_latency_ms", "params_k", "macs_m", "peak_sram_kb",
    "peak_sram_fp32_kb", "model_size_kb", "model_size_fp32_kb", "train_loss", "epoch", "time_total_s",
)
_MAX_PARAM = 500  # MLflow param values are short strings
#: Tag of a child run closed because its trial is unknown to the Tune experiment.
KILLED_TAG = "hytnas.killed_reason"
KILLED_REASON = ("its Ray Tune trial is not in the experiment: the driver stopped before Tune saved it; "
                 "its arch is retried under a new trial id, which continues this run")
#: Tag listing the lost trial ids a child run was continued from (comma-separated).
RETRY_TAG = "hytnas.retried_trial_ids"


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}} -> {"a.b": "1"}`` (lists as JSON), for MLflow params."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, f"{key}."))
        else:
            text = json.dumps(v) if isinstance(v, (list, dict)) else ("null" if v is None else str(v))
            out[key] = text[:_MAX_PARAM]
    return out


def ui_command(tracking_uri: str) -> str:
    """The exact command that browses a tracking store, bound to localhost (the URI quoted for a
    POSIX shell, so a storage path with spaces can be pasted as is)."""
    return f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)} --host 127.0.0.1 --port 5000"


def quiet_mlflow_logs() -> None:
    """Silence the database-migration chatter of a fresh sqlite store."""
    for name in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _client(tracking_uri: str):
    from mlflow import MlflowClient

    quiet_mlflow_logs()
    return MlflowClient(tracking_uri=tracking_uri)


class MlflowLogger:
    """Logs a search to MLflow through the Ray Tune callback hooks (see the module docstring).

    Args:
        tracking_uri: MLflow store (e.g. ``sqlite:////abs/path/mlflow.db``).
        experiment_name: MLflow experiment (created with artifacts under ``storage``).
        storage: the experiment folder (holds ``tracking.json``).
        config: the effective experiment config as a plain dict (params + ``experiment.yaml``).
        space: the :class:`~hytnas.space.Space` (turns trial configs into the 23 genes).
    """

    def __init__(self, tracking_uri: str, experiment_name: str, storage: str | Path,
                 config: Mapping[str, Any], space: Any) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.storage = Path(storage)
        self.config = dict(config)
        self.space = space
        self.parent_run_id: str | None = None
        self.experiment_id: str | None = None
        self._children: dict[str, str] = {}
        self._mlflow: Any = None

    # pickle-safe: Tune stores its callbacks with the experiment; the client is rebuilt lazily
    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_mlflow"] = None
        d["_children"] = {}
        return d

    @property
    def client(self):
        if self._mlflow is None:
            self._mlflow = _client(self.tracking_uri)
        return self._mlflow

    # ------------------------------------------------------------------ parent run
    def start(self) -> str:
        """Create (or, when resuming, reopen) the parent run; returns its id."""
        state = read_state(self.storage)
        client = self.client
        if state is not None:
            run = client.get_run(state["parent_run_id"])
            self.parent_run_id, self.experiment_id = run.info.run_id, run.info.experiment_id
            client.update_run(self.parent_run_id, status="RUNNING")
            return self.parent_run_id
        exp = client.get_experiment_by_name(self.experiment_name)
        if exp is None:
            art = (self.storage / "mlartifacts").resolve().as_uri()
            self.experiment_id = client.create_experiment(self.experiment_name, artifact_location=art)
        else:
            self.experiment_id = exp.experiment_id
        name = str(self.config.get("name", "search"))
        run = client.create_run(self.experiment_id, run_name=name, tags={
            "hytnas.search": name, "hytnas.role": "search", "hytnas.storage_path": str(self.storage)})
        self.parent_run_id = run.info.run_id
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in flatten(self.config).items()]
        for i in range(0, len(params), 100):
            client.log_batch(self.parent_run_id, params=params[i:i + 100])
        client.log_text(self.parent_run_id, yaml.safe_dump(self.config, sort_keys=False), "experiment.yaml")
        atomic_write_json(self.storage / STATE_FILE, {
            "format": STATE_FORMAT, "version": STATE_VERSION, "tracking_uri": self.tracking_uri,
            "experiment_id": self.experiment_id, "parent_run_id": self.parent_run_id})
        return self.parent_run_id

    def setup(self, **info: Any) -> None:
        if self.parent_run_id is None or self._mlflow is None:
            self.start()

    # ------------------------------------------------------------------ child runs
    def child_run(self, trial: Any) -> str:
        """The child run of ``trial``: found again by its ``ray_trial_id`` tag, else the run of the
        earlier trial it continues (:meth:`earlier_run`; re-tagged with this trial id, the earlier
        id appended to :data:`RETRY_TAG`), else created."""
        tid = str(trial.trial_id)
        if tid in self._children:
            return self._children[tid]
        client = self.client
        found = client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.ray_trial_id = '{tid}' and tags.`mlflow.parentRunId` = '{self.parent_run_id}'",
            max_results=1,
        )
        arch = self.space.from_config(trial.config)
        arch_id = self.space.arch_id(arch)
        earlier = None if found else self.earlier_run(retry_of(trial.config))
        if found:
            run_id = found[0].info.run_id
            client.update_run(run_id, status="RUNNING")
        elif earlier is not None:
            run_id = earlier.info.run_id
            lost = earlier.data.tags.get("ray_trial_id", "")
            before = earlier.data.tags.get(RETRY_TAG, "")
            client.set_tag(run_id, RETRY_TAG, f"{before},{lost}".strip(",")[:_MAX_PARAM])
            client.set_tag(run_id, "ray_trial_id", tid)
            for tag in (KILLED_TAG, "hytnas.status"):
                if tag in earlier.data.tags:
                    client.delete_tag(run_id, tag)
            client.update_run(run_id, status="RUNNING")
        else:
            run = client.create_run(self.experiment_id, run_name=f"{tid}-{arch_id[:6]}", tags={
                "mlflow.parentRunId": self.parent_run_id, "ray_trial_id": tid, "hytnas.arch_id": arch_id})
            run_id = run.info.run_id
            from mlflow.entities import Param

            genes = {**self.space.to_config(arch), "arch_id": arch_id}
            client.log_batch(run_id, params=[Param(k, str(v)) for k, v in genes.items()])
        self._children[tid] = run_id
        return run_id

    def _child_runs(self, extra_filter: str = "") -> list[Any]:
        flt = f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'" + (f" and {extra_filter}" if extra_filter else "")
        return list(self.client.search_runs([self.experiment_id], filter_string=flt, max_results=10_000))

    def earlier_run(self, trial_ids: Iterable[str]) -> Any | None:
        """The child run of the first of ``trial_ids`` that has one: the earlier trials a retried
        trial continues (:func:`hytnas.trial.retry_of`, newest first), which the Tune experiment
        forgot after a killed driver."""
        for lost in trial_ids:
            runs = self._child_runs(f"tags.ray_trial_id = '{lost}'")
            if runs:
                return runs[0]
        return None

    def close_orphans(self, known: Iterable[str]) -> list[str]:
        """Close as KILLED (tag :data:`KILLED_TAG`) the RUNNING child runs whose trial is not in
        ``known`` (the Tune experiment's trial ids); returns their run ids."""
        known = {str(t) for t in known}
        closed = []
        for run in self._child_runs("attributes.status = 'RUNNING'"):
            if run.data.tags.get("ray_trial_id") not in known:
                self.client.set_tag(run.info.run_id, KILLED_TAG, KILLED_REASON)
                self.client.set_terminated(run.info.run_id, "KILLED")
                closed.append(run.info.run_id)
        return closed

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.child_run(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        from mlflow.entities import Metric

        run_id = self.child_run(trial)
        step = int(result.get("epoch", result.get("training_iteration", 0)) or 0)
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(result[k]), now, step) for k in LOGGED_METRICS
                   if _is_number(result.get(k))]
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self.child_run(trial)
        epochs = (self.config.get("training") or {}).get("epochs")
        done = is_complete(trial.last_result, epochs)
        self.client.set_tag(run_id, "hytnas.status", "done" if done else "stopped")
        self.client.set_terminated(run_id, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self.child_run(trial)
        self.client.set_tag(run_id, "hytnas.status", "failed")
        self.client.set_tag(run_id, "hytnas.error", _error_line(trial)[:_MAX_PARAM])
        self.client.set_terminated(run_id, "FAILED")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        unfinished = any(t.status not in ("TERMINATED", "ERROR") for t in trials)
        if self.parent_run_id is not None:
            self.close_orphans(_ids(trials))
            # an interrupted search stays resumable: KILLED now, RUNNING again on --resume
            self.client.set_terminated(self.parent_run_id, "KILLED" if unfinished else "FINISHED")


# ------------------------------------------------------------------ helpers
def read_state(storage: str | Path) -> dict[str, Any] | None:
    """The tracking state of an experiment folder, or None before the first run."""
    path = Path(storage) / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise ConfigError(f"{path}: unreadable tracking state; delete it to start a new MLflow parent run") from None
    if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise ConfigError(f"{path}: not a version-{STATE_VERSION} hytnas tracking state")
    return state


def log_artifacts(tracking_uri: str, run_id: str, paths: Iterable[str | Path], metrics: Mapping[str, float] | None = None) -> None:
    """Attach files (the Pareto report) and summary metrics to a run."""
    client = _client(tracking_uri)
    for p in paths:
        if Path(p).is_file():
            client.log_artifact(run_id, str(p))
    for k, v in (metrics or {}).items():
        if _is_number(v):
            client.log_metric(run_id, k, float(v))


def _ids(trials: Iterable[Any]) -> set[str]:
    return {str(t.trial_id) for t in trials}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _error_line(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    try:
        lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()] if path else []
    except OSError:
        lines = []
    return lines[-1] if lines else "trial raised an error (see the Ray Tune trial folder)"
