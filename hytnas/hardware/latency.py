"""Latency of archs on a device profile, as a known objective of the searcher.

:func:`latency_fn` turns a profile whose latency is computed from the arch (``lut``,
``learned``, ``analytic``) into ``fn(archs: list[Arch]) -> Tensor`` of milliseconds (float64,
shape ``(n,)``), the form ``search_algos.make_searcher(known_fns={"latency_ms": fn})`` takes.
A ``measured`` profile has no such function: its latency is timed inside the trial and
reported (a *reported* objective); :func:`latency_objective` says which.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from hytnas.errors import DataError, HardwareError
from hytnas.hardware.analytic import unit_cost, unit_latency_estimate_ms
from hytnas.hardware.blocks import arch_blocks
from hytnas.hardware.lut import VALIDATION_FILE, LatencyTable
from hytnas.hardware.profile import AnalyticLatency, DeviceProfile, get_profile
from hytnas.objectives import METRICS, Objective
from hytnas.space import Arch, Space, get_space

LatencyFn = Callable[[Sequence[Arch]], Tensor]
#: fewest profiled validation archs worth fitting the LUT's residual correction on
MIN_RESIDUAL_ARCHS = 10


def latency_objective(profile: DeviceProfile | str) -> Objective:
    """``latency_ms`` as the profile provides it: ``known`` for lut/learned/analytic, else ``reported``."""
    profile = get_profile(profile)
    base = METRICS["latency_ms"]
    source = "known" if profile.latency_is_known else "reported"
    desc = f"{base.description} on {profile.name} ({profile.latency.method})"
    if isinstance(profile.latency, AnalyticLatency) and not profile.latency.calibrated:
        desc += ", uncalibrated analytic estimate"
    return Objective(base.name, base.sense, source, base.unit, desc)


@dataclass(frozen=True)
class AnalyticLatencyModel:
    """The MCU estimate of :mod:`hytnas.hardware.analytic` for every arch of a space."""

    rates: AnalyticLatency
    space: Space
    input_size: int
    num_classes: int
    in_channels: int

    @property
    def is_estimate(self) -> bool:
        return not self.rates.calibrated

    def arch_ms(self, arch: Arch) -> float:
        specs = arch_blocks(self.space.to_arch_cfg(arch), self.input_size, self.num_classes, self.in_channels)
        return self.rates.overhead_ms + sum(unit_latency_estimate_ms(unit_cost(s), self.rates) for s in specs)

    def __call__(self, archs: Sequence[Arch]) -> Tensor:
        return torch.tensor([self.arch_ms(self.space.validate(a)) for a in archs], dtype=torch.float64)


def _needs_file(profile: DeviceProfile, what: str) -> HardwareError:
    src = f" ({profile.source})" if profile.source else ""
    how = profile.how_to.strip().splitlines()[0] if profile.how_to.strip() else "See docs/hardware.md."
    return HardwareError(f"device {profile.name}{src}: latency.path is not set; it needs {what} made on the device. {how}")


def latency_fn(profile: DeviceProfile | str, space: Space | str, *, input_size: int | None = None,
               num_classes: int = 10, in_channels: int = 3) -> LatencyFn:
    """``fn(archs) -> Tensor`` (ms) for a ``lut``, ``learned`` or ``analytic`` profile.

    ``input_size``: the resolution of the search; default the profile's, else the space's.
    """
    profile, space = get_profile(profile), get_space(space)
    size = int(input_size or profile.input_size or space.input_size)
    spec = profile.latency
    if spec.method == "measured":
        raise HardwareError(
            f"device {profile.name}: latency is measured in each trial (a reported objective), there is no "
            f"latency function; use a profile with latency.method lut, learned or analytic"
        )
    if spec.method == "analytic":
        return AnalyticLatencyModel(spec, space, size, num_classes, in_channels)
    from hytnas.predictors import LUTPredictor, load_predictor

    path = profile.resolve(spec.path)
    if path is None:
        raise _needs_file(profile, "a latency table (`hytnas profile`)" if spec.method == "lut"
                          else "a fitted predictor (`hytnas predictor fit`)")
    if spec.method == "lut":
        table = LatencyTable.load(path)
        pred = LUTPredictor(space, table=table, input_size=size, num_classes=num_classes, in_channels=in_channels)
        val = (path if path.is_dir() else path.parent) / VALIDATION_FILE
        if spec.residual and val.is_file():
            from hytnas.table import read_arch_table

            try:
                archs, df = read_arch_table(val, space, metrics=("latency_ms",))
            except DataError as exc:
                raise HardwareError(f"device {profile.name}: {exc}") from None
            if len(archs) >= MIN_RESIDUAL_ARCHS:
                pred.fit(archs, df["latency_ms"].to_numpy())
        return pred
    pred = load_predictor(path)
    if pred.space.space_id != space.space_id:
        raise HardwareError(
            f"device {profile.name}: the predictor {path} was fitted on space {pred.space.name!r}, the search uses "
            f"{space.name!r}; fit one on this space with `hytnas predictor fit --space {space.name} ...`"
        )
    for key, mine in (("input_size", size), ("num_classes", num_classes), ("in_channels", in_channels)):
        if getattr(pred, key) != mine:
            raise HardwareError(
                f"device {profile.name}: the predictor {path} was fitted with {key}={getattr(pred, key)}, the "
                f"search uses {key}={mine}; fit it again with the search's setting"
            )
    return pred
