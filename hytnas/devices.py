"""A device profile as objectives of a search: the latency it computes from the arch, and its wiring.

:func:`latency_fn` turns a profile whose latency is computed from the arch (``lut``,
``learned``, ``analytic``) into ``fn(archs: list[Arch]) -> Tensor`` of milliseconds (float64,
shape ``(n,)``), the form ``search_algos.make_searcher(known_fns={"latency_ms": fn})`` takes.
A ``measured`` profile has no such function: its latency is timed inside the trial and
reported (a *reported* objective); :func:`latency_objective` says which.

:func:`device_wiring` turns the experiment's ``hardware`` settings into what the searcher takes:

- ``known_fns``: ``{"latency_ms": fn}`` when the profile computes latency from the arch and
  ``latency_ms`` is an objective or a constraint; the searcher then treats latency as a *known*
  metric, exact for every candidate, never modelled;
- ``objectives``: the experiment's objectives with ``latency_ms`` marked known in that case;
- ``constraints``: the experiment's constraints plus, when ``memory_constraints`` is on, the
  profile's memory limits (``peak_sram_kb <= sram_kb``, ``model_size_kb <= flash_kb``: exact
  known metrics, hard filters on candidates).

With a ``measured`` profile (``host-cpu``) nothing changes: latency is timed in the trial and
reported. :func:`trial_latency_ms` gives the device latency of one arch for a trial to report
(``None`` with a measured profile).

This module sits above :mod:`hytnas.hardware` (profiles, block specs, LUTs) and
:mod:`hytnas.predictors` (the learned and LUT-based latency predictors it loads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from hytnas.errors import DataError, HardwareError
from hytnas.hardware.analytic import unit_cost, unit_latency_estimate_ms
from hytnas.hardware.blocks import arch_blocks
from hytnas.hardware.lut import VALIDATION_FILE, LatencyTable
from hytnas.hardware.profile import AnalyticLatency, DeviceProfile, get_profile, memory_constraints
from hytnas.objectives import METRICS, Constraint, Objective, get_objectives, parse_constraints
from hytnas.predictors import LUTPredictor, load_predictor
from hytnas.space import Arch, Space, get_space
from hytnas.table import read_arch_table

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
    return HardwareError(
        f"device {profile.name}{src}: latency.path is not set; it needs {what} made on the device. {how}"
    )


def latency_fn(
    profile: DeviceProfile | str,
    space: Space | str,
    *,
    input_size: int | None = None,
    num_classes: int = 10,
    in_channels: int = 3,
) -> LatencyFn:
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

    path = profile.resolve(spec.path)
    if path is None:
        raise _needs_file(
            profile,
            "a latency table (`hytnas profile`)"
            if spec.method == "lut"
            else "a fitted predictor (`hytnas predictor fit`)",
        )
    if spec.method == "lut":
        table = LatencyTable.load(path)
        pred = LUTPredictor(space, table=table, input_size=size, num_classes=num_classes, in_channels=in_channels)
        val = (path if path.is_dir() else path.parent) / VALIDATION_FILE
        if spec.residual and val.is_file():
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


LATENCY = "latency_ms"


@dataclass(frozen=True)
class DeviceWiring:
    profile: DeviceProfile
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...]
    known_fns: Mapping[str, Callable[..., Any]] = field(default_factory=dict)

    @property
    def latency_known(self) -> bool:
        return LATENCY in self.known_fns


def device_wiring(
    device: str | DeviceProfile,
    space: Space,
    objectives: Iterable[str | Mapping[str, Any] | Objective],
    constraints: Iterable[str | Mapping[str, Any] | Constraint] = (),
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    memory: bool = True,
) -> DeviceWiring:
    """The searcher inputs for ``device`` (see the module docstring); raises one-line
    :class:`~hytnas.errors.HardwareError` when the profile lacks the file its latency needs."""
    profile = get_profile(device)
    objs = get_objectives(objectives)
    cons = parse_constraints(constraints)
    uses_latency = any(o.name == LATENCY for o in objs) or any(c.name == LATENCY for c in cons)
    fns: dict[str, Callable[..., Any]] = {}
    if profile.latency_is_known and uses_latency:
        fns[LATENCY] = latency_fn(
            profile, space, input_size=space.input_size, num_classes=num_classes, in_channels=in_channels
        )
        objs = tuple(replace(o, source="known") if o.name == LATENCY else o for o in objs)
    if memory:
        have = {(c.name, c.op, c.value) for c in cons}
        cons = cons + tuple(c for c in memory_constraints(profile) if (c.name, c.op, c.value) not in have)
    return DeviceWiring(profile=profile, objectives=objs, constraints=cons, known_fns=fns)


def trial_latency_ms(
    device: str | DeviceProfile, space: Space, arch: Arch, *, num_classes: int = 10, in_channels: int = 3
) -> float | None:
    """The profile's latency of ``arch`` (ms) for a trial to report as ``latency_ms``, or ``None``
    when the profile measures latency in the trial."""
    profile = get_profile(device)
    if not profile.latency_is_known:
        return None
    fn = latency_fn(profile, space, input_size=space.input_size, num_classes=num_classes, in_channels=in_channels)
    return float(fn([arch])[0])
