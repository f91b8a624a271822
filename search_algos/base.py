"""The bookkeeping shared by HyT-NAS's own Ray Tune searchers (``random`` and ``mobo``).

:class:`ArchSearcher` turns Ray Tune's callbacks into a plain record of the search:

- ``pending``: ``trial_id -> Arch`` handed out and not finished;
- ``observations``: archs with *final* reported metrics (see :mod:`search_algos.common`);
- ``failed``: archs whose trial errored (recorded, never re-proposed, never modelled);
- ``discarded``: archs whose trial ended without a final result (e.g. stopped by ASHA).

Every arch in any of these (and every warm-start arch) is *used*: a searcher never proposes a
used arch again (de-duplication by ``arch_id``). The record is a versioned plain JSON dict
(:meth:`get_state`), written atomically by :meth:`save`; :meth:`restore` rebuilds everything
else (fitted models are refitted, never unpickled). Pickling (``tune.Tuner`` stores the searcher
object in the experiment folder) goes through the same plain state.

Subclasses implement :meth:`_propose` (return one unused feasible arch or ``None`` when there
is none left) and may extend :meth:`_settings` / :meth:`_on_state_restored`.
"""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from ray.tune.search import Searcher

from hytnas.errors import HytnasError, SearchError
from hytnas.space import GENES, Arch
from hytnas.utils import atomic_write_json
from search_algos.common import Problem, load_candidates, read_observations

logger = logging.getLogger(__name__)

STATE_FORMAT = "hytnas-searcher-state"
STATE_VERSION = 1


