"""The experiment configuration: one pydantic schema for the YAML file that drives a search.

An experiment file has these sections (every key is optional except ``name``; every default and
its meaning is listed in ``configs/README.md``, generated from this schema by
:func:`keys_table`)::

    name, space, dataset, training, objectives, constraints, search, scheduler, budget,
    failure, resources, hardware, storage_path, mlflow

Conventions:

- Unknown keys are errors (``extra="forbid"`` in every section), so a typo is named, never
  silently ignored.
- Types are strict (pydantic's strict mode): a quoted number or bool (``num_samples: "4"``,
  ``channels_last: "yes"``) is an error, not converted; an int is accepted where a float is
  expected (``lr: 1``). ``--set key=value`` values are parsed as YAML, so ``--set
  budget.num_samples=4`` is an int.
- Every error is one :class:`~hytnas.errors.ConfigError` line that names the dotted field and
  the fix, e.g. ``budget.num_samples: must be > 0 (got -3)``.
- Relative paths (``storage_path``, ``dataset.root``, a space YAML path) are resolved against
  the current working directory when the config is validated, so that the (plain, absolute)
  config can be shipped to Ray workers that run in other folders.
- ``storage_path`` defaults to ``./experiments/<name>``; the MLflow store defaults to
  ``sqlite:///<storage_path>/mlflow.db``. A URI (``s3://bucket/path``, ``gs://bucket/path``) is
  kept as is: Tune's state, trial folders and checkpoints go there (pyarrow's filesystems, the
  usual AWS/GCS credentials and ``AWS_ENDPOINT_URL``), while the driver's files (experiment.yaml,
  mlflow.db, trials.csv, ...) stay in the local folder ``./experiments/<name>``
  (:attr:`ExperimentConfig.storage_dir`).
- Objectives default to ``[val_accuracy, params_k]``: the host latency measured inside a trial
  shares the CPU with the other running trials and is too noisy to rank candidates on a
  laptop or CI runner. ``latency_ms`` is still measured and recorded for every trial; make it an
  objective on a dedicated machine (one trial at a time) or with a device profile.
- Nothing here touches the disk except :func:`load_experiment` reading the file;
  :meth:`ExperimentConfig.check_paths` checks that input folders exist (the CLI calls it before
  creating anything).
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hytnas.errors import ConfigError, HytnasError, SearchError, SpaceError
from hytnas.objectives import METRICS, Constraint, Objective, get_objectives, parse_constraint
from hytnas.utils import load_yaml, read_yaml
from search_algos.settings import SEARCHERS, parse_settings

#: Where ``load_experiment("quickstart")`` looks for shipped configs (a source checkout).
BUILTIN_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DATASETS = ("fashion-mnist", "cifar10", "vww", "imagefolder")
CONFIG_VERSION = 1


class _Section(BaseModel):
    # strict: a quoted number or bool ("4", "yes") is an error, not silently converted; ints are
    # still accepted where a float is expected (pydantic's strict mode allows int -> float)
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, strict=True)


def _abspath(p: str | None) -> str | None:
    return None if p is None else os.path.abspath(os.path.expanduser(p))


def is_uri(path: str | None) -> bool:
    """Whether ``path`` is a URI with a scheme (``s3://``, ``gs://``, ...), not a local path."""
    return path is not None and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path) is not None


# ----------------------------------------------------------------------------------- sections
class SpaceSection(_Section):
    """The search space."""

    name: str = Field("hytnas", description="built-in space (hytnas, hytnas-tiny) or a space YAML file")
    input_size: int | None = Field(None, ge=8, le=1024, description="input resolution in px; null: the space's own")

    @field_validator("name")
    @classmethod
    def _known_space(cls, v: str) -> str:
        from hytnas.space import builtin_spaces, get_space

        if v in builtin_spaces():
            return v
        if not v.endswith((".yaml", ".yml")) and not Path(v).is_file():
            raise ValueError(
                f"unknown space {v!r}; use a built-in space ({', '.join(builtin_spaces())}) or a space YAML file"
            )
        path = _abspath(v)
        try:
            get_space(path)
        except SpaceError as exc:
            raise ValueError(str(exc)) from None
        return path


