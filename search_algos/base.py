"""The ask/tell interface every HyT-NAS searcher implements, and the bookkeeping it shares. Ray-free.

A searcher proposes archs of a space and is told what became of them::

    archs = searcher.ask(2)                 # up to 2 new archs (fewer, or none, when the space is used up)
    searcher.tell(archs[0], {"val_accuracy": 0.91})   # a final observation (reported metrics)
    searcher.tell_failed(archs[1], "CUDA OOM")        # the trial raised: never re-proposed, never modelled
    searcher.tell_stopped(arch)                        # ended without a final result (e.g. ASHA): used, not modelled
    state = searcher.state_dict()           # a versioned plain (JSON-able) dict
    other.load_state_dict(state)            # same problem and settings: continues exactly

:class:`ArchSearcher` keeps the record of the search:

- ``pending``: archs asked and not told yet (in the order they were asked);
- ``observations``: archs with final metrics (the reported objectives and constraint metrics);
- ``failed`` / ``discarded``: told failed / stopped (or final metrics missing or not finite);
- ``used``: every arch above and every warm-start arch: never proposed again (de-duplication
  by arch).

Subclasses implement :meth:`_propose` (one unused feasible arch, or ``None`` when there is none
left) and may extend :meth:`_settings_state` / :meth:`_load_settings_state` and :meth:`_on_observation`.
Fitted models are never part of the state: they are refitted after a restore. Pickling goes
through the same plain state for subclasses that list their fitted models in ``_TRANSIENT``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from hytnas.errors import SearchError
from hytnas.space import Arch
from hytnas.utils import atomic_write_json
from search_algos.common import Problem, load_candidates, read_observations
from search_algos.settings import SearcherSettings

STATE_FORMAT = "hytnas-searcher-state"
STATE_VERSION = 2


@runtime_checkable
class Searcher(Protocol):
    """The ask/tell interface of every searcher (``mobo``, ``random``, ``optuna-*``, ``ax``)."""

    kind: str
    problem: Problem

    def ask(self, n: int = 1) -> list[Arch]:
        """Up to ``n`` new archs to evaluate (fewer, or none, when nothing is left)."""

    def tell(self, arch: Arch, metrics: Mapping[str, Any]) -> None:
        """A final observation: the reported objectives and constraint metrics of ``arch``."""

    def tell_failed(self, arch: Arch, error: object = None) -> None:
        """``arch``'s evaluation raised."""

    def tell_stopped(self, arch: Arch) -> None:
        """``arch``'s evaluation ended without a final result (e.g. stopped early by ASHA)."""

    def state_dict(self) -> dict[str, Any]:
        """A versioned plain (JSON-able) dict of the search so far."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` (same kind, same problem)."""


class JsonStateFile:
    """``save`` / ``restore`` of a searcher's :meth:`state_dict` as an atomically written JSON file."""

    def save(self, path: str | Path) -> None:
        """:meth:`state_dict` written atomically as JSON."""
        atomic_write_json(path, self.state_dict())

    def restore(self, path: str | Path) -> None:
        """:meth:`load_state_dict` of a file written by :meth:`save`."""
        self.load_state_dict(read_state(path))


