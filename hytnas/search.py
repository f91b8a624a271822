"""The Python API of a search: :func:`build_tuner` and :func:`run_search`.

>>> from hytnas.config import load_experiment
>>> from hytnas.search import run_search
>>> result = run_search(load_experiment("quickstart", ["budget.num_samples=4"]))
>>> result.pareto[["arch_id", "val_accuracy", "params_k"]]

What a run does, in order (the CLI ``hytnas search`` is a thin wrapper):

1. :func:`preflight`: validate everything that can be wrong *before anything is created* — the
   data folder (``check_paths`` and the data module's ``prepare_data``), the space, the
   searcher and its options, and the experiment folder (a folder that already holds a search is
   refused unless ``resume=True``; a resumed search must use the same config).
2. Start local Ray or connect to ``address`` (:func:`hytnas.runtime.init_ray`); a Ray instance
   that is already running is used as is and left running. On a cluster (``address``) the data
   is checked on every node before Tune starts (:func:`hytnas.cluster.check_data_on_nodes`), and
   ``ship_code=True`` ships this package to the workers (:func:`hytnas.cluster.code_runtime_env`).
3. Build the ``tune.Tuner`` (:func:`build_tuner`): the function trainable
   :func:`trainables.train.train_arch` with the static experiment settings
   (``tune.with_parameters``) and per-trial resources (``tune.with_resources``); the searcher from
   ``search_algos.tune.make_search_alg``; FIFO or ASHA (resource: epochs); Tune's metric/mode is the
   first objective (the searcher handles all of them); callbacks: :class:`hytnas.callbacks.ProgressCallback`
   and :class:`hytnas.callbacks.MlflowTracker`. Ray's own progress table is silenced (``verbose=0``).
   With ``resume=True``: ``tune.Tuner.restore(..., resume_errored=True)``; finished trials are
   kept, unfinished ones continue from their last epoch checkpoint, and the searcher continues
   from its saved state (``Searcher.save``/``restore``), so no trial is lost or repeated. A trial
   whose worker or node dies is retried once (``FailureConfig(max_failures=1)``) from its last
   checkpoint, on any node with room.
4. At the end: ``trials.csv``, ``pareto.csv`` (arch-table format) and ``pareto.png`` in the
   experiment folder, the same files as artifacts of the MLflow parent run, and the Pareto table
   with the ``mlflow ui`` command printed.

Experiment folder layout (``cfg.storage_dir``): ``experiment.yaml`` (the effective config, written
once), ``tune/`` (Tune's state, trial folders and checkpoints), ``mlflow.db`` + ``mlartifacts/``
+ ``tracking.json`` (tracking), ``trials.csv``, ``pareto.csv``, ``pareto.png``. With a URI
``storage_path`` (``s3://bucket/path``), ``tune/`` is ``<uri>/tune`` and the other files stay in
the local folder ``./experiments/<name>`` (:attr:`ExperimentConfig.storage_dir`).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pandas as pd
import torch
import yaml
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from hytnas.callbacks import MlflowTracker, ProgressCallback
from hytnas.cluster import check_data_on_nodes, check_storage_uri, code_runtime_env
from hytnas.config import ExperimentConfig, parse_experiment
from hytnas.data import make_datamodule
from hytnas.devices import device_wiring as wire
from hytnas.errors import ConfigError, DataError, SearchError
from hytnas.models import build_model
from hytnas.report import format_table, sort_front, trials_frame, write_report
from hytnas.runtime import init_ray, shutdown
from hytnas.table import read_arch_table
from hytnas.tracking import log_artifacts, read_state, ui_command
from hytnas.trial import WEIGHTS_FILE, is_complete, read_trial_state, trial_name
from hytnas.utils import atomic_write_json, atomic_write_text
from trainables.train import train_arch

TUNE_DIR = "tune"
CONFIG_FILE = "experiment.yaml"


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


def make_searcher(cfg: ExperimentConfig, space: Any, num_classes: int, in_channels: int):
    """``search_algos.tune.make_search_alg`` for ``cfg``; bad options name ``search.options``."""
    from search_algos.tune import make_search_alg

    options = dict(cfg.search.options)
    options.setdefault("max_epochs", cfg.training.epochs)
    hw = device_wiring(cfg, space, num_classes, in_channels)
    try:
        return make_search_alg(
            cfg.search.algorithm, space=space, objectives=hw.objectives, constraints=hw.constraints,
            seed=cfg.search.seed, max_concurrent=cfg.budget.max_concurrent_trials, num_classes=num_classes,
            in_channels=in_channels, input_size=space.input_size, known_fns=hw.known_fns, options=options,
        )
    except SearchError as exc:
        raise ConfigError(f"search.options: {exc}") from None


def preflight(cfg: ExperimentConfig, *, resume: bool = False, check_storage: bool = True) -> Plan:
    """Check everything a run needs without creating anything (see the module docstring)."""
    cfg.check_paths()
    space = cfg.build_space()
    dm = make_datamodule(cfg, space.input_size)
    dm.prepare_data()  # DataError naming the missing/bad file; downloads only with dataset.download
    num_classes, in_channels = dm.num_classes, dm.in_channels
    make_searcher(cfg, space, num_classes, in_channels)  # options and constraints are valid
    if check_storage:
        _check_storage(cfg, resume)
    hw = device_wiring(cfg, space, num_classes, in_channels)
    return Plan(cfg, space, num_classes, in_channels, resume, tuple(hw.objectives), tuple(hw.constraints))


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


def make_callbacks(cfg: ExperimentConfig, space: Any, *, quiet: bool = False, plan: Plan | None = None) -> list[Any]:
    """Progress lines (unless ``quiet``) and the MLflow tracker (when enabled)."""
    out: list[Any] = []
    if not quiet:
        constraints = plan.constraints if plan is not None else cfg.get_constraints()
        out.append(ProgressCallback(cfg.get_objectives(), constraints, total=cfg.budget.num_samples,
                                    max_epochs=cfg.training.epochs))
    if cfg.mlflow.enabled:
        out.append(MlflowTracker(cfg.tracking_uri, cfg.mlflow_experiment, cfg.storage_dir, cfg.to_plain(), space))
    return out


def build_tuner(cfg: ExperimentConfig, *, resume: bool = False, plan: Plan | None = None,
                callbacks: Sequence[Any] = (), quiet: bool = False, search_alg: Any = None,
                trainable: Any = None):
    """The ``tune.Tuner`` of ``cfg`` (Ray must be initialised; see the module docstring).

    ``callbacks`` are added to the default ones (progress unless ``quiet``, MLflow when
    enabled). ``search_alg`` replaces the configured searcher and ``trainable`` the training
    trainable (e.g. ``trainables.lookup``; resources are still ``cfg.resources``). The experiment
    folder is not checked here (:func:`run_search` does that). With ``resume=True`` the Tuner is
    restored from ``<storage>/tune``; Tune then uses the searcher, scheduler and callbacks it
    saved with the experiment.
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
                                                                        plan.in_channels)
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
            callbacks=[*make_callbacks(cfg, plan.space, quiet=quiet, plan=plan), *callbacks],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=1), verbose=0, log_to_file=True,
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
    plan = preflight(cfg, resume=resume)
    started = init_ray(address, **({"runtime_env": code_runtime_env()} if ship_code and address else {}))
    try:
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
                f"the search stopped: {first[:300]}; its state is saved, continue with: "
                f"hytnas search {storage / CONFIG_FILE} --resume"
            ) from exc
        result = _collect(cfg, plan, grid, time.monotonic() - t0)
    finally:
        shutdown(started)
    if not quiet:
        print(summary(result, cfg), file=out, flush=True)
    return result


