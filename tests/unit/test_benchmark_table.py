"""Benchmark tables: loading, bad input (one line naming row and column), lookup answers."""
from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest
import torch

from hytnas.benchmark.table import BenchmarkTable, header_comment, read_header, space_of_table
from hytnas.errors import DataError, SearchError
from hytnas.space import GENES, get_space
from hytnas.table import write_arch_table
from trainables.lookup import lookup_results

SPACE = get_space("hytnas", input_size=32)
EPOCHS = 3


def make_table(path: Path, n: int = 12, seed: int = 0, epochs: int = EPOCHS) -> tuple[list, list[dict]]:
    """A synthetic benchmark table in the real format (archs of the space, random metrics)."""
    archs = SPACE.sample(n, seed=seed, method="sobol")
    g = torch.Generator().manual_seed(seed)
    rows = []
    for a in archs:
        curve = sorted((0.5 + 0.4 * torch.rand(epochs, generator=g, dtype=torch.float64)).tolist())
        rows.append({"arch_id": SPACE.arch_id(a), "seed": 0, "val_accuracy": curve[-1], "val_loss": 1.0 - curve[-1],
                     "test_accuracy": curve[-1] - 0.01,
                     **{f"val_accuracy_e{e + 1}": v for e, v in enumerate(curve)},
                     "params_k": float(torch.randint(20, 3000, (1,), generator=g)), "macs_m": 5.0,
                     "peak_sram_kb": 40.0, "model_size_kb": 100.0,
                     "latency_ms": float(1 + 10 * torch.rand(1, generator=g)), "train_time_s": 12.0})
    head = header_comment({"space": "hytnas", "input_size": 32, "num_classes": 10, "in_channels": 1})
    write_arch_table(path, SPACE, archs, rows, comment=head)
    return archs, rows


def rewrite(src: Path, dst: Path, edit) -> Path:
    """Apply ``edit(lines) -> lines`` to the CSV text of ``src`` (gzip or not), write ``dst``."""
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rt") as fh:
        lines = fh.read().splitlines()
    dst.write_text("\n".join(edit(lines)) + "\n")
    return dst


def data_start(lines: list[str]) -> int:
    return next(i for i, line in enumerate(lines) if not line.startswith("#"))


@pytest.fixture()
def table_file(tmp_path: Path) -> Path:
    path = tmp_path / "bench.csv.gz"
    make_table(path)
    return path


def test_load_reads_header_space_and_epochs(table_file):
    t = BenchmarkTable.load(table_file)
    assert len(t) == 12
    assert t.space.input_size == 32 and t.space.name == "hytnas"
    assert t.epoch_columns == ["val_accuracy_e1", "val_accuracy_e2", "val_accuracy_e3"]
    assert read_header(table_file)["format"] == "hytnas-benchmark-table"
    assert space_of_table(table_file).space_id == SPACE.space_id
    for i, a in enumerate(t.archs):
        assert t.find(a) == i
        assert t.nearest(a) == i


def test_missing_gene_column_names_it(table_file, tmp_path):
    def drop_c3(lines):
        k = data_start(lines)
        cols = lines[k].split(",")
        j = cols.index("c3")
        return lines[:k] + [",".join(x for i, x in enumerate(line.split(",")) if i != j) for line in lines[k:]]

    bad = rewrite(table_file, tmp_path / "bad.csv", drop_c3)
    with pytest.raises(DataError, match=r"missing gene column 'c3'") as e:
        BenchmarkTable.load(bad, SPACE)
    assert "\n" not in str(e.value)


def test_arch_outside_space_names_row_and_column(table_file, tmp_path):
    def bad_patch(lines):
        k = data_start(lines)
        j = lines[k].split(",").index("p4")
        row = lines[k + 3].split(",")
        row[j] = "16"
        return lines[: k + 3] + [",".join(row)] + lines[k + 4:]

    bad = rewrite(table_file, tmp_path / "bad.csv", bad_patch)
    with pytest.raises(DataError, match=r"row 4, column p4: 16 is outside the space"):
        BenchmarkTable.load(bad, SPACE)


