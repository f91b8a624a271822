"""The one Ray Tune adapter: any ask/tell searcher as a ``ray.tune.search.Searcher``.

- ``suggest`` asks for one arch and returns its trial config (the 23 genes plus ``arch_id``);
  ``None`` ("wait") while ``max_concurrent`` trials are out (Tune's ``max_concurrent_trials``
  overrides it through ``set_max_concurrency``), ``FINISHED`` when the searcher has nothing left;
- ``on_trial_complete`` tells the searcher: ``tell_failed`` on error, ``tell`` for a final result
  (the trial protocol, :meth:`search_algos.common.Problem.is_final`), ``tell_stopped`` otherwise;
- Tune checks every result for ``metric``: the *reported* objectives only (known ones are computed
  by the searcher from the arch);
- ``save`` / ``restore`` write the searcher's versioned plain state plus the trial -> arch map
  (JSON, atomic): what ``tune.Tuner.restore`` continues from.

The wrapped ask/tell searcher is :attr:`TuneSearcher.core`. (Ray Tune's ``SearchGenerator`` treats
any searcher with a ``searcher`` attribute as a wrapper and calls its ``get_state``, which a plain
``Searcher`` does not implement: the experiment snapshot then fails.)

Crash-safe record (``state_path``): the bookkeeping of trial ids, the write-ahead file, the
reconciliation with a restored Tune experiment and the retries of trials Tune forgot are
:class:`search_algos.record.SearchRecord` (Ray-free, :attr:`TuneSearcher.record`); this adapter
only maps Tune's calls onto it. :meth:`TuneSearcher.restore` (Tune's searcher checkpoint) loads the
fresher of that checkpoint and the record; :meth:`TuneSearcher.reconcile` is called by
:class:`hytnas.callbacks.SearchRecords` once per driver, before Tune asks for a new trial.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.search import Searcher as RaySearcher

from hytnas.errors import SearchError
from hytnas.space import Arch, Space
from hytnas.utils import atomic_write_json
from search_algos.base import Searcher
from search_algos.factory import make_searcher
from search_algos.record import FINISHED, RECORD_FILE, SearchRecord


class TuneSearcher(RaySearcher):
    """``core`` (an ask/tell searcher) as a Ray Tune ``Searcher``; see the module docstring.

    ``state_path``: the write-ahead record (None: no record; Tune's snapshots only).
    """

    def __init__(self, searcher: Searcher, max_concurrent: int = 1, state_path: str | Path | None = None) -> None:
        reported = searcher.problem.reported_objectives
        super().__init__(metric=[o.name for o in reported] or None, mode=[o.sense for o in reported] or None)
        # not ``self.searcher``: Tune takes any search algorithm with that attribute for a wrapper
        self.core = searcher
        self.record = SearchRecord(searcher, max_concurrent, state_path)

    @property
    def max_concurrent(self) -> int:
        return self.record.max_concurrent

    @max_concurrent.setter
    def max_concurrent(self, value: int) -> None:
        self.record.max_concurrent = int(value)

    @property
    def trials(self) -> dict[str, Arch]:
        """Trial id -> arch of the trials handed out and not finished."""
        return {tid: e.arch for tid, e in self.record.trials.items()}

    @property
    def state_path(self) -> Path | None:
        return self.record.path

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the objectives are fixed at construction; Tune's metric/mode only rank results

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        config = self.record.hand_out(trial_id)
        return RaySearcher.FINISHED if config == FINISHED else config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.record.finish(trial_id, result, error)

    def reconcile(self, known_trial_ids: Iterable[str]) -> list[str]:
        """:meth:`SearchRecord.reconcile`: the recorded trials Tune forgot are retried first."""
        return self.record.reconcile(known_trial_ids)

    def add_evaluated_point(
        self,
        parameters: Mapping[str, Any],
        value: Mapping[str, float] | Sequence[float] | float | None,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """An arch evaluated elsewhere: ``value`` a mapping metric -> value, or a sequence in the
        order of the reported metrics (:attr:`Problem.observed_names`)."""
        problem = self.core.problem
        arch = problem.arch_of(parameters)
        if error:
            self.core.tell_failed(arch)
        elif pruned or value is None:
            self.core.tell_stopped(arch)
        else:
            if not isinstance(value, Mapping):
                vals = list(value) if isinstance(value, Sequence) else [value]
                if len(vals) != len(problem.observed_names):
                    raise SearchError(
                        f"add_evaluated_point: expected {len(problem.observed_names)} values "
                        f"({', '.join(problem.observed_names)}), got {len(vals)}"
                    )
                value = dict(zip(problem.observed_names, vals))
            self.core.tell(arch, value)
        self.record.write()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The versioned plain state (:meth:`SearchRecord.state_dict`)."""
        return self.record.state_dict()

    def load_state_dict(self, state: Mapping[str, Any], source: str | Path = "searcher state") -> None:
        self.record.load_state_dict(state, source)

    def save(self, checkpoint_path: str | Path) -> None:
        atomic_write_json(checkpoint_path, self.state_dict())

    def restore(self, checkpoint_path: str | Path) -> None:
        """Load ``checkpoint_path`` or the record (``state_path``), whichever is fresher (``seq``)."""
        self.record.load_fresher(checkpoint_path)

    def restore_record(self) -> bool:
        """Load the record when it is fresher than the state held (a Tune experiment whose
        snapshot holds no searcher state); returns whether it was loaded."""
        return self.record.load_fresher()


def param_space(space: Space) -> dict[str, Any]:
    """Ray Tune ``param_space`` of ``space``: one ``tune.choice`` per latent gene (every draw is a
    valid arch, read back by ``space.from_config``), for Tune's own search algorithms."""
    return {g: tune.choice(list(v)) for g, v in space.latent_choices().items()}


def make_search_alg(
    name: str, *, max_concurrent: int = 1, state_path: str | Path | None = None, **kwargs: Any
) -> TuneSearcher:
    """:func:`search_algos.make_searcher` (same keyword arguments) wrapped in :class:`TuneSearcher`
    (``state_path``: its write-ahead record)."""
    return TuneSearcher(make_searcher(name, **kwargs), max_concurrent=max_concurrent, state_path=state_path)


__all__ = ["RECORD_FILE", "TuneSearcher", "make_search_alg", "param_space"]
