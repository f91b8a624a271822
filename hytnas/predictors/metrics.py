"""Accuracy of a predictor on held-out archs (``hytnas predictor eval``, the benchmark).

``prediction_metrics(y_true, y_pred)`` returns a plain dict: ``n``, ``rmse`` (target units),
``mape`` (mean |error| / |y|, a fraction), ``within_5`` and ``within_10`` (fraction of archs
predicted within +-5 % / +-10 % of the truth), ``kendall_tau`` and ``spearman_rho``
(``scipy.stats``; tau-b, so ties are handled).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from hytnas.errors import DataError

METRIC_NAMES = ("n", "rmse", "mape", "within_5", "within_10", "kendall_tau", "spearman_rho")


def prediction_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if t.shape != p.shape:
        raise DataError(f"metrics: {t.size} true values but {p.size} predictions")
    if t.size < 2:
        raise DataError(f"metrics: need at least 2 held-out archs, got {t.size}")
    if np.any(t == 0):
        raise DataError("metrics: relative errors need non-zero true values")
    rel = np.abs(p - t) / np.abs(t)
    return {
        "n": int(t.size),
        "rmse": float(np.sqrt(np.mean((p - t) ** 2))),
        "mape": float(rel.mean()),
        "within_5": float(np.mean(rel <= 0.05)),
        "within_10": float(np.mean(rel <= 0.10)),
        "kendall_tau": float(stats.kendalltau(t, p).statistic),
        "spearman_rho": float(stats.spearmanr(t, p).statistic),
    }
