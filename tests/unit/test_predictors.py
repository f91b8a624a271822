"""Predictors: the rank ensemble maths, every registered predictor on a known relation, plain-file
round trips, and `hytnas predictor eval|fit` (including the CSV checks of hytnas.table)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

from hytnas.cli import main
from hytnas.costs import arch_costs
from hytnas.devices import latency_fn
from hytnas.errors import DataError
from hytnas.hardware import LatencyTable, profile_from_dict
from hytnas.hardware.analytic import unit_cost
from hytnas.hardware.blocks import archs_block_specs
from hytnas.predictors import (
    PREDICTORS,
    RankEnsemble,
    fit_rank_ensemble,
    load_predictor,
    make_predictor,
    prediction_metrics,
)
from hytnas.space import GENES, get_space
from hytnas.table import write_arch_table

SPACE = "hytnas-tiny"
N_TRAIN, N_TEST = 60, 60


# ------------------------------------------------------------------------------ rank ensemble maths
def _synthetic(n: int, d: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, dtype=torch.float64)
    y = 2.0 + 3 * X[:, 0] + torch.sin(3 * X[:, 1]) + X[:, 2] * X[:, 3] + 0.02 * torch.randn(n, generator=g, dtype=torch.float64)
    return X, y


def test_rank_ensemble_learns_order_and_scale():
    X, y = _synthetic(200)
    model = fit_rank_ensemble(X[:120], y[:120], seed=0)
    mean, std = model.predict(X[120:])
    assert mean.shape == std.shape == (80,) and mean.dtype == torch.float64
    assert stats.kendalltau(mean, y[120:]).statistic > 0.8
    assert ((mean - y[120:]).abs() / y[120:]).mean() < 0.1  # the mean is in y's units
    assert bool((std > 0).all())


def test_rank_ensemble_deterministic_and_round_trips():
    X, y = _synthetic(80)
    a = fit_rank_ensemble(X, y, n_members=3, epochs=60, seed=7)
    b = fit_rank_ensemble(X, y, n_members=3, epochs=60, seed=7)
    c = fit_rank_ensemble(X, y, n_members=3, epochs=60, seed=8)
    assert torch.equal(a.predict(X)[0], b.predict(X)[0])
    assert not torch.equal(a.predict(X)[0], c.predict(X)[0])
    d = json.loads(json.dumps(a.to_dict()))  # plain JSON
    again = RankEnsemble.from_dict(d)
    assert torch.equal(again.predict(X)[0], a.predict(X)[0]) and torch.equal(again.predict(X)[1], a.predict(X)[1])
    assert again.n_members == 3 and d["layers"][0]["weight"] and isinstance(d["layers"][0]["weight"][0][0], list)


def test_rank_ensemble_bad_input():
    X, y = _synthetic(10)
    with pytest.raises(DataError, match="10 rows but y has 9"):
        fit_rank_ensemble(X, y[:9])
    y[3] = float("nan")
    with pytest.raises(DataError, match="finite"):
        fit_rank_ensemble(X, y)
    with pytest.raises(DataError, match="format"):
        RankEnsemble.from_dict({"format": "pickle"})


# ------------------------------------------------------------------------------ registry
@pytest.fixture(scope="module")
def space():
    return get_space(SPACE)


@pytest.fixture(scope="module")
def archs(space):
    return space.sample(N_TRAIN + N_TEST, seed=11)


def _unit_ms(spec) -> float:
    """A synthetic device: unit latency from its analytic costs."""
    c = unit_cost(spec)
    return 0.02 + 3e-6 * c.macs + 1e-6 * c.traffic


@pytest.fixture(scope="module")
def table(space, archs):
    units = archs_block_specs(space, archs)
    entries = {k: {"median_ms": _unit_ms(s), "iqr_ms": 0.0} for k, s in units.items()}
    return LatencyTable(entries=entries, meta={"input_size": 96, "num_classes": 10, "in_channels": 3})


def _target(name, space, archs, table):
    """A known relation per model: the LUT predictor sees a scaled, offset LUT sum; the learned
    models a function of the arch's costs."""
    rng = np.random.default_rng(0)
    if name in ("lut", "lut_gp"):
        lut = np.array([table.arch_ms(space.to_arch_cfg(a), 96, 10) for a in archs])
        y = 0.4 + 1.15 * lut * (1 + 0.01 * rng.standard_normal(len(archs)))
        if name == "lut_gp":  # and a factor of the whole arch that no per-group scaling explains
            y = y * _whole_arch_factor(space, archs)
        return y
    c = [arch_costs(space.to_arch_cfg(a), 96, 10) for a in archs]
    return np.array([0.3 + 0.04 * x["macs_m"] + 0.002 * x["params_k"] for x in c]) * (1 + 0.01 * rng.standard_normal(len(archs)))


