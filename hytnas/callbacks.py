"""The Ray Tune callbacks of a search (driver side; Tune pickles them with the experiment).

- :class:`ProgressCallback`: one :func:`hytnas.report.progress_summary` line per finished trial
  and a heartbeat at most every ``interval_s`` seconds, readable in a plain terminal and CI logs.
- :class:`MlflowTracker`: :class:`hytnas.tracking.MlflowLogger` (the only MLflow code) as a
  Tune callback, plus what needs the report: the ``pareto`` tags of the child runs (recomputed
  over the completed trials each time a trial finishes) and the parent run refreshed every
  ``refresh_every`` finished trials or ``refresh_s`` seconds (tables, plots, hypervolume), and the
  time spent in it per trial (``tracking_overhead.json``).
- :class:`Completions`: the final results of the trials in completion order (the benchmark's record).
- :class:`SearchRecords`: once per driver process, before Tune asks for the first new trial,
  reconciles the searcher's write-ahead record with the trials of the (restored) Tune
  experiment (:meth:`search_algos.tune.TuneSearcher.reconcile`): trials Tune forgot (running or
  finished) are continued first, from their checkpoints, without a second observation.
- :class:`LiveReport`: ``trials.csv`` and ``pareto.csv`` rewritten atomically each time a trial
  finishes (:func:`hytnas.report.trials_frame` + :func:`hytnas.report.write_report`, the code path
  of the end of a search, without the plot), so that a killed search leaves its results readable.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from ray.tune import Callback

from hytnas.objectives import Constraint, Objective
from hytnas.report import hv_history, plot_front, plot_hypervolume, progress_summary, trials_frame, write_report
from hytnas.tracking import MlflowLogger
from hytnas.trial import trial_status
from hytnas.utils import atomic_write_json

log = logging.getLogger(__name__)


class ProgressCallback(Callback):
    """Prints :func:`~hytnas.report.progress_summary` on each finished trial and at most every
    ``interval_s`` seconds otherwise. Pickle-safe (the stream is not pickled)."""

    def __init__(
        self,
        objectives: Sequence[Objective],
        constraints: Sequence[Constraint] = (),
        total: int | None = None,
        interval_s: float = 10.0,
        stream: TextIO | None = None,
        max_epochs: int | None = None,
    ) -> None:
        self.objectives = tuple(objectives)
        self.constraints = tuple(constraints)
        self.total = total
        self.max_epochs = max_epochs
        self.interval_s = float(interval_s)
        self._stream = stream  # None: sys.stdout at print time
        self._start: float | None = None
        self._last = 0.0

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_stream"] = None
        d["_start"] = None
        return d

    def setup(self, **info: Any) -> None:
        self._start = time.monotonic()
        self.total = info.get("total_num_samples") or self.total

    def summary(self, trials: Sequence[Any]) -> str:
        elapsed = time.monotonic() - (self._start or time.monotonic())
        return progress_summary(
            [(t.status, t.last_result) for t in trials],
            self.objectives,
            self.constraints,
            self.total,
            elapsed,
            self.max_epochs,
        )

    def _print(self, trials: Sequence[Any]) -> None:
        print(self.summary(trials), file=self._stream or sys.stdout, flush=True)
        self._last = time.monotonic()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(trials)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self._last >= self.interval_s:
            self._print(trials)


#: Per-trial time spent in :class:`MlflowTracker` (driver side), written at the end of a search.
OVERHEAD_FILE = "tracking_overhead.json"


class MlflowTracker(MlflowLogger, Callback):
    """Ray Tune callback logging a search to MLflow (see :mod:`hytnas.tracking`).

    Besides the child runs: when a trial finishes, the front over the completed trials is
    recomputed and the ``pareto`` tags of the runs that entered or left it are updated
    (:meth:`~hytnas.tracking.MlflowLogger.set_front`). Every ``refresh_every`` finished trials, or
    when ``refresh_s`` seconds passed since the last refresh, the parent run gets ``trials.csv`` /
    ``pareto.csv`` (written by :class:`LiveReport`, which must come before this callback),
    ``searcher.json`` when present, the metrics ``hypervolume``, ``pareto_size``,
    ``trials_completed``, ``trials_failed`` at ``step`` = trials completed, and the tag
    ``hytnas.hv_reference_point`` (derived from the data: :func:`hytnas.report.hv_history`); the
    plots ``pareto.png`` and ``hypervolume.png`` at most every ``refresh_s`` seconds and at the end.
    The time spent in the hooks is summed per trial (:attr:`tracking_ms`); at the end its median
    and 95th percentile become the parent metrics ``tracking_ms_median`` / ``tracking_ms_p95`` and
    :data:`OVERHEAD_FILE` holds them with the trials' ``time_total_s``."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        storage: str | Path,
        config: Any,
        space: Any,
        *,
        objectives: Sequence[Objective] = (),
        constraints: Sequence[Constraint] = (),
        max_epochs: int | None = None,
        refresh_every: int = 1,
        refresh_s: float = 60.0,
    ) -> None:
        super().__init__(tracking_uri, experiment_name, storage, config, space)
        self.objectives = tuple(objectives)
        self.constraints = tuple(constraints)
        self.max_epochs = max_epochs
        self.refresh_every = int(refresh_every)
        self.refresh_s = float(refresh_s)
        self.tracking_ms: dict[str, float] = {}
        self.trial_s: dict[str, float] = {}
        self._order: list[str] = []
        self._since = 0
        self._last_refresh = self._last_plot = -float("inf")

    def __getstate__(self) -> dict[str, Any]:
        d = super().__getstate__()
        d["_last_refresh"] = d["_last_plot"] = -float("inf")
        return d

    def _timed(self, trial: Any, fn: Callable[..., None], *args: Any, **kw: Any) -> None:
        t0 = time.perf_counter()
        try:
            fn(*args, **kw)
        finally:
            tid = str(trial.trial_id)
            self.tracking_ms[tid] = self.tracking_ms.get(tid, 0.0) + 1000.0 * (time.perf_counter() - t0)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._timed(trial, super().on_trial_start, iteration, trials, trial, **info)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._timed(trial, super().on_trial_result, iteration, trials, trial, result, **info)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._timed(trial, self._finished, super().on_trial_complete, "TERMINATED", iteration, trials, trial, **info)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._timed(trial, self._finished, super().on_trial_error, "ERROR", iteration, trials, trial, **info)

    def _finished(
        self, hook: Callable[..., None], status: str, iteration: int, trials: list, trial: Any, **info: Any
    ) -> None:
        hook(iteration, trials, trial, **info)
        tid = str(trial.trial_id)
        if tid not in self._order:
            self._order.append(tid)
        t = (trial.last_result or {}).get("time_total_s")
        if isinstance(t, (int, float)):
            self.trial_s[tid] = float(t)
        self._since += 1
        # Tune calls the hook before it sets the trial's final status
        df = self.frame(trials, {tid: status})
        if df is None:
            return
        self.set_front(df.loc[df["pareto"], "trial_id"], trials)
        now = time.monotonic()
        if self._since >= self.refresh_every or now - self._last_refresh >= self.refresh_s:
            self.refresh(df, plots=now - self._last_plot >= self.refresh_s)

    def frame(self, trials: Sequence[Any], statuses: dict[str, str] | None = None) -> Any:
        """The trial frame (:func:`hytnas.report.trials_frame`) of ``trials`` in completion order
        (unfinished trials last; ``statuses``: Tune statuses that replace the trials' own);
        None without objectives or trials."""
        records = trial_records(trials, self.storage, self.max_epochs, statuses)
        if not records or not self.objectives:
            return None
        rank = {tid: i for i, tid in enumerate(self._order)}
        records.sort(key=lambda r: rank.get(r["trial_id"], len(rank)))
        return trials_frame(records, self.space, self.objectives, self.constraints)[1]

    def refresh(self, df: Any, *, plots: bool) -> None:
        """Refresh the parent run from the trial frame ``df`` (see the class docstring)."""
        now = time.monotonic()
        self._since, self._last_refresh = 0, now
        curve, ref = hv_history(df, self.objectives, self.constraints)
        files = [self.storage / "trials.csv", self.storage / "pareto.csv", self.storage / "searcher.json"]
        if plots:
            self._last_plot = now
            try:
                files.append(plot_front(df, self.objectives, self.storage / "pareto.png"))
                if curve:
                    files.append(plot_hypervolume(curve, ref, self.objectives, self.storage / "hypervolume.png"))
            except OSError as exc:
                log.warning("hytnas: could not write the plots in %s: %s", self.storage, exc)
        completed = int(df["status"].isin(["done", "stopped"]).sum())
        metrics = {
            "hypervolume": curve[-1] if curve else 0.0,
            "pareto_size": float(df["pareto"].sum()),
            "trials_completed": float(completed),
            "trials_failed": float((df["status"] == "failed").sum()),
        }
        tags = (
            {"hytnas.hv_reference_point": json.dumps(dict(zip((o.name for o in self.objectives), ref)))} if ref else {}
        )
        self.log_parent(metrics, completed, tags, [f for f in files if Path(f).is_file()])

    def overhead(self) -> dict[str, Any]:
        """The time spent in this callback per trial (ms) with its median and 95th percentile, and
        the trials' own ``time_total_s`` (median)."""
        ms = sorted(self.tracking_ms.values())
        secs = sorted(self.trial_s.values())
        out: dict[str, Any] = {"tracking_ms": dict(self.tracking_ms), "trial_s": dict(self.trial_s)}
        if ms:
            out["tracking_ms_median"] = statistics.median(ms)
            out["tracking_ms_p95"] = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
        if secs:
            out["trial_s_median"] = statistics.median(secs)
        if ms and secs and out["trial_s_median"] > 0:
            out["overhead_fraction"] = out["tracking_ms_median"] / (1000.0 * out["trial_s_median"])
        return out

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        df = self.frame(trials)
        if df is not None and len(df):
            self.set_front(df.loc[df["pareto"], "trial_id"], trials)
            self.refresh(df, plots=True)
        stats = self.overhead()
        try:
            atomic_write_json(self.storage / OVERHEAD_FILE, stats)
        except OSError as exc:
            log.warning("hytnas: could not write %s: %s", self.storage / OVERHEAD_FILE, exc)
        keys = ("tracking_ms_median", "tracking_ms_p95")
        if any(k in stats for k in keys):
            self.log_parent({k: stats[k] for k in keys if k in stats}, len(self._order))
        super().on_experiment_end(trials, **info)


