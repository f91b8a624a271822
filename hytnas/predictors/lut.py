"""``lut``: the sum of a device's per-unit latency table plus a learned residual correction.

The LUT estimate of an arch is the sum of its units' profiled timings
(:class:`hytnas.hardware.lut.LatencyTable`). Timing units one at a time misses what happens
between them (framework dispatch, cache reuse across units), so ``fit`` learns a correction:
per group ``g`` of units (``stem``, every entry of ``ArchCfg.blocks``, ``head``) the LUT sum
``L_g`` is scaled by ``w_g`` and an offset ``b`` is added,

    latency ~= b + sum_g w_g L_g,

fitted by weighted least squares on *relative* errors (weights ``1 / y^2``) with a ridge
penalty ``alpha * n * sum_g (w_g - 1)^2`` that pulls the weights to 1, the plain sum.
Unfitted, the predictor is the plain sum (``w = 1``, ``b = 0``). ``std`` is the relative RMS
residual of the fit times the prediction (0 unfitted).

Units missing from the table (a table profiled on a sample of archs, ``coverage="sample"``)
are estimated, when ``fallback`` is on, by a per-unit-type log-linear model fitted on the
table itself: ``log ms ~ 1 + log1p(MACs) + log1p(traffic) + log1p(params)`` with the analytic
unit costs of :mod:`hytnas.hardware.analytic`; :attr:`LUTPredictor.n_fallback` counts them.

The table travels inside the saved predictor (one self-contained JSON file).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hytnas.errors import DataError, HardwareError
from hytnas.hardware.analytic import unit_cost
from hytnas.hardware.blocks import BlockSpec, arch_blocks
from hytnas.hardware.lut import LatencyTable
from hytnas.predictors.base import Predictor, register
from hytnas.space import Arch, Space


def _unit_x(spec: BlockSpec) -> list[float]:
    c = unit_cost(spec)
    return [1.0, math.log1p(c.macs), math.log1p(c.traffic), math.log1p(c.params)]


@register
class LUTPredictor(Predictor):
    """Options: ``alpha`` (ridge strength towards the plain sum), ``fallback`` (estimate units
    missing from the table instead of failing). Give the table as ``table=`` (a
    :class:`LatencyTable`, a ``lut.json`` path or the folder ``hytnas profile`` wrote)."""

    name = "lut"
    log_ok = False
    needs_table = True
    defaults = {"alpha": 0.01, "fallback": True}

    def __init__(self, space: Space | str, *, table: LatencyTable | str | Path | None = None, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        self.table: LatencyTable | None = None
        self.w: Tensor | None = None  # (G,) group weights
        self.b = 0.0
        self.rel_rmse = 0.0
        self.n_fallback = 0
        self._fallback: dict[str, Tensor] | None = None
        if table is not None:
            self.set_table(table if isinstance(table, LatencyTable) else LatencyTable.load(table))

    def set_table(self, table: LatencyTable) -> None:
        for key, mine in (("input_size", self.input_size), ("num_classes", self.num_classes),
                          ("in_channels", self.in_channels)):
            theirs = table.meta.get(key)
            if theirs is not None and int(theirs) != mine:
                raise HardwareError(
                    f"predictor lut: the table {table.source or ''} was profiled with {key}={theirs}, the predictor "
                    f"uses {key}={mine}; profile again with --{key.replace('_', '-')} {mine} or match the setting"
                )
        if len(table) == 0:
            raise HardwareError("predictor lut: the latency table is empty; run `hytnas profile` to fill it")
        self.table = table
        self._fallback = None

    @property
    def fitted(self) -> bool:
        return self.table is not None

    # ------------------------------------------------------------------ LUT sums
    def _fallback_ms(self, spec: BlockSpec) -> float:
        if not self.options["fallback"]:
            self.table.unit_ms(spec)  # raises naming the key and how to profile it
        if self._fallback is None:
            self._fallback = self._fit_fallback()
        coef = self._fallback.get(spec.kind, self._fallback["*"])
        return float(torch.exp(torch.tensor(_unit_x(spec), dtype=torch.float64) @ coef))

    def _fit_fallback(self) -> dict[str, Tensor]:
        rows: dict[str, list[tuple[list[float], float]]] = {}
        for key, e in self.table.entries.items():
            spec = BlockSpec.from_key(key)
            ms = self.table.entry_ms(e)
            if ms > 0:
                rows.setdefault(spec.kind, []).append((_unit_x(spec), math.log(ms)))
        everything = [r for rs in rows.values() for r in rs]
        out = {"*": _lstsq(everything)}
        for kind, rs in rows.items():
            if len(rs) >= 8:
                out[kind] = _lstsq(rs)
        return out

    def group_sums(self, archs: list[Arch]) -> Tensor:
        """``(n, G)`` LUT sums per group of units (ms)."""
        if self.table is None:
            raise DataError("predictor lut: no latency table; pass table=DIR (made by `hytnas profile`)")
        rows, n_fb = [], 0
        for a in archs:
            groups: dict[str, float] = {}
            for spec in arch_blocks(self.space.to_arch_cfg(a), self.input_size, self.num_classes, self.in_channels):
                e = self.table.entries.get(spec.key)
                if e is None:
                    ms = self._fallback_ms(spec)
                    n_fb += 1
                else:
                    ms = self.table.entry_ms(e)
                groups[spec.stage] = groups.get(spec.stage, 0.0) + ms
            rows.append(list(groups.values()))
        self.n_fallback = n_fb
        return torch.tensor(rows, dtype=torch.float64)

    def lut_sum(self, archs: list[Arch]) -> Tensor:
        """The plain LUT estimate (ms), no correction."""
        return self.group_sums([self.space.validate(a) for a in archs]).sum(1)

    # ------------------------------------------------------------------ Predictor
    def _fit(self, archs: list[Arch], t: Tensor) -> None:
        G = self.group_sums(archs)  # (n, g)
        n, g = G.shape
        A = torch.cat([G, torch.ones(n, 1, dtype=G.dtype)], 1) / t[:, None]  # relative-error rows
        r = torch.ones(n, dtype=G.dtype)  # target: (b + sum w L) / y == 1
        lam = float(self.options["alpha"]) * n
        P = torch.diag(torch.cat([torch.full((g,), lam, dtype=G.dtype), torch.zeros(1, dtype=G.dtype)]))
        prior = torch.cat([torch.ones(g, dtype=G.dtype), torch.zeros(1, dtype=G.dtype)])
        coef = torch.linalg.solve(A.T @ A + P, A.T @ r + P @ prior)
        self.w, self.b = coef[:g], float(coef[g])
        self.rel_rmse = float(((A @ coef - r) ** 2).mean().sqrt())

    def _predict(self, archs: list[Arch]) -> tuple[Tensor, Tensor]:
        G = self.group_sums(archs)
        w = self.w if self.w is not None else torch.ones(G.shape[1], dtype=G.dtype)
        mean = self.b + G @ w
        return mean, mean.abs() * self.rel_rmse

    def _state(self) -> dict[str, Any]:
        assert self.table is not None
        return {"table": self.table.to_dict(), "w": None if self.w is None else self.w.tolist(), "b": self.b,
                "rel_rmse": self.rel_rmse}

    def _restore(self, state: Mapping[str, Any]) -> None:
        self.set_table(LatencyTable.from_dict(state["table"]))
        self.w = None if state["w"] is None else torch.tensor(state["w"], dtype=torch.float64)
        self.b, self.rel_rmse = float(state["b"]), float(state["rel_rmse"])


def _lstsq(rows: list[tuple[list[float], float]]) -> Tensor:
    X = torch.tensor([r[0] for r in rows], dtype=torch.float64)
    y = torch.tensor([r[1] for r in rows], dtype=torch.float64)
    ridge = 1e-6 * torch.eye(X.shape[1], dtype=X.dtype)
    return torch.linalg.solve(X.T @ X + ridge, X.T @ y)


@register
class LUTGPPredictor(LUTPredictor):
    """``lut_gp``: the ``lut`` predictor (LUT sum with its linear correction) times a GP on the
    ratio ``y / lut``, so the GP learns only what the per-group correction leaves (interactions
    between units, effects that depend on the whole arch) from the arch features of the ``gp``
    predictor; it fits the log of the ratio, and ``std`` is the GP's, scaled by the LUT
    estimate. Options: those of ``lut`` and ``features`` (of the GP: encode | costs | both).

    On this project's 2-core VM (``benchmarks/latency_predictor.py``, ``hytnas``, 100 training
    archs, 200 test archs, 5 interleaved timing rounds, latency = the median of the fastest
    round) it is the best predictor: 96.5 % within +-10 %, Kendall tau 0.947, against 88 % /
    0.923 for ``lut`` and 87.5 % / 0.917 for ``gp`` (with latency = the fastest run it is level
    with ``lut``: 87 % / 0.921 vs 89 % / 0.927)."""

    name = "lut_gp"
    defaults = {**LUTPredictor.defaults, "features": "both"}

    def __init__(self, space: Space | str, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        self.gp: Predictor | None = None

    @property
    def fitted(self) -> bool:
        return self.table is not None and self.gp is not None

    def _gp_options(self) -> dict[str, Any]:
        return dict(input_size=self.input_size, num_classes=self.num_classes, in_channels=self.in_channels,
                    transform="log", seed=self.seed, threads=self.threads, features=self.options["features"])

    def _fit(self, archs: list[Arch], t: Tensor) -> None:
        from hytnas.predictors.gp import GPPredictor

        super()._fit(archs, t)
        base = super()._predict(archs)[0]
        if not bool((base > 0).all()):
            raise DataError("predictor lut_gp: the corrected LUT sum is not positive for every training arch "
                            "(check the latency table); use model lut")
        self.gp = GPPredictor(self.space, **self._gp_options()).fit(archs, (t / base).tolist())

    def _predict(self, archs: list[Arch]) -> tuple[Tensor, Tensor]:
        base, _ = super()._predict(archs)
        ratio, ratio_sd = self.gp.predict(archs)
        return base * ratio, base.abs() * ratio_sd

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "residual_gp": self.gp.to_dict()}

    def _restore(self, state: Mapping[str, Any]) -> None:
        super()._restore(state)
        self.gp = Predictor.from_dict(state["residual_gp"])
