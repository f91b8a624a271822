"""``optuna-nsga2``, ``optuna-tpe``, ``optuna-gp``: Optuna samplers through Optuna's own
``study.ask()`` / ``study.tell()``, as ask/tell searchers over the archs of a space. Ray-free.

- The Optuna search space is one ``CategoricalDistribution`` per latent gene
  (:meth:`hytnas.space.Space.latent_choices`: ``c1``, ``m2..m5`` instead of ``c2..c5``), so every
  draw is a valid arch.
- Known objectives are computed exactly from the arch and told to Optuna; reported constraints
  become Optuna ``constraints_func`` values (BoTorch sign convention: <= 0 feasible).
- Known-metric constraints by rejection: an infeasible draw is told as ``FAIL`` and Optuna is
  asked again (at most ``max_rejections`` times in a row).
- ``tell`` is ``COMPLETE`` (missing or non-finite metrics: ``PRUNED``), ``tell_stopped``
  ``PRUNED``, ``tell_failed`` ``FAIL``. Asked and untold archs are ``RUNNING`` Optuna trials, which
  TPE's constant liar and NSGA-II's generations see. An arch told without having been asked (and
  every ``warm_start`` row) is added to the study as a finished trial.
- Pool mode (``candidates``): each draw is mapped to the *nearest not-yet-used feasible candidate*
  in ``space.encode`` (Euclidean); the Optuna trial is credited with that candidate's result (its
  parameters stay the ones Optuna drew). Outside pool mode Optuna may propose an arch twice (that
  is how these samplers behave; the repeat is evaluated again).
- :meth:`state_dict` is a versioned plain dict of every Optuna trial (parameters, values, state,
  attributes); :meth:`load_state_dict` replays them into a fresh study.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from hytnas.errors import SearchError
from hytnas.space import Arch
from search_algos.base import JsonStateFile, check_state
from search_algos.common import Problem, load_candidates, nearest_unused, read_observations
from search_algos.settings import OPTUNA_SAMPLERS, OptunaSettings

STATE_FORMAT = "hytnas-optuna-state"
STATE_VERSION = 2
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


class OptunaArchSearch(JsonStateFile):
    """An Optuna sampler as an ask/tell searcher (see the module docstring)."""

    def __init__(
        self, problem: Problem, settings: OptunaSettings | None = None, *, sampler: str = "tpe", seed: int = 0
    ) -> None:
        self.problem = problem
        self.settings = settings or OptunaSettings()
        self.sampler_kind = sampler
        self.kind = f"optuna-{sampler}"
        self.seed = int(seed)
        self.pool = load_candidates(self.settings.candidates, problem.space)
        self._pool_X = problem.space.encode(self.pool) if self.pool is not None else None
        self._pool_infeasible: set[Arch] = set()
        if self.pool is not None:
            mask = problem.feasible_mask(self.pool).tolist()
            self._pool_infeasible = {a for a, ok in zip(self.pool, mask) if not ok}
            if len(self._pool_infeasible) == len(set(self.pool)):
                raise SearchError("candidates: no candidate satisfies the constraints")
        self.distributions = {g: CategoricalDistribution(list(v)) for g, v in problem.space.latent_choices().items()}
        self.pending: list[tuple[Arch, optuna.trial.Trial]] = []
        self.used: set[Arch] = set()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._new_study(self.seed)
        if self.settings.warm_start is not None:
            archs, Y = read_observations(self.settings.warm_start, problem)
            for arch, y in zip(archs, Y.tolist()):
                self.tell(arch, dict(zip(problem.observed_names, y)))

    def _new_study(self, seed: int) -> None:
        directions = ["minimize" if o.sense == "min" else "maximize" for o in self.problem.objectives]
        self.study = optuna.create_study(
            sampler=make_sampler(self.sampler_kind, seed, bool(self.problem.reported_constraints)),
            pruner=optuna.pruners.NopPruner(),
            directions=directions,
        )

    # ------------------------------------------------------------------ ask / tell
    def ask(self, n: int = 1) -> list[Arch]:
        """Up to ``n`` archs drawn by the sampler (fewer when the pool is used up)."""
        out: list[Arch] = []
        for _ in range(int(n)):
            arch = self._ask_one()
            if arch is None:
                break
            out.append(arch)
        return out

    def _ask_one(self) -> Arch | None:
        space = self.problem.space
        for _ in range(self.settings.max_rejections):
            trial = self.study.ask(fixed_distributions=self.distributions)
            arch = space.from_latent(trial.params)
            if self.pool is not None:
                mapped = nearest_unused(arch, self.pool, self._pool_X, self.used | self._pool_infeasible, space)
                if mapped is None:  # every feasible candidate is used
                    self.study.tell(trial, None, state=TrialState.FAIL)
                    return None
                arch = mapped
            elif not bool(self.problem.feasible_mask([arch])[0]):
                self.study.tell(trial, None, state=TrialState.FAIL)
                continue
            self.pending.append((arch, trial))
            self.used.add(arch)
            return arch
        raise SearchError(
            f"constraints: {self.settings.max_rejections} Optuna draws in a row violate "
            f"{', '.join(str(c) for c in self.problem.known_constraints)}; relax the bounds"
        )

    def _pop(self, arch: Arch) -> optuna.trial.Trial | None:
        """The pending Optuna trial of ``arch`` (the oldest), or ``None`` when it was not asked."""
        self.used.add(arch)
        for i, (a, trial) in enumerate(self.pending):
            if a == arch:
                del self.pending[i]
                return trial
        return None

    def tell(self, arch: Arch, metrics: Mapping[str, Any]) -> None:
        """Tell Optuna every objective (reported ones from ``metrics``, known ones computed exactly)."""
        trial = self._pop(arch)
        observed = self.problem.observed(metrics)
        if observed is None:
            self._finish(trial, arch, TrialState.PRUNED)
            return
        p = self.problem
        known = dict(zip([o.name for o in p.known_objectives], p.known_values([arch])[0].tolist()))
        values = [observed[o.name] if o.source == "reported" else known[o.name] for o in p.objectives]
        attrs = {}
        if p.reported_constraints:
            attrs[_CONSTRAINT_ATTR] = [float(c.slack(torch.tensor(observed[c.name]))) for c in p.reported_constraints]
        if trial is None:  # evaluated elsewhere: a finished trial of its own
            self.study.add_trial(
                optuna.trial.create_trial(
                    params=self.problem.space.latent(arch),
                    distributions=self.distributions,
                    values=values,
                    user_attrs=attrs,
                )
            )
            return
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        self.study.tell(trial, values)

    def tell_failed(self, arch: Arch, error: object = None) -> None:
        self._finish(self._pop(arch), arch, TrialState.FAIL)

    def tell_stopped(self, arch: Arch) -> None:
        self._finish(self._pop(arch), arch, TrialState.PRUNED)

    def _finish(self, trial: optuna.trial.Trial | None, arch: Arch, state: TrialState) -> None:
        if trial is not None:
            self.study.tell(trial, None, state=state)
        else:
            self.study.add_trial(
                optuna.trial.create_trial(
                    params=self.problem.space.latent(arch), distributions=self.distributions, state=state
                )
            )

    # ------------------------------------------------------------------ state (plain JSON)
    def state_dict(self) -> dict[str, Any]:
        space = self.problem.space
        trials = [
            {
                "number": t.number,
                "state": t.state.name,
                "params": dict(t.params),
                "values": None if t.values is None else list(t.values),
                "user_attrs": dict(t.user_attrs),
                "system_attrs": dict(t.system_attrs),
            }
            for t in self.study.get_trials(deepcopy=False)
        ]
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "searcher": self.kind,
            **self.problem.signature(),
            "seed": self.seed,
            "trials": trials,
            "pending": [{"number": t.number, "genes": space.to_vector(a)} for a, t in self.pending],
            "used": [space.to_vector(a) for a in self.used],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(state, STATE_FORMAT, STATE_VERSION, self.kind, self.problem)
        space = self.problem.space
        try:
            self.seed = int(state["seed"])
            self._new_study(self.seed)
            by_number = {t["number"]: t for t in state["trials"]}
            for t in state["trials"]:
                if t["state"] != "RUNNING":
                    self.study.add_trial(
                        optuna.trial.create_trial(
                            state=TrialState[t["state"]],
                            params=t["params"],
                            distributions=self.distributions,
                            values=t["values"],
                            user_attrs=t["user_attrs"],
                            system_attrs=t["system_attrs"],
                        )
                    )
            self.pending = []
            for p in state["pending"]:
                t = by_number[p["number"]]
                self.study.enqueue_trial(t["params"], user_attrs=t["user_attrs"], skip_if_exists=False)
                self.pending.append(
                    (space.from_vector(p["genes"]), self.study.ask(fixed_distributions=self.distributions))
                )
            self.used = {space.from_vector(g) for g in state["used"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise SearchError(f"searcher state: malformed ({type(exc).__name__}: {exc})") from None

    # pickling (Ray Tune stores its searcher object): the plain state, replayed into a fresh study
    def __getstate__(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("study", "pending", "used")}
        d["_state"] = self.state_dict()
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        state = d.pop("_state")
        self.__dict__.update(d)
        self.load_state_dict(state)
