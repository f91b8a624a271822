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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


class TuneSearcher(RaySearcher):
    """``searcher`` (ask/tell) as a Ray Tune ``Searcher``; see the module docstring."""

    def __init__(self, searcher: Searcher, max_concurrent: int = 1) -> None:
        reported = searcher.problem.reported_objectives
        super().__init__(metric=[o.name for o in reported] or None, mode=[o.sense for o in reported] or None)
        if int(max_concurrent) < 1:
            raise SearchError(f"max_concurrent: must be >= 1, got {max_concurrent}")
        # not ``self.searcher``: Tune takes any search algorithm with that attribute for a wrapper
        self.core = searcher
        self.max_concurrent = int(max_concurrent)
        self.trials: dict[str, Arch] = {}  # trial id -> arch, asked and not told

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
        archs = self.core.ask(1)
        if not archs:
            return RaySearcher.FINISHED
        self.trials[trial_id] = archs[0]
        return problem.config(archs[0])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
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
            return self.core.tell_failed(arch)
        if pruned or value is None:
            return self.core.tell_stopped(arch)
        if not isinstance(value, Mapping):
            vals = list(value) if isinstance(value, Sequence) else [value]
            if len(vals) != len(problem.observed_names):
                raise SearchError(
                    f"add_evaluated_point: expected {len(problem.observed_names)} values "
                    f"({', '.join(problem.observed_names)}), got {len(vals)}"
                )
            value = dict(zip(problem.observed_names, vals))
        self.core.tell(arch, value)

    def save(self, checkpoint_path: str | Path) -> None:
        space = self.core.problem.space
        atomic_write_json(
            checkpoint_path,
            {
                "format": STATE_FORMAT,
                "version": STATE_VERSION,
                "max_concurrent": self.max_concurrent,
                "trials": {tid: space.to_vector(a) for tid, a in self.trials.items()},
                "searcher": self.core.state_dict(),
            },
        )

    def restore(self, checkpoint_path: str | Path) -> None:
        state = read_state(checkpoint_path)
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise SearchError(f"searcher state {checkpoint_path}: not a version-{STATE_VERSION} {STATE_FORMAT}")
        self.core.load_state_dict(state["searcher"])
        space = self.core.problem.space
        self.trials = {tid: space.from_vector(g) for tid, g in state["trials"].items()}
        self.max_concurrent = int(state["max_concurrent"])


def param_space(space: Space) -> dict[str, Any]:
    """Ray Tune ``param_space`` of ``space``: one ``tune.choice`` per latent gene (every draw is a
    valid arch, read back by ``space.from_config``), for Tune's own search algorithms."""
    return {g: tune.choice(list(v)) for g, v in space.latent_choices().items()}


def make_search_alg(name: str, *, max_concurrent: int = 1, **kwargs: Any) -> TuneSearcher:
    """:func:`search_algos.make_searcher` (same keyword arguments) wrapped in :class:`TuneSearcher`."""
    return TuneSearcher(make_searcher(name, **kwargs), max_concurrent=max_concurrent)


__all__ = ["TuneSearcher", "make_search_alg", "param_space"]