def _collect(cfg: ExperimentConfig, plan: Plan, grid: Any, wall_s: float) -> SearchResult:
    """Trial records from Tune's ``ResultGrid`` -> report files (+ MLflow artifacts)."""
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
        if ckpt and Path(ckpt).is_relative_to(storage):
            ckpt = str(Path(ckpt).relative_to(storage))
        elif ckpt and cfg.storage_uri is not None:  # a path on the URI's filesystem: keep the scheme
            ckpt = f"{cfg.storage_uri.split('://')[0]}://{ckpt}"
        if r.config:
            records.append({"trial_id": metrics.get("trial_id") or Path(r.path).name, "status": status,
                            "config": r.config, "metrics": metrics, "checkpoint": ckpt})
    objectives, constraints = cfg.get_objectives(), plan.constraints
    archs, df = trials_frame(records, plan.space, objectives, constraints)
    comment = f"hytnas search {cfg.name}; objectives {', '.join(o.name for o in objectives)}"
    files = write_report(storage, plan.space, archs, df, objectives, comment=comment)
    finished = grid.num_terminated + grid.num_errors
    over_time = cfg.budget.time_budget_s is not None and wall_s >= cfg.budget.time_budget_s
    # Tune returns normally after Ctrl-C (SIGINT) or SIGUSR1: unfinished trials or fewer trials than
    # asked for (within the time budget) mean the search can be continued with --resume
    interrupted = not over_time and (finished < len(grid) or len(grid) < cfg.budget.num_samples)
    parent = None
    if cfg.mlflow.enabled:
        state = read_state(storage)
        parent = state["parent_run_id"] if state else None
        if parent:
            log_artifacts(cfg.tracking_uri, parent, files.values(), {
                "trials_done": float((df["status"] == "done").sum()),
                "trials_failed": float((df["status"] == "failed").sum()),
                "pareto_size": float(df["pareto"].sum())})
    front = sort_front(df[df["pareto"]], objectives)
    return SearchResult(storage, df, front, files, cfg.tracking_uri if cfg.mlflow.enabled else None, parent,
                        interrupted, wall_s, tuple(o.name for o in objectives))


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
    if result.interrupted:
        lines.append(f"the search stopped after {len(df)} of {cfg.budget.num_samples} trials (interrupted, or the searcher "
                     f"ran out of feasible archs); continue it with: hytnas search {cfg.storage_dir / CONFIG_FILE} --resume")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ export
