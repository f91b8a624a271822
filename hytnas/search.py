"""The Python API of a search: :func:`build_tuner` and :func:`run_search`.

>>> from hytnas.config import load_experiment
>>> from hytnas.search import run_search
>>> result = run_search(load_experiment("quickstart", ["budget.num_samples=4"]))
>>> result.pareto[["arch_id", "val_accuracy", "params_k"]]

What a run does, in order (the CLI ``hytnas search`` is a thin wrapper):

1. :func:`preflight`: validate everything that can be wrong *before anything is created* — the
   data folder (``check_paths`` and the data module's ``prepare_data``; an explicit
   ``dataset.root`` must hold the data), the split sizes against the data, one trial's resources
   against this machine (local runs), the space, the searcher and its options, and the
   experiment folder (creatable and writable; a folder that already holds a search is refused
   unless ``resume=True``; a resumed search must use the same config).
2. Start local Ray or connect to ``address`` (:func:`hytnas.runtime.init_ray`, which probes the
   address first); a Ray instance that is already running is used as is and left running. One
   trial's resources must fit the largest alive node (:func:`check_cluster_resources`).
   On a cluster (``address``) the data is checked on every node before Tune starts
   (:func:`hytnas.cluster.check_data_on_nodes`), and ``ship_code=True`` ships this package to the
   workers (:func:`hytnas.cluster.code_runtime_env`).
3. Build the ``tune.Tuner`` (:func:`build_tuner`): the function trainable
   :func:`trainables.train.train_arch` with the static experiment settings
   (``tune.with_parameters``) and per-trial resources (``tune.with_resources``); the searcher from
   ``search_algos.tune.make_search_alg``; FIFO or ASHA (resource: epochs); Tune's metric/mode is the
   first objective (the searcher handles all of them); callbacks: :class:`hytnas.callbacks.ProgressCallback`
   and :class:`hytnas.callbacks.MlflowTracker`. Ray's own progress table is silenced (``verbose=0``).
   Failures: ``failure.max_failures`` retries per trial (Tune's ``FailureConfig``) and
   :class:`FailureGuard` (one line per failure instead of Tune's traceback; stops the search past
   ``failure.max_failed_trials``).
   With ``resume=True``: ``tune.Tuner.restore(..., resume_errored=True)``; finished trials are
   kept, unfinished ones continue from their last epoch checkpoint, and the searcher continues
   from the fresher of its Tune snapshot and its write-ahead record ``searcher.json``
   (:mod:`search_algos.tune`), so no trial is lost or repeated even after the driver was killed:
   a trial that started after Tune's last snapshot is retried with the same arch and continues
   its MLflow child run (:mod:`hytnas.tracking`). A failed trial is retried from its last
   checkpoint ``failure.max_failures`` times (default 1), e.g. after its
   worker process died. ``trials.csv`` and ``pareto.csv`` are rewritten atomically each time a trial
   finishes (:class:`hytnas.callbacks.LiveReport`; ``hytnas status`` reads them).
   A trial whose worker or node dies is retried on any node with room.
4. At the end: ``trials.csv``, ``pareto.csv`` (arch-table format) and ``pareto.png`` in the
   experiment folder, the same files (and ``hypervolume.png``) as artifacts of the MLflow parent run,
   the Pareto-optimal models logged in their child runs (:func:`hytnas.tracking.finish_search`;
   registered under ``mlflow.register_name`` when set), and the Pareto table with the command that
   browses the runs printed (``open URL`` for a tracking server). While the search runs the parent
   run is refreshed (:class:`hytnas.callbacks.MlflowTracker`). A tracking server that does not
   answer fails the preflight (nothing created); one lost later never stops the search (its records
   are queued, and those still unsent at the end are kept in ``mlflow-pending.jsonl``).

Experiment folder layout (``cfg.storage_dir``): ``experiment.yaml`` (the effective config, written
once), ``tune/`` (Tune's state, trial folders and checkpoints), ``searcher.json`` (the searcher's
write-ahead record), ``mlflow.db`` + ``mlartifacts/`` (a local store only) + ``tracking.json``
(tracking), ``trials.csv``, ``pareto.csv`` (during and after the run), ``pareto.png`` and
``hypervolume.png`` (refreshed during the run), ``tracking_overhead.json`` (time spent in the MLflow
callback per trial), ``mlflow-pending.jsonl`` (only when the tracking store was lost).
With a URI ``storage_path`` (``s3://bucket/path``), ``tune/`` is ``<uri>/tune`` and the other files
stay in the local folder ``./experiments/<name>`` (:attr:`ExperimentConfig.storage_dir`).
"""
from __future__ import annotations

