"""Hypervolume maths of the benchmark: the true front of a table and anytime HV curves.

Ray-free plain functions over tensors. Conventions:

- ``Y`` is ``(n, m)`` in the objectives' own units (``val_accuracy`` as a fraction,
  ``latency_ms`` in ms, ...); every function flips signs through
  :func:`hytnas.objectives.to_maximize` (the only sign flip), so all maths is maximisation.
- The reference point is derived from the table, never hard-coded:
  ``botorch.utils.multi_objective.hypervolume.infer_reference_point`` on *all* rows of the table,
  i.e. ``worst - 0.1 * (best - worst)`` per objective over the whole table in the maximised space
  (Ishibuchi et al. 2011's robust 10 % margin). Every row of the table then dominates the
  reference point strictly, so every evaluation can add volume and anytime curves start rising
  from the first evaluation (a reference point at the nadir of the true front alone would give
  zero HV to most archs of a table whose front holds a handful of points).
- Hypervolume and non-dominated sorting come from BoTorch (``Hypervolume``,
  ``is_non_dominated``); nothing here re-implements them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from botorch.utils.multi_objective.hypervolume import Hypervolume, infer_reference_point
from botorch.utils.multi_objective.pareto import is_non_dominated

from hytnas.errors import SearchError
from hytnas.objectives import Objective, to_maximize

#: margin of the reference point below the front's nadir, as a fraction of the front's range
REF_SCALE = 0.1


@dataclass(frozen=True)
class TrueFront:
    """The exact Pareto front of a table for some objectives (all in the maximised space)."""

    objectives: tuple[Objective, ...]
    ref_point: torch.Tensor  # (m,) maximised space
    pareto_Y: torch.Tensor  # (k, m) maximised space
    pareto_rows: tuple[int, ...]  # row indices of the table (0-based) on the front
    hypervolume: float

    def ref_point_natural(self) -> list[float]:
        """The reference point in the objectives' own units (signs flipped back)."""
        return to_maximize(self.ref_point.unsqueeze(0), self.objectives).squeeze(0).tolist()


def _as_max(Y: torch.Tensor, objectives: Sequence[Objective]) -> torch.Tensor:
    Y = torch.as_tensor(Y, dtype=torch.float64)
    if Y.ndim != 2 or Y.shape[1] != len(objectives):
        raise SearchError(f"hypervolume: expected Y of shape (n, {len(objectives)}), got {tuple(Y.shape)}")
    if not torch.isfinite(Y).all():
        raise SearchError("hypervolume: Y holds NaN or infinite values")
    return to_maximize(Y, objectives)


def pareto_mask(Y: torch.Tensor, objectives: Sequence[Objective]) -> torch.Tensor:
    """Boolean ``(n,)`` mask of the non-dominated rows of ``Y`` (duplicates kept once)."""
    return is_non_dominated(_as_max(Y, objectives), deduplicate=True)


def hypervolume(Y: torch.Tensor, objectives: Sequence[Objective], ref_point: torch.Tensor) -> float:
    """Hypervolume dominated by the rows of ``Y`` (own units) w.r.t. ``ref_point`` (maximised space).

    Rows that do not strictly dominate the reference point add nothing."""
    Ym = _as_max(Y, objectives)
    ref = torch.as_tensor(ref_point, dtype=torch.float64)
    Ym = Ym[(Ym > ref).all(dim=-1)]
    if Ym.shape[0] == 0:
        return 0.0
    front = Ym[is_non_dominated(Ym, deduplicate=True)]
    return float(Hypervolume(ref_point=ref).compute(front))


def true_front(Y: torch.Tensor, objectives: Sequence[Objective], scale: float = REF_SCALE) -> TrueFront:
    """The exact front of a whole table, its reference point and hypervolume (see module doc)."""
    objectives = tuple(objectives)
    Ym = _as_max(Y, objectives)
    if Ym.shape[0] == 0:
        raise SearchError("hypervolume: the table has no rows")
    mask = is_non_dominated(Ym, deduplicate=True)
    pareto_Y = Ym[mask]
    ref = infer_reference_point(Ym, scale=scale)  # worst - scale * range over ALL rows
    hv = float(Hypervolume(ref_point=ref).compute(pareto_Y))
    rows = tuple(int(i) for i in torch.nonzero(mask).flatten().tolist())
    return TrueFront(objectives, ref, pareto_Y, rows, hv)


def hv_curve(Y: torch.Tensor, objectives: Sequence[Objective], ref_point: torch.Tensor) -> list[float]:
    """Anytime hypervolume: entry ``i`` is the HV of the first ``i + 1`` rows of ``Y`` (in order).

    The HV is recomputed only when a new row enters the running front, so a curve over ``n``
    evaluations costs at most ``n`` BoTorch HV computations (usually far fewer)."""
    Ym = _as_max(Y, objectives)
    ref = torch.as_tensor(ref_point, dtype=torch.float64)
    hv_fn = Hypervolume(ref_point=ref)
    front = Ym[:0]
    out: list[float] = []
    hv = 0.0
    for y in Ym:
        if bool((y > ref).all()) and not bool((front >= y).all(dim=-1).any()):
            front = torch.cat([front, y.unsqueeze(0)])
            front = front[is_non_dominated(front, deduplicate=True)]
            hv = float(hv_fn.compute(front))
        out.append(hv)
    return out


def evals_to_reach(curve: Sequence[float], target: float) -> int | None:
    """1-based number of evaluations after which ``curve`` first reaches ``target`` (None: never)."""
    for i, v in enumerate(curve):
        if v >= target - 1e-12 * max(1.0, abs(target)):
            return i + 1
    return None


def hv_at(curve: Sequence[float], n: int) -> float:
    """HV after ``n`` evaluations (NaN when the run made fewer than ``n``)."""
    return float(curve[n - 1]) if 0 < n <= len(curve) else math.nan