class DatasetSection(_Section):
    """The data (subsets are drawn with `training.seed`)."""

    name: Literal["fashion-mnist", "cifar10", "vww", "imagefolder"] = Field(
        "fashion-mnist", description="fashion-mnist | cifar10 | vww | imagefolder")
    root: str | None = Field(None, description="data folder; null: the dataset's default folder")
    download: bool = Field(False, description="download the dataset into root if it is missing")
    train_size: int | None = Field(None, gt=0, description="training images (random subset); null: all")
    val_size: int | None = Field(None, gt=0, description="validation images, held out of the training split; null: the data module's default")
    test_size: int | None = Field(None, gt=0, description="test images (random subset of the test split); null: all")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes per trial")
    in_channels: int | None = Field(None, ge=1, le=4, description="force 1 or 3 input channels; null: the dataset's own")

    @field_validator("root")
    @classmethod
    def _abs_root(cls, v: str | None) -> str | None:
        return _abspath(v)

    @model_validator(mode="after")
    def _root_needed(self) -> DatasetSection:
        if self.name in ("imagefolder", "vww") and self.root is None:
            raise ConfigError(f"dataset.root: the {self.name} dataset needs a data folder; set dataset.root")
        return self


#: Optimisers :class:`TrainSettings` accepts (``configure_optimizers`` builds them).
OPTIMIZERS: tuple[str, ...] = ("adamw", "adam", "sgd")
#: Lightning precisions accepted; mixed precision is used on a GPU only (full precision on CPU).
PRECISIONS: tuple[str, ...] = ("32-true", "bf16-mixed", "16-mixed")


# Conventions: ``lr`` is the initial learning rate, multiplied by ``lr_decay`` after every epoch
# (``ExponentialLR``, the HyT-NAS paper's schedule). ``weight_decay`` applies to conv and linear
# weights only, not to biases and norm parameters (timm's convention). ``precision`` ``None`` means
# ``"32-true"``; mixed precision and ``channels_last`` take effect on a GPU only. ``seed`` seeds the
# weight initialisation and the training-time randomness (dropout) through local generators (global
# RNG state is restored afterwards). ``batch_size`` overrides the datamodule's in
# :func:`hytnas.training.train_candidate`. Built directly (``TrainSettings(lr=0)``), a bad value is
# a :class:`ConfigError` naming ``training.<field>``, as in an experiment file.
class TrainSettings(_Section):
    """Training of every candidate (`hytnas.training.TrainSettings`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, strict=True, allow_inf_nan=False)

    epochs: int = Field(3, ge=1, description="training epochs per trial (the ASHA resource)")
    batch_size: int = Field(128, ge=1, description="mini-batch size")
    optimizer: str = Field("adam", description="adam (the paper's) | adamw | sgd")
    lr: float = Field(0.002, gt=0, description="initial learning rate")
    lr_decay: float = Field(0.95, gt=0, le=1, description="learning rate multiplied by this after every epoch")
    weight_decay: float = Field(0.0, ge=0, description="weight decay")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing of the cross-entropy")
    precision: str | None = Field("32-true", description="Lightning precision (32-true, bf16-mixed, 16-mixed)")
    channels_last: bool = Field(False, strict=True, description="channels-last memory format")
    seed: int = Field(0, ge=0, description="seed of the data subsets and the weight initialisation (the same for every trial)")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd momentum (Nesterov when > 0)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout before the classifier")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(_error_line(exc, "training", TrainSettings)) from None

    @field_validator("epochs", "batch_size", "seed", mode="before")
    @classmethod
    def _no_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"must be an integer (got {v})")
        return v

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, v: str) -> str:
        if v not in OPTIMIZERS:
            raise ValueError(f"must be one of {', '.join(OPTIMIZERS)} (got {v!r})")
        return v

    @field_validator("precision")
    @classmethod
    def _known_precision(cls, v: str | None) -> str:
        if v is None:
            return "32-true"
        if v not in PRECISIONS:
            raise ValueError(f"must be one of {', '.join(PRECISIONS)} (got {v!r})")
        return v

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainSettings:
        """Settings from a mapping; unknown keys are a :class:`ConfigError` naming the key."""
        unknown = sorted(set(d) - set(cls.model_fields))
        if unknown:
            raise ConfigError(f"training.{unknown[0]}: unknown setting; use {', '.join(sorted(cls.model_fields))}")
        return cls(**dict(d))


class SearchSection(_Section):
    """The searcher (`search_algos.make_searcher`)."""

    algorithm: str = Field("mobo", description=" | ".join(SEARCHERS))
    seed: int = Field(0, ge=0, description="seed of the searcher")
    options: dict[str, Any] = Field(default_factory=dict, description="the searcher's options: the fields of its "
                                    "settings class in `search_algos.settings` (e.g. MOBOSettings)")

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, v: str) -> str:
        if v not in SEARCHERS:
            raise ValueError(f"must be one of {', '.join(SEARCHERS)} (got {v!r})")
        return v

    @model_validator(mode="after")
    def _valid_options(self) -> SearchSection:
        try:
            parse_settings(self.algorithm, self.options)
        except SearchError as exc:
            raise ConfigError(f"search.options: {exc}") from None
        return self


class SchedulerSection(_Section):
    """Trial scheduling; ASHA's resource is the epoch (`training_iteration`)."""

    type: Literal["fifo", "asha"] = Field("fifo", description="fifo (train every trial fully) | asha (stop weak trials early)")
    grace_period: int = Field(1, ge=1, description="asha: epochs before a trial can be stopped")
    reduction_factor: float = Field(2.0, gt=1, description="asha: keep 1/reduction_factor of the trials at each rung")


