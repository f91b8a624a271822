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

Crash-safe record (``state_path``)
----------------------------------
Ray Tune snapshots its experiment (trials) and the searcher together, but only from time to time
(``TUNE_GLOBAL_CHECKPOINT_S``, and when a trial saved a checkpoint), never at a trial's start. A
driver killed between a trial's start and the next snapshot used to leave a searcher that had
forgotten the arch it handed out, an MLflow child run nobody closes, and, on resume, a new
proposal under a new trial id. With ``state_path`` (the search's ``<storage>/searcher.json``):

1. **write-ahead**: the same versioned plain dict as :meth:`save` is written atomically to
   ``state_path`` *before* ``suggest`` returns a new trial's config (so before the trial can
   start) and after every ``on_trial_complete`` (so before Tune can snapshot the completion).
   Each write carries a sequence number ``seq`` (one more per change);
2. **freshest wins**: :meth:`restore` (Tune's own searcher checkpoint) loads whichever of that
   checkpoint and ``state_path`` has the higher ``seq``: the record, unless it is missing;
3. **lost trials are retried**: :meth:`reconcile` is given the trial ids the restored Tune
   experiment knows (:class:`hytnas.callbacks.SearchRecords` calls it once per driver, before
   Tune asks for the first new trial). Handed-out archs whose trial Tune forgot move to a
   retry queue and are handed out again, first, to the next new trial ids: a retry of the lost
   trial (the core searcher still holds them as pending), neither a new proposal nor a duplicate;
4. **told once**: trial ids already told (``told``) are never told again, e.g. a trial whose
   completion the record has but Tune's older snapshot has not, and that Tune runs again.

Keys added to the version-1 state (missing in older files: defaults ``seq`` 0, no ``told``, no
``retry``): ``seq``, ``told`` (trial ids), ``retry`` (gene vectors). The count of observations is
the core searcher's (``core.state_dict()``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.search import Searcher as RaySearcher

from hytnas.errors import HytnasError, SearchError
from hytnas.space import Arch, Space
from hytnas.utils import atomic_write_json
from search_algos.base import Searcher, read_state
from search_algos.factory import make_searcher

STATE_FORMAT = "hytnas-tune-searcher"
STATE_VERSION = 1
#: The write-ahead record's file name in an experiment folder (see the module docstring).
RECORD_FILE = "searcher.json"


class TuneSearcher(RaySearcher):
    """``core`` (an ask/tell searcher) as a Ray Tune ``Searcher``; see the module docstring.

    ``state_path``: the write-ahead record (None: no record; Tune's snapshots only).
    """

    def __init__(self, searcher: Searcher, max_concurrent: int = 1, state_path: str | Path | None = None) -> None:
        reported = searcher.problem.reported_objectives
        super().__init__(metric=[o.name for o in reported] or None, mode=[o.sense for o in reported] or None)
        if int(max_concurrent) < 1:
            raise SearchError(f"max_concurrent: must be >= 1, got {max_concurrent}")
        # not ``self.searcher``: Tune takes any search algorithm with that attribute for a wrapper
        self.core = searcher
        self.max_concurrent = int(max_concurrent)
        self.state_path = Path(state_path) if state_path is not None else None
        self.trials: dict[str, Arch] = {}  # trial id -> arch, asked and not told
        self.retry: list[Arch] = []  # handed out to trials Tune forgot: handed out again first
        self.told: set[str] = set()  # trial ids told (a completion is told once)
        self.seq = 0  # one more per recorded change

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the objectives are fixed at construction; Tune's metric/mode only rank results

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = int(max_concurrent)
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        problem = self.core.problem
        if trial_id in self.trials:  # Tune asks again for a trial it already has
            return problem.config(self.trials[trial_id])
        if len(self.trials) >= self.max_concurrent:
            return None
        if self.retry:
            arch = self.retry.pop(0)
        else:
            archs = self.core.ask(1)
            if not archs:
                return RaySearcher.FINISHED
            arch = archs[0]
        self.trials[trial_id] = arch
        self._record()  # before Tune can start the trial
        return problem.config(arch)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.told:  # already told (the record was ahead of Tune's snapshot)
            self.trials.pop(trial_id, None)
            return
        arch = self.trials.pop(trial_id, None)
        if arch is None:  # a trial this searcher did not hand out: known by its config, if at all
            try:
                arch = self.core.problem.arch_of((result or {})["config"])
            except (KeyError, TypeError, HytnasError):
                return
        if error:
            self.core.tell_failed(arch)
        elif self.core.problem.is_final(result):
            self.core.tell(arch, result or {})
        else:
            self.core.tell_stopped(arch)
        self.told.add(trial_id)
        self._record()

    def reconcile(self, known_trial_ids: Iterable[str]) -> list[str]:
        """Move the archs of handed-out trials that Tune does not know (``known_trial_ids``: the
        trials of the restored experiment) to the retry queue; returns those trial ids."""
        known = {str(t) for t in known_trial_ids}
        lost = [tid for tid in self.trials if tid not in known]
        for tid in lost:
            self.retry.append(self.trials.pop(tid))
        if lost:
            self._record()
        return lost

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
        self._record()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The versioned plain state (what :meth:`save` and the record write)."""
        space = self.core.problem.space
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "seq": self.seq,
            "max_concurrent": self.max_concurrent,
            "trials": {tid: space.to_vector(a) for tid, a in self.trials.items()},
            "retry": [space.to_vector(a) for a in self.retry],
            "told": sorted(self.told),
            "searcher": self.core.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any], source: str | Path = "searcher state") -> None:
        """Continue from :meth:`state_dict`; one :class:`SearchError` line when it is not one."""
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise SearchError(f"searcher state {source}: not a version-{STATE_VERSION} {STATE_FORMAT}")
        try:
            self.core.load_state_dict(state["searcher"])
            space = self.core.problem.space
            self.trials = {str(tid): space.from_vector(g) for tid, g in state["trials"].items()}
            self.retry = [space.from_vector(g) for g in state.get("retry", [])]
            self.told = {str(t) for t in state.get("told", [])}
            self.max_concurrent = int(state["max_concurrent"])
            self.seq = int(state.get("seq", 0))
        except HytnasError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SearchError(f"searcher state {source}: malformed ({type(exc).__name__}: {exc})") from None

    def save(self, checkpoint_path: str | Path) -> None:
        atomic_write_json(checkpoint_path, self.state_dict())

    def restore(self, checkpoint_path: str | Path) -> None:
        """Load ``checkpoint_path`` or the record (``state_path``), whichever is fresher (``seq``)."""
        state, source = read_state(checkpoint_path), checkpoint_path
        if self.state_path is not None and self.state_path.is_file():
            record = read_state(self.state_path)
            if int(record.get("seq", 0)) >= int(state.get("seq", 0)):
                state, source = record, self.state_path
        self.load_state_dict(state, source)

    def restore_record(self) -> bool:
        """Load the record (``state_path``) when it is fresher than the state held; returns whether
        it was loaded. For a Tune experiment whose snapshot holds no searcher state at all."""
        if self.state_path is None or not self.state_path.is_file():
            return False
        record = read_state(self.state_path)
        if int(record.get("seq", 0)) <= self.seq:
            return False
        self.load_state_dict(record, self.state_path)
        return True

    def _record(self) -> None:
        self.seq += 1
        if self.state_path is not None:
            atomic_write_json(self.state_path, self.state_dict())


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
