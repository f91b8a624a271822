"""The lookup trainable: answers a trial from a benchmark table instead of training.

The table is a :class:`hytnas.benchmark.table.BenchmarkTable` (used through its ``space``,
``find``, ``nearest``, ``row``, ``epoch_columns`` and ``path``; the trainables never import the
benchmark orchestration, which imports them). Trial config: the 23 genes (or the latent form) as every trainable takes them. The arch is
found in the table by ``arch_id``; what is reported is that row's metrics, in the same keys as
the training trainable (``val_accuracy``, ``val_loss``, ``epoch``, costs, ``latency_ms``,
``arch_id``, ``test_accuracy`` and ``done: True`` on the last report), plus ``table_row``
(0-based row index) and ``train_time_s`` (what training it took when the table was built).

Options (bound with :func:`make_lookup_trainable`):

- ``per_epoch``: one report per epoch from the ``val_accuracy_e1..eE`` columns (so schedulers
  such as ASHA see learning curves); otherwise one final report.
- ``nearest``: an arch that is not in the table is answered with the nearest table arch in the
  space's encoding (the report's ``arch_id`` and genes are then the table arch's, and
  ``snapped: True``); otherwise such a trial fails with a :class:`~hytnas.errors.SearchError`
  telling to use pool mode (``candidates: TABLE``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ray import tune

from hytnas.errors import SearchError
from hytnas.space import GENES

#: the columns reported as they are (when the table has them)
COST_COLUMNS = ("params_k", "macs_m", "peak_sram_kb", "model_size_kb", "latency_ms")


def lookup_results(table: Any, config: Mapping[str, Any], *, per_epoch: bool = False,
                   nearest: bool = False) -> list[dict[str, Any]]:
    """The reports the lookup trainable makes for ``config``, in order (Ray-free; the last is final)."""
    arch = table.space.from_config(config)
    i = table.find(arch)
    snapped = False
    if i is None:
        if not nearest:
            raise SearchError(
                f"lookup: arch {table.space.arch_id(arch)} is not in table {table.path}; restrict the searcher to the "
                "table (candidates: TABLE, pool mode) or answer with the nearest table arch (nearest: true)"
            )
        i, snapped = table.nearest(arch), True
    row = table.row(i)
    static = {k: float(row[k]) for k in COST_COLUMNS if k in row}
    static.update({"arch_id": row["arch_id"], "table_row": i, "snapped": snapped})
    if snapped:
        static.update({f"arch/{g}": row[g] for g in GENES})
    epochs = table.epoch_columns
    out: list[dict[str, Any]] = []
    if per_epoch and epochs:
        for e, col in enumerate(epochs[:-1], start=1):
            out.append({**static, "val_accuracy": float(row[col]), "epoch": e})
    final = {**static, "val_accuracy": float(row["val_accuracy"]), "epoch": max(len(epochs), 1),
             "test_accuracy": float(row["test_accuracy"]), "done": True}
    for k in ("val_loss", "train_time_s"):
        if k in row:
            final[k] = float(row[k])
    out.append(final)
    return out


def lookup(config: dict[str, Any], table: Any, per_epoch: bool = False, nearest: bool = False) -> None:
    """Ray Tune function trainable (bind ``table`` with :func:`make_lookup_trainable`)."""
    for result in lookup_results(table, config, per_epoch=per_epoch, nearest=nearest):
        tune.report(result)


def make_lookup_trainable(table: Any, *, per_epoch: bool = False, nearest: bool = False) -> Callable:
    """``lookup`` with the table (shipped once through Ray's object store) and options bound."""
    return tune.with_parameters(lookup, table=table, per_epoch=per_epoch, nearest=nearest)
