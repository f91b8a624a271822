"""Benchmark tables: arch tables (:mod:`hytnas.table` format) with trained metrics, indexed by arch.

A benchmark table is an arch-table CSV (23 gene columns + metric columns) whose ``# `` comment
header holds ``key: value`` provenance lines (``format``, ``version``, ``space``, ``input_size``,
``dataset``, ``schedule``, ``config``, ``date``...). Metric columns:

- ``val_accuracy``, ``val_loss``, ``test_accuracy``: final values (fractions / nats);
- ``val_accuracy_e1`` .. ``val_accuracy_eE``: validation accuracy after every epoch;
- ``params_k``, ``macs_m``, ``peak_sram_kb``, ``model_size_kb``: exact costs;
- ``latency_ms``: measured host latency (median, batch 1, one thread);
- ``train_time_s`` (trial wall time), ``seed`` (training seed), ``arch_id``, ``source``.

Every read goes through :func:`hytnas.table.read_arch_table`, so a bad file fails with one line
naming the row and column.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from hytnas.errors import DataError, SpaceError
from hytnas.objectives import Objective
from hytnas.space import Arch, Space, get_space
from hytnas.table import read_arch_table

FORMAT = "hytnas-benchmark-table"
VERSION = 1
#: columns every benchmark table has (the lookup trainable reports them)
REQUIRED_METRICS = ("val_accuracy", "test_accuracy", "params_k", "macs_m", "peak_sram_kb", "model_size_kb",
                    "latency_ms")
EPOCH_COLUMN = re.compile(r"^val_accuracy_e(\d+)$")


def read_header(path: str | Path) -> dict[str, str]:
    """The ``# key: value`` comment lines at the top of a (possibly gzipped) table."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"table {path}: file not found")
    opener = _open_gz if path.suffix == ".gz" else open
    out: dict[str, str] = {}
    try:
        with opener(path, "rt") as fh:
            for line in fh:
                if not line.startswith("#"):
                    break
                key, sep, value = line[1:].strip().partition(":")
                if sep:
                    out[key.strip()] = value.strip()
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(f"table {path}: cannot be read ({exc})") from None
    return out


def _open_gz(path: Path, mode: str):
    import gzip

    return gzip.open(path, mode)


def header_comment(fields: Mapping[str, Any]) -> str:
    """Comment lines ``key: value`` (dicts as compact JSON) for :func:`hytnas.table.write_arch_table`."""
    lines = [f"format: {FORMAT}", f"version: {VERSION}"]
    for k, v in fields.items():
        v = json.dumps(v, sort_keys=True, separators=(",", ":")) if isinstance(v, (dict, list, tuple)) else v
        lines.append(f"{k}: {v}")
    return "\n".join(lines)


def space_of_table(path: str | Path) -> Space:
    """The space named in a benchmark table's header (``space`` and ``input_size``)."""
    head = read_header(path)
    if "space" not in head:
        raise DataError(f"table {path}: no 'space' line in its '# ' header; pass the space explicitly")
    try:
        return get_space(head["space"], input_size=int(head["input_size"]) if "input_size" in head else None)
    except (SpaceError, ValueError) as exc:
        raise DataError(f"table {path}: header space {head['space']!r}: {exc}") from None


@dataclass
class BenchmarkTable:
    """A benchmark table loaded and indexed by ``arch_id``; build with :meth:`load`."""

    space: Space
    path: Path
    archs: list[Arch]
    frame: pd.DataFrame
    header: dict[str, str] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, space: Space | str | None = None,
             metrics: Sequence[str] = REQUIRED_METRICS) -> BenchmarkTable:
        """Read and check ``path``: the genes must be points of ``space`` (default: the header's),
        ``metrics`` and the per-epoch columns must be finite numbers, arch ids unique."""
        path = Path(path)
        space = space_of_table(path) if space is None else get_space(space)
        head = read_header(path)
        cols = _columns(path)
        epoch_cols = sorted((c for c in cols if EPOCH_COLUMN.match(c)), key=lambda c: int(EPOCH_COLUMN.match(c)[1]))
        extra = [c for c in ("val_loss", "train_time_s", "seed") if c in cols]
        archs, frame = read_arch_table(path, space, metrics=list(metrics) + epoch_cols + extra)
        if not archs:
            raise DataError(f"table {path}: has no rows")
        ids = [space.arch_id(a) for a in archs]
        index: dict[str, int] = {}
        for i, aid in enumerate(ids):
            if aid in index:
                raise DataError(
                    f"table {path}: row {i + 2}, column arch_id: the arch of row {index[aid] + 2} again "
                    "(one row per arch; put seed replicates in a separate file)"
                )
            index[aid] = i
        frame["arch_id"] = ids
        return cls(space, path, archs, frame, head, index)

    def __len__(self) -> int:
        return len(self.archs)

    @property
    def epoch_columns(self) -> list[str]:
        cols = [c for c in self.frame.columns if EPOCH_COLUMN.match(c)]
        return sorted(cols, key=lambda c: int(EPOCH_COLUMN.match(c)[1]))

    def find(self, arch: Arch | Mapping[str, Any]) -> int | None:
        """Row index of ``arch`` (by arch id), or None."""
        return self.index.get(self.space.arch_id(arch))

    def nearest(self, arch: Arch | Mapping[str, Any]) -> int:
        """Row index of the table arch closest to ``arch`` in the space's [0, 1]^23 encoding
        (Euclidean; ties: the first row)."""
        X = self._encoded()
        x = self.space.encode([arch])
        return int(torch.cdist(x, X).argmin())

    def _encoded(self) -> torch.Tensor:
        if not hasattr(self, "_X"):
            self._X = self.space.encode(self.archs)
        return self._X

    def row(self, i: int) -> dict[str, Any]:
        return self.frame.iloc[i].to_dict()

    def Y(self, objectives: Sequence[Objective]) -> torch.Tensor:
        """``(n, m)`` float64 metric matrix of the objectives, in their own units."""
        missing = [o.name for o in objectives if o.name not in self.frame.columns]
        if missing:
            raise DataError(f"table {self.path}: has no column {missing[0]!r} for the objective")
        return torch.tensor(self.frame[[o.name for o in objectives]].to_numpy(dtype=float), dtype=torch.float64)


def _columns(path: Path) -> list[str]:
    try:
        head = pd.read_csv(path, comment="#", nrows=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"table {path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    return [c.strip() for c in head.columns]