def _whole_arch_factor(space, archs):
    """1 + 0.3 x (the arch's MobileViT channels over the largest such total): the kind of
    dependence between units that a sum of per-unit timings misses."""
    w = np.array([sum(b.c for b in space.to_arch_cfg(a).blocks if b.type == "mobilevit") for a in archs], dtype=float)
    return 1 + 0.3 * w / w.max()


def _make(name, space, table):
    if PREDICTORS[name].needs_table:
        return make_predictor(name, space, table=table)
    return make_predictor(name, space, seed=0)


@pytest.fixture(scope="module", params=sorted(PREDICTORS))
def fitted(request, space, archs, table):
    name = request.param
    y = _target(name, space, archs, table)
    pred = _make(name, space, table).fit(archs[:N_TRAIN], y[:N_TRAIN])
    return name, pred, y


def test_registry_names():
    assert {"lut", "lut_gp", "gp", "rank_ensemble"} <= set(PREDICTORS)


def test_predictor_fits_known_relation(fitted, archs):
    name, pred, y = fitted
    mean, std = pred.predict(archs[N_TRAIN:])
    assert mean.shape == std.shape == (N_TEST,) and mean.dtype == torch.float64 and bool((std >= 0).all())
    m = prediction_metrics(y[N_TRAIN:], mean)
    assert m["kendall_tau"] > 0.8, (name, m)
    assert m["within_10"] > 0.8, (name, m)
    assert torch.equal(pred(archs[N_TRAIN:]), mean)  # callable: the known-objective form


def test_predictor_save_load_identical(fitted, archs, tmp_path):
    name, pred, _ = fitted
    path = pred.save(tmp_path / f"{name}.json")
    json.loads(path.read_text())  # a plain JSON file
    again = load_predictor(path)
    assert type(again) is type(pred)
    m1, s1 = pred.predict(archs[N_TRAIN:])
    m2, s2 = again.predict(archs[N_TRAIN:])
    assert torch.equal(m1, m2) and torch.equal(s1, s2)


def test_lut_predictor_recovers_the_correction(space, archs, table):
    y = _target("lut", space, archs, table)
    pred = make_predictor("lut", space, table=table).fit(archs[:N_TRAIN], y[:N_TRAIN])
    plain = make_predictor("lut", space, table=table)  # unfitted: the plain sum
    assert torch.allclose(plain(archs[:5]), plain.lut_sum(archs[:5]))
    err_fit = prediction_metrics(y[N_TRAIN:], pred(archs[N_TRAIN:]))["mape"]
    err_sum = prediction_metrics(y[N_TRAIN:], plain(archs[N_TRAIN:]))["mape"]
    assert err_fit < 0.03 < err_sum


def test_lut_gp_learns_what_the_group_correction_misses(space, archs, table):
    y = _target("lut_gp", space, archs, table)
    tr, te = archs[:N_TRAIN], archs[N_TRAIN:]
    lin = make_predictor("lut", space, table=table).fit(tr, y[:N_TRAIN])
    both = make_predictor("lut_gp", space, table=table).fit(tr, y[:N_TRAIN])
    m_lin, m_both = prediction_metrics(y[N_TRAIN:], lin(te)), prediction_metrics(y[N_TRAIN:], both(te))
    assert m_both["mape"] < 0.6 * m_lin["mape"], (m_both, m_lin)
    assert both.gp is not None and both.gp.log_target  # the GP fits log(y / lut)
    with pytest.raises(DataError, match="need at least 2 archs to fit"):
        make_predictor("lut_gp", space, table=table).fit(tr[:1], y[:1])


