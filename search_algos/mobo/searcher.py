"""``MOBOSearcher``: the ask/tell searcher over the MOBO maths of :mod:`search_algos.mobo.core`.

One proposal (:meth:`ArchSearcher.ask` calls it once per arch):

1. the next arch of a queued batch, if any;
2. otherwise the next unused arch of the *initial design* (the first ``n_initial`` feasible archs of
   a scrambled Sobol sequence over the latent genes, ``space.sample(method="sobol")``; in pool
   mode each Sobol point is mapped to its nearest unused candidate);
3. otherwise (re)fits the surrogates if observations arrived since the last fit (warm-starting the
   GP hyperparameters from the previous fit), builds the acquisition over
   ``ModelList(surrogates, GenericDeterministicModel(known objectives))`` with the pending archs
   as ``X_pending``, and picks ``batch_size`` archs by sequential greedy selection, scoring a
   feasible candidate set (random archs + mutations and neighbours of the observed Pareto set,
   or the unused pool) and hill-climbing on the acquisition.

Default ``n_initial`` is ``min(10, d + 1)`` with ``d`` the number of latent genes that have a
choice: with the dimension-scaled lengthscale prior the GP is usable with fewer points than
dimensions, and model-guided points beat space-filling ones early (docs/searcher.md).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import torch

from hytnas.errors import SearchError
from hytnas.objectives import to_maximize
from hytnas.space import GENES, Arch
from search_algos.base import ArchSearcher
from search_algos.common import Problem, nearest_unused
from search_algos.mobo.acquisition import HV_ACQUISITIONS, OutcomeLayout, declared_bounds, reference_point
from search_algos.mobo.core import RowTable, SearchSettings, generate_candidates, make_model, pareto_anchors, propose
from search_algos.mobo.surrogates import fit_surrogate
from search_algos.settings import MOBOSettings


class MOBOSearcher(ArchSearcher):
    """Multi-objective Bayesian optimisation over a HyT-NAS space (ask/tell, Ray-free).

    Args:
        problem: the validated problem (:func:`search_algos.common.make_problem`).
        settings: :class:`search_algos.settings.MOBOSettings` (every option and its meaning).
        seed: the searcher's seed (Sobol design, candidate draws, acquisition MC samples).
    """

    kind = "mobo"
    _TRANSIENT = ("_model", "_table")

    def __init__(self, problem: Problem, settings: MOBOSettings | None = None, *, seed: int = 0) -> None:
        settings = settings or MOBOSettings()
        super().__init__(problem, settings, seed=seed)
        self.surrogate = settings.surrogate
        self.acquisition = settings.acquisition
        self.batch_size = settings.batch_size
        self.mc_samples = settings.mc_samples
        self.surrogate_options = dict(settings.surrogate_options)
        self.search = SearchSettings(
            n_random=settings.num_random,
            n_mutations=settings.num_mutations,
            local_search_starts=settings.local_search_starts,
            local_search_steps=settings.local_search_steps,
            relax_starts=settings.relax_starts,
            relax_iters=settings.relax_iters,
        )
        ref = settings.ref_point
        self.ref_rule = ref if isinstance(ref, str) else "front"
        self.ref_point = self._check_ref_point(ref)
        self.torch_threads = settings.torch_threads
        d_eff = sum(len(v) > 1 for v in problem.space.latent_choices().values())
        self.n_initial = min(10, d_eff + 1) if settings.n_initial is None else settings.n_initial
        self.initial_center = settings.initial_center
        self._queue: list[Arch] = []
        self._warm: dict[str, Any] | None = None  # hyperparameters of the last fit (plain lists)
        self._warm_n = -1  # observations the last fit saw
        self._model = None
        self._table: RowTable | None = None
        self._fit_n = -1
        self.last_timings: dict[str, float] = {}
        self.design = self._initial_design()

    # ------------------------------------------------------------------ settings checks
    def _check_ref_point(self, ref: str | Mapping[str, float]) -> list[float] | None:
        """A fixed reference point in the maximised sense, or ``None`` for a rule."""
        if isinstance(ref, str):
            return None
        names = self.problem.metric_names
        unknown = [k for k in ref if k not in names]
        if unknown or set(ref) != set(names):
            bad = unknown[0] if unknown else next(n for n in names if n not in ref)
            raise SearchError(f"mobo ref_point: {bad!r}; give one value for each objective ({', '.join(names)})")
        Y = torch.tensor([[float(ref[n]) for n in names]], dtype=torch.float64)
        return to_maximize(Y, self.problem.objectives)[0].tolist()

    # ------------------------------------------------------------------ initial design
    def _initial_design(self) -> list[Arch]:
        n = max(0, self.n_initial - self.n_warm)
        if n == 0:
            return []
        space = self.problem.space
        sobol = space.sample(min(max(4 * n, 64), space.cardinality()), seed=self.seed, method="sobol")
        if self.initial_center:
            sobol = [*space.nearest(torch.full((1, len(GENES)), 0.5, dtype=torch.float64)), *sobol]
        if self.pool is not None:
            pool = self._pool_left()
            if not pool:
                raise SearchError("candidates: no unused candidate satisfies the constraints")
            pool_X = space.encode(pool)
            taken: set[Arch] = set(self.used)
            design = []
            for a in sobol:
                b = nearest_unused(a, pool, pool_X, taken, space)
                if b is None:
                    break
                taken.add(b)
                design.append(b)
                if len(design) == n:
                    break
            return design
        design = self._unused_feasible(sobol)[:n]
        if len(design) < n:
            design += [a for a in self._random_feasible(n - len(design), max_rounds=8) if a not in design]
        if not design:
            raise SearchError(
                "constraints: no arch of the space satisfies "
                f"{', '.join(str(c) for c in self.problem.known_constraints)} (none in "
                f"{len(sobol)} Sobol and random draws); relax the bounds or use a smaller space"
            )
        return design

    # ------------------------------------------------------------------ proposals
    def _propose(self) -> Arch | None:
        while self._queue:
            a = self._queue.pop(0)
            if a not in self.used:
                return a
        for a in self.design:
            if a not in self.used:
                return a
        if not self._can_model():
            got = self._random_feasible(1)
            return got[0] if got else None
        picks = self._select(self.batch_size)
        if not picks:
            return None
        self._queue = picks[1:]
        return picks[0]

    def _can_model(self) -> bool:
        return len(self.observations) >= (2 if self._model_has_surrogate() else 1)

    def _model_has_surrogate(self) -> bool:
        return bool(self.problem.reported_objectives or self.problem.reported_constraints)

    def _layout(self) -> OutcomeLayout:
        p = self.problem
        rep = [o.name for o in p.reported_objectives]
        known = [o.name for o in p.known_objectives]
        r, q = len(rep), len(p.reported_constraints)
        outs = tuple(rep.index(o.name) if o.source == "reported" else r + q + known.index(o.name) for o in p.objectives)
        cons = tuple((r + i, c) for i, c in enumerate(p.reported_constraints))
        return OutcomeLayout(objective_outputs=outs, constraint_outputs=cons)

    def _register(self, archs: Sequence[Arch]) -> None:
        """Make the known objectives of ``archs`` available to the deterministic model."""
        p = self.problem
        if self._table is None or not p.known_objectives or not archs:
            return
        X = p.encode(archs)
        new = self._table.missing(X)
        if bool(new.any()):
            fresh = [a for a, m in zip(archs, new.tolist()) if m]
            self._table.add(X[new], to_maximize(p.known_values(fresh), p.known_objectives))

    def _objective_values(self, archs: Sequence[Arch], Y: torch.Tensor) -> torch.Tensor:
        """Observed objective values in declared order, maximised sense (known ones exact)."""
        p = self.problem
        r = len(p.reported_objectives)
        rep = to_maximize(Y[:, :r], p.reported_objectives)
        kn = to_maximize(p.known_values(archs), p.known_objectives) if p.known_objectives else Y[:, :0]
        cols, ir, ik = [], 0, 0
        for o in p.objectives:
            if o.source == "reported":
                cols.append(rep[:, ir])
                ir += 1
            else:
                cols.append(kn[:, ik])
                ik += 1
        return torch.stack(cols, -1)

    def _ensure_model(self, archs: list[Arch], Y: torch.Tensor) -> None:
        n = len(archs)
        if self._model is not None and self._fit_n == n:
            return
        p = self.problem
        X = p.encode(archs)
        r = len(p.reported_objectives)
        Ytrain = torch.cat([to_maximize(Y[:, :r], p.reported_objectives), Y[:, r:]], dim=-1)
        surrogate = None
        if Ytrain.shape[-1]:
            refit = not (self._warm and self._warm_n == n)  # after a restore on the same data: rebuild only
            surrogate, warm = fit_surrogate(
                self.surrogate, X, Ytrain, warm=self._warm, seed=self.seed + n, refit=refit, **self.surrogate_options
            )
            self._warm, self._warm_n = (warm or None), n
        if self._table is None and p.known_objectives:
            self._table = RowTable(X.shape[-1], len(p.known_objectives))
        self._model = make_model(surrogate, self._table)
        self._fit_n = n

    def _select(self, q: int) -> list[Arch]:
        if self.torch_threads is None:
            return self._select_impl(q)
        before = torch.get_num_threads()
        torch.set_num_threads(self.torch_threads)
        try:
            return self._select_impl(q)
        finally:
            torch.set_num_threads(before)

    def _select_impl(self, q: int) -> list[Arch]:
        p, space = self.problem, self.problem.space
        t0 = time.perf_counter()
        archs, Y = self.observed_arrays()
        self._ensure_model(archs, Y)
        t1 = time.perf_counter()
        Ymax = self._objective_values(archs, Y)
        feas = None
        if p.reported_constraints:
            r = len(p.reported_objectives)
            feas = torch.tensor(
                [all(c.ok(float(y[r + i])) for i, c in enumerate(p.reported_constraints)) for y in Y], dtype=torch.bool
            )
        if len(p.objectives) < 2 or self.acquisition not in HV_ACQUISITIONS:
            ref = None  # single objective (qLogNEI) or ParEGO: no hypervolume, no reference point
        elif self.ref_point is not None:
            ref = torch.tensor(self.ref_point, dtype=torch.float64)
        else:
            Yref = Ymax[feas] if feas is not None and bool(feas.any()) else Ymax
            ref = reference_point(Yref, declared_bounds(p.objectives, p.constraints), rule=self.ref_rule)
        pool_set = set(self.pool) if self.pool is not None else None
        anchors = pareto_anchors(archs, Ymax, feas, self.search.max_anchors, self.rng)
        if self.pool is not None:
            cands = self._pool_left()
        else:
            cands = self._unused_feasible(
                generate_candidates(
                    space, self.rng, anchors=anchors, n_random=self.search.n_random, n_mutations=self.search.n_mutations
                )
            )
        if not cands:
            cands = self._random_feasible(64)
            if not cands:
                return []

        def moves(a: Arch) -> list[Arch]:
            nb = space.neighbours(a)
            if pool_set is not None:
                nb = [b for b in nb if b in pool_set]
            return self._unused_feasible(nb)

        pending = list(self.pending)
        if self._table is not None:
            self._table.clear()  # only this round's rows: the table stays small
        self._register(archs + pending)
        t2 = time.perf_counter()
        picks, info = propose(
            encode=p.encode,
            model=self._model,
            layout=self._layout(),
            acquisition=self.acquisition,
            X_baseline=p.encode(archs),
            Y_baseline_max=Ymax if feas is None else Ymax[feas],
            ref_point=ref,
            candidates=cands,
            moves=moves,
            register=self._register,
            X_pending=p.encode(pending) if pending else None,
            anchors=anchors,
            q=q,
            seed=self._draw_seed(),
            settings=self.search,
            mc_samples=self.mc_samples,
            # relaxation needs a surrogate to differentiate (known objectives are piecewise
            # constant), and pool mode scores the whole pool anyway
            snap=space.nearest if self.pool is None and self._model_has_surrogate() else None,
            admissible=self._unused_feasible,
        )
        t3 = time.perf_counter()
        self.last_timings = {
            "fit_s": t1 - t0,
            "candidates_s": t2 - t1,
            "acquisition_s": t3 - t2,
            "n_candidates": float(len(cands)),
            "n_scored": info["n_scored"],
        }
        return picks

    # ------------------------------------------------------------------ state
    def _settings_state(self) -> dict[str, Any]:
        space = self.problem.space
        return {
            "surrogate": self.surrogate,
            "acquisition": self.acquisition,
            "batch_size": self.batch_size,
            "n_initial": self.n_initial,
            "initial_center": self.initial_center,
            "mc_samples": self.mc_samples,
            "search": asdict(self.search),
            "pool_size": None if self.pool is None else len(self.pool),
            "design": [space.to_vector(a) for a in self.design],
            "queue": [space.to_vector(a) for a in self._queue],
            "surrogate_warm": self._warm,
            "surrogate_warm_n": self._warm_n,
        }

    def _load_settings_state(self, s: Mapping[str, Any]) -> None:
        space = self.problem.space
        self.design = [space.from_vector(g) for g in s["design"]]
        self._queue = [space.from_vector(g) for g in s["queue"]]
        same = s.get("surrogate") == self.surrogate
        self._warm = s.get("surrogate_warm") if same else None
        self._warm_n = int(s.get("surrogate_warm_n", -1)) if same else -1
        self._model, self._table, self._fit_n = None, None, -1

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)
        self._fit_n = -1  # the model was not pickled: refit on the next proposal