EXPORT_FORMAT = "hytnas-arch"
EXPORT_VERSION = 1


def load_saved_experiment(experiment_dir: str | Path) -> ExperimentConfig:
    """The effective config saved in an experiment folder."""
    d = Path(experiment_dir)
    path = d / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"EXPERIMENT_DIR: {d} is not a hytnas experiment folder (no {CONFIG_FILE})")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        raise ConfigError(f"EXPERIMENT_DIR: {path} is unreadable") from None
    return parse_experiment(data)


def export_pareto(experiment_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """Export the Pareto-optimal models of a finished search; returns the model folders.

    Per model ``<out>/<rank>-<arch_id>/`` with ``arch.json`` (format ``hytnas-arch`` v1: genes,
    ``arch_cfg`` (``ArchCfg.to_dict()``), ``input_size``, ``num_classes``, ``in_channels``, the
    trial's metrics) and ``weights.pt`` (``state_dict``; ``torch.load(p, weights_only=True)``).
    The weights are checked by loading them (strictly) into a freshly built model.
    """
    d = Path(experiment_dir)
    cfg = load_saved_experiment(d)
    space = cfg.build_space()
    pareto = d / "pareto.csv"
    if not pareto.is_file():
        raise DataError(f"{pareto}: missing; the search has not finished (continue it with "
                        f"hytnas search {d / CONFIG_FILE} --resume)")
    archs, df = read_arch_table(pareto, space)
    out_dir = Path(out) if out is not None else d / "export"
    written = []
    for rank, (arch, (_, row)) in enumerate(zip(archs, df.iterrows()), start=1):
        ckpt = str(row.get("checkpoint") or "")
        ckpt_dir = d / ckpt if ckpt and not Path(ckpt).is_absolute() else Path(ckpt)
        if not ckpt or not (ckpt_dir / WEIGHTS_FILE).is_file():
            raise DataError(f"{pareto}: row {rank + 1}, column checkpoint: no {WEIGHTS_FILE} in {ckpt_dir}")
        state = read_trial_state(ckpt_dir)
        arch_cfg = space.to_arch_cfg(arch)
        weights = torch.load(ckpt_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        model = build_model(arch_cfg, num_classes=state["num_classes"], in_channels=state["in_channels"],
                            input_size=state["input_size"])
        model.load_state_dict(weights, strict=True)
        folder = out_dir / f"{rank:02d}-{arch_cfg.arch_id}"
        folder.mkdir(parents=True, exist_ok=True)
        metrics = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()
                   if k not in space.to_config(arch) and k not in ("checkpoint", "feasible", "pareto")}
        atomic_write_json(folder / "arch.json", {
            "format": EXPORT_FORMAT, "version": EXPORT_VERSION, "arch_id": arch_cfg.arch_id,
            "space": space.name, "genes": space.to_config(arch), "arch_cfg": arch_cfg.to_dict(),
            "input_size": state["input_size"], "num_classes": state["num_classes"],
            "in_channels": state["in_channels"], "experiment": cfg.name, "metrics": _plain(metrics),
        })
        torch.save(model.state_dict(), folder / "weights.pt")
        written.append(folder)
    return written


def _plain(d: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[str(k)] = v
    return out


__all__ = ["SearchFailed", "SearchResult", "Plan", "preflight", "build_tuner", "run_search",
           "make_searcher", "make_trainable", "make_scheduler", "make_callbacks", "summary", "export_pareto",
           "load_saved_experiment"]
