"""``optuna-nsga2``, ``optuna-tpe``, ``optuna-gp``: Ray's ``OptunaSearch`` over the latent genes.

The Optuna search space is one ``CategoricalDistribution`` per latent gene
(:meth:`hytnas.space.Space.latent_choices`: ``c1``, ``m2..m5`` instead of ``c2..c5``), so every
draw is a valid arch. What this thin subclass adds to ``OptunaSearch``:

- trial configs hold the 23 genes plus ``arch_id`` (Optuna's latent parameters stay internal);
- known objectives are computed exactly from the arch and told to Optuna, whatever the trainable
  reported; reported constraints become Optuna ``constraints_func`` values (BoTorch sign
  convention: <= 0 feasible);
- known-metric constraints by rejection: an infeasible draw is told as ``FAIL`` and Optuna is
  asked again (at most ``max_rejections`` times);
- only final results are told as ``COMPLETE`` (see :mod:`search_algos.common`); a trial without a
  final result is ``PRUNED``, an errored one ``FAIL``;
- pool mode (``candidates``): each Optuna suggestion is mapped to the *nearest not-yet-used
  candidate* in ``space.encode`` (Euclidean); the Optuna trial is credited with that candidate's
  result (its parameters stay the ones Optuna drew);
- Optuna may suggest an arch twice outside pool mode (that is how these samplers behave; the
  repeat is evaluated again);
- ``max_concurrent`` handled internally (pending trials are RUNNING Optuna trials: TPE's constant
  liar and NSGA-II's generations see them);
- :meth:`save` / :meth:`restore` write a versioned plain JSON dict (every Optuna trial's
  parameters, values, state and attributes) instead of a pickle; restore replays them into a fresh
  study.
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from hytnas.errors import SearchError
from hytnas.space import Arch
from hytnas.utils import atomic_write_json
from search_algos.common import Problem, load_candidates, nearest_unused

logger = logging.getLogger(__name__)

OPTUNA_SAMPLERS = ("nsga2", "tpe", "gp")
STATE_FORMAT = "hytnas-optuna-state"
STATE_VERSION = 1
_CONSTRAINT_ATTR = "hytnas_constraints"


def _constraints_func(trial: optuna.trial.FrozenTrial) -> Sequence[float]:
    return trial.user_attrs.get(_CONSTRAINT_ATTR, [0.0])


def make_sampler(kind: str, seed: int, with_constraints: bool) -> optuna.samplers.BaseSampler:
    """The seeded Optuna sampler of ``optuna-<kind>``."""
    cf = _constraints_func if with_constraints else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if kind == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, constraints_func=cf)
        if kind == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True, constraints_func=cf)
        if kind == "gp":
            return optuna.samplers.GPSampler(seed=seed, constraints_func=cf)
    raise SearchError(f"optuna sampler {kind!r}: use one of {', '.join(OPTUNA_SAMPLERS)}")


class OptunaArchSearch(OptunaSearch):
    """Ray's ``OptunaSearch`` for a HyT-NAS problem (see the module docstring)."""

    def __init__(
        self,
        problem: Problem,
        *,
        sampler: str = "tpe",
        seed: int = 0,
        max_concurrent: int = 1,
        candidates: str | Path | Sequence[Arch] | None = None,
        max_rejections: int = 1000,
    ) -> None:
        self.problem = problem
        self.sampler_kind = sampler
        self.seed = int(seed)
        if int(max_concurrent) < 1:
            raise SearchError(f"max_concurrent: must be >= 1, got {max_concurrent}")
        self.max_concurrent = int(max_concurrent)
        self.max_rejections = int(max_rejections)
        self.pool = load_candidates(candidates, problem.space)
        self._pool_X = problem.space.encode(self.pool) if self.pool is not None else None
        if self.pool is not None and not problem.feasible(self.pool):
            raise SearchError("candidates: no candidate satisfies the constraints")
        self._archs: dict[str, Arch] = {}  # trial_id -> arch handed out
        self.used: set[Arch] = set()
        space = {g: CategoricalDistribution(list(v)) for g, v in problem.space.latent_choices().items()}
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        super().__init__(
            space=space,
            metric=problem.metric_names,
            mode=problem.modes,
            sampler=make_sampler(sampler, self.seed, bool(problem.reported_constraints)),
        )

    # ------------------------------------------------------------------ Tune interface
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # space and objectives are fixed at construction

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = int(max_concurrent)
        return True

    def _live(self) -> int:
        return sum(1 for t in self._ot_trials if t not in self._completed_trials)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if trial_id in self._archs:
            return self.problem.config(self._archs[trial_id])
        if self._live() >= self.max_concurrent:
            return None
        for _ in range(self.max_rejections):
            params = super().suggest(trial_id)
            arch = self.problem.space.from_latent(params)
            if self.pool is not None:
                mapped = nearest_unused(arch, self.pool, self._pool_X, self.used | self._infeasible_pool(), self.problem.space)
                if mapped is None:  # every feasible candidate is used
                    self._drop(trial_id, TrialState.FAIL)
                    return Searcher.FINISHED
                arch = mapped
            elif not bool(self.problem.feasible_mask([arch])[0]):
                self._drop(trial_id, TrialState.FAIL)
                continue
            self._archs[trial_id] = arch
            self.used.add(arch)
            return self.problem.config(arch)
        raise SearchError(
            f"constraints: {self.max_rejections} Optuna draws in a row violate "
            f"{', '.join(str(c) for c in self.problem.known_constraints)}; relax the bounds"
        )

    def _infeasible_pool(self) -> set[Arch]:
        if not hasattr(self, "_pool_infeasible"):
            mask = self.problem.feasible_mask(self.pool).tolist()
            self._pool_infeasible = {a for a, ok in zip(self.pool, mask) if not ok}
        return self._pool_infeasible

    def _drop(self, trial_id: str, state: TrialState) -> None:
        ot_trial = self._ot_trials.pop(trial_id)
        self._ot_study.tell(ot_trial, None, state=state)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        return  # multi-objective Optuna takes no intermediate values

    @property
    def metric(self) -> list[str] | None:
        """What Tune checks every result for: the *reported* objectives only (known ones are
        computed here from the arch, so a plain trainable need not report them)."""
        return [o.name for o in self.problem.reported_objectives] or None

    @property
    def mode(self) -> list[str] | None:
        return [o.sense for o in self.problem.reported_objectives] or None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell Optuna every objective (reported from the final result, known computed exactly)."""
        if trial_id not in self._ot_trials or trial_id in self._completed_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        arch = self._archs.get(trial_id)
        metrics = None if (error or arch is None) else self.problem.final_metrics(result)
        if metrics is None:
            self._ot_study.tell(ot_trial, None, state=TrialState.FAIL if error else TrialState.PRUNED)
        else:
            known = dict(zip([o.name for o in self.problem.known_objectives], self.problem.known_values([arch])[0].tolist()))
            if self.problem.reported_constraints:
                slack = [float(c.slack(torch.tensor(metrics[c.name]))) for c in self.problem.reported_constraints]
                ot_trial.set_user_attr(_CONSTRAINT_ATTR, slack)
            values = [metrics[o.name] if o.source == "reported" else known[o.name] for o in self.problem.objectives]
            self._ot_study.tell(ot_trial, values)
        self._completed_trials.add(trial_id)

    def add_evaluated_point(self, *args: Any, **kwargs: Any) -> None:
        raise SearchError("optuna searchers: add_evaluated_point is not supported; use warm_start with the mobo searcher")

    # ------------------------------------------------------------------ state (plain JSON)
    def get_state(self) -> dict[str, Any]:
        space = self.problem.space
        trials = []
        for t in self._ot_study.get_trials(deepcopy=False):
            trials.append({
                "number": t.number,
                "state": t.state.name,
                "params": dict(t.params),
                "values": None if t.values is None else list(t.values),
                "user_attrs": dict(t.user_attrs),
                "system_attrs": dict(t.system_attrs),
            })
        number_of = {tid: ot.number for tid, ot in self._ot_trials.items()}
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "searcher": f"optuna-{self.sampler_kind}",
            "space_id": space.space_id,
            "objectives": [[o.name, o.sense, o.source] for o in self.problem.objectives],
            "seed": self.seed,
            "max_concurrent": self.max_concurrent,
            "trials": trials,
            "ray_trials": {tid: {"number": number_of[tid], "genes": space.to_vector(a),
                                 "completed": tid in self._completed_trials}
                           for tid, a in self._archs.items() if tid in number_of},
            "used": [space.to_vector(a) for a in self.used],
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise SearchError("searcher state: not a hytnas optuna searcher state (missing format tag)")
        if state.get("version") != STATE_VERSION:
            raise SearchError(f"searcher state: version {state.get('version')!r} is not supported (expected {STATE_VERSION})")
        if state.get("searcher") != f"optuna-{self.sampler_kind}":
            raise SearchError(f"searcher state: saved by {state.get('searcher')!r}, not optuna-{self.sampler_kind}")
        if state.get("space_id") != self.problem.space.space_id:
            raise SearchError("searcher state: saved for another space; restore with the same space")
        space = self.problem.space
        self._ot_study = None
        self._study_name = f"optuna-restored-{id(self)}"
        self._sampler = make_sampler(self.sampler_kind, int(state["seed"]), bool(self.problem.reported_constraints))
        self._points_to_evaluate = []
        self._setup_study(self._mode)
        by_number: dict[int, dict[str, Any]] = {}
        running = []
        for t in state["trials"]:
            by_number[t["number"]] = t
            if t["state"] == "RUNNING":
                running.append(t)
                continue
            self._ot_study.add_trial(optuna.trial.create_trial(
                state=TrialState[t["state"]], params=t["params"], distributions=self._space,
                values=t["values"], user_attrs=t["user_attrs"], system_attrs=t["system_attrs"],
            ))
        self._ot_trials, self._completed_trials, self._archs = {}, set(), {}
        for tid, info in state["ray_trials"].items():
            self._archs[tid] = space.from_vector(info["genes"])
            if info["completed"]:
                continue
            t = by_number[info["number"]]
            self._ot_study.enqueue_trial(t["params"], user_attrs=t["user_attrs"], skip_if_exists=False)
            self._ot_trials[tid] = self._ot_study.ask(fixed_distributions=self._space)
        self.used = {space.from_vector(g) for g in state["used"]}
        self.max_concurrent = int(state["max_concurrent"])

    def save(self, checkpoint_path: str | Path) -> None:
        atomic_write_json(checkpoint_path, self.get_state())

    def restore(self, checkpoint_path: str | Path) -> None:
        path = Path(checkpoint_path)
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SearchError(f"searcher state {path}: cannot be read as JSON ({exc})") from None
        self.set_state(state)
