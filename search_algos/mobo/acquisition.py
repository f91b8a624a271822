"""Acquisition functions of the MOBO searcher (BoTorch), as plain functions. No Ray.

Model outputs are laid out by :class:`OutcomeLayout`: one column per objective, *all in the
maximised sense* (``hytnas.objectives.to_maximize`` was applied to the training data and inside
the known-objective model), plus one column per reported-metric constraint in the metric's own
units (a constraint is ``Constraint.slack(column) <= 0``, BoTorch's feasibility convention).

- ``parego`` (default): ``qLogNParEGO``, a random augmented Chebyshev scalarisation of the
  objectives (normalised over the observations) per call, drawn from ``seed``, whose expected
  improvement is maximised; with ``batch_size`` > 1 each greedy pick draws its own weights;
- ``qlognehvi``: ``qLogNoisyExpectedHypervolumeImprovement`` over the observed archs
  (``X_baseline``, pruned to those that may be Pareto-optimal), pending archs as ``X_pending``;
- ``qlogehvi``: ``qLogExpectedHypervolumeImprovement`` with a ``FastNondominatedPartitioning`` of
  the observed (feasible) objective values.

ParEGO is the default on evidence (docs/searcher.md, BENCHMARKS.md): on the DTLZ2 grid problem,
seeds 0-4 through Ray Tune, its hypervolume after 100 evaluations was 0.58 of the best known
against qLogNEHVI's 0.39, and it proposes faster (no box decomposition of the observed front).
qLogNEHVI and qLogEHVI need the reference point below; ParEGO does not.

With a single objective all three reduce to ``qLogNoisyExpectedImprovement``.

The reference point is never hard-coded: :func:`reference_point` takes ``infer_reference_point``
(nadir minus 10 % of the range) of the observed (feasible) Pareto front, or of all the observed
values (``rule="data"``), and, for an objective that also carries a declared bound
(``params_k <= 250`` for ``params_k: min``), the bound itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.acquisition.multi_objective.logei import (
    qLogExpectedHypervolumeImprovement,
    qLogNoisyExpectedHypervolumeImprovement,
)
from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
from botorch.acquisition.multi_objective.parego import qLogNParEGO
from botorch.acquisition.objective import GenericMCObjective
from botorch.models.model import Model
from botorch.sampling.get_sampler import get_sampler
from botorch.utils.multi_objective.box_decompositions.non_dominated import FastNondominatedPartitioning
from botorch.utils.multi_objective.hypervolume import infer_reference_point
from botorch.utils.multi_objective.pareto import is_non_dominated
from botorch.utils.sampling import sample_simplex
from torch import Tensor

from hytnas.errors import SearchError
from hytnas.objectives import Constraint, Objective, to_maximize
from search_algos.settings import ACQUISITIONS, REF_RULES

#: the acquisitions that take a hypervolume reference point (ParEGO scalarises instead)
HV_ACQUISITIONS = ("qlognehvi", "qlogehvi")


@dataclass(frozen=True)
class OutcomeLayout:
    """Where each objective and reported constraint sits among the model outputs."""

    objective_outputs: tuple[int, ...]  # per declared objective (maximised sense)
    constraint_outputs: tuple[tuple[int, Constraint], ...] = ()  # (output, constraint), natural units

    def constraint_callables(self) -> list:
        """BoTorch outcome constraints: callables ``samples (..., m) -> slack (...)``, <= 0 feasible."""
        return [_Slack(j, c) for j, c in self.constraint_outputs]


class _Slack:
    def __init__(self, output: int, constraint: Constraint) -> None:
        self.output, self.constraint = output, constraint

    def __call__(self, Z: Tensor) -> Tensor:
        return self.constraint.slack(Z[..., self.output])


def declared_bounds(objectives: Sequence[Objective], constraints: Sequence[Constraint]) -> Tensor:
    """``(m,)`` bound per objective in the maximised sense, ``nan`` where none is declared.

    A constraint bounds an objective when it names the same metric and points the same way as
    the objective's sense (an upper bound on a ``min`` objective, a lower bound on a ``max``)."""
    b = torch.full((len(objectives),), float("nan"), dtype=torch.float64)
    for i, o in enumerate(objectives):
        for c in constraints:
            if c.name == o.name and (c.upper == (o.sense == "min")):
                v = to_maximize(torch.tensor([[c.value]], dtype=torch.float64), [o])[0, 0]
                b[i] = v if torch.isnan(b[i]) else torch.maximum(b[i], v)  # the tighter bound
    return b