import logging
import pickle
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import cloudpickle
import pandas as pd
import ray
import torch
import yaml
from ray import tune
from ray.tune import Callback, Stopper
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from hytnas.callbacks import LiveReport, MlflowTracker, ProgressCallback, SearchRecords
from hytnas.cluster import check_data_on_nodes, check_storage_uri, code_runtime_env
from hytnas.config import ExperimentConfig, check_writable, parse_experiment
from hytnas.data import make_datamodule
from hytnas.devices import device_wiring as wire
from hytnas.errors import ConfigError, SearchError
from hytnas.report import format_table, sort_front, trials_frame, write_report
from hytnas.runtime import init_ray, machine_cpus, shutdown
from hytnas.tracking import PENDING_FILE, check_tracking_server, finish_search, read_state, ui_command
from hytnas.trial import CONFIG_FILE, TUNE_DIR, error_line, is_complete, prune_checkpoints, trial_name
from hytnas.utils import atomic_write_text
from trainables.train import train_arch


class SearchFailed(SearchError):
    """The run itself failed (not a trial, not the inputs), e.g. Ray killed a worker for memory.
    What Tune saved so far is kept; ``resume=True`` continues from it."""


@dataclass(frozen=True)
class SearchResult:
    """What a search leaves behind.

    ``trials``: one row per trial (arch-table frame: 23 genes, metrics, ``trial_id``, ``arch_id``,
    ``status``, ``feasible``, ``pareto``, ``checkpoint`` relative to ``storage_path``);
    ``pareto``: the Pareto-optimal rows, best first objective first. ``interrupted``: fewer
    trials finished than ``budget.num_samples`` within the time budget (Ctrl-C, or a searcher that
    ran out of feasible archs): ``run_search(cfg, resume=True)`` continues the search.
    ``aborted``: more trials than ``failure.max_failed_trials`` failed for good and the search was
    stopped. ``error_files``: the ``error.txt`` (Tune's traceback) of every failed trial.
    """

    storage_path: Path
    trials: pd.DataFrame
    pareto: pd.DataFrame
    files: Mapping[str, Path]
    tracking_uri: str | None
    parent_run_id: str | None
    interrupted: bool
    wall_time_s: float
    objectives: tuple[str, ...] = field(default=())
    aborted: bool = False
    error_files: tuple[Path, ...] = field(default=())
    #: the MLflow records the tracking store did not take (``<storage>/mlflow-pending.jsonl``), or None
    pending_file: Path | None = None

    @property
    def num_done(self) -> int:
        return int((self.trials["status"] == "done").sum())

    @property
    def num_failed(self) -> int:
        return int((self.trials["status"] == "failed").sum())


@dataclass(frozen=True)
class Plan:
    """The validated pieces of a run (the result of :func:`preflight`)."""

    cfg: ExperimentConfig
    space: Any
    num_classes: int
    in_channels: int
    resume: bool
    #: the objectives and constraints after the device profile's wiring (known latency, memory limits)
    objectives: tuple[Any, ...] = ()
    constraints: tuple[Any, ...] = ()


# ------------------------------------------------------------------------------ preflight
def device_wiring(cfg: ExperimentConfig, space: Any, num_classes: int, in_channels: int):
    """The device profile's wiring (``hytnas.devices.device_wiring``): objectives with a
    known ``latency_ms`` when the profile computes it, constraints plus the memory limits."""
    return wire(cfg.hardware.device, space, cfg.get_objectives(), cfg.get_constraints(),
                num_classes=num_classes, in_channels=in_channels, memory=cfg.hardware.memory_constraints)


