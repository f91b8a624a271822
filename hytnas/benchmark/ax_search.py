"""``ax``: Ax's default multi-objective generation strategy as a benchmark searcher (benchmark only).

A thin Ray Tune ``Searcher`` over Ax's ``Client`` (``ax.api``). Ray's own ``AxSearch`` is not
used: it reports only its first metric to Ax and, with Ax >= 1.0, fails on a multi-objective
experiment (it reads ``Objective.minimize``, undefined for several metrics).

- parameters: one ordered ``choice`` per latent gene with more than one choice
  (:meth:`hytnas.space.Space.latent_choices`, values as floats: one type per parameter);
- objective: ``"val_accuracy, -latency_ms"`` (a minus for ``min`` objectives); the generation
  strategy is Ax's default for that experiment (``configure_generation_strategy()``: Sobol
  initialisation, then BoTorch multi-objective BO);
- trial configs hold the 23 genes (``space.to_config``) as every trainable expects; every
  objective is reported to Ax from the trial's final result;
- pool mode (``candidates``): each Ax suggestion is mapped to the nearest not-yet-used pool arch
  in ``space.encode`` (``search_algos.common.nearest_unused``, as the Optuna searchers do); the
  Ax trial is credited with that arch's result;
- benchmark runs are not resumed: there is no ``save``/``restore``.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

from ray.tune.search import Searcher

from hytnas.objectives import Objective
from hytnas.space import Arch, Space


class AxArchSearch(Searcher):
    def __init__(self, space: Space, objectives: Sequence[Objective], *, seed: int = 0,
                 candidates: Sequence[Arch] | None = None):
        from ax.api.client import Client
        from ax.api.configs import ChoiceParameterConfig

        super().__init__(metric=[o.name for o in objectives], mode=[o.sense for o in objectives])
        for name in ("ax", "ax.api", "ax.service", "ax.generation_strategy", "ax.adapter"):
            logging.getLogger(name).setLevel(logging.WARNING)
        choices = space.latent_choices()
        self._fixed = {g: v[0] for g, v in choices.items() if len(v) == 1}
        self._client = Client(random_seed=seed)
        self._client.configure_experiment(
            parameters=[ChoiceParameterConfig(name=g, values=[float(x) for x in v], parameter_type="float",
                                              is_ordered=True)
                        for g, v in choices.items() if len(v) > 1],
            name="hytnas-benchmark",
        )
        self._client.configure_optimization(
            objective=", ".join(o.name if o.sense == "max" else f"-{o.name}" for o in objectives))
        self._client.configure_generation_strategy()
        self.space = space
        self.objectives = tuple(objectives)
        self.pool = list(dict.fromkeys(candidates)) if candidates is not None else None
        self._pool_X = space.encode(self.pool) if self.pool else None
        self._used: set[Arch] = set()
        self._live: dict[str, int] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the objectives are fixed at construction

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        ((index, params),) = self._client.get_next_trials(max_trials=1).items()
        arch = self.space.from_latent({**self._fixed, **params})
        if self.pool is not None:
            from search_algos.common import nearest_unused

            arch = nearest_unused(arch, self.pool, self._pool_X, self._used, self.space)
            if arch is None:
                self._client.mark_trial_abandoned(index)
                return Searcher.FINISHED
        self._used.add(arch)
        self._live[trial_id] = index
        return self.space.to_config(arch)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        index = self._live.pop(trial_id, None)
        if index is None:
            return
        if error or not result or not result.get("done") or any(o.name not in result for o in self.objectives):
            self._client.mark_trial_failed(index, failed_reason="no final result")
            return
        self._client.complete_trial(index, raw_data={o.name: float(result[o.name]) for o in self.objectives})