def reference_point(Y_max: Tensor, bounds_max: Tensor | None = None, rule: str = "front") -> Tensor:
    """Reference point (maximised sense) from observations ``Y_max (n, m)`` and declared bounds.

    ``rule="front"`` (default; BoTorch's and Ax's convention): ``infer_reference_point`` of the
    observed Pareto front, i.e. its nadir minus 10 % of its range. ``rule="data"``: the same over
    *all* the (feasible) observations, a looser point (the nadir of the data) that also gives
    volume to new extreme points worse than the front's nadir in some objective. On the DTLZ2
    grid benchmark ``front`` found the front faster (``benchmarks/mobo_ablation.py``). A finite
    entry of ``bounds_max`` (a declared constraint bound) replaces the inferred value of its
    objective.
    """
    if rule not in REF_RULES:
        raise SearchError(f"reference point rule {rule!r}: unknown; use one of {', '.join(REF_RULES)}")
    if Y_max.ndim != 2 or Y_max.shape[0] == 0:
        if bounds_max is not None and bool(torch.isfinite(bounds_max).all()):
            return bounds_max.clone()
        raise SearchError("reference point: needs at least one observation or a declared bound for every objective")
    Y = Y_max[is_non_dominated(Y_max)] if rule == "front" else Y_max
    ref = infer_reference_point(Y)
    if bounds_max is not None:
        ref = torch.where(torch.isfinite(bounds_max), bounds_max.to(ref), ref)
    return ref


def build_acquisition(
    name: str,
    model: Model,
    *,
    layout: OutcomeLayout,
    X_baseline: Tensor,
    ref_point: Tensor | None,
    Y_baseline_max: Tensor | None = None,
    X_pending: Tensor | None = None,
    mc_samples: int = 64,
    seed: int = 0,
) -> AcquisitionFunction:
    """The acquisition function ``name`` (:data:`ACQUISITIONS`) for ``model`` (see module doc).

    ``X_baseline``: encoded observed archs; ``Y_baseline_max``: their objective values (maximised
    sense; needed by ``qlogehvi``); ``X_pending``: encoded pending archs. Baseline pruning draws
    from torch's global generator: call this inside ``torch.random.fork_rng`` with a seed (as
    :func:`search_algos.mobo.core.propose` does) for reproducible results.
    """
    if name not in ACQUISITIONS:
        raise SearchError(f"acquisition {name!r}: unknown; use one of {', '.join(ACQUISITIONS)}")
    constraints = layout.constraint_callables() or None
    sampler = get_sampler(model.posterior(X_baseline[:1]), torch.Size([int(mc_samples)]), seed=int(seed))
    m = len(layout.objective_outputs)
    if m == 1:
        j = layout.objective_outputs[0]
        return qLogNoisyExpectedImprovement(
            model,
            X_baseline,
            sampler=sampler,
            objective=GenericMCObjective(lambda Z, X=None: Z[..., j]),
            constraints=constraints,
            X_pending=X_pending,
            prune_baseline=True,
            cache_root=False,
        )
    objective = IdentityMCMultiOutputObjective(outcomes=list(layout.objective_outputs))
    if name == "qlognehvi":
        return qLogNoisyExpectedHypervolumeImprovement(
            model,
            ref_point=ref_point,
            X_baseline=X_baseline,
            sampler=sampler,
            objective=objective,
            constraints=constraints,
            X_pending=X_pending,
            prune_baseline=True,
            cache_root=False,
        )
    if name == "qlogehvi":
        if Y_baseline_max is None:
            raise SearchError("acquisition qlogehvi: needs the observed objective values")
        partitioning = FastNondominatedPartitioning(ref_point=ref_point, Y=Y_baseline_max)
        return qLogExpectedHypervolumeImprovement(
            model,
            ref_point=ref_point,
            partitioning=partitioning,
            sampler=sampler,
            objective=objective,
            constraints=constraints,
            X_pending=X_pending,
        )
    weights = sample_simplex(m, seed=int(seed), dtype=torch.float64).squeeze(0)
    return qLogNParEGO(
        model,
        X_baseline=X_baseline,
        scalarization_weights=weights,
        sampler=sampler,
        objective=objective,
        constraints=constraints,
        X_pending=X_pending,
        prune_baseline=True,
        cache_root=False,
    )


@torch.no_grad()
def evaluate(acqf: AcquisitionFunction, X: Tensor, chunk: int = 1024) -> Tensor:
    """Acquisition values ``(n,)`` of ``n`` single candidates ``X (n, d)`` (q = 1), in chunks."""
    if X.shape[0] == 0:
        return torch.empty(0, dtype=torch.float64)
    out = [acqf(X[i : i + chunk].unsqueeze(-2)) for i in range(0, X.shape[0], chunk)]
    return torch.cat(out).reshape(-1)