def make_searcher(cfg: ExperimentConfig, space: Any, num_classes: int, in_channels: int, *, record: bool = False):
    """``search_algos.tune.make_search_alg`` for ``cfg``; bad options name ``search.options``.
    ``record``: with its write-ahead record ``<storage>/searcher.json`` (:data:`RECORD_FILE`)."""
    from search_algos.tune import RECORD_FILE, make_search_alg

    options = dict(cfg.search.options)
    options.setdefault("max_epochs", cfg.training.epochs)
    hw = device_wiring(cfg, space, num_classes, in_channels)
    try:
        return make_search_alg(
            cfg.search.algorithm, space=space, objectives=hw.objectives, constraints=hw.constraints,
            seed=cfg.search.seed, max_concurrent=cfg.budget.max_concurrent_trials, num_classes=num_classes,
            in_channels=in_channels, input_size=space.input_size, known_fns=hw.known_fns, options=options,
            state_path=cfg.storage_dir / RECORD_FILE if record else None,
        )
    except SearchError as exc:
        raise ConfigError(f"search.options: {exc}") from None


def preflight(cfg: ExperimentConfig, *, resume: bool = False, check_storage: bool = True,
              address: str | None = None) -> Plan:
    """Check everything a run needs without creating anything (see the module docstring).

    Without ``address`` (local Ray) one trial's ``resources`` must fit this machine (its CPU
    affinity, its CUDA GPUs); with ``address`` that is checked against the cluster's nodes after
    connecting (:func:`check_cluster_resources`). The dataset's ``train_size``/``val_size``/
    ``test_size`` must fit the split sizes the data module finds after ``prepare_data``.
    """
    cfg.check_paths()
    if address is None:
        cfg.check_resources(machine_cpus(), torch.cuda.device_count())
    space = cfg.build_space()
    dm = make_datamodule(cfg, space.input_size)
    dm.prepare_data()  # DataError naming the missing/bad file; downloads only with dataset.download
    try:
        dm.check_sizes()
    except ConfigError as exc:
        raise ConfigError(f"dataset.{exc}") from None
    num_classes, in_channels = dm.num_classes, dm.in_channels
    make_searcher(cfg, space, num_classes, in_channels)  # options and constraints are valid
    if cfg.mlflow.enabled:
        check_tracking_server(cfg.tracking_uri)  # a server that does not answer: one line, nothing created
    if check_storage:
        check_writable(cfg.storage_dir, "storage_path")
        _check_storage(cfg, resume)
    hw = device_wiring(cfg, space, num_classes, in_channels)
    return Plan(cfg, space, num_classes, in_channels, resume, tuple(hw.objectives), tuple(hw.constraints))


def check_cluster_resources(cfg: ExperimentConfig) -> None:
    """ConfigError when one trial's ``resources`` fit no alive node of the running Ray cluster
    (checked after connecting, before Tune: such a trial would stay pending forever)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if nodes:
        cpus = max(float(n.get("CPU", 0)) for n in nodes)
        gpus = max(float(n.get("GPU", 0)) for n in nodes)
        cfg.check_resources(cpus, gpus, where="the largest node of the Ray cluster")


def _check_storage(cfg: ExperimentConfig, resume: bool) -> None:
    storage = cfg.storage_dir
    if cfg.storage_uri is not None:
        check_storage_uri(cfg.storage_uri)
    has_search = (storage / CONFIG_FILE).is_file() and tune.Tuner.can_restore(_tune_path(cfg))
    if not resume:
        if has_search:
            raise ConfigError(
                f"storage_path: {storage} already holds the search {cfg.name!r}; add --resume to continue it, "
                "or set another name or storage_path"
            )
        # a run that failed before Tune started leaves only experiment.yaml: start afresh
        if storage.exists() and (not storage.is_dir() or any(p.name != CONFIG_FILE for p in storage.iterdir())):
            raise ConfigError(f"storage_path: {storage} exists and is not an empty folder; choose another storage_path")
        return
    if not has_search:
        raise ConfigError(f"--resume: {storage} holds no search to resume; run without --resume to start one")
    saved = parse_experiment(yaml.safe_load((storage / CONFIG_FILE).read_text()))
    diff = _first_difference(saved.to_plain(), cfg.to_plain())
    if diff is not None:
        key, old, new = diff
        raise ConfigError(f"--resume: {key} differs from the saved search ({old!r} there, {new!r} now); "
                          "resume with the same config")


def _first_difference(a: Any, b: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in dict.fromkeys([*a, *b]):
            d = _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
            if d is not None:
                return d
        return None
    return None if a == b else (prefix.rstrip("."), a, b)


# ------------------------------------------------------------------------------ tuner
def _tune_path(cfg: ExperimentConfig) -> str:
    """Tune's experiment folder: ``<storage>/tune`` (a URI stays a URI)."""
    return f"{cfg.tune_storage.rstrip('/')}/{TUNE_DIR}"


