"""``make_search_alg(name, ...)``: the one way the CLI, the pipeline and the benchmarks build a
searcher. Every searcher it returns is a plain ``ray.tune.search.Searcher`` that

- suggests trial configs holding the 23 genes (``space.to_config``) plus ``"arch_id"``;
- declares ``metric``/``mode`` as the lists of objective names and senses;
- limits its own concurrency to ``max_concurrent`` (Tune's ``max_concurrent_trials`` overrides
  it through ``set_max_concurrency``, so wrapping in a ``ConcurrencyLimiter`` is not needed);
- computes known objectives (``hytnas.costs.arch_costs`` at ``(input_size or space.input_size,
  num_classes, in_channels)``, or ``known_fns``) itself and honours known-metric constraints.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from ray.tune.search import Searcher

from hytnas.errors import SearchError
from hytnas.objectives import Constraint, Objective
from hytnas.space import Space
from search_algos.common import KnownFn, make_problem

SEARCHERS = ("mobo", "random", "optuna-nsga2", "optuna-tpe", "optuna-gp")

#: options each searcher accepts (besides the factory's keyword arguments)
_OPTIONS = {
    "random": {"candidates", "warm_start", "max_epochs"},
    "optuna": {"candidates", "max_epochs", "max_rejections"},
    "mobo": {
        "candidates", "warm_start", "max_epochs", "surrogate", "acquisition", "batch_size", "n_initial",
        "initial_center", "num_random", "num_mutations", "local_search_steps", "local_search_starts", "relax_starts",
        "relax_iters", "mc_samples", "surrogate_options", "ref_point", "torch_threads",
    },
}


def make_search_alg(
    name: str,
    *,
    space: Space,
    objectives: Iterable[str | Mapping[str, Any] | Objective],
    constraints: Iterable[str | Mapping[str, Any] | Constraint] = (),
    seed: int = 0,
    max_concurrent: int = 1,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int | None = None,
    known_fns: Mapping[str, KnownFn] | None = None,
    options: Mapping[str, Any] | None = None,
    **more_options: Any,
) -> Searcher:
    """Build the searcher ``name`` (one of :data:`SEARCHERS`).

    Args:
        space: the search space (``hytnas.space.get_space``).
        objectives: objective names / specs (``hytnas.objectives.get_objectives``).
        constraints: e.g. ``["peak_sram_kb <= 256"]``; known-metric ones filter candidates,
            reported ones are outcome constraints (mobo) or Optuna constraints.
        seed: the searcher's seed (sampler seed for Optuna).
        max_concurrent: trials handed out and not finished at most.
        num_classes, in_channels, input_size: what the exact cost model needs.
        known_fns: ``{metric: fn(list[Arch]) -> Tensor}`` adding or overriding known metrics.
        options: searcher-specific settings (``candidates``, ``warm_start``, ``max_epochs``;
            mobo: ``surrogate``, ``acquisition``, ``batch_size``, ``n_initial``, ...).
    """
    opts = {**dict(options or {}), **more_options}
    if name not in SEARCHERS:
        raise SearchError(f"searcher {name!r}: unknown; use one of {', '.join(SEARCHERS)}")
    family = "optuna" if name.startswith("optuna-") else name
    unknown = sorted(set(opts) - _OPTIONS[family])
    if unknown:
        raise SearchError(
            f"searcher {name}: unknown option {unknown[0]!r}; valid options: {', '.join(sorted(_OPTIONS[family]))}"
        )
    problem = make_problem(
        space, objectives, constraints, num_classes=num_classes, in_channels=in_channels,
        input_size=input_size, known_fns=known_fns, max_epochs=opts.pop("max_epochs", None),
    )
    if name == "random":
        from search_algos.random_search import RandomArchSearch

        return RandomArchSearch(problem, seed=seed, max_concurrent=max_concurrent, **opts)
    if family == "optuna":
        from search_algos.optuna_search import OptunaArchSearch

        return OptunaArchSearch(problem, sampler=name.split("-", 1)[1], seed=seed, max_concurrent=max_concurrent, **opts)
    from search_algos.mobo.searcher import MOBOSearcher

    return MOBOSearcher(problem=problem, seed=seed, max_concurrent=max_concurrent, **opts)
