"""The surrogate trainable: answers a trial for ANY arch of the space from a fitted
:class:`hytnas.benchmark.surrogate.Surrogate` (predicted accuracy/latency, exact costs) instead of
training (used through its ``space`` and ``answer``). Reports the keys of the training trainable,
``done: True``, in one final report.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray import tune


def surrogate(config: dict[str, Any], model: Any) -> None:
    """Ray Tune function trainable (bind ``model`` with :func:`make_surrogate_trainable`)."""
    tune.report(model.answer(model.space.from_config(config)))


def make_surrogate_trainable(model: Any) -> Callable:
    """``surrogate`` with the fitted model bound (shipped once through Ray's object store)."""
    return tune.with_parameters(surrogate, model=model)
