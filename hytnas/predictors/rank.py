"""``rank_ensemble``: the rank-preserving MLP ensemble (:mod:`hytnas.predictors.rank_ensemble`)
on :func:`~hytnas.predictors.features.arch_features`."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from hytnas.predictors.base import Predictor, register
from hytnas.predictors.features import arch_features
from hytnas.predictors.rank_ensemble import RankEnsemble, fit_rank_ensemble
from hytnas.space import Arch


@register
class RankEnsemblePredictor(Predictor):
    """Options: ``features`` (encode | costs | both) and the :func:`fit_rank_ensemble` settings."""

    name = "rank_ensemble"
    defaults = {"features": "both", "n_members": 5, "hidden": [64, 64], "epochs": 300, "margin": 0.05,
                "mse_weight": 0.1, "lr": 5e-3, "weight_decay": 1e-4}

    model: RankEnsemble | None = None

    def _x(self, archs: list[Arch]) -> Tensor:
        return arch_features(self.space, archs, input_size=self.input_size, num_classes=self.num_classes,
                             in_channels=self.in_channels, features=self.options["features"])

    def _fit(self, archs: list[Arch], t: Tensor) -> None:
        opts = {k: v for k, v in self.options.items() if k != "features"}
        opts["hidden"] = tuple(opts["hidden"])
        self.model = fit_rank_ensemble(self._x(archs), t, seed=self.seed, **opts)

    def _predict(self, archs: list[Arch]) -> tuple[Tensor, Tensor]:
        assert self.model is not None
        return self.model.predict(self._x(archs))

    def _state(self) -> dict[str, Any]:
        assert self.model is not None
        return {"ensemble": self.model.to_dict()}

    def _restore(self, state: Mapping[str, Any]) -> None:
        self.model = RankEnsemble.from_dict(state["ensemble"])
