"""The Ray Tune callbacks of a search (driver side; Tune pickles them with the experiment).

- :class:`ProgressCallback`: one :func:`hytnas.report.progress_summary` line per finished trial
  and a heartbeat at most every ``interval_s`` seconds, readable in a plain terminal and CI logs.
- :class:`MlflowTracker`: :class:`hytnas.tracking.MlflowLogger` (the only MLflow code) as a
  Tune callback.
- :class:`Completions`: the final results of the trials in completion order (the benchmark's record).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from ray.tune import Callback

from hytnas.objectives import Constraint, Objective
from hytnas.report import progress_summary
from hytnas.tracking import MlflowLogger


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
