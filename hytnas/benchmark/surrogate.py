"""A surrogate benchmark: answers for ANY arch of the space from predictors fitted on a table.

- reported metrics (``val_accuracy``, ``latency_ms``, ``test_accuracy``, ...): one predictor per
  metric (:func:`hytnas.predictors.make_predictor`, default ``rank_ensemble``) fitted on the
  table's archs -> column; the surrogate answers with the predictive mean;
- cost metrics (``params_k``, ``macs_m``, ``peak_sram_kb``, ``model_size_kb``): exact, from
  :func:`hytnas.costs.arch_costs` at the table's input size, classes and input channels (from the
  table header), never modelled.

Ray-free; ``trainables/surrogate.py`` is the thin Tune trainable around :meth:`Surrogate.answer`.
State is a plain dict (:meth:`to_dict` / :meth:`from_dict`, the predictors in their own plain
format); nothing is pickled.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hytnas.benchmark.table import BenchmarkTable
from hytnas.errors import DataError
from hytnas.predictors import Predictor, make_predictor
from hytnas.space import Arch, Space, get_space

FORMAT = "hytnas-benchmark-surrogate"
VERSION = 1
COST_KEYS = ("params_k", "macs_m", "peak_sram_kb", "model_size_kb")
MODELLED = ("val_accuracy", "test_accuracy", "latency_ms")


@dataclass
class Surrogate:
    """Fitted predictors per modelled metric + the exact cost model's setting."""

    space: Space
    predictors: dict[str, Predictor]  # metric -> fitted predictor
    num_classes: int
    in_channels: int
    epochs: int = 1
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, table: BenchmarkTable, metrics: Sequence[str] = MODELLED, seed: int = 0,
            predictor: str = "rank_ensemble", predictor_options: Mapping[str, Any] | None = None) -> Surrogate:
        """Fit one ``predictor`` per metric on the whole table."""
        head = table.header
        num_classes, in_channels = int(head.get("num_classes", 10)), int(head.get("in_channels", 1))
        preds = {}
        for m in metrics:
            if m not in table.frame.columns:
                raise DataError(f"table {table.path}: no column {m!r} to fit the surrogate on")
            p = make_predictor(predictor, table.space, num_classes=num_classes, in_channels=in_channels, seed=seed,
                               **dict(predictor_options or {}))
            preds[m] = p.fit(table.archs, table.frame[m].to_numpy(dtype=float))
        return cls(table.space, preds, num_classes, in_channels, max(len(table.epoch_columns), 1),
                   {"table": str(table.path), "rows": len(table), "seed": seed, "predictor": predictor})

    def answer(self, arch: Arch | Mapping[str, Any]) -> dict[str, Any]:
        """The final report for ``arch``: predicted metrics + exact costs."""
        from hytnas.costs import arch_costs

        a = self.space.validate(arch)
        out: dict[str, Any] = {m: float(p([a])[0]) for m, p in self.predictors.items()}
        costs = arch_costs(self.space.to_arch_cfg(a), self.space.input_size, self.num_classes, self.in_channels)
        out.update({k: float(costs[k]) for k in COST_KEYS})
        out.update({"arch_id": self.space.arch_id(a), "epoch": self.epochs, "done": True})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "space": self.space.to_dict(),
                "num_classes": self.num_classes, "in_channels": self.in_channels, "epochs": self.epochs,
                "info": self.info, "predictors": {m: p.to_dict() for m, p in self.predictors.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Surrogate:
        if d.get("format") != FORMAT or d.get("version") != VERSION:
            raise DataError(f"surrogate: not a {FORMAT} v{VERSION} dict (format {d.get('format')!r}, "
                            f"version {d.get('version')!r}); refit it from its table")
        return cls(get_space(d["space"]), {m: Predictor.from_dict(p) for m, p in d["predictors"].items()},
                   int(d["num_classes"]), int(d["in_channels"]), int(d["epochs"]), dict(d.get("info", {})))
