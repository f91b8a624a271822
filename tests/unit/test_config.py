"""The experiment schema: defaults, one-line errors naming the field, overrides, the docs table."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from hytnas.config import (
    BUILTIN_CONFIG_DIR,
    ExperimentConfig,
    apply_overrides,
    builtin_configs,
    keys_table,
    load_experiment,
    parse_experiment,
)
from hytnas.errors import ConfigError
from hytnas.objectives import Constraint

REPO = Path(__file__).resolve().parents[2]


def test_minimal_config_gets_documented_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = parse_experiment({"name": "demo"})
    assert cfg.storage_dir == tmp_path / "experiments" / "demo"
    assert cfg.tracking_uri == f"sqlite:///{tmp_path}/experiments/demo/mlflow.db"
    assert cfg.mlflow_experiment == "demo"
    assert [o.name for o in cfg.get_objectives()] == ["val_accuracy", "params_k"]
    assert cfg.search.algorithm == "mobo"
    assert cfg.budget.num_samples > 0 and cfg.scheduler.type == "fifo"
    assert cfg.hardware.device == "host-cpu" and cfg.hardware.latency_threads == 1


def test_relative_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = parse_experiment({"name": "x", "storage_path": "out/run", "dataset": {"root": "data"}})
    assert cfg.storage_path == str(tmp_path / "out" / "run")
    assert cfg.dataset.root == str(tmp_path / "data")


def test_plain_dict_round_trip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = parse_experiment({
        "name": "x", "objectives": ["val_accuracy", {"name": "latency_ms"}, "macs_m:min"],
        "constraints": ["peak_sram_kb <= 256", {"name": "params_k", "op": "<", "value": 500}],
        "scheduler": {"type": "asha", "grace_period": 1}, "training": {"epochs": 2},
    })
    again = parse_experiment(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
    assert again.get_constraints() == (Constraint("peak_sram_kb", "<=", 256.0), Constraint("params_k", "<", 500.0))
    assert [o.name for o in again.get_objectives()] == ["val_accuracy", "latency_ms", "macs_m"]


BAD = [
    ({"budget": {"num_samples": -3}}, "budget.num_samples: must be > 0 (got -3)"),
    ({"budget": {"num_samples": 0}}, "budget.num_samples: must be > 0 (got 0)"),
    ({"budget": {"max_concurrent_trials": 0}}, "budget.max_concurrent_trials: must be >= 1 (got 0)"),
    ({"budget": {"num_sampels": 4}}, "budget.num_sampels: unknown key; allowed keys here: num_samples,"),
    ({"bogus": 1}, "bogus: unknown key; allowed keys here: name, space,"),
    ({"training": {"epochs": "three"}}, "training.epochs: must be an integer (got 'three')"),
    ({"training": {"lr": -1}}, "training.lr: must be > 0 (got -1)"),
    ({"training": {"optimizer": "lbfgs"}}, "training.optimizer: must be one of"),
    ({"dataset": {"name": "mnist"}}, "dataset.name: must be one of fashion-mnist, cifar10, vww, imagefolder (got 'mnist')"),
    ({"dataset": {"name": "imagefolder"}}, "dataset.root: the imagefolder dataset needs a data folder"),
    ({"dataset": "fashion"}, "dataset: must be a mapping (got 'fashion')"),
    ({"search": {"algorithm": "bo"}}, "search.algorithm: must be one of mobo, random, optuna-nsga2, optuna-tpe, optuna-gp (got 'bo')"),
    ({"scheduler": {"type": "hyperband"}}, "scheduler.type: must be one of fifo, asha (got 'hyperband')"),
    ({"scheduler": {"type": "asha", "grace_period": 9}}, "scheduler.grace_period: 9 is more than training.epochs"),
    ({"scheduler": {"type": "asha"}, "objectives": ["params_k", "val_accuracy"]}, "scheduler.type: asha stops trials on the first objective, params_k"),
    ({"resources": {"cpu": 0}}, "resources.cpu: must be > 0 (got 0)"),
    ({"resources": {"gpu": -0.5}}, "resources.gpu: must be >= 0 (got -0.5)"),
    ({"space": {"name": "nope"}}, "space.name: unknown space 'nope'"),
    ({"space": {"input_size": 4}}, "space.input_size: must be >= 8 (got 4)"),
    ({"objectives": ["accuracy"]}, "objectives.accuracy: unknown metric"),
    ({"objectives": ["test_accuracy"]}, "objectives: test_accuracy would select on the test split"),
    ({"objectives": []}, "objectives: give at least one objective"),
    ({"objectives": ["params_k", "params_k"]}, "objectives: params_k is listed twice"),
    ({"constraints": ["sram <= 3"]}, "constraints.0: unknown metric 'sram'"),
    ({"constraints": ["peak_sram_kb == 3"]}, "constraints: cannot parse 'peak_sram_kb == 3'"),
    ({"name": "my run"}, "name: 'my run' is not allowed"),
    ({"name": None}, "name: must be a string (got None)"),
    ({"mlflow": {"enabled": "maybe"}}, "mlflow.enabled: must be true or false (got 'maybe')"),
]


@pytest.mark.parametrize("patch,message", BAD, ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in enumerate(BAD)])
def test_bad_values_give_one_line_naming_the_field(patch, message):
    with pytest.raises(ConfigError) as info:
        parse_experiment({"name": "x", **patch})
    text = str(info.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_missing_name():
    with pytest.raises(ConfigError, match=r"^name: missing \(required\)$"):
        parse_experiment({})


def test_missing_data_folder_is_checked_separately(tmp_path):
    cfg = parse_experiment({"name": "x", "dataset": {"root": str(tmp_path / "nowhere")}})
    with pytest.raises(ConfigError, match=r"^dataset.root: folder .*nowhere does not exist"):
        cfg.check_paths()
    parse_experiment({"name": "x", "dataset": {"root": str(tmp_path)}}).check_paths()
    parse_experiment({"name": "x", "dataset": {"root": str(tmp_path / "new"), "download": True}}).check_paths()


# ------------------------------------------------------------------------------ overrides
def test_overrides_are_dotted_and_yaml_parsed():
    base = {"name": "x", "budget": {"num_samples": 4}, "objectives": ["val_accuracy", "params_k"]}
    out = apply_overrides(base, [
        "budget.num_samples=7", "training.lr=1e-3", "objectives=[val_accuracy, latency_ms]",
        "search.options.n_initial=3", "constraints=['macs_m <= 5']", "objectives.1=macs_m",
    ])
    assert out["budget"] == {"num_samples": 7}
    assert float(out["training"]["lr"]) == 1e-3  # YAML 1.1 reads 1e-3 as text; the schema makes it a number
    assert out["objectives"] == ["val_accuracy", "macs_m"]
    assert out["search"] == {"options": {"n_initial": 3}}
    assert base["budget"] == {"num_samples": 4}  # the input is not modified
    cfg = parse_experiment(out)
    assert cfg.search.options == {"n_initial": 3} and cfg.get_constraints()[0].name == "macs_m"
    assert cfg.training.lr == 1e-3


@pytest.mark.parametrize("item,message", [
    ("budget.num_samples", "--set 'budget.num_samples': expected KEY=VALUE"),
    ("=3", "--set '=3': expected KEY=VALUE"),
    ("budget..x=3", "--set 'budget..x=3': expected KEY=VALUE"),
    ("name.sub=3", "--set name.sub: name is a value ('x'), not a section"),
    ("objectives.5=macs_m", "--set objectives.5: '5' is not an index of a list of 2 items"),
    ("training.lr=[1, 2", "--set training.lr: value '[1, 2' is not valid YAML"),
])
def test_bad_overrides(item, message):
    with pytest.raises(ConfigError) as info:
        apply_overrides({"name": "x", "objectives": ["val_accuracy", "params_k"]}, [item])
    assert str(info.value).startswith(message), str(info.value)


def test_override_errors_name_the_schema_field(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ConfigError, match=r"^budget.num_samples: must be > 0 \(got -1\)$"):
        load_experiment(path, ["budget.num_samples=-1"])
    with pytest.raises(ConfigError, match=r"^training.epoch: unknown key"):
        load_experiment(path, ["training.epoch=3"])


# ------------------------------------------------------------------------------ files
def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^config .*missing.yaml: file not found"):
        load_experiment(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbudget: [1, 2\n")
    with pytest.raises(ConfigError, match=r"^config .*bad.yaml line \d+: not valid YAML$"):
        load_experiment(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"^config .*list.yaml: must be a mapping"):
        load_experiment(lst)


def _experiment_configs() -> list[str]:
    """Shipped configs that are experiments (others, e.g. benchmark builds, have their own schema)."""
    fields = set(ExperimentConfig.model_fields)
    return [n for n in builtin_configs()
            if set(yaml.safe_load((BUILTIN_CONFIG_DIR / f"{n}.yaml").read_text()) or {}) <= fields]


@pytest.mark.parametrize("name", _experiment_configs())
def test_shipped_configs_are_valid_and_found_by_name(name):
    cfg = load_experiment(name)
    assert cfg == load_experiment(BUILTIN_CONFIG_DIR / f"{name}.yaml")


def test_quickstart_is_shipped():
    assert "quickstart" in _experiment_configs()
    cfg = load_experiment("quickstart")
    assert cfg.budget.num_samples >= 12 and cfg.dataset.name == "fashion-mnist"


def test_docs_table_matches_the_schema():
    text = (REPO / "configs" / "README.md").read_text()
    m = re.search(r"<!-- keys:begin -->\n(.*?)<!-- keys:end -->", text, flags=re.S)
    assert m, "configs/README.md lost its keys:begin/keys:end markers"
    assert m.group(1) == keys_table(), "configs/README.md is stale: paste the output of hytnas.config.keys_table()"


def test_docs_table_lists_every_key():
    table = keys_table()

    def keys(model, prefix=""):
        for name, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                yield from keys(ann, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}"

    for key in keys(ExperimentConfig):
        assert f"| `{key}` |" in table


def test_training_section_is_the_train_settings():
    training = pytest.importorskip("hytnas.training")
    assert parse_experiment({"name": "x"}).training == training.TrainSettings()
    with pytest.raises(ConfigError, match=r"^training\.lr: must be > 0 \(got 0\)$"):
        parse_experiment({"name": "x", "training": {"lr": 0}})


# ------------------------------------------------------------------ strict types, failure section
@pytest.mark.parametrize("section,key,value,message", [
    ("budget", "num_samples", "4", "budget.num_samples: must be an integer, not the string '4'; write it without quotes"),
    ("training", "channels_last", "yes", "training.channels_last: must be true or false, not the string 'yes'"),
    ("training", "lr", "0.01", "training.lr: must be a number, not the string '0.01'"),
    ("failure", "max_failures", "2", "failure.max_failures: must be an integer, not the string '2'"),
    ("budget", "num_samples", 4.5, "budget.num_samples: must be an integer (got 4.5)"),
])
def test_quoted_numbers_and_bools_are_errors(section, key, value, message):
    with pytest.raises(ConfigError) as exc:
        parse_experiment({"name": "x", section: {key: value}})
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_strict_keeps_ints_for_floats_and_set_values_are_yaml():
    cfg = parse_experiment({"name": "x", "training": {"lr": 1, "lr_decay": 1}, "budget": {"time_budget_s": 60}})
    assert cfg.training.lr == 1.0 and isinstance(cfg.training.lr, float)
    data = apply_overrides({"name": "x"}, ["budget.num_samples=4", "training.channels_last=true", "training.lr=1e-3"])
    cfg = parse_experiment(data)
    assert (cfg.budget.num_samples, cfg.training.channels_last, cfg.training.lr) == (4, True, 1e-3)
    with pytest.raises(ConfigError, match="^budget.num_samples: must be an integer, not the string '4'"):
        parse_experiment(apply_overrides({"name": "x"}, ["budget.num_samples='4'"]))  # quoted on the command line


def test_failure_section_defaults_and_bounds():
    cfg = parse_experiment({"name": "x"})
    assert (cfg.failure.max_failures, cfg.failure.max_failed_trials) == (1, None)
    with pytest.raises(ConfigError, match=r"^failure.max_failed_trials: must be >= 0 \(got -1\)"):
        parse_experiment({"name": "x", "failure": {"max_failed_trials": -1}})