def make_trainable(cfg: ExperimentConfig):
    """``train_arch`` with the static settings and the per-trial resources attached."""
    resources = {"cpu": cfg.resources.cpu, "gpu": cfg.resources.gpu}
    return tune.with_resources(tune.with_parameters(train_arch, experiment=cfg.to_plain()), resources)


def make_scheduler(cfg: ExperimentConfig):
    s = cfg.scheduler
    if s.type == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=cfg.training.epochs,
                             grace_period=s.grace_period, reduction_factor=s.reduction_factor)
    return FIFOScheduler()


def make_callbacks(cfg: ExperimentConfig, space: Any, *, quiet: bool = False, plan: Plan | None = None,
                   searcher: Any = None) -> list[Any]:
    """Progress lines (unless ``quiet``), the MLflow tracker (when enabled), the live trial tables
    and, for a searcher with a write-ahead record, its reconciliation (:class:`SearchRecords`)."""
    out: list[Any] = []
    if searcher is not None and hasattr(searcher, "reconcile"):
        out.append(SearchRecords(searcher))
    if not quiet:
        constraints = plan.constraints if plan is not None else cfg.get_constraints()
        out.append(ProgressCallback(cfg.get_objectives(), constraints, total=cfg.budget.num_samples,
                                    max_epochs=cfg.training.epochs))
    objectives = cfg.get_objectives()
    constraints = plan.constraints if plan is not None else cfg.get_constraints()
    # the tables first: the MLflow tracker logs the files LiveReport has just written
    out.append(LiveReport(cfg.storage_dir, space, objectives, constraints,
                          max_epochs=cfg.training.epochs, comment=report_comment(cfg)))
    if cfg.mlflow.enabled:
        out.append(MlflowTracker(cfg.tracking_uri, cfg.mlflow_experiment, cfg.storage_dir, cfg.to_plain(), space,
                                 objectives=objectives, constraints=constraints, max_epochs=cfg.training.epochs,
                                 refresh_every=cfg.mlflow.refresh_every, refresh_s=cfg.mlflow.refresh_s))
    return out


def report_comment(cfg: ExperimentConfig) -> str:
    """The comment line of ``trials.csv`` / ``pareto.csv``."""
    return f"hytnas search {cfg.name}; objectives {', '.join(o.name for o in cfg.get_objectives())}"


def _no_trial_tracebacks(record: logging.LogRecord) -> bool:
    """Logging filter: drop Tune's per-failure traceback and its list of failed trials
    (:class:`FailureGuard` prints one line per failure; the traceback stays in ``error.txt``)."""
    return not str(record.msg).startswith(("Trial task failed", "Trials did not complete"))


