"""The Ray Tune callbacks of a search (driver side; Tune pickles them with the experiment).

- :class:`ProgressCallback`: one :func:`hytnas.report.progress_summary` line per finished trial
  and a heartbeat at most every ``interval_s`` seconds, readable in a plain terminal and CI logs.
- :class:`MlflowTracker`: :class:`hytnas.tracking.MlflowLogger` (the only MLflow code) as a
  Tune callback.
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

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ray.tune import Callback

from hytnas.objectives import Constraint, Objective
from hytnas.report import progress_summary, trials_frame, write_report
from hytnas.tracking import MlflowLogger
from hytnas.trial import trial_status

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


class MlflowTracker(MlflowLogger, Callback):
    """Ray Tune callback logging a search to MLflow (see :mod:`hytnas.tracking`)."""


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

    def records(self, trials: Sequence[Any]) -> list[dict[str, Any]]:
        out = []
        for t in trials:
            if not t.config:
                continue
            ckpt = t.checkpoint.path if t.checkpoint is not None else None
            if ckpt and Path(ckpt).is_relative_to(self.storage):
                ckpt = str(Path(ckpt).relative_to(self.storage))
            metrics = dict(t.last_result or {})
            out.append(
                {
                    "trial_id": str(t.trial_id),
                    "config": t.config,
                    "metrics": metrics,
                    "checkpoint": ckpt,
                    "status": trial_status(t.status, metrics, max_epochs=self.max_epochs),
                }
            )
        return out

    def write(self, trials: Sequence[Any]) -> None:
        records = self.records(trials)
        if not records:
            return
        archs, df = trials_frame(records, self.space, self.objectives, self.constraints)
        try:
            write_report(self.storage, self.space, archs, df, self.objectives, comment=self.comment, plot=False)
        except OSError as exc:
            log.warning("hytnas: could not write the trial tables in %s: %s", self.storage, exc)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.write(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.write(trials)
