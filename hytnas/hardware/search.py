"""Wiring a device profile into a search (used by ``hytnas.search`` and the trainable).

:func:`device_wiring` turns the experiment's ``hardware`` settings into what the searcher takes:

- ``known_fns``: ``{"latency_ms": fn}`` when the profile computes latency from the arch (``lut``,
  ``learned``, ``analytic``) and ``latency_ms`` is an objective or a constraint; the searcher then
  treats latency as a *known* metric, exact for every candidate, never modelled;
- ``objectives``: the experiment's objectives with ``latency_ms`` marked known in that case;
- ``constraints``: the experiment's constraints plus, when ``memory_constraints`` is on, the
  profile's memory limits (``peak_sram_kb <= sram_kb``, ``model_size_kb <= flash_kb``: exact
  known metrics, hard filters on candidates).

With a ``measured`` profile (``host-cpu``) nothing changes: latency is timed in the trial and
reported. :func:`trial_latency_ms` gives the device latency of one arch for a trial to report
(``None`` with a measured profile).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping

from hytnas.hardware.latency import latency_fn
from hytnas.hardware.profile import DeviceProfile, get_profile, memory_constraints
from hytnas.objectives import Constraint, Objective, get_objectives, parse_constraints
from hytnas.space import Arch, Space

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
        fns[LATENCY] = latency_fn(profile, space, input_size=space.input_size, num_classes=num_classes,
                                  in_channels=in_channels)
        objs = tuple(replace(o, source="known") if o.name == LATENCY else o for o in objs)
    if memory:
        have = {(c.name, c.op, c.value) for c in cons}
        cons = cons + tuple(c for c in memory_constraints(profile) if (c.name, c.op, c.value) not in have)
    return DeviceWiring(profile=profile, objectives=objs, constraints=cons, known_fns=fns)


def trial_latency_ms(device: str | DeviceProfile, space: Space, arch: Arch, *, num_classes: int = 10,
                     in_channels: int = 3) -> float | None:
    """The profile's latency of ``arch`` (ms) for a trial to report as ``latency_ms``, or ``None``
    when the profile measures latency in the trial."""
    profile = get_profile(device)
    if not profile.latency_is_known:
        return None
    fn = latency_fn(profile, space, input_size=space.input_size, num_classes=num_classes, in_channels=in_channels)
    return float(fn([arch])[0])
