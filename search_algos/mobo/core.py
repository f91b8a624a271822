"""The MOBO maths, Ray-free: the model (surrogates + exact known objectives), candidate
generation over the discrete space, acquisition optimisation by scoring + local search, and
sequential greedy batch selection.

Conventions: ``X`` is ``Space.encode`` (``(n, 23)`` float64 in [0, 1]); every objective column
is in the maximised sense (:func:`hytnas.objectives.to_maximize`); archs are
:class:`hytnas.space.Arch`; randomness comes from a ``numpy.random.Generator`` and integer seeds
passed in (BoTorch's draws from torch's global generator happen inside
``torch.random.fork_rng`` with a seed, leaving the caller's generator state untouched).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gpytorch
import numpy as np
import torch
from botorch.acquisition import AcquisitionFunction
from botorch.generation.gen import gen_candidates_scipy
from botorch.models.deterministic import GenericDeterministicModel
from botorch.models.model import Model, ModelList
from botorch.utils.multi_objective.pareto import is_non_dominated
from torch import Tensor

from hytnas.errors import SearchError
from hytnas.space import Arch, Space
from search_algos.mobo.acquisition import OutcomeLayout, build_acquisition, evaluate


# ------------------------------------------------------------------------ known objectives
class RowTable:
    """Exact values of encoded archs, looked up row-wise and vectorised.

    Rows are keyed by a fixed random projection ``X @ w`` (float64; identical rows give
    bit-identical keys because every row comes from ``Space.encode``), found with
    ``searchsorted`` and then checked element-wise, so a lookup never returns another row's
    values. Every arch the acquisition scores is registered beforehand; a row that is not in the
    table (BoTorch probes random off-grid points, e.g. to bound the objective when no
    observation is feasible) gets the values of its nearest registered row (Euclidean), i.e. the
    known objective is extended off the grid by nearest-neighbour interpolation.
    """

    def __init__(self, d: int, k: int) -> None:
        gen = torch.Generator().manual_seed(20230307)
        self.w = torch.rand(d, generator=gen, dtype=torch.float64) + 0.5
        self.k = k
        self.keys = torch.empty(0, dtype=torch.float64)
        self.rows = torch.empty(0, d, dtype=torch.float64)
        self.vals = torch.empty(0, k, dtype=torch.float64)

    def clear(self) -> None:
        self.keys, self.rows, self.vals = self.keys[:0], self.rows[:0], self.vals[:0]

    def __len__(self) -> int:
        return int(self.keys.numel())

    def missing(self, X: Tensor) -> Tensor:
        """Boolean ``(n,)``: rows of ``X (n, d)`` not in the table."""
        return ~self._find(X)[1]

    def add(self, X: Tensor, V: Tensor) -> None:
        X, V = X.to(torch.float64), V.to(torch.float64).reshape(-1, self.k)
        new = self.missing(X)
        if not bool(new.any()):
            return
        X, V = X[new], V[new]
        keys = torch.cat([self.keys, X @ self.w])
        order = torch.argsort(keys)
        self.keys = keys[order]
        self.rows = torch.cat([self.rows, X])[order]
        self.vals = torch.cat([self.vals, V])[order]

    def _find(self, X: Tensor) -> tuple[Tensor, Tensor]:
        if len(self) == 0:
            return torch.zeros(X.shape[0], dtype=torch.long), torch.zeros(X.shape[0], dtype=torch.bool)
        q = X.to(torch.float64) @ self.w
        idx = torch.searchsorted(self.keys, q).clamp_max(len(self) - 1)
        # the key may sit one to the left (searchsorted gives the insertion point)
        left = (idx - 1).clamp_min(0)
        pick = torch.where((self.keys[left] - q).abs() < (self.keys[idx] - q).abs(), left, idx)
        ok = (self.rows[pick] - X).abs().amax(-1) <= 1e-12
        return pick, ok

    def __call__(self, X: Tensor) -> Tensor:
        """``X (..., d) -> (..., k)``."""
        flat = X.reshape(-1, X.shape[-1]).to(torch.float64)
        if len(self) == 0:
            raise SearchError("known objectives: no arch was registered (internal error)")
        pick, ok = self._find(flat)
        if not bool(ok.all()):
            off = ~ok
            pick = pick.clone()
            pick[off] = torch.cdist(flat[off], self.rows).argmin(-1)
        return self.vals[pick].to(X).reshape(*X.shape[:-1], self.k)


def make_model(surrogate: Model | None, table: RowTable | None) -> Model:
    """The acquisition's model: ``ModelList(surrogate, GenericDeterministicModel(known))``
    (either part may be absent)."""
    parts: list[Model] = []
    if surrogate is not None:
        parts.append(surrogate)
    if table is not None and table.k > 0:
        parts.append(GenericDeterministicModel(table, num_outputs=table.k))
    if not parts:
        raise SearchError("mobo: nothing to model (no objectives)")
    return parts[0] if len(parts) == 1 else ModelList(*parts)


# ------------------------------------------------------------------------ candidates
def generate_candidates(
    space: Space,
    rng: np.random.Generator,
    *,
    anchors: Sequence[Arch],
    n_random: int,
    n_mutations: int,
    neighbours: bool = True,
) -> list[Arch]:
    """Uniform random archs, mutations (1 to 3 latent genes) of ``anchors`` and all their
    one-step neighbours; unique, in a deterministic order. Filtering (used, infeasible) is the
    caller's job."""
    out: dict[Arch, None] = {}
    n_random = min(n_random, space.cardinality())
    if n_random > 0:
        out.update(
            dict.fromkeys(space.sample(n_random, seed=int(rng.integers(2**31 - 1)), method="uniform", unique=False))
        )
    if anchors:
        for i in range(n_mutations):
            a = anchors[i % len(anchors)]
            out.setdefault(space.mutate(a, rng, n_genes=int(rng.integers(1, 4))), None)
        if neighbours:
            for a in anchors:
                out.update(dict.fromkeys(space.neighbours(a)))
    return list(out)