class BudgetSection(_Section):
    """How much to search."""

    num_samples: int = Field(12, gt=0, description="trials (candidate archs) to evaluate")
    max_concurrent_trials: int = Field(1, ge=1, description="trials running at the same time")
    time_budget_s: float | None = Field(None, gt=0, description="stop starting/running trials after this many seconds; null: no limit")


class FailureSection(_Section):
    """Trial failures (an exception in a trial, a dead worker): retries and when to give up."""

    max_failures: int = Field(1, ge=0, description="retries of a failed trial, each from its last checkpoint "
                              "(Tune's FailureConfig); 0: a failure is final")
    max_failed_trials: int | None = Field(None, ge=0, description="abort the search when more trials than this "
                                          "failed for good; null: never abort")


class ResourcesSection(_Section):
    """Resources of one trial (fractions allowed)."""

    cpu: float = Field(1.0, gt=0, description="CPUs per trial (torch threads = max(1, floor(cpu)))")
    gpu: float = Field(0.0, ge=0, description="GPUs per trial (fractions share a GPU)")


class HardwareSection(_Section):
    """The target device and the latency measurement."""

    device: str = Field("host-cpu", description="device profile: a shipped name (host-cpu, raspberry-pi-4, jetson-nano, stm32f746) or a profile YAML file")
    latency_threads: int = Field(1, ge=1, description="torch threads of the latency measurement")
    latency_runs: int = Field(20, ge=1, description="timed runs of the latency measurement (the median is reported)")
    # --- device-profile wiring (hytnas.devices.device_wiring)
    memory_constraints: bool = Field(True, description="add the device's memory limits as constraints "
                                     "(peak_sram_kb <= sram_kb, model_size_kb <= flash_kb)")

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        """A shipped profile name, or a profile YAML file (validated, made absolute)."""
        from hytnas.errors import HardwareError
        from hytnas.hardware import get_profile, list_profiles

        if v in list_profiles():
            return v
        if not v.endswith((".yaml", ".yml")) and not Path(v).is_file():
            raise ValueError(f"unknown device profile {v!r}; use one of {', '.join(list_profiles())} or a profile YAML file")
        path = _abspath(v)
        try:
            get_profile(path)
        except HardwareError as exc:
            raise ValueError(str(exc)) from None
        return path


class MlflowSection(_Section):
    """MLflow tracking (one parent run per search, one child run per trial)."""

    enabled: bool = Field(True, description="track the search in MLflow")
    tracking_uri: str | None = Field(None, description="null: sqlite:///<storage_path>/mlflow.db")
    experiment_name: str | None = Field(None, description="MLflow experiment; null: the experiment name")
    refresh_every: int = Field(1, ge=1, description="refresh the parent run (tables, front, hypervolume) every this "
                                                    "many finished trials")
    refresh_s: float = Field(60.0, gt=0, description="... and at least every this many seconds (the plots at most "
                                                     "this often, and at the end)")
    register_name: str | None = Field(None, description="register the Pareto-optimal models under this MLflow "
                                                        "model name at the end; null: log them only")


