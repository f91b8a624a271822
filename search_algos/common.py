"""What every HyT-NAS searcher shares, Ray-free: the problem (space, objectives, constraints),
exact known metrics, candidate pools, and how a trial result is read.

Conventions
-----------
- Objectives are declared once (:class:`hytnas.objectives.Objective`). ``known`` objectives are
  computed exactly from the arch (``hytnas.costs.arch_costs`` or a user function) for every
  candidate; ``reported`` objectives come from the trial's final result.
- Constraints on known metrics are *hard filters* applied to candidates before anything else;
  constraints on reported metrics are *outcome constraints* (only the model-based searchers can
  use them).
- A result counts as an observation only if it is *final* (:func:`hytnas.trial.is_complete`:
  its ``epoch`` reached ``max_epochs`` when that is configured, else its ``done`` flag). Anything
  else (a trial stopped early by ASHA, a partial-fidelity report) is discarded: the arch is marked
  as used (never re-proposed) but not modelled. Errored trials are recorded as failed and never
  re-proposed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from hytnas.errors import ConfigError, HytnasError, SearchError
from hytnas.objectives import COST_METRICS, Constraint, Objective, get_objectives, parse_constraints
from hytnas.space import GENES, Arch, Space
from hytnas.trial import is_complete

#: ``{metric: fn(list[Arch]) -> Tensor (n,)}``: a known metric computed from archs.
KnownFn = Callable[[Sequence[Arch]], torch.Tensor]

#: Keys a searcher adds to the trial config besides the 23 genes.
ARCH_ID_KEY = "arch_id"


# ------------------------------------------------------------------------------ known metrics
class KnownMetrics:
    """Exact metrics of archs, cached by arch.

    By default every metric of :data:`hytnas.objectives.COST_METRICS` comes from
    ``hytnas.costs.arch_costs(space.to_arch_cfg(a), input_size, num_classes, in_channels)``
    (one call per arch gives all of them); ``known_fns`` adds or overrides metrics. The cache
    keeps at most ``max_cache`` archs per metric group (the oldest half is dropped when full).
    """

    max_cache = 100_000

    def __init__(
        self,
        space: Space,
        *,
        input_size: int | None = None,
        num_classes: int = 10,
        in_channels: int = 3,
        known_fns: Mapping[str, KnownFn] | None = None,
    ) -> None:
        self.space = space
        self.input_size = int(input_size or space.input_size)
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.fns: dict[str, KnownFn] = dict(known_fns or {})
        for name, fn in self.fns.items():
            if not callable(fn):
                raise SearchError(f"known_fns.{name}: must be a callable list[Arch] -> Tensor, got {type(fn).__name__}")
        self._costs: dict[Arch, dict[str, float]] = {}
        self._extra: dict[str, dict[Arch, float]] = {name: {} for name in self.fns}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*COST_METRICS, *self.fns)))

    def __contains__(self, name: object) -> bool:
        return name in self.fns or name in COST_METRICS

    def _arch_costs(self, arch: Arch) -> dict[str, float]:
        got = self._costs.get(arch)
        if got is None:
            try:
                from hytnas.costs import arch_costs
            except ImportError as exc:  # pragma: no cover - depends on the build
                raise SearchError(f"known metrics need hytnas.costs.arch_costs ({exc})") from None
            raw = arch_costs(self.space.to_arch_cfg(arch), self.input_size, self.num_classes, self.in_channels)
            got = {k: float(raw[k]) for k in COST_METRICS}
            if len(self._costs) >= self.max_cache:
                for old in list(self._costs)[: self.max_cache // 2]:  # oldest half
                    del self._costs[old]
            self._costs[arch] = got
        return got

    def values(self, archs: Sequence[Arch], names: Sequence[str]) -> torch.Tensor:
        """``(n, len(names))`` float64 tensor of the metrics ``names`` for ``archs``."""
        archs = list(archs)
        cols = []
        for name in names:
            if name in self.fns:
                cache = self._extra[name]
                if len(cache) >= self.max_cache:
                    for old in list(cache)[: self.max_cache // 2]:  # oldest half
                        del cache[old]
                todo = [a for a in dict.fromkeys(archs) if a not in cache]
                if todo:
                    vals = torch.as_tensor(self.fns[name](todo), dtype=torch.float64).reshape(-1)
                    if vals.numel() != len(todo):
                        raise SearchError(f"known_fns.{name}: returned {vals.numel()} values for {len(todo)} archs")
                    cache.update(zip(todo, vals.tolist()))
                cols.append([cache[a] for a in archs])
            elif name in COST_METRICS:
                cols.append([self._arch_costs(a)[name] for a in archs])
            else:
                raise SearchError(f"metric {name}: not a known metric (known: {', '.join(self.names)})")
        if not cols:
            return torch.zeros(len(archs), 0, dtype=torch.float64)
        return torch.tensor(cols, dtype=torch.float64).T.reshape(len(archs), len(names))


# ------------------------------------------------------------------------------ the problem
@dataclass
class Problem:
    """Space + objectives + constraints + the exact metrics, shared by all searchers."""

    space: Space
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...]
    known: KnownMetrics
    max_epochs: int | None = None
    _arch_ids: dict[Arch, str] = field(default_factory=dict, repr=False)
    _rows: dict[Arch, list[float]] = field(default_factory=dict, repr=False)

    @property
    def metric_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def modes(self) -> list[str]:
        return [o.sense for o in self.objectives]

    @property
    def known_objectives(self) -> tuple[Objective, ...]:
        return tuple(o for o in self.objectives if o.source == "known")

    @property
    def reported_objectives(self) -> tuple[Objective, ...]:
        return tuple(o for o in self.objectives if o.source == "reported")

    @property
    def known_constraints(self) -> tuple[Constraint, ...]:
        return tuple(c for c in self.constraints if c.name in self.known)

    @property
    def reported_constraints(self) -> tuple[Constraint, ...]:
        return tuple(c for c in self.constraints if c.name not in self.known)

    def arch_id(self, arch: Arch) -> str:
        aid = self._arch_ids.get(arch)
        if aid is None:
            aid = self._arch_ids[arch] = self.space.arch_id(arch)
        return aid

    def encode(self, archs: Sequence[Arch] | Arch) -> torch.Tensor:
        """``Space.encode`` with a cache by arch (``(n, 23)`` float64, bit-identical rows)."""
        if isinstance(archs, Arch):
            archs = [archs]
        rows = self._rows
        todo = [a for a in dict.fromkeys(archs) if a not in rows]
        if todo:
            if len(rows) + len(todo) > KnownMetrics.max_cache:
                rows.clear()
                todo = list(dict.fromkeys(archs))
            rows.update(zip(todo, self.space.encode(todo).tolist()))
        return torch.tensor([rows[a] for a in archs], dtype=torch.float64).reshape(len(archs), len(GENES))

    def config(self, arch: Arch) -> dict[str, Any]:
        """Trial config of ``arch``: the 23 genes plus ``arch_id``."""
        return {**self.space.to_config(arch), ARCH_ID_KEY: self.arch_id(arch)}

    def arch_of(self, config: Mapping[str, Any]) -> Arch:
        return self.space.from_config(config)

    def feasible_mask(self, archs: Sequence[Arch]) -> torch.Tensor:
        """Boolean ``(n,)``: ``True`` where every known-metric constraint holds."""
        cons = self.known_constraints
        if not archs:
            return torch.zeros(0, dtype=torch.bool)
        if not cons:
            return torch.ones(len(archs), dtype=torch.bool)
        vals = self.known.values(archs, [c.name for c in cons])
        slack = torch.stack([c.slack(vals[:, i]) for i, c in enumerate(cons)], dim=-1)
        strict = torch.tensor([c.op in ("<", ">") for c in cons])
        ok = torch.where(strict, slack < 0, slack <= 0)
        return ok.all(dim=-1)

    def feasible(self, archs: Sequence[Arch]) -> list[Arch]:
        mask = self.feasible_mask(archs).tolist()
        return [a for a, m in zip(archs, mask) if m]

    def known_values(self, archs: Sequence[Arch]) -> torch.Tensor:
        """``(n, n_known)`` values of the known objectives (natural sense)."""
        return self.known.values(archs, [o.name for o in self.known_objectives])

    @property
    def observed_names(self) -> list[str]:
        """What an observation holds: the reported objectives, then the reported constraint metrics."""
        return [o.name for o in self.reported_objectives] + [c.name for c in self.reported_constraints]

    def signature(self) -> dict[str, Any]:
        """What a saved searcher state must match: the space and the objectives."""
        return {
            "space": self.space.name,
            "space_id": self.space.space_id,
            "objectives": [[o.name, o.sense, o.source] for o in self.objectives],
            "constraints": [str(c) for c in self.constraints],
        }

    def is_final(self, result: Mapping[str, Any] | None) -> bool:
        """Whether ``result`` is a trial's final, full-fidelity report (:func:`hytnas.trial.is_complete`)."""
        return is_complete(result, self.max_epochs)

    def observed(self, metrics: Mapping[str, Any] | None) -> dict[str, float] | None:
        """The :attr:`observed_names` values of ``metrics``; ``None`` if one is missing or not finite."""
        out: dict[str, float] = {}
        for name in self.observed_names:
            try:
                x = float((metrics or {})[name])
            except (KeyError, TypeError, ValueError):
                return None
            if not math.isfinite(x):
                return None
            out[name] = x
        return out


