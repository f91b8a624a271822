"""``gp``: a BoTorch ``SingleTaskGP`` (Matern-5/2 ARD, learned noise) on
:func:`~hytnas.predictors.features.arch_features`, inputs normalised to the training range
(``Normalize``), the target standardised (``Standardize``), hyperparameters fitted by
``fit_gpytorch_mll``. ``std`` is the posterior std of the latent function (noise excluded).

Saved state: the kept feature columns (constant columns are dropped) and the model's
``state_dict`` as nested lists; loading rebuilds the GP on the stored training archs and loads
the fitted hyperparameters (no refit, identical predictions).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from hytnas.errors import DataError
from hytnas.predictors.base import Predictor, register
from hytnas.predictors.features import arch_features
from hytnas.space import Arch


@register
class GPPredictor(Predictor):
    """Options: ``features`` (encode | costs | both)."""

    name = "gp"
    defaults = {"features": "both"}

    model: Any = None
    keep: Tensor | None = None

    def _x(self, archs: list[Arch]) -> Tensor:
        X = arch_features(self.space, archs, input_size=self.input_size, num_classes=self.num_classes,
                          in_channels=self.in_channels, features=self.options["features"])
        return X if self.keep is None else X[:, self.keep]

    def _build(self, X: Tensor, t: Tensor) -> Any:
        from botorch.models import SingleTaskGP
        from botorch.models.transforms import Normalize, Standardize

        return SingleTaskGP(X, t.reshape(-1, 1), input_transform=Normalize(d=X.shape[1]),
                            outcome_transform=Standardize(m=1))

    def _fit(self, archs: list[Arch], t: Tensor) -> None:
        from botorch.fit import fit_gpytorch_mll
        from gpytorch.mlls import ExactMarginalLogLikelihood

        self.keep = None
        X = self._x(archs)
        self.keep = (X.max(0).values - X.min(0).values) > 1e-12
        if not bool(self.keep.any()):
            raise DataError("predictor gp: every feature is constant over the training archs; give more varied archs")
        self.model = self._build(X[:, self.keep], t)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(self.model.likelihood, self.model))
        self.model.eval()

    def _predict(self, archs: list[Arch]) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            post = self.model.posterior(self._x(archs))
            return post.mean.squeeze(-1), post.variance.clamp_min(0).sqrt().squeeze(-1)

    def _state(self) -> dict[str, Any]:
        # constraint bounds (some infinite) are fixed by construction: not part of the fitted state
        sd = {k: v.tolist() for k, v in self.model.state_dict().items() if "_constraint." not in k}
        return {"keep": self.keep.tolist(), "state_dict": sd}

    def _restore(self, state: Mapping[str, Any]) -> None:
        self.keep = torch.tensor(state["keep"], dtype=torch.bool)
        assert self.train_y is not None
        t = self._forward_t(self.train_y)
        self.model = self._build(self._x(self.train_archs), t)
        ref = self.model.state_dict()
        sd = {k: torch.tensor(v, dtype=ref[k].dtype if k in ref else torch.float64) for k, v in state["state_dict"].items()}
        self.model.load_state_dict(sd, strict=False)
        self.model.eval()
        # the targets as the fitted model saw them: standardised with the stored statistics (the
        # statistics recomputed while building can differ in the last bit)
        Y, _ = self.model.outcome_transform(t.reshape(-1, 1))
        self.model.set_train_data(targets=Y.squeeze(-1), strict=False)