def pareto_anchors(
    archs: Sequence[Arch], Y_max: Tensor, feasible: Tensor | None, max_anchors: int, rng: np.random.Generator
) -> list[Arch]:
    """The observed Pareto set (feasible observations first), at most ``max_anchors`` of it."""
    if not archs:
        return []
    idx = torch.arange(len(archs))
    if feasible is not None and bool(feasible.any()):
        idx = idx[feasible]
    front = idx[is_non_dominated(Y_max[idx], deduplicate=True)].tolist()
    if len(front) > max_anchors:
        front = sorted(rng.choice(front, size=max_anchors, replace=False).tolist())
    return [archs[i] for i in front]


# ------------------------------------------------------------------------ optimisation
@dataclass(frozen=True)
class SearchSettings:
    """How the acquisition is optimised over the discrete space."""

    n_random: int = 256
    n_mutations: int = 256
    max_anchors: int = 8
    local_search_starts: int = 3
    local_search_steps: int = 5
    local_search_anchors: int = 4
    #: continuous relaxation: the best ``relax_starts`` scored candidates are polished by L-BFGS-B
    #: on the acquisition over the encoding's unit cube (``relax_iters`` iterations at most), then
    #: rounded to the nearest arch (:meth:`Space.nearest`) and hill-climbed like the others; 0 = off
    #: (the default: on the DTLZ2 grid benchmark it did not improve the search, see docs/searcher.md)
    relax_starts: int = 0
    relax_iters: int = 50
    chunk: int = 1024
    #: from this many observations on, posterior covariances use GPyTorch's LOVE
    #: (``fast_pred_var``): O(n) instead of O(n^2) per candidate
    fast_pred_var_from: int = 400


def optimize_discrete(
    score: Callable[[Sequence[Arch]], Tensor],
    candidates: Sequence[Arch],
    moves: Callable[[Arch], list[Arch]],
    *,
    starts: int,
    steps: int,
    anchors: Sequence[Arch] = (),
    relax: Callable[[list[Arch]], list[Arch]] | None = None,
    relax_starts: int = 0,
) -> tuple[Arch, float, int]:
    """Best arch under ``score``: score every candidate, then hill-climb (steepest ascent) over
    ``moves`` (one-step neighbours, already filtered) from the ``starts`` best candidates and from
    ``anchors`` (e.g. the observed Pareto set: not proposable themselves, so their first move is
    always taken), for at most ``steps`` moves each; a climber stops when no move improves.
    ``relax(archs)`` (optional) maps the ``relax_starts`` best candidates to new admissible archs
    (a continuous relaxation's rounded optima): they are scored and climb too.

    Returns ``(arch, value, n_scored)``. Ties keep the earliest arch (deterministic)."""
    if not candidates:
        raise SearchError("mobo: no candidate to score (the feasible unused set is empty)")
    seen: dict[Arch, float] = dict(zip(candidates, score(candidates).tolist()))
    ranked = sorted(seen, key=lambda a: -seen[a])
    relaxed: list[Arch] = []
    if relax is not None and relax_starts > 0:
        relaxed = list(dict.fromkeys(a for a in relax(ranked[:relax_starts]) if a not in seen))
        if relaxed:
            seen.update(zip(relaxed, score(relaxed).tolist()))
    climbers = list(dict.fromkeys([*ranked[: max(starts, 0)], *relaxed, *anchors]))
    value = lambda a: seen.get(a, -math.inf)  # noqa: E731  (anchors are not candidates)
    for _ in range(steps):
        if not climbers:
            break
        around = {a: moves(a) for a in climbers}
        nbrs = list(dict.fromkeys(b for bs in around.values() for b in bs if b not in seen))
        if nbrs:
            seen.update(zip(nbrs, score(nbrs).tolist()))
        moved = []
        for a, bs in around.items():
            best = max(bs, key=value, default=None)
            if best is not None and value(best) > value(a):
                moved.append(best)
        climbers = list(dict.fromkeys(moved))
    best = max(seen, key=lambda a: seen[a])
    return best, seen[best], len(seen)