class FailureGuard(Callback, Stopper):
    """The ``failure`` section at run time, one object as Tune callback and stopper.

    Prints one line per failed trial (``[hytnas] trial <name> failed: <Type>: <message>;
    traceback: <trial folder>/error.txt``) and per retry, instead of a traceback, counts the
    trials that failed for good (after ``failure.max_failures`` retries) and stops the whole
    search (:meth:`stop_all`) once more than ``max_failed_trials`` did (``None``: never).
    """

    def __init__(self, max_failed_trials: int | None, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.max_failed_trials = max_failed_trials
        self.quiet = quiet
        self._stream = stream
        self.failed: list[str] = []

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_stream": None}

    def _say(self, line: str) -> None:
        if not self.quiet:
            print(line, file=self._stream or sys.stdout, flush=True)

    @staticmethod
    def _error(trial: Any) -> str:
        """The trial's latest error as one line, from the error files Tune has just written."""
        for path in (trial.pickled_error_file, trial.error_file):
            if path and Path(path).is_file():
                try:
                    if path.endswith(".pkl"):
                        with open(path, "rb") as fh:
                            return error_line(cloudpickle.load(fh))
                    return error_line(Path(path).read_text())
                except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError):
                    continue
        return "unknown error"

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._say(f"[hytnas] trial {trial} failed ({self._error(trial)}); retrying it from its last checkpoint "
                  f"(retry {trial.run_metadata.num_failures} of {trial.max_failures})")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.failed.append(str(trial))
        where = Path(trial.path) / "error.txt" if trial.path else trial.error_file
        self._say(f"[hytnas] trial {trial} failed: {self._error(trial)}; traceback: {where}")

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.max_failed_trials is not None and len(self.failed) > self.max_failed_trials


def build_tuner(cfg: ExperimentConfig, *, resume: bool = False, plan: Plan | None = None,
                callbacks: Sequence[Any] = (), quiet: bool = False, search_alg: Any = None,
                trainable: Any = None):
    """The ``tune.Tuner`` of ``cfg`` (Ray must be initialised; see the module docstring).

    ``callbacks`` are added to the default ones (progress unless ``quiet``, MLflow when
    enabled). ``search_alg`` replaces the configured searcher and ``trainable`` the training
    trainable (e.g. ``trainables.lookup``; resources are still ``cfg.resources``). The experiment
    folder is not checked here (:func:`run_search` does that). With ``resume=True`` the Tuner is
    restored from ``<storage>/tune``; Tune then uses the searcher, scheduler and callbacks it
    saved with the experiment. Every epoch checkpoint of a trial is kept while the search runs
    (``num_to_keep=None``: a resume may restore any one a stale Tune snapshot names);
    :func:`run_search` deletes a finished trial's older ones once Tune's final snapshot is written.
    """
    if plan is None:
        plan = preflight(cfg, resume=resume, check_storage=False)
    if trainable is None:
        trainable = make_trainable(cfg)
    else:
        trainable = tune.with_resources(trainable, {"cpu": cfg.resources.cpu, "gpu": cfg.resources.gpu})
    if resume:
        return tune.Tuner.restore(_tune_path(cfg), trainable=trainable, resume_errored=True)
    first = cfg.get_objectives()[0]
    searcher = search_alg if search_alg is not None else make_searcher(cfg, plan.space, plan.num_classes,
                                                                        plan.in_channels, record=True)
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune"):
        logging.getLogger(name).addFilter(_no_trial_tracebacks)
    guard = FailureGuard(cfg.failure.max_failed_trials, quiet=quiet)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=first.name, mode=first.sense, search_alg=searcher, scheduler=make_scheduler(cfg),
            num_samples=cfg.budget.num_samples, max_concurrent_trials=cfg.budget.max_concurrent_trials,
            time_budget_s=cfg.budget.time_budget_s, reuse_actors=True,
            trial_name_creator=trial_name, trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=TUNE_DIR, storage_path=cfg.tune_storage,
            callbacks=[*make_callbacks(cfg, plan.space, quiet=quiet, plan=plan, searcher=searcher), guard,
                       *callbacks],
            # every epoch checkpoint is kept while the search runs: Tune's last experiment snapshot may name an
            # older one than the newest (num_to_keep deletes it, and a resume after a killed driver then cannot
            # restore the trial); run_search prunes a finished trial's older ones after Tune's final snapshot
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None), stop=guard,
            failure_config=tune.FailureConfig(max_failures=cfg.failure.max_failures), verbose=0, log_to_file=True,
        ),
    )