def trial_records(
    trials: Sequence[Any], storage: Path, max_epochs: int | None = None, statuses: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The trial records of :func:`hytnas.report.trials_frame` from Tune trials (those with a
    config): status from :func:`hytnas.trial.trial_status` of the trial's Tune status (or of
    ``statuses[trial_id]``: Tune runs the completion hooks before it sets the final status), last
    result, latest checkpoint (relative to ``storage`` when inside it)."""
    statuses = statuses or {}
    out = []
    for t in trials:
        if not t.config:
            continue
        ckpt = t.checkpoint.path if t.checkpoint is not None else None
        if ckpt and Path(ckpt).is_relative_to(storage):
            ckpt = str(Path(ckpt).relative_to(storage))
        metrics = dict(t.last_result or {})
        out.append(
            {
                "trial_id": str(t.trial_id),
                "config": t.config,
                "metrics": metrics,
                "checkpoint": ckpt,
                "status": trial_status(statuses.get(str(t.trial_id), t.status), metrics, max_epochs=max_epochs),
            }
        )
    return out


class Completions(Callback):
    """The final results of the trials, in completion order (errors as ``{"error": True}``)."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.results.append(dict(trial.last_result or {}))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.results.append({"error": True})


class SearchRecords(Callback):
    """Calls ``searcher.reconcile(trial ids of the Tune experiment)`` at the first step of each
    driver process, which comes before Tune asks the searcher for a new trial; a searcher whose
    Tune snapshot held no state loads its record first (``restore_record``).

    Tune stores this callback and the searcher in the same pickle (the Tuner's state), so the
    restored callback holds the restored searcher."""

    def __init__(self, searcher: Any) -> None:
        self.searcher = searcher
        self._reconciled = False

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_reconciled"] = False
        return d

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self._reconciled:
            return
        self._reconciled = True
        restore_record = getattr(self.searcher, "restore_record", None)
        if restore_record is not None:
            restore_record()
        lost = self.searcher.reconcile(t.trial_id for t in trials)
        if lost:
            log.warning(
                "hytnas: %d trial(s) started after Ray Tune's last snapshot (%s); continued under new trial ids",
                len(lost),
                ", ".join(lost),
            )