def relax_continuous(acqf: AcquisitionFunction, X0: Tensor, *, iters: int) -> Tensor:
    """Local maxima ``(b, d)`` of ``acqf`` (q = 1) over the unit cube, by L-BFGS-B from each row
    of ``X0 (b, d)`` (BoTorch's ``gen_candidates_scipy``; the MC acquisition has fixed base
    samples, so it is deterministic and smooth in ``X``). Known objectives are piecewise constant
    in ``X`` (:class:`RowTable`), so the gradient comes from the surrogate's outputs; an
    acquisition with no gradient in ``X`` returns ``X0`` unchanged."""
    if X0.shape[0] == 0 or iters <= 0:
        return X0
    with torch.enable_grad():
        x = X0[:1].unsqueeze(-2).clone().requires_grad_(True)
        probe = acqf(x)
        grad = torch.autograd.grad(probe.sum(), x, allow_unused=True)[0] if probe.requires_grad else None
    if grad is None:  # not differentiable in X (the rank ensemble's predictors, a categorical kernel)
        return X0
    Xc, _ = gen_candidates_scipy(
        X0.unsqueeze(-2).clone(), acqf, lower_bounds=0.0, upper_bounds=1.0, options={"maxiter": int(iters)}
    )
    return Xc.squeeze(-2).detach()


def propose(
    *,
    encode: Callable[[Sequence[Arch]], Tensor],
    model: Model,
    layout: OutcomeLayout,
    acquisition: str,
    X_baseline: Tensor,
    Y_baseline_max: Tensor,
    ref_point: Tensor | None,
    candidates: Sequence[Arch],
    moves: Callable[[Arch], list[Arch]],
    register: Callable[[Sequence[Arch]], None],
    X_pending: Tensor | None,
    anchors: Sequence[Arch] = (),
    q: int,
    seed: int,
    settings: SearchSettings,
    mc_samples: int = 64,
    snap: Callable[[Tensor], list[Arch]] | None = None,
    admissible: Callable[[Sequence[Arch]], list[Arch]] | None = None,
) -> tuple[list[Arch], dict[str, float]]:
    """``q`` archs by sequential greedy selection: each pick is added to ``X_pending`` before the
    next acquisition is built. ``encode(archs)`` is ``Space.encode`` (possibly cached);
    ``register(archs)`` must make the known objectives of ``archs``
    available to ``model`` (and is called before any of them is scored). With ``snap``
    (``Space.nearest``) and ``admissible`` (keeps the proposable archs of a list), the
    continuous relaxation of :class:`SearchSettings` adds candidates (off when either is None)."""
    picks: list[Arch] = []
    info = {"n_scored": 0.0, "acq_value": float("nan")}
    pending = X_pending if X_pending is not None and X_pending.shape[0] else None
    register(list(candidates))
    for i in range(q):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + i)
            acqf = build_acquisition(
                acquisition,
                model,
                layout=layout,
                X_baseline=X_baseline,
                ref_point=ref_point,
                Y_baseline_max=Y_baseline_max,
                X_pending=pending,
                mc_samples=mc_samples,
                seed=seed + i,
            )

            def score(archs: Sequence[Arch], acqf: AcquisitionFunction = acqf) -> Tensor:
                register(archs)
                with gpytorch.settings.fast_pred_var(X_baseline.shape[0] >= settings.fast_pred_var_from):
                    return evaluate(acqf, encode(archs), chunk=settings.chunk)

            def relax(starts: list[Arch], acqf: AcquisitionFunction = acqf) -> list[Arch]:
                with gpytorch.settings.fast_pred_var(X_baseline.shape[0] >= settings.fast_pred_var_from):
                    Xc = relax_continuous(acqf, encode(starts), iters=settings.relax_iters)
                return [a for a in admissible(snap(Xc)) if a not in picks]

            cands = [a for a in candidates if a not in picks]
            if not cands:
                break
            best, value, n = optimize_discrete(
                score,
                cands,
                lambda a: [b for b in moves(a) if b not in picks],
                starts=settings.local_search_starts,
                steps=settings.local_search_steps,
                anchors=list(anchors)[: settings.local_search_anchors],
                relax=relax if snap is not None and admissible is not None else None,
                relax_starts=settings.relax_starts,
            )
        picks.append(best)
        info["n_scored"] += n
        info["acq_value"] = value if i == 0 else info["acq_value"]
        x = encode([best])
        pending = x if pending is None else torch.cat([pending, x])
    return picks, info