_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class ExperimentConfig(_Section):
    """One search experiment (the YAML file)."""

    name: str = Field(pattern=_NAME_PATTERN, max_length=100,
                      description="experiment name (letters, digits, . _ -); names the storage folder")
    space: SpaceSection = Field(default_factory=SpaceSection)
    dataset: DatasetSection = Field(default_factory=DatasetSection)
    training: TrainSettings = Field(default_factory=TrainSettings)
    objectives: list[Any] = Field(
        default_factory=lambda: ["val_accuracy", "params_k"],
        description="metrics to optimise: names (val_accuracy, latency_ms, params_k, macs_m, peak_sram_kb, "
                    "model_size_kb, ...), 'name:min|max' or {name, sense, source}; the first one is Tune's metric")
    constraints: list[Any] = Field(
        default_factory=list, description="'metric <= bound' strings (or {name, op, value}), e.g. 'peak_sram_kb <= 256'")
    search: SearchSection = Field(default_factory=SearchSection)
    scheduler: SchedulerSection = Field(default_factory=SchedulerSection)
    budget: BudgetSection = Field(default_factory=BudgetSection)
    failure: FailureSection = Field(default_factory=FailureSection)
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
    hardware: HardwareSection = Field(default_factory=HardwareSection)
    storage_path: str | None = Field(None, description="experiment folder; null: ./experiments/<name>")
    mlflow: MlflowSection = Field(default_factory=MlflowSection)

    @model_validator(mode="before")
    @classmethod
    def _default_storage(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("storage_path") is None and isinstance(data.get("name"), str):
            data = {**data, "storage_path": os.path.join("experiments", data["name"])}
        return data

    @field_validator("storage_path")
    @classmethod
    def _abs_storage(cls, v: str | None) -> str | None:
        return v if is_uri(v) else _abspath(v)

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[Any]) -> list[Any]:
        objs = get_objectives(v)  # ConfigError names the objective
        for o in objs:
            if o.name == "test_accuracy":
                raise ConfigError("objectives: test_accuracy would select on the test split; use val_accuracy")
            if o.name not in METRICS:
                raise ConfigError(f"objectives: {o.name} is not reported by the trials; use one of {', '.join(_SELECTABLE)}")
        return [_objective_spec(o) for o in objs]

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, v: list[Any]) -> list[Any]:
        out = []
        for i, spec in enumerate(v):
            c = parse_constraint(spec)
            if c.name not in METRICS or c.name == "test_accuracy":
                raise ConfigError(f"constraints.{i}: unknown metric {c.name!r}; use one of {', '.join(_SELECTABLE)}")
            out.append(str(c))
        return out

    @model_validator(mode="after")
    def _cross_checks(self) -> ExperimentConfig:
        if self.scheduler.type == "asha" and self.scheduler.grace_period > self.training.epochs:
            raise ConfigError(
                f"scheduler.grace_period: {self.scheduler.grace_period} is more than training.epochs "
                f"({self.training.epochs}); lower it or train longer"
            )
        first = self.get_objectives()[0]
        if self.scheduler.type == "asha" and first.source == "known":
            raise ConfigError(
                f"scheduler.type: asha stops trials on the first objective, {first.name}, which training does "
                "not change; list a reported objective (val_accuracy) first or use fifo"
            )
        return self

    # ------------------------------------------------------------------------- derived values
    @property
    def storage_dir(self) -> Path:
        """The local experiment folder: ``storage_path``, or for a URI ``./experiments/<name>``
        (absolute, from the current folder of the process that asks: the driver)."""
        assert self.storage_path is not None  # set by the validator
        if self.storage_uri is not None:
            return Path(os.path.abspath(os.path.join("experiments", self.name)))
        return Path(self.storage_path)

    @property
    def storage_uri(self) -> str | None:
        """``storage_path`` when it is a URI (``s3://...``), else None."""
        return self.storage_path if is_uri(self.storage_path) else None

    @property
    def tune_storage(self) -> str:
        """Tune's ``storage_path``: the URI, or the local experiment folder."""
        return self.storage_uri or str(self.storage_dir)

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{self.storage_dir / 'mlflow.db'}"

    @property
    def mlflow_experiment(self) -> str:
        return self.mlflow.experiment_name or self.name

    def get_objectives(self) -> tuple[Objective, ...]:
        return get_objectives(self.objectives)

    def get_constraints(self) -> tuple[Constraint, ...]:
        return tuple(parse_constraint(c) for c in self.constraints)

    def build_space(self):
        """The :class:`~hytnas.space.Space`, at ``space.input_size`` when given."""
        from hytnas.space import get_space

        return get_space(self.space.name, input_size=self.space.input_size)

    def to_plain(self) -> dict[str, Any]:
        """A plain, JSON-able dict (what Ray workers receive and what is saved next to a run)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_plain(), sort_keys=False)

    def check_paths(self) -> None:
        """Raise ConfigError when an input folder does not exist (call before creating anything)."""
        root = self.dataset.root
        if root is not None and not self.dataset.download and not Path(root).is_dir():
            raise ConfigError(
                f"dataset.root: folder {root} does not exist; point it at the {self.dataset.name} data "
                "or set dataset.download: true"
            )


    def check_resources(self, cpus: float, gpus: float, where: str = "this machine") -> None:
        """Raise ConfigError when one trial (``resources``) needs more CPUs or GPUs than ``cpus`` /
        ``gpus`` (those of ``where``: this machine, or the largest node of a cluster): such a
        trial could never start and Tune would wait for it forever."""
        if self.resources.cpu > cpus:
            raise ConfigError(f"resources.cpu: {_fmt_value(self.resources.cpu)} CPUs per trial, but {where} has "
                              f"{_fmt_value(cpus)}; lower resources.cpu")
        if self.resources.gpu > gpus:
            have = "no CUDA GPU" if gpus == 0 else f"{_fmt_value(gpus)} GPUs"
            raise ConfigError(f"resources.gpu: {_fmt_value(self.resources.gpu)} GPUs per trial, but {where} has "
                              f"{have}; set resources.gpu: 0 or run where a GPU is")


def check_writable(path: str | os.PathLike[str], field: str) -> None:
    """Raise ConfigError (naming ``field``) unless the folder ``path`` exists or can be created
    and written; creates nothing. Walks up to the first existing ancestor, which must be a
    writable folder (``os.access``); a path component that is a regular file is an error. As root,
    ``os.access`` reports any folder on a writable file system as writable."""
    p = Path(os.path.abspath(path))
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{field}: {p} is a file, not a folder; choose another {field}")
    base = p
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise ConfigError(f"{field}: {base} is a file, so {p} cannot be created; choose another {field}")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ConfigError(f"{field}: {base} is not writable, so {p} cannot be {'written' if base == p else 'created'}; "
                          f"choose another {field}")


_SELECTABLE = tuple(m for m in METRICS if m != "test_accuracy")


def _objective_spec(o: Objective) -> str | dict[str, Any]:
    base = METRICS.get(o.name)
    if base is not None and (o.sense, o.source) == (base.sense, base.source):
        return o.name
    return {"name": o.name, "sense": o.sense, "source": o.source}


# ----------------------------------------------------------------------------------- errors
def _fmt_value(x: Any) -> str:
    if isinstance(x, float) and x.is_integer() and math.isfinite(x):
        return str(int(x))
    if isinstance(x, (dict, list)):
        return type(x).__name__
    return repr(x) if isinstance(x, str) else str(x)


_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_TYPES = {
    "int_parsing": "must be an integer", "int_from_float": "must be an integer", "int_type": "must be an integer",
    "float_parsing": "must be a number", "float_type": "must be a number", "bool_parsing": "must be true or false",
    "bool_type": "must be true or false", "string_type": "must be a string", "dict_type": "must be a mapping",
    "model_type": "must be a mapping", "model_attributes_type": "must be a mapping", "list_type": "must be a list",
    "finite_number": "must be a finite number",
}


def _quoted_scalar(value: str, typ: str) -> bool:
    """Whether ``value`` is a quoted YAML number/bool of the kind error ``typ`` expects (``"4"``)."""
    try:
        parsed = load_yaml(value)
    except yaml.YAMLError:
        return False
    if typ.startswith("bool"):
        return isinstance(parsed, bool)
    if typ.startswith(("int", "float")):
        return isinstance(parsed, (int, float)) and not isinstance(parsed, bool)
    return False


def _error_line(exc: ValidationError, prefix: str = "", root: Any = None) -> str:
    """The first error of ``exc`` (of the model ``root`` at ``prefix``; default the whole
    experiment) as one line naming the dotted field."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if prefix:
        loc = f"{prefix}.{loc}" if loc else prefix
    typ, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    cause = ctx.get("error")
    if isinstance(cause, HytnasError):
        return str(cause)  # already names its field
    if typ == "extra_forbidden":
        parent = err["loc"][:-1]
        model: Any = root or ExperimentConfig
        for p in parent:
            model = model.model_fields[str(p)].annotation if hasattr(model, "model_fields") else None
        allowed = ", ".join(model.model_fields) if hasattr(model, "model_fields") else ""
        return f"{loc}: unknown key" + (f"; allowed keys here: {allowed}" if allowed else "")
    if typ == "missing":
        return f"{loc}: missing (required)"
    if typ in _BOUNDS:
        bound = next(iter(ctx.values()))
        return f"{loc}: must be {_BOUNDS[typ]} {_fmt_value(bound)} (got {_fmt_value(value)})"
    if typ == "literal_error":
        choices = ctx.get("expected", "").replace("'", "").replace(" or ", ", ")
        return f"{loc}: must be one of {choices} (got {_fmt_value(value)})"
    if typ == "string_pattern_mismatch":
        return f"{loc}: {_fmt_value(value)} is not allowed; use letters, digits, '.', '_' or '-'"
    if typ in _TYPES:
        if isinstance(value, str) and _quoted_scalar(value, typ):
            return f"{loc}: {_TYPES[typ]}, not the string {value!r}; write it without quotes"
        return f"{loc}: {_TYPES[typ]} (got {_fmt_value(value)})"
    msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"{loc}: {msg}"


