"""Per-unit analytic costs (MACs by operator class, params, activation traffic) and the MCU
latency estimate built on them.

The counts come from the cost model's own block cost functions (``hytnas.costs.BLOCK_COSTS``,
exact and equal to ``torch.utils.flop_counter``/2), run on one unit at a time with a
:class:`~hytnas.costs.Tally` that also files every MAC under an operator class:

- ``conv``: dense and pointwise convolutions; ``dwconv``: grouped (depthwise) convolutions;
- ``linear``: Linear layers (qkv, proj, FFN, classifier); ``attention``: ``QK^T`` and ``AV``.

``traffic`` is the activation elements every op reads and writes (int8: bytes), ``weights`` the
params (int8: bytes). The MCU estimate of a unit is
``sum_class MACs_class / (macs_per_cycle_class * clock) + (traffic + weights) / (bytes_per_cycle
* clock) + elementwise_cycles * out_elems / clock``, summed over the units of an arch, plus a
fixed overhead. It is an *estimate* until the profile's rates are calibrated on the board.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hytnas.costs import BLOCK_COSTS, Tally
from hytnas.hardware.blocks import BlockSpec

if TYPE_CHECKING:
    from hytnas.hardware.profile import AnalyticLatency

OP_CLASSES = ("conv", "dwconv", "linear", "attention")


class _ClassTally(Tally):
    """A :class:`Tally` that also files MACs by operator class and sums op traffic."""

    __slots__ = ("by_class", "traffic", "out_elems")

    def __init__(self) -> None:
        super().__init__(trace=False)
        self.by_class = dict.fromkeys(OP_CLASSES, 0)
        self.traffic = 0
        self.out_elems = 0

    def op(self, kind: str, name: str, in_elems: int, out_elems: int) -> None:
        super().op(kind, name, in_elems, out_elems)
        self.traffic += in_elems + out_elems
        self.out_elems += out_elems

    def conv(self, name, cin, cout, k, stride, hw, groups=1, bn=True):  # type: ignore[no-untyped-def]
        before = self.macs
        out = super().conv(name, cin, cout, k, stride, hw, groups=groups, bn=bn)
        self.by_class["dwconv" if groups > 1 else "conv"] += self.macs - before
        return out

    def linear(self, name, tokens, fin, fout):  # type: ignore[no-untyped-def]
        before = self.macs
        super().linear(name, tokens, fin, fout)
        self.by_class["linear"] += self.macs - before

    def attention(self, name, seqs, n, dim, heads):  # type: ignore[no-untyped-def]
        before = self.macs
        super().attention(name, seqs, n, dim, heads)
        self.by_class["attention"] += self.macs - before


@dataclass(frozen=True)
class UnitCost:
    """Costs of one unit at batch 1 (elements; int8 bytes are the same numbers)."""

    macs: int
    macs_by_class: tuple[tuple[str, int], ...]
    params: int
    peak_elems: int  # the unit's own peak live activation (MCUNet convention)
    traffic: int  # activation elements read + written by its ops
    out_elems: int  # activation elements written by its ops
    in_act: int  # the unit's input tensor
    out_act: int  # the unit's output tensor

    def by_class(self) -> dict[str, int]:
        return dict(self.macs_by_class)


_CACHE: dict[str, UnitCost] = {}


def unit_cost(spec: BlockSpec) -> UnitCost:
    """Analytic costs of one unit (cached by key)."""
    hit = _CACHE.get(spec.key)
    if hit is not None:
        return hit
    t = _ClassTally()
    hw = (spec.res, spec.res)
    if spec.kind == "stem":
        ho, wo = t.conv("stem.conv", spec.in_chs, spec.out_chs, 3, spec.stride, hw)
        out_act = spec.out_chs * ho * wo
    elif spec.kind == "head":  # the same walk as hytnas.costs.analytic.tally's head
        chs = spec.in_chs
        if spec.out_chs > 0:
            hw = t.conv("head.conv.conv", chs, spec.out_chs, 1, 1, hw)
            chs = spec.out_chs
        t.op("pool", "head.pool", chs * hw[0] * hw[1], chs)
        t.linear("head.fc", 1, chs, spec.num_classes)
        out_act = spec.num_classes
    else:
        assert spec.cfg is not None
        ho, wo = BLOCK_COSTS[spec.kind](t, "unit", spec.cfg, spec.in_chs, spec.stride, hw)
        out_act = spec.out_chs * ho * wo
    cost = UnitCost(
        macs=t.macs, macs_by_class=tuple(t.by_class.items()), params=t.params, peak_elems=t.peak,
        traffic=t.traffic, out_elems=t.out_elems, in_act=spec.in_chs * spec.res * spec.res, out_act=out_act,
    )
    _CACHE[spec.key] = cost
    return cost


def unit_latency_estimate_ms(cost: UnitCost, rates: AnalyticLatency) -> float:
    """The MCU estimate of one unit, ms (see the module docstring)."""
    hz = rates.clock_mhz * 1e6
    cycles = sum(macs / rates.macs_per_cycle[c] for c, macs in cost.macs_by_class)
    cycles += (cost.traffic + cost.params) / rates.bytes_per_cycle
    cycles += rates.elementwise_cycles * cost.out_elems
    return 1e3 * cycles / hz
