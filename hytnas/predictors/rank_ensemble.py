"""The rank-preserving MLP ensemble of HyT-NAS, as plain tensor functions.

A searcher mostly needs the *order* of candidates right, so each member is trained with a
pairwise margin-ranking loss (``torch.nn.functional.margin_ranking_loss`` over all pairs, or a
random subset of pairs for large ``n``) plus a small MSE term that keeps its output on the
target's (standardised) scale. After training, every member is calibrated affinely to ``y`` by
least squares on its own training sample, so that :meth:`RankEnsemble.predict` returns a mean in
``y``'s units. The spread of the members (each trained on a bootstrap resample from its own
initialisation) is the uncertainty.

Conventions:

- ``X`` is ``(n, d)`` (any real features, e.g. :meth:`hytnas.space.Space.encode`), ``y`` is
  ``(n,)``; both are standardised internally (statistics stored in the model).
- The members are trained together as one batched network (weights stacked on a leading
  ``members`` axis), so fitting costs about the same as one member.
- All randomness comes from one ``torch.Generator`` seeded with ``seed``; nothing global is
  touched. The same seed, data and thread count give bit-identical models.
- :meth:`RankEnsemble.to_dict` is a plain JSON-able dict (weights as nested lists);
  :meth:`RankEnsemble.from_dict` rebuilds the model from it.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hytnas.errors import DataError

FORMAT = "hytnas.rank_ensemble"
VERSION = 1
_ACTS = {"silu": F.silu, "relu": F.relu, "tanh": torch.tanh}


@dataclass(frozen=True)
class RankEnsemble:
    """A fitted ensemble; build with :func:`fit_rank_ensemble` or :meth:`from_dict`.

    ``weights[k]`` is ``(members, fan_in, fan_out)``, ``biases[k]`` is ``(members, fan_out)``;
    ``calib_a``/``calib_b`` ``(members,)`` map each member's raw output to standardised ``y``.
    """

    weights: tuple[Tensor, ...]
    biases: tuple[Tensor, ...]
    calib_a: Tensor
    calib_b: Tensor
    x_mean: Tensor
    x_std: Tensor
    y_mean: float
    y_std: float
    activation: str = "silu"
    hparams: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_members(self) -> int:
        return int(self.calib_a.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.x_mean.shape[0])

    def member_outputs(self, X: Tensor) -> Tensor:
        """``(members, n)`` predictions of every member, in ``y``'s units."""
        X = _as_2d(X, self.n_features)
        Z = (X.to(self.x_mean) - self.x_mean) / self.x_std  # (n, d)
        with torch.no_grad():
            raw = _forward(Z, self.weights, self.biases, self.activation)  # (M, n)
        std_y = self.calib_a[:, None] * raw + self.calib_b[:, None]
        return std_y * self.y_std + self.y_mean

    def predict(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and standard deviation over the members, each ``(n,)``, in ``y``'s units,
        float64. With one member the std is zero."""
        out = self.member_outputs(X).double()
        mean = out.mean(0)
        std = out.std(0) if out.shape[0] > 1 else torch.zeros_like(mean)
        return mean, std

    # ---------------------------------------------------------------- plain-dict serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "activation": self.activation,
            "hparams": dict(self.hparams),
            "x_mean": self.x_mean.tolist(),
            "x_std": self.x_std.tolist(),
            "y_mean": float(self.y_mean),
            "y_std": float(self.y_std),
            "layers": [{"weight": w.tolist(), "bias": b.tolist()} for w, b in zip(self.weights, self.biases)],
            "calib_a": self.calib_a.tolist(),
            "calib_b": self.calib_b.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RankEnsemble:
        if d.get("format") != FORMAT:
            raise DataError(f"rank ensemble: format must be {FORMAT!r}, got {d.get('format')!r}")
        if d.get("version") != VERSION:
            raise DataError(f"rank ensemble: unsupported version {d.get('version')!r} (this build reads {VERSION})")
        try:
            f32 = dict(dtype=torch.float32)
            weights = tuple(torch.tensor(layer["weight"], **f32) for layer in d["layers"])
            biases = tuple(torch.tensor(layer["bias"], **f32) for layer in d["layers"])
            model = cls(
                weights=weights, biases=biases,
                calib_a=torch.tensor(d["calib_a"], **f32), calib_b=torch.tensor(d["calib_b"], **f32),
                x_mean=torch.tensor(d["x_mean"], **f32), x_std=torch.tensor(d["x_std"], **f32),
                y_mean=float(d["y_mean"]), y_std=float(d["y_std"]),
                activation=str(d["activation"]), hparams=dict(d.get("hparams", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"rank ensemble: malformed dict ({type(exc).__name__}: {exc})") from None
        if model.activation not in _ACTS:
            raise DataError(f"rank ensemble: unknown activation {model.activation!r}")
        return model


# -------------------------------------------------------------------------------- maths
def _as_2d(X: Tensor, d: int | None = None) -> Tensor:
    X = torch.as_tensor(X)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2 or (d is not None and X.shape[1] != d):
        raise DataError(f"rank ensemble: X must be (n, {d if d is not None else 'd'}), got {tuple(X.shape)}")
    return X


def _forward(Z: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor], activation: str) -> Tensor:
    """Batched MLP: ``Z`` (n, d) shared by all members -> (members, n)."""
    act = _ACTS[activation]
    h = Z.unsqueeze(0).expand(weights[0].shape[0], -1, -1)  # (M, n, d)
    for k, (w, b) in enumerate(zip(weights, biases)):
        h = torch.baddbmm(b.unsqueeze(1), h, w)  # (M, n, fan_out)
        if k < len(weights) - 1:
            h = act(h)
    return h.squeeze(-1)  # (M, n)


def _init_layers(dims: Sequence[int], members: int, gen: torch.Generator) -> tuple[list[Tensor], list[Tensor]]:
    """PyTorch's ``nn.Linear`` default init (uniform in +-1/sqrt(fan_in)), one per member."""
    ws, bs = [], []
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        ws.append((torch.rand(members, fan_in, fan_out, generator=gen) * 2 - 1) * bound)
        bs.append((torch.rand(members, fan_out, generator=gen) * 2 - 1) * bound)
    return ws, bs


def _pair_index(n: int, max_pairs: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """All ordered pairs i < j, or ``max_pairs`` random ones when there are more."""
    if n * (n - 1) // 2 <= max_pairs:
        i, j = torch.triu_indices(n, n, offset=1)
        return i, j
    i = torch.randint(n, (max_pairs,), generator=gen)
    j = torch.randint(n - 1, (max_pairs,), generator=gen)
    j = j + (j >= i).long()  # j != i
    return i, j


def fit_rank_ensemble(
    X: Tensor,
    y: Tensor,
    *,
    n_members: int = 5,
    hidden: Sequence[int] = (64, 64),
    epochs: int = 300,
    margin: float = 0.05,
    mse_weight: float = 0.1,
    lr: float = 5e-3,
    weight_decay: float = 1e-4,
    max_pairs: int = 20_000,
    bootstrap: bool = True,
    activation: str = "silu",
    seed: int = 0,
    threads: int | None = 1,
) -> RankEnsemble:
    """Fit ``n_members`` MLPs ``d -> hidden -> 1`` on ``(X, y)``; see the module docstring.

    ``margin`` is in standardised-``y`` units (pairs whose order the loss enforces must be
    separated by at least that much). ``mse_weight`` scales the MSE term against the ranking
    loss. Full-batch Adam for ``epochs`` steps; fresh random pairs each step when the number of
    pairs exceeds ``max_pairs``. ``threads``: torch intra-op threads while fitting (restored
    afterwards; the layers are far too small to gain from more, and on a busy machine extra
    threads only contend); ``None`` leaves the setting alone.
    """
    with intra_op_threads(threads):
        return _fit(X, y, n_members=n_members, hidden=hidden, epochs=epochs, margin=margin, mse_weight=mse_weight,
                    lr=lr, weight_decay=weight_decay, max_pairs=max_pairs, bootstrap=bootstrap,
                    activation=activation, seed=seed)


@contextmanager
def intra_op_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (``None``: unchanged); restored afterwards.

    The predictors' tensors are tiny: extra threads do not help them, and on a busy machine they
    contend (fitting a GP on 60 points took 10x longer with 2 threads than with 1 here)."""
    prev = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _fit(X: Tensor, y: Tensor, *, n_members: int, hidden: Sequence[int], epochs: int, margin: float,
         mse_weight: float, lr: float, weight_decay: float, max_pairs: int, bootstrap: bool, activation: str,
         seed: int) -> RankEnsemble:
    X = _as_2d(X).float()
    y = torch.as_tensor(y).reshape(-1).float()
    n, d = X.shape
    if y.shape[0] != n:
        raise DataError(f"rank ensemble: X has {n} rows but y has {y.shape[0]}")
    if n < 2:
        raise DataError(f"rank ensemble: need at least 2 points to fit, got {n}")
    if not (torch.isfinite(X).all() and torch.isfinite(y).all()):
        raise DataError("rank ensemble: X and y must be finite")
    if n_members < 1 or epochs < 1 or not hidden or min(hidden) < 1:
        raise DataError("rank ensemble: n_members, epochs and hidden sizes must be >= 1")
    if activation not in _ACTS:
        raise DataError(f"rank ensemble: activation must be one of {', '.join(_ACTS)}, got {activation!r}")
    gen = torch.Generator().manual_seed(int(seed))

    x_mean, x_std = X.mean(0), X.std(0, correction=0)
    x_std = torch.where(x_std > 1e-12, x_std, torch.ones_like(x_std))
    y_mean, y_std = float(y.mean()), float(y.std(correction=0))
    y_std = y_std if y_std > 1e-12 else 1.0
    Z = (X - x_mean) / x_std  # (n, d)
    t = (y - y_mean) / y_std  # (n,)

    M = int(n_members)
    # bootstrap counts per member: weight w[m, i] = times row i was drawn for member m
    if bootstrap and M > 1:
        draws = torch.randint(n, (M, n), generator=gen)
        w = torch.zeros(M, n).scatter_add_(1, draws, torch.ones(M, n))
    else:
        w = torch.ones(M, n)

    ws, bs = _init_layers([d, *hidden, 1], M, gen)
    params = [p.requires_grad_() for p in (*ws, *bs)]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    all_pairs = n * (n - 1) // 2 <= max_pairs
    for epoch in range(int(epochs)):
        if epoch == 0 or not all_pairs:  # all pairs: fixed; otherwise fresh random pairs each step
            i, j = _pair_index(n, max_pairs, gen)
            target = torch.sign(t[i] - t[j])  # (P,)
            keep = target != 0
            i, j, target = i[keep], j[keep], target[keep].expand(M, -1)
            pw = w[:, i] * w[:, j]  # (M, P) bootstrap weight of each pair
            pw = pw / pw.sum(1, keepdim=True).clamp_min(1.0)
        s = _forward(Z, ws, bs, activation)  # (M, n)
        rank = F.margin_ranking_loss(s[:, i], s[:, j], target, margin=margin, reduction="none")  # (M, P)
        rank = (rank * pw).sum(1)
        mse = ((s - t) ** 2 * w).sum(1) / w.sum(1)
        loss = (rank + mse_weight * mse).sum()  # members are independent: sum their losses
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    ws = [p.detach() for p in ws]
    bs = [p.detach() for p in bs]
    with torch.no_grad():
        s = _forward(Z, ws, bs, activation)  # (M, n)
    a, b = _weighted_affine(s, t, w)
    return RankEnsemble(
        weights=tuple(ws), biases=tuple(bs), calib_a=a, calib_b=b,
        x_mean=x_mean, x_std=x_std, y_mean=y_mean, y_std=y_std, activation=activation,
        hparams=dict(n_members=M, hidden=list(hidden), epochs=int(epochs), margin=margin, mse_weight=mse_weight,
                     lr=lr, weight_decay=weight_decay, max_pairs=max_pairs, bootstrap=bootstrap, seed=int(seed)),
    )


def _weighted_affine(s: Tensor, t: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Per member, ``a, b`` minimising ``sum_i w_i (a s_i + b - t_i)^2`` (closed form)."""
    W = w.sum(1)
    ms = (w * s).sum(1) / W
    mt = (w * t).sum(1) / W
    cov = (w * (s - ms[:, None]) * (t[None, :] - mt[:, None])).sum(1)
    var = (w * (s - ms[:, None]) ** 2).sum(1)
    a = torch.where(var > 1e-12, cov / var.clamp_min(1e-12), torch.zeros_like(var))
    return a, mt - a * ms