# ------------------------------------------------------------------------------ running
def run_search(cfg: ExperimentConfig, *, address: str | None = None, resume: bool = False,
               callbacks: Sequence[Any] = (), quiet: bool = False, stream: TextIO | None = None,
               ship_code: bool = False) -> SearchResult:
    """Run (or resume) the search of ``cfg`` end to end; see the module docstring.

    ``ship_code`` (with ``address``): ship this package to the cluster's workers (``py_modules``).

    Every problem with the inputs raises a :class:`~hytnas.errors.HytnasError` before anything is
    created. ``quiet`` silences the progress lines and the final table.
    """
    out = stream or sys.stdout
    t0 = time.monotonic()
    plan = preflight(cfg, resume=resume, address=address)
    started = init_ray(address, **({"runtime_env": code_runtime_env()} if ship_code and address else {}))
    try:
        check_cluster_resources(cfg)
        if address:  # other machines: their data must be there too (local Ray: preflight checked it)
            check_data_on_nodes(cfg.to_plain(), plan.space.input_size)
        storage = cfg.storage_dir
        storage.mkdir(parents=True, exist_ok=True)
        if not resume:
            atomic_write_text(storage / CONFIG_FILE, cfg.to_yaml())
        tuner = build_tuner(cfg, resume=resume, plan=plan, callbacks=callbacks, quiet=quiet)
        if not quiet:
            verb = "resuming" if resume else "starting"
            print(f"[hytnas] {verb} search {cfg.name!r}: {cfg.budget.num_samples} trials x {cfg.training.epochs} "
                  f"epochs, searcher {cfg.search.algorithm}, objectives {', '.join(o.name for o in cfg.get_objectives())}; "
                  f"folder {storage}", file=out, flush=True)
        try:
            grid = tuner.fit()
        except (RuntimeError, OSError) as exc:  # Tune's own failures (e.g. a worker killed for memory)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SearchFailed(
                f"the search stopped: {first[:300]}; its state is saved, continue with: {resume_command(cfg)}"
            ) from exc
        result = _collect(cfg, plan, grid, time.monotonic() - t0)
    finally:
        shutdown(started)
    if not quiet:
        print(summary(result, cfg), file=out, flush=True)
    return result


def _collect(cfg: ExperimentConfig, plan: Plan, grid: Any, wall_s: float) -> SearchResult:
    """Trial records from Tune's ``ResultGrid`` -> report files (+ MLflow artifacts). Called after
    ``fit`` returned (Tune's final snapshot is written): a finished trial keeps only its latest
    checkpoint (:func:`hytnas.trial.prune_checkpoints`)."""
    storage = cfg.storage_dir
    records = []
    for r in grid:
        metrics = dict(r.metrics or {})
        if r.error is not None:
            status = "failed"
        elif "val_accuracy" in metrics and is_complete(metrics, cfg.training.epochs):
            status = "done"
        elif "val_accuracy" in metrics:
            status = "stopped"
        else:
            status = "pending"
        ckpt = r.checkpoint.path if r.checkpoint is not None else None
        if ckpt and status in ("done", "stopped"):  # finished: Tune's final snapshot names this checkpoint
            prune_checkpoints(Path(ckpt).parent, ckpt)
        if ckpt and Path(ckpt).is_relative_to(storage):
            ckpt = str(Path(ckpt).relative_to(storage))
        elif ckpt and cfg.storage_uri is not None:  # a path on the URI's filesystem: keep the scheme
            ckpt = f"{cfg.storage_uri.split('://')[0]}://{ckpt}"
        if r.config:
            records.append({"trial_id": metrics.get("trial_id") or Path(r.path).name, "status": status,
                            "config": r.config, "metrics": metrics, "checkpoint": ckpt})
    objectives, constraints = cfg.get_objectives(), plan.constraints
    archs, df = trials_frame(records, plan.space, objectives, constraints)
    files = write_report(storage, plan.space, archs, df, objectives, comment=report_comment(cfg))
    finished = grid.num_terminated + grid.num_errors
    over_time = cfg.budget.time_budget_s is not None and wall_s >= cfg.budget.time_budget_s
    # Tune returns normally after Ctrl-C (SIGINT) or SIGUSR1: unfinished trials or fewer trials than
    # asked for (within the time budget) mean the search can be continued with --resume
    errors = [r for r in grid if r.error is not None]
    limit = cfg.failure.max_failed_trials
    aborted = limit is not None and len(errors) > limit
    interrupted = not aborted and not over_time and (finished < len(grid) or len(grid) < cfg.budget.num_samples)
    parent = None
    front = sort_front(df[df["pareto"]], objectives)
    pending = None
    if cfg.mlflow.enabled:
        state = read_state(storage)
        parent = state["parent_run_id"] if state else None
        if parent:
            logged = [*files.values(), *([storage / "hypervolume.png"] if (storage / "hypervolume.png").is_file() else [])]
            finish_search(cfg.tracking_uri, parent, storage, logged, {
                "trials_done": float((df["status"] == "done").sum()),
                "trials_failed": float((df["status"] == "failed").sum()),
                "pareto_size": float(df["pareto"].sum())},
                front[["trial_id", "checkpoint"]].to_dict("records"), plan.space, cfg.mlflow.register_name)
        if (storage / PENDING_FILE).is_file():
            pending = storage / PENDING_FILE
    return SearchResult(storage, df, front, files, cfg.tracking_uri if cfg.mlflow.enabled else None, parent,
                        interrupted, wall_s, tuple(o.name for o in objectives), aborted,
                        tuple(Path(r.path) / "error.txt" for r in errors if r.path), pending)


