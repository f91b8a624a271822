"""Learned predictors of per-arch metrics (latency, accuracy, ...).

:mod:`hytnas.predictors.rank_ensemble` holds the rank-preserving MLP ensemble as plain tensor
functions (``fit_rank_ensemble(X, y) -> RankEnsemble`` with ``predict(X) -> (mean, std)``).
"""
from hytnas.predictors.rank_ensemble import RankEnsemble, fit_rank_ensemble

__all__ = ["RankEnsemble", "fit_rank_ensemble"]
