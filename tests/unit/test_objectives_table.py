"""Objectives (one sign flip), constraints, and the arch-table CSV exchange format."""
from __future__ import annotations

import gzip

import pandas as pd
import pytest
import torch

from hytnas.errors import ConfigError, DataError
from hytnas.objectives import (
    METRICS,
    from_maximize,
    get_objective,
    get_objectives,
    parse_constraint,
    parse_constraints,
    to_maximize,
)
from hytnas.space import GENES, get_space
from hytnas.table import read_arch_table, write_arch_table


@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_metric_has_sense_source_and_unit(name):
    o = get_objective(name)
    assert o.sense in ("max", "min") and o.source in ("reported", "known") and o.unit


def test_objective_specs():
    assert get_objective("latency_ms").sense == "min"
    assert get_objective("val_accuracy").sign == 1.0
    o = get_objective({"name": "latency_ms", "source": "known"})
    assert o.source == "known" and o.unit == "ms"
    assert get_objective("energy_mj:min").sense == "min"
    with pytest.raises(ConfigError, match="energy_mj: unknown metric"):
        get_objective("energy_mj")
    with pytest.raises(ConfigError, match="sense must be"):
        get_objective({"name": "x", "sense": "up"})
    with pytest.raises(ConfigError, match="cannot be a known objective"):
        get_objective({"name": "val_accuracy", "source": "known"})
    with pytest.raises(ConfigError, match="listed twice"):
        get_objectives(["params_k", "params_k"])
    with pytest.raises(ConfigError, match="at least one"):
        get_objectives([])


def test_sign_flip_is_an_involution():
    objs = get_objectives(["val_accuracy", "latency_ms", "params_k"])
    Y = torch.tensor([[0.9, 12.0, 300.0], [0.8, 3.0, 100.0]])
    M = to_maximize(Y, objs)
    assert torch.equal(M, torch.tensor([[0.9, -12.0, -300.0], [0.8, -3.0, -100.0]]))
    assert torch.equal(from_maximize(M, objs), Y)


def test_constraints():
    c = parse_constraint("peak_sram_kb <= 256")
    assert (c.name, c.op, c.value) == ("peak_sram_kb", "<=", 256.0)
    assert c.ok(256) and not c.ok(256.5)
    assert float(c.slack(torch.tensor(300.0))) == 44.0
    g = parse_constraint({"name": "val_accuracy", "op": ">=", "value": 0.8})
    assert g.ok(0.9) and float(g.slack(torch.tensor(0.9))) < 0
    assert len(parse_constraints(["params_k < 250", "macs_m<=5"])) == 2
    for bad in ("peak_sram_kb = 3", "<= 4", "params_k <= lots"):
        with pytest.raises(ConfigError, match="constraints"):
            parse_constraint(bad)


@pytest.fixture
def space():
    return get_space("hytnas")


def test_table_roundtrip(tmp_path, space):
    archs = space.sample(5, seed=0)
    rows = [{"val_accuracy": 0.5 + i / 10, "latency_ms": 1.0 + i, "arch_id": space.arch_id(a)} for i, a in enumerate(archs)]
    for name in ("t.csv", "t.csv.gz"):
        df = write_arch_table(tmp_path / name, space, archs, rows, comment="provenance line")
        assert list(df.columns[:23]) == list(GENES)
        back, frame = read_arch_table(tmp_path / name, space, metrics=["val_accuracy", "latency_ms"])
        assert back == archs
        assert frame["val_accuracy"].tolist() == pytest.approx([r["val_accuracy"] for r in rows])
        assert frame["arch_id"].tolist() == [r["arch_id"] for r in rows]
    with gzip.open(tmp_path / "t.csv.gz", "rt") as fh:
        assert fh.readline().startswith("# provenance line")


def _write(tmp_path, space, mutate):
    archs = space.sample(3, seed=0)
    write_arch_table(tmp_path / "ok.csv", space, archs, [{"val_accuracy": 0.9}] * 3)
    df = pd.read_csv(tmp_path / "ok.csv", dtype=str)
    mutate(df)
    df.to_csv(tmp_path / "bad.csv", index=False)
    return tmp_path / "bad.csv"


@pytest.mark.parametrize(
    "mutate,fragment",
    [
        (lambda df: df.pop("h4"), "missing gene column 'h4'"),
        (lambda df: df.__setitem__("c3", ["97"] * 3), "row 2, column c3"),
        (lambda df: df.loc.__setitem__((2, "p4"), "x"), "row 4, column p4: 'x' is not a number"),
        (lambda df: df.loc.__setitem__((1, "val_accuracy"), "nan"), "row 3, column val_accuracy: value is NaN"),
        (lambda df: df.pop("val_accuracy"), "missing metric column 'val_accuracy'"),
    ],
)
def test_table_errors_name_row_and_column(tmp_path, space, mutate, fragment):
    path = _write(tmp_path, space, mutate)
    with pytest.raises(DataError) as exc:
        read_arch_table(path, space, metrics=["val_accuracy"])
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_table_missing_file(tmp_path, space):
    with pytest.raises(DataError, match="file not found"):
        read_arch_table(tmp_path / "nope.csv", space)
