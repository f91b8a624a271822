"""Arch features for learned predictors: the space's encoding plus derived cost features.

``arch_features(space, archs, ...)`` is ``(n, 23 + 2 G + 3)`` float64:

- the 23 genes as :meth:`hytnas.space.Space.encode` gives them (in [0, 1]);
- per group ``g`` of units (``stem``, every entry of ``ArchCfg.blocks``, ``head``: ``G`` groups,
  10 in the HyT-NAS grammar) ``log1p(MACs_g)`` and ``log1p(traffic_g)`` (activation elements
  read + written), from the cost model's block cost functions
  (:func:`hytnas.hardware.analytic.unit_cost`);
- ``log1p`` of the total params, MACs and peak activation memory (``hytnas.costs`` conventions).

Every arch of a space has the same groups, so the columns line up.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch

from hytnas.errors import DataError
from hytnas.hardware.analytic import unit_cost
from hytnas.hardware.blocks import arch_blocks
from hytnas.space import Arch, Space

FeatureSet = Literal["encode", "costs", "both"]


def cost_features(space: Space, arch: Arch, *, input_size: int, num_classes: int, in_channels: int) -> list[float]:
    cfg = space.to_arch_cfg(arch)
    groups: dict[str, list[float]] = {}
    params = macs = peak = 0
    for spec in arch_blocks(cfg, input_size, num_classes, in_channels):
        c = unit_cost(spec)
        g = groups.setdefault(spec.stage, [0.0, 0.0])
        g[0] += c.macs
        g[1] += c.traffic
        params, macs, peak = params + c.params, macs + c.macs, max(peak, c.peak_elems)
    out = [math.log1p(v) for g in groups.values() for v in g]
    return out + [math.log1p(params), math.log1p(macs), math.log1p(peak)]


def arch_features(
    space: Space,
    archs: Iterable[Arch],
    *,
    input_size: int | None = None,
    num_classes: int = 10,
    in_channels: int = 3,
    features: FeatureSet = "both",
) -> torch.Tensor:
    """``(n, d)`` float64 features of ``archs`` (see the module docstring)."""
    if features not in ("encode", "costs", "both"):
        raise DataError(f"features: must be encode, costs or both, got {features!r}")
    archs = [space.validate(a) for a in archs]
    size = int(input_size or space.input_size)
    parts = []
    if features in ("encode", "both"):
        parts.append(space.encode(archs))
    if features in ("costs", "both"):
        rows = [cost_features(space, a, input_size=size, num_classes=num_classes, in_channels=in_channels) for a in archs]
        parts.append(torch.tensor(rows, dtype=torch.float64).reshape(len(archs), -1))
    return torch.cat(parts, dim=1)
