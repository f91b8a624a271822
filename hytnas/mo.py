"""The multi-objective toolkit: Pareto masks, hypervolume, reference points, anytime HV curves.

Ray-free plain functions over tensors and trial frames. Conventions:

- ``Y`` is ``(n, m)`` in the objectives' own units (``val_accuracy`` as a fraction,
  ``latency_ms`` in ms, ...); every function flips signs through
  :func:`hytnas.objectives.to_maximize` (the only sign flip), so all maths is maximisation and
  reference points are in the maximised space.
- Hypervolume and non-dominated sorting come from BoTorch (``Hypervolume``,
  ``is_non_dominated``, ``infer_reference_point``); nothing here re-implements them.
- The reference point of a table is derived from the table, never hard-coded
  (:func:`reference_point`): ``infer_reference_point`` on *all* rows, i.e.
  ``worst - 0.1 * (best - worst)`` per objective (Ishibuchi et al. 2011's robust 10 % margin).
  Every row then dominates the reference point strictly, so every evaluation can add volume and
  anytime curves start rising from the first evaluation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

with warnings.catch_warnings():  # botorch's import-time torch.jit deprecation notice
    warnings.simplefilter("ignore", FutureWarning)
    from botorch.utils.multi_objective.hypervolume import Hypervolume, infer_reference_point
    from botorch.utils.multi_objective.pareto import is_non_dominated

from hytnas.errors import SearchError
from hytnas.objectives import Constraint, Objective, to_maximize
from hytnas.trial import is_complete

#: margin of the reference point below the worst value, as a fraction of the range
REF_SCALE = 0.1


def _as_max(Y: Any, objectives: Sequence[Objective]) -> torch.Tensor:
    Y = torch.as_tensor(Y, dtype=torch.float64)
    if Y.ndim != 2 or Y.shape[1] != len(objectives):
        raise SearchError(f"hypervolume: expected Y of shape (n, {len(objectives)}), got {tuple(Y.shape)}")
    if not torch.isfinite(Y).all():
        raise SearchError("hypervolume: Y holds NaN or infinite values")
    return to_maximize(Y, objectives)


# ------------------------------------------------------------------------------ Pareto masks
def pareto_mask(Y: Any, objectives: Sequence[Objective], *, deduplicate: bool = True) -> torch.Tensor:
    """Boolean ``(n,)`` mask of the non-dominated rows of ``Y`` (duplicates kept once unless
    ``deduplicate=False``, which keeps every tie)."""
    return is_non_dominated(_as_max(Y, objectives), deduplicate=deduplicate)


def feasible_mask(df: pd.DataFrame, constraints: Sequence[Constraint]) -> np.ndarray:
    """Rows whose metrics meet every constraint (a missing metric is not feasible)."""
    ok = np.ones(len(df), dtype=bool)
    for c in constraints:
        vals = df[c.name].to_numpy(dtype=float) if c.name in df else np.full(len(df), math.nan)
        ok &= np.array([not math.isnan(v) and c.ok(v) for v in vals], dtype=bool)
    return ok


def trials_pareto_mask(
    df: pd.DataFrame, objectives: Sequence[Objective], constraints: Sequence[Constraint] = ()
) -> np.ndarray:
    """Pareto-optimal rows of a trial frame among the completed (``status == "done"``), feasible
    rows with finite objectives; ties are all kept."""
    mask = np.zeros(len(df), dtype=bool)
    if not len(df):
        return mask
    Y = torch.tensor(df[[o.name for o in objectives]].to_numpy(dtype=float), dtype=torch.float64)
    cand = (df["status"].to_numpy() == "done") & feasible_mask(df, constraints) & torch.isfinite(Y).all(-1).numpy()
    if cand.any():
        idx = np.flatnonzero(cand)
        mask[idx[pareto_mask(Y[idx], objectives, deduplicate=False).numpy()]] = True
    return mask


# ------------------------------------------------------------------------------ hypervolume
def reference_point(
    Y: Any, objectives: Sequence[Objective], *, scale: float = REF_SCALE, front_only: bool = False
) -> torch.Tensor:
    """``infer_reference_point`` (maximised space) of all rows of ``Y``, or of its Pareto front
    only (``front_only``)."""
    Ym = _as_max(Y, objectives)
    if Ym.shape[0] == 0:
        raise SearchError("hypervolume: no rows to derive a reference point from")
    return infer_reference_point(Ym[is_non_dominated(Ym)] if front_only else Ym, scale=scale)


def hypervolume(Y: Any, objectives: Sequence[Objective], ref_point: Any) -> float:
    """Hypervolume dominated by the rows of ``Y`` (own units) w.r.t. ``ref_point`` (maximised space).

    Rows that do not strictly dominate the reference point add nothing."""
    Ym = _as_max(Y, objectives)
    ref = torch.as_tensor(ref_point, dtype=torch.float64)
    Ym = Ym[(Ym > ref).all(dim=-1)]
    if Ym.shape[0] == 0:
        return 0.0
    return float(Hypervolume(ref_point=ref).compute(Ym[is_non_dominated(Ym, deduplicate=True)]))


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


def true_front(Y: Any, objectives: Sequence[Objective], scale: float = REF_SCALE) -> TrueFront:
    """The exact front of a whole table, its reference point (:func:`reference_point` of all
    rows) and hypervolume."""
    objectives = tuple(objectives)
    Ym = _as_max(Y, objectives)
    if Ym.shape[0] == 0:
        raise SearchError("hypervolume: the table has no rows")
    mask = is_non_dominated(Ym, deduplicate=True)
    ref = infer_reference_point(Ym, scale=scale)
    hv = float(Hypervolume(ref_point=ref).compute(Ym[mask]))
    rows = tuple(int(i) for i in torch.nonzero(mask).flatten().tolist())
    return TrueFront(objectives, ref, Ym[mask], rows, hv)


# ------------------------------------------------------------------------------ anytime curves
def hv_curve(Y: Any, objectives: Sequence[Objective], ref_point: Any) -> list[float]:
    """Anytime hypervolume: entry ``i`` is the HV of the first ``i + 1`` rows of ``Y`` (in order).

    The HV is recomputed only when a new row enters the running front, so a curve over ``n``
    evaluations costs at most ``n`` BoTorch HV computations."""
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


def curve_of(
    results: Sequence[Mapping[str, Any]], objectives: Sequence[Objective], ref_point: Any, budget: int | None = None
) -> list[float]:
    """HV after each evaluation of a run, from the trials' final results in completion order: a
    result counts when it is complete (:func:`hytnas.trial.is_complete`) and holds every objective;
    any other (failed, unfinished) evaluation adds nothing. With ``budget`` the curve is padded with
    its last value (a run that ended early) or cut to ``budget`` entries."""
    names = [o.name for o in objectives]
    counted = [is_complete(r) and all(n in r for n in names) for r in results]
    ys = [[float(r[n]) for n in names] for r, ok in zip(results, counted) if ok]
    hv = iter(
        hv_curve(torch.tensor(ys, dtype=torch.float64).reshape(-1, len(names)), objectives, ref_point) if ys else []
    )
    curve: list[float] = []
    last = 0.0
    for ok in counted:
        last = next(hv) if ok else last
        curve.append(last)
    if budget is None:
        return curve
    return (curve + [last] * (budget - len(curve)))[:budget]


def evals_to_reach(curve: Sequence[float], target: float) -> int | None:
    """1-based number of evaluations after which ``curve`` first reaches ``target`` (None: never)."""
    for i, v in enumerate(curve):
        if v >= target - 1e-12 * max(1.0, abs(target)):
            return i + 1
    return None


def hv_at(curve: Sequence[float], n: int) -> float:
    """HV after ``n`` evaluations (NaN when the run made fewer than ``n``)."""
    return float(curve[n - 1]) if 0 < n <= len(curve) else math.nan
