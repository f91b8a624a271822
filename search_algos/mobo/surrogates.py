"""Surrogates of the reported metrics, as BoTorch models over ``Space.encode`` (``(n, 23)`` in
[0, 1]). Plain functions, no Ray.

``fit_surrogate(name, X, Y, *, warm=None, seed=0, **options) -> (model, warm_state)``:

- ``gp`` (default): one ``SingleTaskGP`` with ``m`` batched outputs; Matern-5/2 ARD kernel with
  the dimension-scaled log-normal lengthscale prior of Hvarfner et al. (2024)
  (``get_covar_module_with_dim_scaled_prior(use_rbf_kernel=False)``: Matern-5/2 suits ordinal
  genes, whose objective changes in steps rather than smoothly); inputs through
  ``Normalize`` with the unit-cube bounds of the encoding (so that a gene with one choice stays
  put), outcomes through ``Standardize``. ``kernel="categorical"`` (``surrogate_options``)
  uses BoTorch's ``CategoricalKernel`` instead (each gene's level a category, ARD). ``warm`` (the
  previous fit's hyperparameters, a plain dict of lists) initialises the hyperparameters; with
  ``refit=False`` they are used as they are (rebuilding the model on the data without
  optimising, e.g. after a restore on the same data).
- ``rank_ensemble`` (the HyT-NAS paper's option): per output an ensemble of small MLPs trained
  with a pairwise margin-ranking loss (:func:`hytnas.predictors.fit_rank_ensemble`); the
  ensemble's mean and spread are the posterior (independent Gaussians).

Every fit is deterministic given ``seed`` (``torch.random.fork_rng`` isolates what GPyTorch draws
from the global generator, so the caller's generator state is untouched).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.kernels.categorical import CategoricalKernel
from botorch.models.model import Model
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from gpytorch.kernels import ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood
from linear_operator.operators import DiagLinearOperator
from torch import Tensor

from hytnas.errors import SearchError
from search_algos.settings import KERNELS

#: the hyperparameters (raw parameters, no training data, no constraint buffers) carried from
#: one GP fit to the next
_GP_WARM_PREFIXES = ("covar_module.", "likelihood.", "mean_module.")


# ----------------------------------------------------------------------------- GP


def _gp(X: Tensor, Y: Tensor, kernel: str = "matern") -> SingleTaskGP:
    d, m = X.shape[-1], Y.shape[-1]
    batch = torch.Size([m]) if m > 1 else torch.Size()
    bounds = torch.stack([torch.zeros(d, dtype=X.dtype), torch.ones(d, dtype=X.dtype)])
    if kernel == "matern":
        covar = get_covar_module_with_dim_scaled_prior(ard_num_dims=d, batch_shape=batch, use_rbf_kernel=False)
    elif kernel == "categorical":
        covar = ScaleKernel(CategoricalKernel(ard_num_dims=d, batch_shape=batch), batch_shape=batch)
    else:
        raise SearchError(f"surrogate gp kernel {kernel!r}: unknown; use one of {', '.join(KERNELS)}")
    return SingleTaskGP(
        X, Y, covar_module=covar, input_transform=Normalize(d, bounds=bounds), outcome_transform=Standardize(m)
    )


def _load_hypers(model: SingleTaskGP, hypers: Mapping[str, Any]) -> bool:
    sd = model.state_dict()
    load = {}
    for k, v in hypers.items():
        if k in sd:
            t = torch.as_tensor(v, dtype=sd[k].dtype)
            if t.shape == sd[k].shape:
                load[k] = t
    model.load_state_dict(load, strict=False)
    return bool(load)


def _hypers(model: SingleTaskGP) -> dict[str, Any]:
    return {k: v.detach().tolist() for k, v in model.named_parameters() if k.startswith(_GP_WARM_PREFIXES)}


def fit_gp(
    X: Tensor,
    Y: Tensor,
    *,
    warm: Mapping[str, Any] | None = None,
    seed: int = 0,
    refit: bool = True,
    maxiter: int = 200,
    warm_maxiter: int = 50,
    max_fit_points: int = 400,
    kernel: str = "matern",
) -> tuple[Model, dict[str, Any]]:
    """``SingleTaskGP`` on ``(X (n, d), Y (n, m))``; returns the model and its hyperparameters.

    L-BFGS-B runs at most ``maxiter`` iterations from the prior's mode, or ``warm_maxiter`` from
    the previous fit's hyperparameters (a few new points move the optimum little). Above
    ``max_fit_points`` observations the hyperparameters are fitted on a random subset of that
    size (drawn from ``seed``) and the model then conditions on all the data with them: the
    marginal likelihood of a few hundred points pins the hyperparameters down, and each
    L-BFGS step on ``n`` points costs O(n^3)."""
    X, Y = X.to(torch.float64), Y.to(torch.float64)
    n = X.shape[0]
    model = _gp(X, Y, kernel)
    warm_loaded = _load_hypers(model, warm) if warm else False
    if refit or not warm_loaded:
        target = model
        if n > max_fit_points:
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_fit_points].sort().values
            target = _gp(X[idx], Y[idx], kernel)
            if warm_loaded:
                _load_hypers(target, warm)
        mll = ExactMarginalLogLikelihood(target.likelihood, target)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            iters = warm_maxiter if warm_loaded else maxiter
            fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": int(iters)}})
        if target is not model:
            _load_hypers(model, _hypers(target))
    model.eval()
    return model, _hypers(model)


# ----------------------------------------------------------------------------- rank ensemble
class MeanStdModel(Model):
    """A BoTorch model from per-output predictors ``f(X (N, d)) -> (mean (N,), std (N,))``:
    the posterior is independent Gaussians (no correlation across points or outputs)."""

    _num_outputs: int

    def __init__(self, predictors: list[Callable[[Tensor], tuple[Tensor, Tensor]]], min_std: float = 1e-6) -> None:
        super().__init__()
        self.predictors = predictors
        self._num_outputs = len(predictors)
        self.min_std = float(min_std)

    @property
    def num_outputs(self) -> int:
        return self._num_outputs

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size()

    def posterior(
        self,
        X: Tensor,
        output_indices: list[int] | None = None,
        observation_noise: bool = False,
        posterior_transform: Any = None,
        **kwargs: Any,
    ) -> GPyTorchPosterior:
        idx = list(range(self._num_outputs)) if output_indices is None else list(output_indices)
        batch, q, d = X.shape[:-2], X.shape[-2], X.shape[-1]
        flat = X.reshape(-1, d)
        means, stds = zip(*(self.predictors[i](flat) for i in idx))
        mean = torch.stack(means, -1).to(X).reshape(*batch, q, len(idx))  # (..., q, m)
        var = torch.stack(stds, -1).to(X).clamp_min(self.min_std).pow(2).reshape(*batch, q, len(idx))
        if len(idx) == 1:
            dist = MultivariateNormal(mean[..., 0], DiagLinearOperator(var[..., 0]))
        else:
            dist = MultitaskMultivariateNormal(mean, DiagLinearOperator(var.reshape(*batch, q * len(idx))))
        post = GPyTorchPosterior(dist)
        if posterior_transform is not None:
            return posterior_transform(post)
        return post


def fit_rank_ensemble_model(
    X: Tensor, Y: Tensor, *, warm: Mapping[str, Any] | None = None, seed: int = 0, refit: bool = True, **options: Any
) -> tuple[Model, dict[str, Any]]:
    """One :func:`hytnas.predictors.fit_rank_ensemble` per output of ``Y``; no warm state (the
    fit is deterministic given ``seed``)."""
    from hytnas.errors import DataError
    from hytnas.predictors import fit_rank_ensemble

    preds = []
    for j in range(Y.shape[-1]):
        try:
            ens = fit_rank_ensemble(X.float(), Y[:, j].float(), seed=seed + 7919 * j, **options)
        except (DataError, TypeError) as exc:
            raise SearchError(f"surrogate rank_ensemble: {exc}") from None
        preds.append(ens.predict)
    return MeanStdModel(preds), {}


SURROGATES: dict[str, Callable[..., tuple[Model, dict[str, Any]]]] = {
    "gp": fit_gp,
    "rank_ensemble": fit_rank_ensemble_model,
}


def fit_surrogate(name: str, X: Tensor, Y: Tensor, **kwargs: Any) -> tuple[Model, dict[str, Any]]:
    """Fit the surrogate ``name`` (:data:`SURROGATES`) on ``(X, Y)``; ``Y`` has no NaN."""
    if name not in SURROGATES:
        raise SearchError(f"surrogate {name!r}: unknown; use one of {', '.join(SURROGATES)}")
    if X.shape[0] < 2:
        raise SearchError(f"surrogate {name}: needs at least 2 observations, got {X.shape[0]}")
    if not bool(torch.isfinite(Y).all()):
        raise SearchError(f"surrogate {name}: observations hold NaN or infinite values")
    return SURROGATES[name](X, Y, **kwargs)
