"""The per-unit latency lookup table (LUT) a device profile run writes (``lut.json``).

Format (a versioned plain JSON dict)::

    {"format": "hytnas.lut", "version": 1, "complete": bool,
     "meta": {device, space, space_id, input_size, num_classes, in_channels, threads, runs,
              warmup, torch, coverage, ...},
     "entries": {unit key: {"median_ms", "min_ms", "iqr_ms", "p25_ms", "p75_ms", "runs"}}}

Unit keys are :attr:`hytnas.hardware.blocks.BlockSpec.key`. ``meta.statistic`` (``median``, the
default, or ``min``) says which timing of each unit the table stands for: the median, or the
fastest run, which is the least disturbed by other processes on a shared machine. The LUT
estimate of an arch is the sum of its units' timings; :func:`hytnas.predictors.make_predictor` (``"lut"``) adds a learned
residual correction on top.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hytnas.errors import HardwareError
from hytnas.hardware.blocks import BlockSpec, arch_blocks
from hytnas.models.config import ArchCfg
from hytnas.utils import atomic_write_json

FORMAT = "hytnas.lut"
VERSION = 1
LUT_FILE = "lut.json"
VALIDATION_FILE = "validation.csv"
STATISTICS = ("median", "min")


@dataclass(frozen=True)
class LatencyTable:
    """Median latency (ms) of every profiled unit, by key, with the run's settings in ``meta``."""

    entries: Mapping[str, Mapping[str, float]]
    meta: Mapping[str, Any] = field(default_factory=dict)
    complete: bool = True
    source: str | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    @property
    def statistic(self) -> str:
        return str(self.meta.get("statistic", "median"))

    def entry_ms(self, entry: Mapping[str, float]) -> float:
        """An entry's timing in the table's statistic (the median when the entry lacks it)."""
        return float(entry.get(f"{self.statistic}_ms", entry["median_ms"]))

    def with_statistic(self, statistic: str) -> LatencyTable:
        """The same timings read with another statistic (``median`` or ``min``)."""
        if statistic not in STATISTICS:
            raise HardwareError(f"latency table: statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}")
        return LatencyTable(self.entries, {**self.meta, "statistic": statistic}, self.complete, self.source)

    def unit_ms(self, spec: BlockSpec) -> float:
        e = self.entries.get(spec.key)
        if e is None:
            where = f" {self.source}" if self.source else ""
            raise HardwareError(
                f"latency table{where}: no entry for unit {spec.key!r}; profile this space on the device with "
                f"`hytnas profile --space SPACE --out DIR` (same input size, classes and channels)"
            )
        return self.entry_ms(e)

    def missing(self, specs: Iterable[BlockSpec]) -> list[str]:
        return sorted({s.key for s in specs if s.key not in self.entries})

    def arch_units_ms(self, arch: ArchCfg, input_size: int, num_classes: int, in_channels: int = 3) -> list[tuple[BlockSpec, float]]:
        return [(s, self.unit_ms(s)) for s in arch_blocks(arch, input_size, num_classes, in_channels)]

    def arch_ms(self, arch: ArchCfg, input_size: int, num_classes: int, in_channels: int = 3) -> float:
        """The LUT estimate: the sum of the units' timings."""
        return sum(ms for _, ms in self.arch_units_ms(arch, input_size, num_classes, in_channels))

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "complete": bool(self.complete), "meta": dict(self.meta),
                "entries": {k: dict(v) for k, v in sorted(self.entries.items())}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str | None = None) -> LatencyTable:
        where = f"latency table {source}" if source else "latency table"
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise HardwareError(f"{where}: not a hytnas latency table (format {FORMAT!r} expected)")
        if d.get("version") != VERSION:
            raise HardwareError(f"{where}: unsupported version {d.get('version')!r} (this build reads {VERSION})")
        entries = d.get("entries")
        if not isinstance(entries, Mapping):
            raise HardwareError(f"{where}: field entries must be a mapping of unit key -> timings")
        for k, e in entries.items():
            if not isinstance(e, Mapping) or not isinstance(e.get("median_ms"), (int, float)) or e["median_ms"] < 0:
                raise HardwareError(f"{where}: entry {k!r} needs a median_ms >= 0")
        meta = dict(d.get("meta", {}))
        if meta.get("statistic", "median") not in STATISTICS:
            raise HardwareError(f"{where}: meta.statistic must be one of {', '.join(STATISTICS)}")
        return cls(entries=dict(entries), meta=meta, complete=bool(d.get("complete", True)), source=source)

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """From ``lut.json`` or the folder holding it."""
        path = Path(path)
        if path.is_dir():
            path = path / LUT_FILE
        if not path.is_file():
            raise HardwareError(
                f"latency table {path}: file not found; make it on the device with "
                f"`hytnas profile --device NAME --space SPACE --out DIR`"
            )
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise HardwareError(f"latency table {path}: not readable JSON ({exc})") from None
        return cls.from_dict(d, source=str(path))
