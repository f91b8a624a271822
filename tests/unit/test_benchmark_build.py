"""The build's fixed arch list, its config and the pieces of the build that need no training."""
from __future__ import annotations

from pathlib import Path

import pytest

from hytnas.benchmark.archlist import arch_from_cfg, build_items, zoo_archs_in_space
from hytnas.benchmark.build import BuildState, fingerprint, seed_noise
from hytnas.benchmark.config import experiment_for_build, load_build_config, parse_build_config
from hytnas.errors import ConfigError, DataError
from hytnas.models import zoo
from hytnas.space import get_space
from hytnas.table import write_arch_table

SPACES = ["hytnas", "hytnas-tiny"]


@pytest.mark.parametrize("name", SPACES)
def test_arch_list_is_reproducible_and_replicates_the_first_archs(name):
    space = get_space(name, input_size=32)
    a = build_items(space, 24, seed=3, replicate=5, seeds=3)
    b = build_items(space, 24, seed=3, replicate=5, seeds=3)
    assert a == b
    assert len(a) == 24 + 5 * 2
    primaries = [i for i in a if i.replicate == 0]
    assert [i.arch for i in primaries] == space.sample(24, seed=3, method="sobol")
    assert {i.seed for i in primaries} == {3}
    for r, s in ((1, 4), (2, 5)):
        reps = [i for i in a if i.replicate == r]
        assert [i.arch for i in reps] == [i.arch for i in primaries[:5]] and {i.seed for i in reps} == {s}
    assert len({i.key(space) for i in a}) == len(a)
    assert build_items(space, 24, seed=4, replicate=5, seeds=3) != a


def test_arch_list_bad_settings():
    space = get_space("hytnas-tiny")
    with pytest.raises(ConfigError, match="benchmark.replicate"):
        build_items(space, 4, replicate=5)
    with pytest.raises(ConfigError, match="benchmark.n_archs"):
        build_items(space, 0)


@pytest.mark.parametrize("name", SPACES)
def test_gene_mapping_of_a_model_config_round_trips(name):
    space = get_space(name)
    for arch in space.sample(20, seed=1):
        assert arch_from_cfg(space, space.to_arch_cfg(arch)) == arch


@pytest.mark.parametrize("model", zoo.names())
def test_zoo_models_are_not_points_of_the_space(model):
    # MobileViT sets its transformer widths by hand (dim 64 for 48 channels, ...) while the
    # space's width rule is the largest power of two <= c; the MobileNets have no MobileViT block
    assert arch_from_cfg(get_space("hytnas"), zoo.get(model)) is None


def test_no_zoo_model_fits_so_none_is_appended():
    assert zoo_archs_in_space(get_space("hytnas")) == []


def write_cfg(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bench.yaml"
    p.write_text(text)
    return p


GOOD = """
benchmark: {n_archs: 4, replicate: 1, seeds: 2, table: out/t.csv.gz}
experiment:
  name: b
  space: {name: hytnas-tiny, input_size: 32}
  training: {epochs: 1}
"""


def test_build_config_loads_and_sets_the_search(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_build_config(write_cfg(tmp_path, GOOD), ["benchmark.n_archs=6"])
    assert cfg.benchmark.n_archs == 6
    assert cfg.benchmark.table_path() == tmp_path / "out" / "t.csv.gz"
    assert cfg.benchmark.seeds_table_path() == tmp_path / "out" / "t-seeds.csv.gz"
    exp = experiment_for_build(cfg, 5, 1, tmp_path / "pool.csv", "seed1-pass0")
    assert exp.search.algorithm == "random" and exp.search.options == {"candidates": str(tmp_path / "pool.csv")}
    assert exp.budget.num_samples == 5 and exp.training.seed == 1 and exp.scheduler.type == "fifo"
    assert exp.storage_dir == tmp_path / "experiments" / "b" / "seed1-pass0"
    assert exp.tracking_uri == f"sqlite:///{tmp_path / 'experiments' / 'b' / 'mlflow.db'}"


@pytest.mark.parametrize("text, message", [
    ("benchmark: {n_arch: 3}\nexperiment: {name: b}", "benchmark.n_arch: unknown key"),
    ("benchmark: {seeds: 0}\nexperiment: {name: b}", "benchmark.seeds: must be >= 1"),
    ("benchmark: {}\nexperiment: {name: b, search: {algorithm: random}}", "experiment.search: set by the build"),
    ("benchmark: {}\nexperiment: {name: b, training: {epochs: 0}}", "experiment.training.epochs: must be >= 1"),
    ("benchmark: {}\n", "experiment: missing"),
    ("benchmark: {}\nexperiment: {name: b}\nextra: 1", "extra: unknown key"),
    ("benchmark: [\n", "not valid YAML"),
])
def test_build_config_errors_are_one_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as e:
        load_build_config(write_cfg(tmp_path, text))
    assert "\n" not in str(e.value)


def test_partial_table_round_trip_and_fingerprint_guard(tmp_path):
    space = get_space("hytnas", input_size=32)
    items = build_items(space, 3, seed=0, replicate=1, seeds=2)
    fp = fingerprint(space, items, {"training": {"epochs": 1}})
    path = tmp_path / "t.partial.csv"
    state = BuildState.load_or_new(space, path, fp, {"space": "hytnas"})
    for n, it in enumerate(items[:2]):
        state.rows[it.key(space)] = {**it.arch.to_dict(), "arch_id": space.arch_id(it.arch), "seed": it.seed,
                                     "replicate": it.replicate, "val_accuracy": 0.5 + n / 10}
        state.save()
    again = BuildState.load_or_new(space, path, fp, {"space": "hytnas"})
    assert set(again.rows) == {i.key(space) for i in items[:2]}
    assert again.rows[items[1].key(space)]["val_accuracy"] == pytest.approx(0.6)
    other = fingerprint(space, items, {"training": {"epochs": 2}})
    assert other != fp
    with pytest.raises(ConfigError, match="partial build .* another arch list or schedule"):
        BuildState.load_or_new(space, path, other, {})


def test_seed_noise_of_a_seed_table(tmp_path):
    space = get_space("hytnas", input_size=32)
    archs = space.sample(3, seed=0)
    accs = {0: [0.70, 0.80, 0.60], 1: [0.72, 0.78, 0.61]}
    rows_archs, rows = [], []
    for s, vals in accs.items():
        for a, v in zip(archs, vals):
            rows_archs.append(a)
            rows.append({"seed": s, "val_accuracy": v, "test_accuracy": v})
    path = tmp_path / "seeds.csv"
    write_arch_table(path, space, rows_archs, rows)
    noise = seed_noise(path, space)
    stds = [abs(a - b) / 2 ** 0.5 for a, b in zip(accs[0], accs[1])]
    assert noise["archs"] == 3 and noise["seeds"] == [0, 1]
    assert noise["val_accuracy"]["std_mean"] == pytest.approx(sum(stds) / 3)
    assert noise["val_accuracy"]["std_max"] == pytest.approx(max(stds))
    assert noise["val_accuracy"]["kendall_tau_between_seeds"] == pytest.approx(1.0)
    write_arch_table(path, space, archs, [{"seed": 0, "val_accuracy": 0.5, "test_accuracy": 0.5}] * 3)
    with pytest.raises(DataError, match="at least two seeds"):
        seed_noise(path, space)


def test_parse_build_config_rejects_non_mapping():
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_build_config([1, 2])  # type: ignore[arg-type]