@pytest.mark.parametrize("column", ["val_accuracy", "latency_ms", "val_accuracy_e2", "test_accuracy"])
def test_nan_metric_names_row_and_column(table_file, tmp_path, column):
    def nan_cell(lines):
        k = data_start(lines)
        j = lines[k].split(",").index(column)
        row = lines[k + 5].split(",")
        row[j] = "nan"
        return lines[: k + 5] + [",".join(row)] + lines[k + 6:]

    bad = rewrite(table_file, tmp_path / "bad.csv", nan_cell)
    with pytest.raises(DataError, match=rf"row 6, column {column}: value is NaN"):
        BenchmarkTable.load(bad, SPACE)


def test_duplicate_arch_is_refused(table_file, tmp_path):
    def dup(lines):
        k = data_start(lines)
        return lines + [lines[k + 2]]

    bad = rewrite(table_file, tmp_path / "bad.csv", dup)
    with pytest.raises(DataError, match=r"row 14, column arch_id: the arch of row 3 again"):
        BenchmarkTable.load(bad, SPACE)


def test_header_without_space_needs_an_explicit_space(tmp_path):
    archs = SPACE.sample(2, seed=0)
    rows = [{m: 0.5 for m in ("val_accuracy", "test_accuracy", "params_k", "macs_m", "peak_sram_kb",
                               "model_size_kb", "latency_ms")}] * 2
    path = tmp_path / "plain.csv"
    write_arch_table(path, SPACE, archs, rows)
    with pytest.raises(DataError, match="no 'space' line"):
        BenchmarkTable.load(path)
    assert len(BenchmarkTable.load(path, SPACE)) == 2


@pytest.mark.parametrize("per_epoch", [False, True])
def test_lookup_reports_the_row(table_file, per_epoch):
    t = BenchmarkTable.load(table_file)
    archs, rows = t.archs, [t.row(i) for i in range(len(t))]
    i = 5
    reports = lookup_results(t, SPACE.to_config(archs[i]), per_epoch=per_epoch)
    assert len(reports) == (EPOCHS if per_epoch else 1)
    final = reports[-1]
    assert final["done"] is True and final["arch_id"] == SPACE.arch_id(archs[i]) and final["table_row"] == i
    for k in ("val_accuracy", "test_accuracy", "latency_ms", "params_k", "val_loss"):
        assert final[k] == pytest.approx(rows[i][k])
    assert final["epoch"] == EPOCHS
    if per_epoch:
        assert [r["epoch"] for r in reports] == [1, 2, 3]
        assert [r["val_accuracy"] for r in reports[:-1]] == pytest.approx(
            [rows[i]["val_accuracy_e1"], rows[i]["val_accuracy_e2"]])
        assert not any(r.get("done") for r in reports[:-1])


def test_lookup_latent_config_and_missing_arch(table_file):
    t = BenchmarkTable.load(table_file)
    a = t.archs[2]
    assert lookup_results(t, SPACE.latent(a))[-1]["table_row"] == 2
    other = next(x for x in SPACE.sample(50, seed=99) if t.find(x) is None)
    with pytest.raises(SearchError, match=r"not in table .*\(candidates: TABLE"):
        lookup_results(t, SPACE.to_config(other))
    snapped = lookup_results(t, SPACE.to_config(other), nearest=True)[-1]
    assert snapped["snapped"] is True
    j = snapped["table_row"]
    d = torch.cdist(SPACE.encode([other]), SPACE.encode(t.archs)).squeeze(0)
    assert d[j] == d.min()
    assert {g: snapped[f"arch/{g}"] for g in GENES} == t.archs[j].to_dict()
    assert not math.isnan(snapped["val_accuracy"])