class LiveReport(Callback):
    """Rewrites ``trials.csv`` and ``pareto.csv`` in ``storage`` (atomically) when a trial finishes.

    Rows: every trial of the Tune experiment with a config, its status from
    :func:`hytnas.trial.trial_status`, its last result and its latest checkpoint (relative to
    ``storage``). A write that fails (disk full) is logged and the search goes on."""

    def __init__(
        self,
        storage: str | Path,
        space: Any,
        objectives: Sequence[Objective],
        constraints: Sequence[Constraint] = (),
        max_epochs: int | None = None,
        comment: str | None = None,
    ) -> None:
        self.storage = Path(storage)
        self.space = space
        self.objectives = tuple(objectives)
        self.constraints = tuple(constraints)
        self.max_epochs = max_epochs
        self.comment = comment

    def records(self, trials: Sequence[Any], statuses: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return trial_records(trials, self.storage, self.max_epochs, statuses)

    def write(self, trials: Sequence[Any], statuses: dict[str, str] | None = None) -> None:
        records = self.records(trials, statuses)
        if not records:
            return
        archs, df = trials_frame(records, self.space, self.objectives, self.constraints)
        try:
            write_report(self.storage, self.space, archs, df, self.objectives, comment=self.comment, plot=False)
        except OSError as exc:
            log.warning("hytnas: could not write the trial tables in %s: %s", self.storage, exc)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.write(trials, {str(trial.trial_id): "TERMINATED"})  # Tune sets the status after the hooks

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.write(trials, {str(trial.trial_id): "ERROR"})