class ArchSearcher(JsonStateFile):
    """Base class of the ask/tell searchers (see the module docstring).

    Args:
        problem: the validated problem (:func:`search_algos.common.make_problem`).
        settings: the searcher's frozen settings (:mod:`search_algos.settings`).
        seed: seed of the searcher's own ``numpy`` generator (its only randomness).
    """

    kind: ClassVar[str] = "base"
    _TRANSIENT: ClassVar[tuple[str, ...]] = ()

    def __init__(self, problem: Problem, settings: SearcherSettings, *, seed: int = 0) -> None:
        self.problem = problem
        self.settings = settings
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.pool = load_candidates(settings.candidates, problem.space)
        self.pending: dict[Arch, None] = {}
        self.observations: list[tuple[Arch, dict[str, float]]] = []
        self.failed: list[Arch] = []
        self.discarded: list[Arch] = []
        self.used: set[Arch] = set()
        self.n_suggested = 0
        self.n_warm = 0
        if settings.warm_start is not None:
            archs, Y = read_observations(settings.warm_start, problem)
            for a, y in zip(archs, Y.tolist()):
                if a not in self.used:
                    self.observations.append((a, dict(zip(problem.observed_names, y))))
                    self.used.add(a)
            self.n_warm = len(self.observations)

    # ------------------------------------------------------------------ ask / tell
    def ask(self, n: int = 1) -> list[Arch]:
        """Up to ``n`` new archs (unused, feasible); fewer when the space or pool is used up."""
        out: list[Arch] = []
        for _ in range(int(n)):
            arch = self._propose()
            if arch is None:
                break
            if arch in self.used:  # a bug in _propose, never a user error
                raise SearchError(f"{self.kind} searcher proposed an arch twice ({self.problem.arch_id(arch)})")
            self.pending[arch] = None
            self.used.add(arch)
            self.n_suggested += 1
            out.append(arch)
        return out

    def tell(self, arch: Arch, metrics: Mapping[str, Any]) -> None:
        """A final observation of ``arch``: its reported objectives and constraint metrics.
        Metrics that are missing or not finite make it a discarded arch (used, not modelled)."""
        self._forget_pending(arch)
        observed = self.problem.observed(metrics)
        if observed is None:
            self.discarded.append(arch)
            return
        self.observations.append((arch, observed))
        self._on_observation()

    def tell_failed(self, arch: Arch, error: object = None) -> None:
        """``arch``'s trial raised (``error`` is informational): never re-proposed, never modelled."""
        self._forget_pending(arch)
        self.failed.append(arch)

    def tell_stopped(self, arch: Arch) -> None:
        """``arch``'s trial ended without a final result (stopped early): used, not modelled."""
        self._forget_pending(arch)
        self.discarded.append(arch)

    def _forget_pending(self, arch: Arch) -> None:
        self.pending.pop(arch, None)
        self.used.add(arch)

    # ------------------------------------------------------------------ subclass hooks
    def _propose(self) -> Arch | None:
        raise NotImplementedError

    def _on_observation(self) -> None:
        """Called after each new observation (e.g. to mark a model stale)."""

    def _settings_state(self) -> dict[str, Any]:
        """What the subclass adds to the state (plain values)."""
        return {}

    def _load_settings_state(self, s: Mapping[str, Any]) -> None:
        """Restore what :meth:`_settings_state` wrote; rebuild derived things lazily."""

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
        names = self.problem.observed_names
        archs = [a for a, _ in self.observations]
        Y = torch.tensor([[m[k] for k in names] for _, m in self.observations], dtype=torch.float64)
        return archs, Y.reshape(len(archs), len(names))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The versioned plain dict that fully describes the search so far."""
        space = self.problem.space
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "searcher": self.kind,
            **self.problem.signature(),
            "seed": self.seed,
            "settings": self._settings_state(),
            "observations": [{"genes": space.to_vector(a), "metrics": m} for a, m in self.observations],
            "n_warm": self.n_warm,
            "pending": [space.to_vector(a) for a in self.pending],
            "failed": [space.to_vector(a) for a in self.failed],
            "discarded": [space.to_vector(a) for a in self.discarded],
            "used": [space.to_vector(a) for a in self.used],
            "n_suggested": self.n_suggested,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` of a searcher of the same kind and problem."""
        check_state(state, STATE_FORMAT, STATE_VERSION, self.kind, self.problem)
        space = self.problem.space
        try:
            self.observations = [
                (space.from_vector(o["genes"]), {k: float(v) for k, v in o["metrics"].items()})
                for o in state["observations"]
            ]
            self.pending = {space.from_vector(g): None for g in state["pending"]}
            self.failed = [space.from_vector(g) for g in state["failed"]]
            self.discarded = [space.from_vector(g) for g in state["discarded"]]
            self.used = {space.from_vector(g) for g in state["used"]}
            self.n_suggested = int(state["n_suggested"])
            self.n_warm = int(state.get("n_warm", 0))
            self.seed = int(state["seed"])
            self.rng = np.random.default_rng()
            self.rng.bit_generator.state = copy.deepcopy(state["rng"])
            self._load_settings_state(state.get("settings", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise SearchError(f"searcher state: malformed ({type(exc).__name__}: {exc})") from None

    # pickling (Ray Tune stores its searcher object): plain state, no fitted models
    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        for k in self._TRANSIENT:
            d[k] = None
        return d


def check_state(state: Any, fmt: str, version: int, kind: str, problem: Problem) -> None:
    """One :class:`SearchError` line when ``state`` was not saved by this kind of searcher on this problem."""
    if not isinstance(state, Mapping) or state.get("format") != fmt:
        raise SearchError(f"searcher state: not a {fmt} (missing format tag)")
    if state.get("version") != version:
        raise SearchError(f"searcher state: version {state.get('version')!r} is not supported (expected {version})")
    if state.get("searcher") != kind:
        raise SearchError(f"searcher state: saved by the {state.get('searcher')!r} searcher, not {kind!r}")
    mine = problem.signature()
    if state.get("space_id") != mine["space_id"]:
        raise SearchError(
            f"searcher state: saved for space {state.get('space')!r} ({state.get('space_id')}), "
            f"not {mine['space']!r} ({mine['space_id']}); restore with the same space"
        )
    if [list(x) for x in state.get("objectives", [])] != mine["objectives"]:
        raise SearchError(f"searcher state: saved for objectives {state.get('objectives')}, not {mine['objectives']}")


def read_state(path: str | Path) -> dict[str, Any]:
    """A searcher state file (JSON); one :class:`SearchError` line when unreadable."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise SearchError(f"searcher state {path}: cannot be read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise SearchError(f"searcher state {path}: not valid JSON (line {exc.lineno})") from None


__all__ = ["Searcher", "ArchSearcher", "STATE_FORMAT", "STATE_VERSION", "check_state", "read_state"]
