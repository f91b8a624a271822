"""``make_searcher(name, ...)``: the one way the pipeline, the CLI and the benchmarks build a
searcher (Ray-free; :func:`search_algos.tune.make_search_alg` wraps it for Ray Tune).

Every searcher it returns implements the ask/tell interface of :class:`search_algos.base.Searcher`
and computes known objectives (``hytnas.costs.arch_costs`` at ``(input_size or space.input_size,
num_classes, in_channels)``, or ``known_fns``) itself, honouring known-metric constraints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hytnas.objectives import Constraint, Objective
from hytnas.space import Space
from search_algos.base import Searcher
from search_algos.common import KnownFn, make_problem
from search_algos.settings import SEARCHERS, SearcherSettings, parse_settings


def make_searcher(
    name: str,
    *,
    space: Space,
    objectives: Iterable[str | Mapping[str, Any] | Objective],
    constraints: Iterable[str | Mapping[str, Any] | Constraint] = (),
    seed: int = 0,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int | None = None,
    known_fns: Mapping[str, KnownFn] | None = None,
    options: Mapping[str, Any] | SearcherSettings | None = None,
) -> Searcher:
    """Build the searcher ``name`` (a key of :data:`search_algos.settings.SETTINGS`).

    Args:
        space: the search space (``hytnas.space.get_space``).
        objectives: objective names / specs (``hytnas.objectives.get_objectives``).
        constraints: e.g. ``["peak_sram_kb <= 256"]``; known-metric ones filter candidates,
            reported ones are outcome constraints (mobo) or Optuna constraints.
        seed: the searcher's seed (sampler seed for Optuna).
        num_classes, in_channels, input_size: what the exact cost model needs.
        known_fns: ``{metric: fn(list[Arch]) -> Tensor}`` adding or overriding known metrics.
        options: the searcher's settings (:mod:`search_algos.settings`), as a mapping or object.
    """
    settings = parse_settings(name, options)
    problem = make_problem(
        space,
        objectives,
        constraints,
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
        known_fns=known_fns,
        max_epochs=settings.max_epochs,
    )
    if name == "random":
        from search_algos.random_search import RandomArchSearch

        return RandomArchSearch(problem, settings, seed=seed)
    if name == "ax":
        from search_algos.ax_search import AxArchSearch

        return AxArchSearch(problem, settings, seed=seed)
    if name.startswith("optuna-"):
        from search_algos.optuna_search import OptunaArchSearch

        return OptunaArchSearch(problem, settings, sampler=name.split("-", 1)[1], seed=seed)
    from search_algos.mobo.searcher import MOBOSearcher

    return MOBOSearcher(problem, settings, seed=seed)


__all__ = ["SEARCHERS", "make_searcher"]
