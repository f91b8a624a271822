"""The surrogate benchmark: predictors fitted on a table answer for any arch; costs are exact."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy.stats import spearmanr
from test_benchmark_table import SPACE, make_table  # same folder (pytest prepends it to sys.path)

from hytnas.benchmark.surrogate import COST_KEYS, Surrogate
from hytnas.benchmark.table import BenchmarkTable
from hytnas.costs import arch_costs
from hytnas.errors import DataError

FAST = {"n_members": 2, "epochs": 60, "hidden": [16]}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[BenchmarkTable, Surrogate]:
    path = Path(tmp_path_factory.mktemp("sur")) / "t.csv.gz"
    make_table(path, n=24, seed=3)
    table = BenchmarkTable.load(path)
    return table, Surrogate.fit(table, seed=0, predictor_options=FAST)


def test_answers_any_arch_with_exact_costs(fitted):
    table, model = fitted
    outside = next(a for a in SPACE.sample(40, seed=11) if table.find(a) is None)
    r = model.answer(outside)
    assert r["done"] is True and r["arch_id"] == SPACE.arch_id(outside) and r["epoch"] == 3
    exact = arch_costs(SPACE.to_arch_cfg(outside), 32, 10, 1)  # the header's classes and channels
    for k in COST_KEYS:
        assert r[k] == pytest.approx(exact[k])
    assert 0.0 < r["val_accuracy"] < 1.5 and r["latency_ms"] > 0


def test_fits_the_table(fitted):
    table, model = fitted
    pred = [model.answer(a)["val_accuracy"] for a in table.archs]
    rho = spearmanr(pred, table.frame["val_accuracy"]).statistic
    assert rho > 0.5  # training-set rank agreement: the predictor learned the table


def test_plain_dict_round_trip(fitted):
    table, model = fitted
    again = Surrogate.from_dict(json.loads(json.dumps(model.to_dict())))
    for a in table.archs[:3]:
        assert again.answer(a) == model.answer(a)
    with pytest.raises(DataError, match="refit it from its table"):
        Surrogate.from_dict({**model.to_dict(), "version": 99})


def test_missing_metric_column(fitted):
    table, _ = fitted
    with pytest.raises(DataError, match="no column 'energy_mj'"):
        Surrogate.fit(table, metrics=("energy_mj",), predictor_options=FAST)