def test_lut_fallback_for_missing_units(space, archs, table):
    keys = sorted(k for k in table.entries if k.startswith("mobilevit"))[::5]
    holed = LatencyTable(entries={k: v for k, v in table.entries.items() if k not in keys}, meta=table.meta)
    pred = make_predictor("lut", space, table=holed)
    full = make_predictor("lut", space, table=table)
    est, truth = pred(archs), full(archs)
    assert pred.n_fallback > 0
    assert stats.kendalltau(est, truth).statistic > 0.9
    strict = make_predictor("lut", space, table=holed, fallback=False)
    with pytest.raises(Exception, match="no entry for unit 'mobilevit"):
        strict(archs)


def test_lut_table_settings_must_match(space, table):
    with pytest.raises(Exception, match="input_size=96.*input_size=64"):
        make_predictor("lut", space, table=table, input_size=64)


@pytest.mark.parametrize("name", sorted(PREDICTORS))
def test_predictor_misuse(name, space, archs, table):
    p = _make(name, space, table)
    if name != "lut":
        with pytest.raises(DataError, match="not fitted"):
            p.predict(archs[:2])
    with pytest.raises(DataError, match="unknown option 'nope'"):
        make_predictor(name, space, nope=1)
    with pytest.raises(DataError, match="3 archs but 2 targets"):
        p.fit(archs[:3], [1.0, 2.0])
    with pytest.raises(DataError, match="unknown model"):
        make_predictor("oracle", space)


# ------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def csv_path(tmp_path_factory, space, archs, table):
    y = _target("gp", space, archs, table)
    path = tmp_path_factory.mktemp("data") / "lat.csv"
    write_arch_table(path, space, archs, [{"latency_ms": v, "note": "x"} for v in y])
    return path