def summary(result: SearchResult, cfg: ExperimentConfig) -> str:
    """The closing lines of ``hytnas search``: Pareto table, files, the ``mlflow ui`` command."""
    df = result.trials
    objectives = cfg.get_objectives()
    lines = [
        f"[hytnas] finished in {result.wall_time_s:.0f} s: {result.num_done} trials done, "
        f"{int((df['status'] == 'stopped').sum())} stopped, {result.num_failed} failed",
    ]
    if len(result.pareto):
        lines += [f"Pareto-optimal trials ({len(result.pareto)}):", format_table(result.pareto, objectives)]
    else:
        lines.append("no completed feasible trial: the Pareto front is empty")
    lines += [f"trials:  {result.files['trials']}", f"pareto:  {result.files['pareto']}",
              f"plot:    {result.files['plot']}"]
    if result.tracking_uri:
        lines.append(f"MLflow:  {ui_command(result.tracking_uri)}")
    if result.pending_file is not None:
        lines.append(f"MLflow:  the tracking store did not take every record; they are kept in {result.pending_file} "
                     "(the trials' own results are complete in the experiment folder)")
    if result.interrupted:
        lines.append(f"the search stopped after {len(df)} of {cfg.budget.num_samples} trials (interrupted, or the searcher "
                     f"ran out of feasible archs); continue it with: {resume_command(cfg)}")
    return "\n".join(lines)


def resume_command(cfg: ExperimentConfig) -> str:
    """``hytnas search <storage>/experiment.yaml --resume``, quoted for a POSIX shell."""
    return f"hytnas search {shlex.quote(str(cfg.storage_dir / CONFIG_FILE))} --resume"


def failure_message(result: SearchResult, cfg: ExperimentConfig) -> str | None:
    """One line when a trial failed for good (how many, where the first traceback is) or the
    search was aborted for it; ``None`` when no trial failed."""
    n = max(result.num_failed, len(result.error_files))  # a trial whose worker died before its config is in error_files only
    if n == 0 and not result.aborted:
        return None
    where = f"; traceback: {result.error_files[0]}" if result.error_files else ""
    more = f" (and {len(result.error_files) - 1} more error.txt in the trial folders)" if len(result.error_files) > 1 else ""
    if result.aborted:
        return (f"the search was aborted: {n} trials failed, more than failure.max_failed_trials="
                f"{cfg.failure.max_failed_trials}{where}{more}")
    return f"{n} of {len(result.trials)} trials failed{where}{more}"


__all__ = ["SearchFailed", "SearchResult", "Plan", "preflight", "build_tuner", "run_search",
           "make_searcher", "make_trainable", "make_scheduler", "make_callbacks", "summary",
           "FailureGuard", "check_cluster_resources", "failure_message", "resume_command"]
