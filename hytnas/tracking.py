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
with artifacts in ``<storage>/mlartifacts``; a tracking server (``http(s)://HOST:PORT``) keeps its own
artifact root (nothing local is forced on it) and is probed before anything is created
(:func:`check_tracking_server`).

Child runs are named by :func:`run_name` (``d<depth>-w<c1..c5>-t<t3.t4.t5>-<arch_id[:6]>``) and carry
the tags ``arch_id``, ``status`` (``completed`` / ``failed`` / ``stopped early``), ``pareto``
(``"true"`` exactly on the current front members, ``"false"`` on former ones: :meth:`MlflowLogger.set_front`),
``device`` and, when the result carries them, ``node_id`` / ``hostname`` / ``node_ip``; params the 23
genes plus :func:`derived_params`. At the end the front's models are logged in their child runs
(:func:`log_front_models`: TorchScript through ``mlflow.pytorch``, loadable without this package).

Resilience: every call the Tune callback makes goes through :meth:`MlflowLogger.submit`, with short HTTP
timeouts and few retries. A call that fails with an MLflow or connection error logs one warning line
and is queued; the queue is sent before the next call and at the end of the search. What is still
queued at the end is appended to ``<storage>/mlflow-pending.jsonl`` (:data:`PENDING_FILE`) and never
stops the search.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shlex
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from hytnas.errors import ConfigError
from hytnas.trial import error_line, is_complete, retry_of
from hytnas.utils import atomic_write_json

log = logging.getLogger(__name__)

STATE_FILE = "tracking.json"
#: MLflow's experiment-kind tag: what its UI opens on
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
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
#: Records the tracking store did not take by the end of a search (one JSON object a line).
PENDING_FILE = "mlflow-pending.jsonl"
#: Params of a child run besides the 23 genes (:func:`derived_params`).
DERIVED_PARAMS = ("arch_id", "depth", "conv_blocks", "transformer_layers", "widths")
#: The ``status`` tag of a child run per :data:`hytnas.trial.STATUSES` value.
STATUS_TAGS = {"done": "completed", "failed": "failed", "stopped": "stopped early"}
#: Result keys copied to child-run tags on a trial's first result, when present.
NODE_KEYS = ("node_id", "hostname", "node_ip")
#: HTTP limits of the calls made while a search runs (seconds, retries) and of the start-up probe.
CALL_TIMEOUT_S, CALL_RETRIES = 10, 1
PROBE_TIMEOUT_S = 5


def run_name(genes: Mapping[str, Any], arch_id: str) -> str:
    """A short readable child-run name: ``d<depth>-w<c1>.<c2>.<c3>.<c4>.<c5>-t<t3>.<t4>.<t5>-<arch_id[:6]>``
    (depth and widths as :func:`derived_params`)."""
    d = derived_params(genes, arch_id)
    t = ".".join(str(int(genes[g])) for g in ("t3", "t4", "t5"))
    return f"d{d['depth']}-w{d['widths']}-t{t}-{arch_id[:6]}"


def derived_params(genes: Mapping[str, Any], arch_id: str) -> dict[str, Any]:
    """The child-run params besides the genes (:data:`DERIVED_PARAMS`): ``conv_blocks`` (the MV2
    blocks: stage 1, ``n2`` in stage 2, one per stage 3..5), ``transformer_layers``
    (``t3 + t4 + t5``), ``depth`` (their sum), ``widths`` (``c1..c5`` joined by dots) and ``arch_id``."""
    conv = 1 + int(genes["n2"]) + 3
    tl = sum(int(genes[g]) for g in ("t3", "t4", "t5"))
    widths = ".".join(str(int(genes[g])) for g in ("c1", "c2", "c3", "c4", "c5"))
    return {"arch_id": arch_id, "depth": conv + tl, "conv_blocks": conv, "transformer_layers": tl, "widths": widths}


def is_server(tracking_uri: str) -> bool:
    """Whether ``tracking_uri`` is a tracking server (``http://`` / ``https://``)."""
    return tracking_uri.lower().startswith(("http://", "https://"))


def call_errors() -> tuple[type[BaseException], ...]:
    """The errors a tracking call can raise when the store is unreachable or refuses a call:
    ``MlflowException``, ``requests``' ``RequestException`` and ``OSError``."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    return (MlflowException, RequestException, OSError)


@contextlib.contextmanager
def http_limits(timeout_s: float, retries: int) -> Iterator[None]:
    """Within the block, MLflow's HTTP calls time out after ``timeout_s`` and retry ``retries``
    times without back-off (``MLFLOW_HTTP_REQUEST_*`` of this process; restored after)."""
    keys = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(timeout_s)), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(int(retries)),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0"}
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_tracking_server(tracking_uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """ConfigError (one line) when the tracking server of ``tracking_uri`` does not answer a
    ``search_experiments`` within ``timeout_s`` (no retries); nothing is created. Stores other
    than a server are not probed."""
    if not is_server(tracking_uri):
        return
    try:
        with http_limits(timeout_s, 0):
            _client(tracking_uri).search_experiments(max_results=1)
    except call_errors() as exc:
        raise ConfigError(
            f"mlflow.tracking_uri: the tracking server {tracking_uri} does not answer ({error_line(exc, 200)}); "
            "start it or set mlflow.tracking_uri: null (a local sqlite store)"
        ) from None


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
    """How to browse a tracking store: for a server, ``open <URL>``; else the exact ``mlflow ui``
    command bound to localhost (the URI quoted for a POSIX shell, so a storage path with spaces
    can be pasted as is)."""
    if is_server(tracking_uri):
        return f"open {tracking_uri}"
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

    The Tune hooks never raise for an unreachable store: their calls go through :meth:`submit`.
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
        res = self.config.get("resources") or {}
        self.device = "cuda" if float(res.get("gpu") or 0) > 0 else "cpu"
        self._pending: list[dict[str, Any]] = []  # queued calls (JSON-able, see submit)
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._front: set[str] = set()
        self._tagged: set[str] = set()

    # pickle-safe: Tune stores its callbacks with the experiment; the client is rebuilt lazily
    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_mlflow"] = None
        d["_children"] = {}
        d["_tagged"] = set()
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
            # a tracking server keeps its own artifact root; a local store gets <storage>/mlartifacts
            art = None if is_server(self.tracking_uri) else (self.storage / "mlartifacts").resolve().as_uri()
            # the MLflow UI then opens on its runs table (model training), not its GenAI overview
            self.experiment_id = client.create_experiment(self.experiment_name, artifact_location=art,
                                                          tags={EXPERIMENT_KIND_TAG: "custom_model_development"})
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
            self.submit({"op": "start"})

    # ------------------------------------------------------------------ resilient calls
    def submit(self, op: dict[str, Any]) -> bool:
        """Apply ``op`` (see :meth:`apply`) after the queued ones; on an MLflow or connection error
        queue it, log one warning line per outage and return False. While the store is down, the
        queue is retried at most every 30 s (calls in between are queued without trying)."""
        if self._pending and not self.flush():
            self._pending.append(op)
            return False
        try:
            with self._limits():
                self.apply(op)
        except call_errors() as exc:
            self._pending.append(op)
            self._failed(exc)
            return False
        return True

    def flush(self, force: bool = False) -> bool:
        """Send the queued calls in order; True when none is left. Without ``force`` nothing is
        tried within 30 s of a failure."""
        if not self._pending:
            return True
        if not force and time.monotonic() < self._retry_at:
            return False
        while self._pending:
            try:
                with self._limits():
                    self.apply(self._pending[0])
            except call_errors() as exc:
                self._failed(exc)
                return False
            self._pending.pop(0)
        if self._down_since is not None:
            log.warning("hytnas: MLflow tracking store %s reachable again; the queued records were sent",
                        self.tracking_uri)
            self._down_since = None
        return True

    def _failed(self, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + 30.0
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("hytnas: MLflow call failed (%s); training goes on, the records are queued and sent later",
                        error_line(exc, 200))

    def _limits(self) -> contextlib.AbstractContextManager[None]:
        return http_limits(CALL_TIMEOUT_S, CALL_RETRIES) if is_server(self.tracking_uri) else contextlib.nullcontext()

    def apply(self, op: Mapping[str, Any]) -> None:
        """One queued call (a JSON-able dict): ``{"op": "start"}`` (the parent run);
        ``{"op": "trial", "trial_id", "config", "metrics": [[key, value, ms, step]],
        "tags": {...}, "terminate": null | "FINISHED" | "FAILED"}`` (the trial's child run, found
        or created by :meth:`child_run`); ``{"op": "parent", "metrics", "tags", "files"}``."""
        from mlflow.entities import Metric, RunTag

        if op["op"] == "start" or self.parent_run_id is None or self._mlflow is None:
            self.start()
            if op["op"] == "start":
                return
        if op["op"] == "parent":
            run_id = self.parent_run_id
            for f in op.get("files", ()):
                if Path(f).is_file():
                    self.client.log_artifact(run_id, str(f))
        else:
            run_id = self.child_run(_TrialRef(op["trial_id"], op["config"]))
        metrics = [Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in op.get("metrics", ())]
        tags = [RunTag(k, str(v)[:_MAX_PARAM]) for k, v in (op.get("tags") or {}).items()]
        if metrics or tags:
            self.client.log_batch(run_id, metrics=metrics, tags=tags)
        if op.get("terminate"):
            self.client.set_terminated(run_id, op["terminate"])

    def _trial_op(self, trial: Any, **kw: Any) -> dict[str, Any]:
        return {"op": "trial", "trial_id": str(trial.trial_id), "config": _plain(trial.config), **kw}

    def set_front(self, front: Iterable[str], trials: Iterable[Any]) -> None:
        """Tag ``pareto = "true"`` on the child runs of the trials in ``front`` that were not on the
        front before and ``"false"`` on those that left it (``trials``: the Tune experiment's trials)."""
        front = {str(t) for t in front}
        trials = list(trials)
        by_id = {str(t.trial_id): t for t in trials}
        for tid in sorted(front ^ self._front):
            if tid in by_id:
                self.submit(self._trial_op(by_id[tid], tags={"pareto": "true" if tid in front else "false"}))
        self._front = front

    def log_parent(self, metrics: Mapping[str, float], step: int, tags: Mapping[str, str] | None = None,
                   files: Iterable[str | Path] = ()) -> bool:
        """Parent-run metrics at ``step``, tags and files (artifacts), through :meth:`submit`."""
        now = int(time.time() * 1000)
        return self.submit({"op": "parent", "metrics": [[k, float(v), now, int(step)] for k, v in metrics.items()
                                                         if _is_number(v)],
                            "tags": dict(tags or {}), "files": [str(f) for f in files]})

    def write_pending(self) -> Path | None:
        """Append the calls still queued to ``<storage>/mlflow-pending.jsonl`` (then the queue is
        empty) and return its path; None when nothing is queued."""
        if not self._pending:
            return None
        path = append_pending(self.storage, self._pending)
        self._pending = []
        return path

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
            for tag in (KILLED_TAG, "hytnas.status", "status"):
                if tag in earlier.data.tags:
                    client.delete_tag(run_id, tag)
            client.update_run(run_id, status="RUNNING")
        else:
            genes = self.space.to_config(arch)
            run = client.create_run(self.experiment_id, run_name=run_name(genes, arch_id), tags={
                "mlflow.parentRunId": self.parent_run_id, "ray_trial_id": tid, "hytnas.arch_id": arch_id,
                "arch_id": arch_id, "device": self.device})
            run_id = run.info.run_id
            from mlflow.entities import Param

            params = {**genes, **derived_params(genes, arch_id)}
            client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
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
        self.submit(self._trial_op(trial))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        """Metrics of every report with ``step = epoch``; node tags on the trial's first report."""
        step = int(result.get("epoch", result.get("training_iteration", 0)) or 0)
        now = int(time.time() * 1000)
        metrics = [[k, float(result[k]), now, step] for k in LOGGED_METRICS if _is_number(result.get(k))]
        tags = {}
        tid = str(trial.trial_id)
        if tid not in self._tagged:
            self._tagged.add(tid)
            tags = {k: str(result[k]) for k in NODE_KEYS if result.get(k) not in (None, "")}
        if metrics or tags:
            self.submit(self._trial_op(trial, metrics=metrics, tags=tags))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epochs = (self.config.get("training") or {}).get("epochs")
        status = "done" if is_complete(trial.last_result, epochs) else "stopped"
        tags = {"hytnas.status": status, "status": STATUS_TAGS[status]}
        if str(trial.trial_id) not in self._front:
            tags["pareto"] = "false"
        self.submit(self._trial_op(trial, tags=tags, terminate="FINISHED"))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        tags = {"hytnas.status": "failed", "status": STATUS_TAGS["failed"], "hytnas.error": _error_line(trial),
                "pareto": "false"}
        self.submit(self._trial_op(trial, tags=tags, terminate="FAILED"))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Close the orphan runs and the parent run (KILLED while trials are unfinished: resumable);
        what the store still refuses goes to :data:`PENDING_FILE`."""
        unfinished = any(t.status not in ("TERMINATED", "ERROR") for t in trials)
        self.flush(force=True)
        if self.parent_run_id is not None and not self._pending:
            try:
                with self._limits():
                    self.close_orphans(_ids(trials))
                    # an interrupted search stays resumable: KILLED now, RUNNING again on --resume
                    self.client.set_terminated(self.parent_run_id, "KILLED" if unfinished else "FINISHED")
            except call_errors() as exc:
                self._failed(exc)
        path = self.write_pending()
        if path is not None:
            log.warning("hytnas: the MLflow store %s did not take every record; they are in %s",
                        self.tracking_uri, path)


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


class _TrialRef:
    """The two fields of a Tune trial that :meth:`MlflowLogger.child_run` reads (queued calls)."""

    def __init__(self, trial_id: str, config: Mapping[str, Any]) -> None:
        self.trial_id, self.config = trial_id, dict(config)


def _plain(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A trial config as JSON-able scalars (numpy numbers as Python numbers)."""
    out = {}
    for k, v in (config or {}).items():
        out[str(k)] = v.item() if hasattr(v, "item") else v
    return out


def append_pending(storage: str | Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """Append ``records`` (queued calls of :meth:`MlflowLogger.apply`, or ``{"op": "models"}``)
    to ``<storage>/mlflow-pending.jsonl``, one JSON object a line; returns the path."""
    path = Path(storage) / PENDING_FILE
    with open(path, "a", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, default=str) + "\n")
    return path


#: Tag of a child run whose trial's model was logged (the model URI).
MODEL_TAG = "hytnas.model_uri"


def traced_model(checkpoint: str | Path, space: Any, batch: int = 2) -> tuple[Any, Any]:
    """The trained model of a trial's checkpoint folder (``trial.json`` + ``model.pt``) traced with
    ``torch.jit.trace`` on a zero batch of its input shape, and that batch (a float32 tensor). A
    TorchScript module references no ``hytnas`` class, so it loads without this package."""
    import torch

    from hytnas.models import build_model
    from hytnas.trial import WEIGHTS_FILE, read_trial_state

    state = read_trial_state(checkpoint)
    size, classes, chans = int(state["input_size"]), int(state["num_classes"]), int(state["in_channels"])
    model = build_model(space.to_arch_cfg(state["genes"]), num_classes=classes, in_channels=chans, input_size=size)
    model.load_state_dict(torch.load(Path(checkpoint) / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    model.eval()
    x = torch.zeros(batch, chans, size, size)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice and the tracer's shape notes
        traced = torch.jit.trace(model, x)
    return traced, x


def log_front_models(tracking_uri: str, parent_run_id: str, storage: str | Path, front: Iterable[Mapping[str, Any]],
                     space: Any, register_name: str | None = None) -> list[str]:
    """Log the model of every front member (rows with ``trial_id`` and ``checkpoint``, relative to
    ``storage``) in its child run: ``mlflow.pytorch.log_model`` of :func:`traced_model` (name
    ``model``, signature from ``infer_signature`` on the example batch, the batch as input example,
    registered under ``register_name`` when given); the child run gets the tags
    :data:`MODEL_TAG` (the model URI) and ``model = "pareto"``. Runs on the driver, reading the
    checkpoints from the experiment folder. Returns the model URIs; a member without a child run
    or checkpoint is skipped with a warning. MLflow/connection errors propagate."""
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    client = _client(tracking_uri)
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    uris: list[str] = []
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        for row in front:
            tid = str(row["trial_id"])
            ckpt = Path(storage) / str(row.get("checkpoint") or "")
            runs = client.search_runs([experiment_id], max_results=1, filter_string=(
                f"tags.ray_trial_id = '{tid}' and tags.`mlflow.parentRunId` = '{parent_run_id}'"))
            if not runs or not row.get("checkpoint") or not (ckpt / "model.pt").is_file():
                log.warning("hytnas: trial %s: no child run or no checkpoint %s; its model is not logged", tid, ckpt)
                continue
            traced, x = traced_model(ckpt, space)
            with torch.inference_mode():
                y = traced(x).numpy()
            run_id = runs[0].info.run_id
            with mlflow.start_run(run_id=run_id):
                info = mlflow.pytorch.log_model(
                    traced, name="model", signature=infer_signature(x.numpy(), y), input_example=x.numpy(),
                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"], serialization_format="pickle",
                    registered_model_name=register_name)
            client.set_tag(run_id, MODEL_TAG, info.model_uri)
            client.set_tag(run_id, "model", "pareto")
            uris.append(info.model_uri)
    finally:
        mlflow.set_tracking_uri(before)
    return uris


def finish_search(tracking_uri: str, parent_run_id: str, storage: str | Path, files: Iterable[str | Path],
                  metrics: Mapping[str, float], front: Iterable[Mapping[str, Any]], space: Any,
                  register_name: str | None = None) -> tuple[list[str], Path | None]:
    """The end of a search (driver side): the report files as parent artifacts, the summary
    metrics, the front's models (:func:`log_front_models`; parent metric ``models_logged``).
    Never raises for an unreachable store: what could not be sent is appended to
    :data:`PENDING_FILE` (returned; None when everything was sent). Returns the model URIs."""
    files, front = [str(f) for f in files], [dict(r) for r in front]
    uris: list[str] = []
    try:
        with http_limits(CALL_TIMEOUT_S, CALL_RETRIES) if is_server(tracking_uri) else contextlib.nullcontext():
            log_artifacts(tracking_uri, parent_run_id, files, metrics)
    except call_errors() as exc:
        log.warning("hytnas: could not log the report to MLflow (%s)", error_line(exc, 200))
        now = int(time.time() * 1000)
        path = append_pending(storage, [
            {"op": "parent", "files": files, "tags": {},
             "metrics": [[k, float(v), now, 0] for k, v in metrics.items() if _is_number(v)]},
            {"op": "models", "front": front, "register_name": register_name}])
        return uris, path
    try:
        uris = log_front_models(tracking_uri, parent_run_id, storage, front, space, register_name)
        _client(tracking_uri).log_metric(parent_run_id, "models_logged", float(len(uris)))
    except call_errors() as exc:
        log.warning("hytnas: could not log the Pareto-optimal models to MLflow (%s)", error_line(exc, 200))
        return uris, append_pending(storage, [{"op": "models", "front": front, "register_name": register_name}])
    return uris, None


def _ids(trials: Iterable[Any]) -> set[str]:
    return {str(t.trial_id) for t in trials}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _error_line(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text() if path else ""
    except OSError:
        text = ""
    return error_line(text) if text.strip() else "trial raised an error (see the Ray Tune trial folder)"
