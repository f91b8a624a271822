"""Learned predictors of per-arch metrics (latency, accuracy, ...).

- :class:`Predictor` (``fit(archs, y)``, ``predict(archs) -> (mean, std)``, ``save(path)``) and
  :func:`load_predictor`, :func:`make_predictor`, :data:`PREDICTORS` (``lut``, ``lut_gp``,
  ``gp``, ``rank_ensemble``): see :mod:`hytnas.predictors.base`.
- :func:`fit_rank_ensemble` / :class:`RankEnsemble`: the rank-preserving MLP ensemble as plain
  tensor functions (:mod:`hytnas.predictors.rank_ensemble`).
- :func:`arch_features`: the features the learned models see; :func:`prediction_metrics`.
"""
from hytnas.predictors.base import PREDICTORS, Predictor, load_predictor, make_predictor
from hytnas.predictors.features import arch_features
from hytnas.predictors.gp import GPPredictor
from hytnas.predictors.lut import LUTGPPredictor, LUTPredictor
from hytnas.predictors.metrics import prediction_metrics
from hytnas.predictors.rank import RankEnsemblePredictor
from hytnas.predictors.rank_ensemble import RankEnsemble, fit_rank_ensemble

__all__ = ["Predictor", "PREDICTORS", "make_predictor", "load_predictor", "arch_features", "prediction_metrics",
           "LUTPredictor", "LUTGPPredictor", "GPPredictor", "RankEnsemblePredictor", "RankEnsemble", "fit_rank_ensemble"]
