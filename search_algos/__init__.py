"""HyT-NAS searchers: Ray-free maths (plain functions over tensors) plus thin Ray Tune adapters.

- :func:`make_search_alg` (``mobo``, ``random``, ``optuna-nsga2``, ``optuna-tpe``, ``optuna-gp``);
- :class:`MOBOSearcher`: BoTorch multi-objective BO over the discrete space (``search_algos.mobo``);
- :class:`RandomArchSearch`, :class:`OptunaArchSearch`: the baselines.
"""
from __future__ import annotations

from typing import Any

from search_algos.factory import SEARCHERS, make_search_alg

__all__ = ["SEARCHERS", "make_search_alg", "MOBOSearcher", "RandomArchSearch", "OptunaArchSearch"]


def __getattr__(name: str) -> Any:  # heavy imports (botorch, optuna) only when used
    if name == "MOBOSearcher":
        from search_algos.mobo.searcher import MOBOSearcher

        return MOBOSearcher
    if name == "RandomArchSearch":
        from search_algos.random_search import RandomArchSearch

        return RandomArchSearch
    if name == "OptunaArchSearch":
        from search_algos.optuna_search import OptunaArchSearch

        return OptunaArchSearch
    raise AttributeError(f"module 'search_algos' has no attribute {name!r}")
