"""HyT-NAS searchers: a Ray-free ask/tell core and one thin Ray Tune adapter.

- :func:`make_searcher` (``mobo``, ``random``, ``optuna-nsga2``, ``optuna-tpe``, ``optuna-gp``)
  builds an ask/tell searcher (:class:`~search_algos.base.Searcher`) from a frozen settings object
  (:mod:`search_algos.settings`);
- :mod:`search_algos.tune`: ``TuneSearcher`` wraps any of them as a ``ray.tune.search.Searcher``
  (the only module here that imports Ray).
"""

from __future__ import annotations

from search_algos.base import Searcher
from search_algos.factory import make_searcher
from search_algos.settings import SEARCHERS, SETTINGS, parse_settings

__all__ = ["SEARCHERS", "SETTINGS", "Searcher", "make_searcher", "parse_settings"]