def make_problem(
    space: Space,
    objectives: Iterable[str | Mapping[str, Any] | Objective],
    constraints: Iterable[str | Mapping[str, Any] | Constraint] = (),
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int | None = None,
    known_fns: Mapping[str, KnownFn] | None = None,
    max_epochs: int | None = None,
) -> Problem:
    """Validate the settings once; every problem is one :class:`SearchError` line."""
    if not isinstance(space, Space):
        raise SearchError(f"space: expected a hytnas Space (use hytnas.space.get_space), got {type(space).__name__}")
    try:
        objs = get_objectives(objectives)
        cons = parse_constraints(constraints)
    except ConfigError as exc:
        raise SearchError(str(exc)) from None
    known = KnownMetrics(
        space, input_size=input_size, num_classes=num_classes, in_channels=in_channels, known_fns=known_fns
    )
    fixed = []
    for o in objs:
        if o.name in known.fns and o.source != "known":
            o = replace(o, source="known")  # a user function makes a metric known (e.g. a LUT latency)
        if o.source == "known" and o.name not in known:
            raise SearchError(
                f"objectives.{o.name}: declared known but nothing computes it; pass known_fns={{'{o.name}': fn}} "
                f"(e.g. a device profile's latency predictor) or declare it reported"
            )
        fixed.append(o)
    if len(objs) > 4:
        raise SearchError(f"objectives: {len(objs)} objectives given; the searchers support 1 to 4")
    if max_epochs is not None and int(max_epochs) < 1:
        raise SearchError(f"max_epochs: must be >= 1, got {max_epochs}")
    return Problem(
        space=space,
        objectives=tuple(fixed),
        constraints=cons,
        known=known,
        max_epochs=None if max_epochs is None else int(max_epochs),
    )