class ArchSearcher(Searcher):
    """Base class: a Ray Tune ``Searcher`` over the archs of a HyT-NAS space.

    Args:
        problem: the validated problem (:func:`search_algos.common.make_problem`).
        seed: seed of the searcher's own ``numpy`` generator (the only randomness).
        max_concurrent: most trials handed out and not finished; ``suggest`` returns ``None``
            above it. Ray's ``max_concurrent_trials`` overrides it (``set_max_concurrency``).
        candidates: pool mode: an arch-table CSV or a list of archs; proposals come only from it.
        warm_start: an arch-table CSV with the reported objective columns: prior observations.
    """

    kind = "base"

    def __init__(
        self,
        problem: Problem,
        *,
        seed: int = 0,
        max_concurrent: int = 1,
        candidates: str | Path | Sequence[Arch] | None = None,
        warm_start: str | Path | None = None,
    ) -> None:
        # Tune checks that every result holds the searcher's metrics: only the *reported*
        # objectives come from the trainable; known ones are computed here from the arch.
        reported = problem.reported_objectives
        super().__init__(metric=[o.name for o in reported] or None, mode=[o.sense for o in reported] or None)
        if int(max_concurrent) < 1:
            raise SearchError(f"max_concurrent: must be >= 1, got {max_concurrent}")
        self.problem = problem
        self.seed = int(seed)
        self.max_concurrent = int(max_concurrent)
        self.rng = np.random.default_rng(self.seed)
        self.pool = load_candidates(candidates, problem.space)
        self._pool_source = str(candidates) if isinstance(candidates, (str, Path)) else None
        self.pending: dict[str, Arch] = {}
        self.observations: list[tuple[Arch, dict[str, float]]] = []
        self.failed: list[Arch] = []
        self.discarded: list[Arch] = []
        self.used: set[Arch] = set()
        self.n_suggested = 0
        self.n_warm = 0
        if warm_start is not None:
            self._warm_start_source = str(warm_start)
            archs, Y = read_observations(warm_start, problem)
            cols = [o.name for o in problem.reported_objectives] + [c.name for c in problem.reported_constraints]
            for a, y in zip(archs, Y.tolist()):
                if a not in self.used:
                    self.observations.append((a, dict(zip(cols, y))))
                    self.used.add(a)
            self.n_warm = len(self.observations)
        else:
            self._warm_start_source = None

    # ------------------------------------------------------------------ Ray Tune interface
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """The objectives are fixed at construction; Tune's metric/mode only rank the results."""
        return True

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = int(max_concurrent)
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if len(self.pending) >= self.max_concurrent:
            return None
        if trial_id in self.pending:  # Tune asks again for a trial it already has
            return self.problem.config(self.pending[trial_id])
        arch = self._propose()
        if arch is None:
            logger.info("%s searcher: no unused feasible arch left; finishing", self.kind)
            return Searcher.FINISHED
        if arch in self.used:  # a bug in _propose, never a user error
            raise SearchError(f"{self.kind} searcher proposed an arch twice ({self.problem.arch_id(arch)})")
        self.pending[trial_id] = arch
        self.used.add(arch)
        self.n_suggested += 1
        return self.problem.config(arch)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        arch = self.pending.pop(trial_id, None)
        if arch is None:
            arch = self._arch_from_result(result)
            if arch is None:
                return
        self._record(arch, result, error)

    def add_evaluated_point(
        self,
        parameters: Mapping[str, Any],
        value: Mapping[str, float] | Sequence[float] | float | None,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """An arch evaluated elsewhere: ``parameters`` a trial config (23 genes or latent),
        ``value`` a mapping metric -> value, or a sequence in the order of the reported metrics."""
        arch = self.problem.arch_of(parameters)
        names = [o.name for o in self.problem.reported_objectives] + [c.name for c in self.problem.reported_constraints]
        if error or pruned or value is None:
            result = None
        elif isinstance(value, Mapping):
            result = {**value, "done": True}
        else:
            vals = [value] if np.isscalar(value) else list(value)
            if len(vals) != len(names):
                raise SearchError(f"add_evaluated_point: expected {len(names)} values ({', '.join(names)}), got {len(vals)}")
            result = {**dict(zip(names, vals)), "done": True}
        self.used.add(arch)
        self._record(arch, result, error)

    def _record(self, arch: Arch, result: Mapping[str, Any] | None, error: bool) -> None:
        self.used.add(arch)
        if error:
            self.failed.append(arch)
            return
        metrics = self.problem.final_metrics(result)
        if metrics is None:
            self.discarded.append(arch)
            return
        self.observations.append((arch, metrics))
        self._on_observation()

    def _arch_from_result(self, result: Mapping[str, Any] | None) -> Arch | None:
        cfg = (result or {}).get("config")
        if not isinstance(cfg, Mapping):
            return None
        try:
            return self.problem.arch_of(cfg)
        except HytnasError:
            return None

    # ------------------------------------------------------------------ subclass hooks
    def _propose(self) -> Arch | None:
        raise NotImplementedError

    def _on_observation(self) -> None:
        """Called after each new observation (e.g. to mark a model stale)."""

    def _settings(self) -> dict[str, Any]:
        return {}

    def _on_state_restored(self) -> None:
        """Rebuild derived things (fitted models) after :meth:`set_state`."""

    # ------------------------------------------------------------------ helpers for subclasses
    def _unused_feasible(self, archs: Sequence[Arch]) -> list[Arch]:
        fresh = [a for a in dict.fromkeys(archs) if a not in self.used]
        return self.problem.feasible(fresh) if fresh else []

    def _pool_left(self) -> list[Arch]:
        assert self.pool is not None
        return self._unused_feasible(self.pool)

    def _draw_seed(self) -> int:
        return int(self.rng.integers(2**31 - 1))

    def _random_feasible(self, n: int, *, max_rounds: int = 64, batch: int = 256) -> list[Arch]:
        """Up to ``n`` unused feasible archs drawn uniformly (from the pool in pool mode)."""
        if self.pool is not None:
            left = self._pool_left()
            if not left:
                return []
            idx = self.rng.permutation(len(left))[:n]
            return [left[int(i)] for i in idx]
        out: dict[Arch, None] = {}
        batch = min(batch, self.problem.space.cardinality())
        for _ in range(max_rounds):
            draw = self.problem.space.sample(batch, seed=self._draw_seed(), method="uniform", unique=False)
            for a in self._unused_feasible(draw):
                out.setdefault(a, None)
            if len(out) >= n:
                break
        return list(out)[:n]

    def observed_arrays(self) -> tuple[list[Arch], torch.Tensor]:
        """Observed archs and ``(n, n_reported + n_reported_constraints)`` metrics (natural sense)."""
        names = [o.name for o in self.problem.reported_objectives] + [c.name for c in self.problem.reported_constraints]
        archs = [a for a, _ in self.observations]
        Y = torch.tensor([[m[k] for k in names] for _, m in self.observations], dtype=torch.float64)
        return archs, Y.reshape(len(archs), len(names))

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, Any]:
        """The versioned plain dict that fully describes the search so far."""
        space = self.problem.space
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "searcher": self.kind,
            "space": space.name,
            "space_id": space.space_id,
            "objectives": [[o.name, o.sense, o.source] for o in self.problem.objectives],
            "constraints": [str(c) for c in self.problem.constraints],
            "seed": self.seed,
            "max_concurrent": self.max_concurrent,
            "settings": self._settings(),
            "observations": [{"genes": space.to_vector(a), "metrics": m} for a, m in self.observations],
            "n_warm": self.n_warm,
            "pending": {tid: space.to_vector(a) for tid, a in self.pending.items()},
            "failed": [space.to_vector(a) for a in self.failed],
            "discarded": [space.to_vector(a) for a in self.discarded],
            "used": [space.to_vector(a) for a in self.used],
            "n_suggested": self.n_suggested,
            "rng": _jsonable_rng_state(self.rng),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise SearchError("searcher state: not a hytnas searcher state (missing format tag)")
        if state.get("version") != STATE_VERSION:
            raise SearchError(f"searcher state: version {state.get('version')!r} is not supported (expected {STATE_VERSION})")
        if state.get("searcher") != self.kind:
            raise SearchError(f"searcher state: saved by the {state.get('searcher')!r} searcher, not {self.kind!r}")
        space = self.problem.space
        if state.get("space_id") != space.space_id:
            raise SearchError(
                f"searcher state: saved for space {state.get('space')!r} ({state.get('space_id')}), "
                f"not {space.name!r} ({space.space_id}); restore with the same space"
            )
        mine = [[o.name, o.sense, o.source] for o in self.problem.objectives]
        if [list(x) for x in state.get("objectives", [])] != mine:
            raise SearchError(f"searcher state: saved for objectives {state.get('objectives')}, not {mine}")
        try:
            self.observations = [(space.from_vector(o["genes"]), {k: float(v) for k, v in o["metrics"].items()})
                                 for o in state["observations"]]
            self.pending = {tid: space.from_vector(g) for tid, g in state["pending"].items()}
            self.failed = [space.from_vector(g) for g in state["failed"]]
            self.discarded = [space.from_vector(g) for g in state["discarded"]]
            self.used = {space.from_vector(g) for g in state["used"]}
            self.n_suggested = int(state["n_suggested"])
            self.n_warm = int(state.get("n_warm", 0))
            self.seed = int(state["seed"])
            self.max_concurrent = int(state["max_concurrent"])
            self.rng = np.random.default_rng()
            self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SearchError(f"searcher state: malformed ({type(exc).__name__}: {exc})") from None
        self._on_state_restored()

    def save(self, checkpoint_path: str | Path) -> None:
        atomic_write_json(checkpoint_path, self.get_state())

    def restore(self, checkpoint_path: str | Path) -> None:
        path = Path(checkpoint_path)
        try:
            state = json.loads(path.read_text())
        except OSError as exc:
            raise SearchError(f"searcher state {path}: cannot be read ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise SearchError(f"searcher state {path}: not valid JSON (line {exc.lineno})") from None
        self.set_state(state)

    # pickling (tune.Tuner stores the searcher object): plain state, no fitted models
    _TRANSIENT: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        for k in self._TRANSIENT:
            d[k] = None
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)


def _jsonable_rng_state(rng: np.random.Generator) -> dict[str, Any]:
    state = rng.bit_generator.state
    json.dumps(state)  # PCG64 state is plain ints
    return state


__all__ = ["ArchSearcher", "STATE_FORMAT", "STATE_VERSION", "GENES"]
