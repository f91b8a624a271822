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


def split_indices(n: int, *, train_size: int | None = None, cv: int | None = None,
                  seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded (train, test) index splits: one split with ``train_size`` training rows, or ``cv``
    folds (every row tested once)."""
    if (train_size is None) == (cv is None):
        raise DataError("evaluation: give exactly one of train_size or cv")
    perm = np.random.default_rng(seed).permutation(n)
    if train_size is not None:
        if not 2 <= train_size <= n - 2:
            raise DataError(f"evaluation: train size must be between 2 and {n - 2} (the table has {n} rows), got {train_size}")
        return [(perm[:train_size], perm[train_size:])]
    if not 2 <= cv <= n // 2:
        raise DataError(f"evaluation: cv folds must be between 2 and {n // 2} (the table has {n} rows), got {cv}")
    folds = np.array_split(perm, cv)
    return [(np.concatenate(folds[:k] + folds[k + 1:]), folds[k]) for k in range(cv)]


def evaluate_predictor(make: Any, archs: list, y: Any, splits: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Fit ``make()`` (a fresh :class:`~hytnas.predictors.Predictor`) on each split's training
    rows and score its mean on the test rows (pooled over the splits, so each test row counts
    once). Returns :func:`prediction_metrics` plus ``n_train`` (per split) and ``fit_s``."""
    import time

    y = np.asarray(y, dtype=np.float64)
    truth, pred, fit_s = [], [], 0.0
    for tr, te in splits:
        t0 = time.perf_counter()
        p = make().fit([archs[i] for i in tr], y[tr])
        fit_s += time.perf_counter() - t0
        truth.append(y[te])
        pred.append(p.predict([archs[i] for i in te])[0].numpy())
    out: dict[str, Any] = prediction_metrics(np.concatenate(truth), np.concatenate(pred))
    out["n_train"] = int(len(splits[0][0]))
    out["fit_s"] = fit_s / len(splits)
    return out