# ------------------------------------------------------------------------------ pools and tables
def load_candidates(candidates: str | Path | Sequence[Arch] | None, space: Space) -> list[Arch] | None:
    """Pool mode: a CSV arch table (``hytnas.table`` format) or a list of archs; ``None`` = no pool."""
    if candidates is None:
        return None
    if isinstance(candidates, (str, Path)):
        from hytnas.table import read_arch_table

        archs, _ = read_arch_table(candidates, space)
    else:
        archs = [space.validate(a) for a in candidates]
    archs = list(dict.fromkeys(archs))
    if not archs:
        raise SearchError("candidates: the candidate pool is empty")
    return archs


def read_observations(path: str | Path, problem: Problem) -> tuple[list[Arch], torch.Tensor]:
    """Warm start: prior observations from an arch table with the reported objective columns.

    Returns the archs and an ``(n, n_reported + n_reported_constraints)`` tensor (natural sense).
    """
    from hytnas.table import read_arch_table

    cols = [o.name for o in problem.reported_objectives] + [c.name for c in problem.reported_constraints]
    try:
        archs, df = read_arch_table(path, problem.space, metrics=cols)
    except HytnasError as exc:
        raise SearchError(f"warm_start: {exc}") from None
    Y = torch.tensor(df[cols].to_numpy(dtype=float), dtype=torch.float64).reshape(len(archs), len(cols))
    return archs, Y


def nearest_unused(
    target: Arch, pool: Sequence[Arch], pool_X: torch.Tensor, used: set[Arch], space: Space
) -> Arch | None:
    """The pool arch nearest to ``target`` in ``space.encode`` (Euclidean) that is not ``used``."""
    free = torch.tensor([a not in used for a in pool], dtype=torch.bool)
    if not bool(free.any()):
        return None
    d = torch.cdist(space.encode(target), pool_X).squeeze(0)
    d = d.masked_fill(~free, math.inf)
    return pool[int(torch.argmin(d))]


__all__ = [
    "ARCH_ID_KEY",
    "GENES",
    "KnownFn",
    "KnownMetrics",
    "Problem",
    "make_problem",
    "load_candidates",
    "read_observations",
    "nearest_unused",
]
