"""``ax``: Ax's default multi-objective generation strategy as an ask/tell searcher (a benchmark
baseline; needs the optional ``ax-platform`` package: ``pip install 'hytnas[bench]'``).

Built on Ax's ``Client`` (``ax.api``), not Ray's ``AxSearch`` (which reports only its first
metric to Ax and fails on a multi-objective experiment with Ax >= 1.0):

- parameters: one ordered ``choice`` per latent gene with more than one choice
  (:meth:`hytnas.space.Space.latent_choices`, values as floats: one type per parameter);
- objective: ``"val_accuracy, -latency_ms"`` (a minus for ``min`` objectives); the generation
  strategy is Ax's default for that experiment (Sobol initialisation, then BoTorch MOBO);
- ``tell`` completes the Ax trial with every objective (reported ones from the metrics, known ones
  computed exactly); ``tell_failed`` / ``tell_stopped`` mark it failed / early-stopped;
- pool mode (``candidates``): each suggestion is mapped to the nearest not-yet-used pool arch in
  ``space.encode`` (as the Optuna searchers do); the Ax trial is credited with that arch's result;
- the state is Ax's own JSON snapshot (``Client.save_to_json_file``) plus the pending trials.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hytnas.errors import SearchError
from hytnas.space import Arch
from search_algos.base import JsonStateFile, check_state
from search_algos.common import Problem, load_candidates, nearest_unused
from search_algos.settings import SearcherSettings

STATE_FORMAT = "hytnas-ax-state"
STATE_VERSION = 1


class AxArchSearch(JsonStateFile):
    """Ax's default generation strategy as an ask/tell searcher (see the module docstring)."""

    kind = "ax"

    def __init__(self, problem: Problem, settings: SearcherSettings | None = None, *, seed: int = 0) -> None:
        try:
            from ax.api.client import Client
            from ax.api.configs import ChoiceParameterConfig
        except ImportError:
            raise SearchError("searcher ax: needs the ax-platform package (pip install 'hytnas[bench]')") from None
        for name in ("ax", "ax.api", "ax.service", "ax.generation_strategy", "ax.adapter", "ax.storage"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.problem, self.settings, self.seed = problem, settings or SearcherSettings(), int(seed)
        space = problem.space
        choices = space.latent_choices()
        self._fixed = {g: v[0] for g, v in choices.items() if len(v) == 1}
        self.client = Client(random_seed=self.seed)
        self.client.configure_experiment(
            parameters=[
                ChoiceParameterConfig(name=g, values=[float(x) for x in v], parameter_type="float", is_ordered=True)
                for g, v in choices.items()
                if len(v) > 1
            ],
            name="hytnas",
        )
        self.client.configure_optimization(
            objective=", ".join(o.name if o.sense == "max" else f"-{o.name}" for o in problem.objectives)
        )
        self.client.configure_generation_strategy()
        self.pool = load_candidates(self.settings.candidates, space)
        self._pool_X = space.encode(self.pool) if self.pool is not None else None
        self.pending: dict[Arch, int] = {}  # arch -> Ax trial index
        self.used: set[Arch] = set()

    def ask(self, n: int = 1) -> list[Arch]:
        out: list[Arch] = []
        space = self.problem.space
        for index, params in self.client.get_next_trials(max_trials=int(n)).items():
            arch = space.from_latent({**self._fixed, **params})
            if self.pool is not None:
                arch = nearest_unused(arch, self.pool, self._pool_X, self.used, space)
                if arch is None:  # the pool is used up
                    self.client.mark_trial_abandoned(index)
                    continue
            self.used.add(arch)
            self.pending[arch] = index
            out.append(arch)
        return out

    def tell(self, arch: Arch, metrics: Mapping[str, Any]) -> None:
        index = self.pending.pop(arch, None)
        if index is None:
            return
        observed = self.problem.observed(metrics)
        if observed is None:
            self.client.mark_trial_failed(index, failed_reason="no final result")
            return
        p = self.problem
        known = dict(zip([o.name for o in p.known_objectives], p.known_values([arch])[0].tolist()))
        self.client.complete_trial(
            index,
            raw_data={o.name: observed[o.name] if o.source == "reported" else known[o.name] for o in p.objectives},
        )

    def tell_failed(self, arch: Arch, error: object = None) -> None:
        index = self.pending.pop(arch, None)
        if index is not None:
            self.client.mark_trial_failed(index, failed_reason=str(error or "failed"))

    def tell_stopped(self, arch: Arch) -> None:
        index = self.pending.pop(arch, None)
        if index is not None:
            self.client.mark_trial_early_stopped(index)

    def state_dict(self) -> dict[str, Any]:
        space = self.problem.space
        with tempfile.TemporaryDirectory() as d:
            self.client.save_to_json_file(str(Path(d) / "ax.json"))
            snapshot = json.loads((Path(d) / "ax.json").read_text())
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "searcher": self.kind,
            **self.problem.signature(),
            "seed": self.seed,
            "ax": snapshot,
            "pending": [{"index": i, "genes": space.to_vector(a)} for a, i in self.pending.items()],
            "used": [space.to_vector(a) for a in self.used],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(state, STATE_FORMAT, STATE_VERSION, self.kind, self.problem)
        from ax.api.client import Client

        space = self.problem.space
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "ax.json").write_text(json.dumps(state["ax"]))
            self.client = Client.load_from_json_file(str(Path(d) / "ax.json"))
        self.pending = {space.from_vector(p["genes"]): int(p["index"]) for p in state["pending"]}
        self.used = {space.from_vector(g) for g in state["used"]}