def test_cli_eval_json(csv_path, capsys):
    assert main(["predictor", "eval", "--data", str(csv_path), "--target", "latency_ms", "--space", SPACE,
                 "--model", "gp,rank_ensemble", "--train-size", "60", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in res] == ["gp", "rank_ensemble"]
    for r in res:
        assert {"rmse", "mape", "within_5", "within_10", "kendall_tau", "spearman_rho"} <= set(r)
        assert r["n_train"] == 60 and r["n"] == 60 and r["kendall_tau"] > 0.8


def test_cli_eval_table_cv(csv_path, capsys):
    assert main(["predictor", "eval", "--data", str(csv_path), "--target", "latency_ms", "--space", SPACE,
                 "--model", "gp", "--cv", "3"]) == 0
    out = capsys.readouterr().out
    assert "3-fold cross-validation" in out and "kendall" not in out and "tau" in out
    row = next(line for line in out.splitlines() if line.startswith("gp "))
    assert row.split()[2] == "120"  # every row held out once


def test_cli_fit_gives_a_learned_profile(csv_path, tmp_path, space, archs, capsys):
    out = tmp_path / "pred.json"
    assert main(["predictor", "fit", "--data", str(csv_path), "--target", "latency_ms", "--space", SPACE,
                 "--model", "rank_ensemble", "--out", str(out)]) == 0
    pred = load_predictor(out)
    prof = profile_from_dict({"name": "board", "kind": "cpu", "latency": {"method": "learned", "path": str(out)}})
    fn = latency_fn(prof, space)
    assert torch.equal(fn(archs[:7]), pred(archs[:7]))
    with pytest.raises(Exception, match="fitted on space 'hytnas-tiny'"):
        latency_fn(prof, get_space("hytnas"))


def _corrupt(path, tmp_path, how):
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    if how == "missing_gene":
        i = header.index("e3")
        header.pop(i)
        for r in rows:
            r.pop(i)
    elif how == "outside_space":
        rows[1][header.index("e3")] = "7"
    elif how == "not_numeric":
        rows[2][header.index("latency_ms")] = "fast"
    bad = tmp_path / f"{how}.csv"
    bad.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return bad


@pytest.mark.parametrize("how, expect", [
    ("missing_gene", "missing gene column 'e3'"),
    ("outside_space", "row 3, column e3: 7 is outside the space"),
    ("not_numeric", "row 4, column latency_ms: 'fast' is not a number"),
])
@pytest.mark.parametrize("cmd", ["eval", "fit"])
def test_cli_rejects_bad_tables(cmd, how, expect, csv_path, tmp_path, capsys):
    bad = _corrupt(csv_path, tmp_path, how)
    out = tmp_path / "p.json"
    argv = ["predictor", cmd, "--data", str(bad), "--target", "latency_ms", "--space", SPACE]
    argv += ["--out", str(out)] if cmd == "fit" else []
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hytnas: error: table ") and expect in err and "\n" not in err
    assert not out.exists()


def test_cli_gene_columns_are_the_exchange_format(csv_path):
    assert csv_path.read_text().splitlines()[0].split(",")[:23] == list(GENES)


def test_cli_takes_shapes_from_a_benchmark_table_header(csv_path, tmp_path, capsys):
    """A benchmark table records its space and input shapes: eval uses them unless given."""
    table = tmp_path / "bench.csv"
    table.write_text(f"# format: hytnas-benchmark-table\n# space: {SPACE}\n# input_size: 64\n# in_channels: 1\n"
                     + csv_path.read_text())
    base = ["predictor", "eval", "--data", str(table), "--target", "latency_ms", "--model", "gp", "--cv", "3"]
    assert main(base) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert f"space {SPACE} at 64 px, 1 input channel(s), 10 classes (space, input size, in channels from the table header)" in first
    assert main(base + ["--input-size", "96", "--in-channels", "3"]) == 0  # the command line wins
    first = capsys.readouterr().out.splitlines()[0]
    assert "at 96 px, 3 input channel(s), 10 classes (space from the table header)" in first
    table.write_text("# input_size: large\n" + csv_path.read_text())
    assert main(base + ["--space", SPACE]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"hytnas: error: table {table}: header line 'input_size' is 'large', not a valid input_size; "
                   "fix the header or pass --input-size")


def test_cli_eval_repeats_are_the_seeded_single_splits(csv_path, capsys):
    """--repeats R: the mean over the splits --seed S ... S+R-1, each one what --seed alone gives."""
    base = ["predictor", "eval", "--data", str(csv_path), "--target", "latency_ms", "--space", SPACE,
            "--model", "gp", "--train-size", "60", "--json"]
    singles = []
    for seed in (3, 4, 5):
        assert main([*base, "--seed", str(seed)]) == 0
        singles.append(json.loads(capsys.readouterr().out)[0])
    assert main([*base, "--seed", "3", "--repeats", "3"]) == 0
    rep = json.loads(capsys.readouterr().out)[0]
    assert rep["repeats"] == 3 and [p["seed"] for p in rep["per_split"]] == [3, 4, 5]
    taus = [s["kendall_tau"] for s in singles]
    assert [p["kendall_tau"] for p in rep["per_split"]] == taus
    assert rep["kendall_tau"] == pytest.approx(np.mean(taus)) and rep["kendall_tau_sd"] == pytest.approx(np.std(taus))
    assert len(set(taus)) > 1  # the splits differ
    assert main([*base[:-1], "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "mean over 2 splits (seeds 0-1)" in out and "tau sd" in out


@pytest.mark.parametrize("extra, expect", [
    (["--repeats", "0"], "--repeats: must be at least 1, got 0"),
    (["--cv", "3", "--repeats", "2"], "--repeats: needs --train-size N"),
])
def test_cli_eval_rejects_bad_repeats(extra, expect, csv_path, capsys):
    assert main(["predictor", "eval", "--data", str(csv_path), "--target", "latency_ms", "--space", SPACE, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and "\n" not in err
