"""``ax``: Ax's default multi-objective generation strategy as a benchmark searcher (benchmark only).

A thin subclass of Ray's ``AxSearch``:

- the Ax experiment is created here: one ordered ``choice`` parameter per latent gene
  (:meth:`hytnas.space.Space.latent_choices`, values as floats so every parameter has one
  type), one Ax objective per HyT-NAS objective (``minimize`` from its sense); the generation
  strategy is the one Ax chooses by default for that experiment (Sobol, then BoTorch MOO);
- trial configs hold the 23 genes (``space.to_config``), as every trainable expects;
- every objective is reported to Ax (Ray's ``AxSearch`` reports only its first metric);
- pool mode (``candidates``): each Ax suggestion is mapped to the nearest not-yet-used pool
  arch in ``space.encode`` (``search_algos.common.nearest_unused``, as the Optuna searchers do);
  the Ax trial is credited with that arch's result.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

from ray.tune.search import Searcher
from ray.tune.search.ax import AxSearch

from hytnas.errors import SearchError
from hytnas.objectives import Objective
from hytnas.space import Arch, Space


class AxArchSearch(AxSearch):
    def __init__(self, space: Space, objectives: Sequence[Objective], *, seed: int = 0,
                 candidates: Sequence[Arch] | None = None):
        from ax.service.ax_client import AxClient, ObjectiveProperties

        for name in ("ax", "ax.service", "ax.modelbridge", "ax.generation_strategy"):
            logging.getLogger(name).setLevel(logging.WARNING)
        client = AxClient(random_seed=seed, verbose_logging=False)
        client.create_experiment(
            name="hytnas",
            parameters=[{"name": g, "type": "choice", "values": [float(v) for v in vals], "is_ordered": True,
                         "sort_values": True, "value_type": "float"}
                        for g, vals in space.latent_choices().items() if len(vals) > 1],
            objectives={o.name: ObjectiveProperties(minimize=o.sense == "min") for o in objectives},
        )
        self._fixed = {g: vals[0] for g, vals in space.latent_choices().items() if len(vals) == 1}
        super().__init__(ax_client=client)
        self.space = space
        self.objectives = tuple(objectives)
        self.pool = list(dict.fromkeys(candidates)) if candidates is not None else None
        self._pool_X = space.encode(self.pool) if self.pool else None
        self._used: set[Arch] = set()

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        params = super().suggest(trial_id)
        if not isinstance(params, dict):
            return params
        arch = self.space.from_latent({**self._fixed, **params})
        if self.pool is not None:
            from search_algos.common import nearest_unused

            arch = nearest_unused(arch, self.pool, self._pool_X, self._used, self.space)
            if arch is None:
                return Searcher.FINISHED
        self._used.add(arch)
        return self.space.to_config(arch)

    def _process_result(self, trial_id: str, result: dict) -> None:
        index = self._live_trial_mapping[trial_id]
        missing = [o.name for o in self.objectives if o.name not in result]
        if missing:
            raise SearchError(f"ax searcher: trial {trial_id} reported no {missing[0]!r}")
        self._ax.complete_trial(trial_index=index, raw_data={o.name: (float(result[o.name]), None)
                                                               for o in self.objectives})