# ----------------------------------------------------------------------------------- loading
def parse_experiment(data: Mapping[str, Any]) -> ExperimentConfig:
    """Validate a plain dict; every problem is one :class:`ConfigError` naming the field."""
    if not isinstance(data, Mapping):
        raise ConfigError("config: must be a mapping of sections (name, space, dataset, ...)")
    try:
        return ExperimentConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_error_line(exc)) from None


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a copy of ``data``."""
    out: dict[str, Any] = _deep_copy(dict(data))
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. budget.num_samples=4")
        try:
            value = load_yaml(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML (quote strings with ':' or '#')") from None
        node: Any = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                node = node[_list_index(node, part, where)]
                continue
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif not isinstance(nxt, (dict, list)):
                raise ConfigError(f"--set {key}: {where} is a value ({_fmt_value(nxt)}), not a section")
            node = nxt
        last = parts[-1]
        if isinstance(node, list):
            node[_list_index(node, last, key)] = value
        else:
            node[last] = value
    return out


def _list_index(node: list[Any], part: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {where}: {part!r} is not an index of a list of {len(node)} items")
    return int(part)


def _deep_copy(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _deep_copy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deep_copy(v) for v in x]
    return x


def builtin_configs() -> list[str]:
    return sorted(p.stem for p in BUILTIN_CONFIG_DIR.glob("*.yaml")) if BUILTIN_CONFIG_DIR.is_dir() else []


def resolve_config_path(path: str | os.PathLike[str]) -> Path:
    """``path`` if it is a file; a bare name (``quickstart``) is looked up in the shipped configs."""
    p = Path(path)
    if p.is_file():
        return p
    s = str(path)
    if os.sep not in s and not s.endswith((".yaml", ".yml")) and s in builtin_configs():
        return BUILTIN_CONFIG_DIR / f"{s}.yaml"
    hint = f"; shipped configs: {', '.join(builtin_configs())}" if builtin_configs() else ""
    raise ConfigError(f"config {s}: file not found{hint}")


def load_experiment(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read an experiment YAML file (or a shipped config by name), apply ``--set`` overrides, validate."""
    p = resolve_config_path(path)
    data = read_yaml(p, "config", ConfigError)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {p}: must be a mapping of sections (name, space, dataset, ...)")
    return parse_experiment(apply_overrides(data, overrides))


# ----------------------------------------------------------------------------------- docs
def keys_table() -> str:
    """The Markdown table of every key, its default and meaning (``configs/README.md``)."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, f in model.model_fields.items():
            key = f"{prefix}{name}"
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                rows.append(f"| **`{key}`** | | {(ann.__doc__ or '').strip()} |")
                walk(ann, f"{key}.")
                continue
            if f.is_required():
                default = "(required)"
            elif f.default_factory is not None:
                default = f"`{_fmt_default(f.default_factory())}`"
            else:
                default = f"`{_fmt_default(f.default)}`"
            rows.append(f"| `{key}` | {default} | {(f.description or '').replace('|', '&#124;')} |")

    walk(ExperimentConfig, "")
    return "\n".join(rows) + "\n"


def _fmt_default(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt_default(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt_default(x)}" for k, x in v.items()) + "}"
    return str(v)
