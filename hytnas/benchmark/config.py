"""The benchmark-build configuration (``configs/benchmark-fmnist.yaml``).

A build file has two sections::

    benchmark:    # what to train and where the table goes (BuildSection below)
    experiment:   # an ordinary experiment config (hytnas.config schema): space, dataset,
                  # training schedule, resources, hardware, storage_path, mlflow

The build sets the experiment's ``search`` (``random`` in pool mode over the archs still to
train), ``budget.num_samples`` (the number of those archs) and ``scheduler`` (fifo: every arch trained for the full schedule);
giving them in the file is an error, so nobody believes they take effect. ``objectives`` only
choose Tune's metric here (the table records every metric).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hytnas.config import ExperimentConfig, _error_line, apply_overrides, parse_experiment
from hytnas.errors import ConfigError
from hytnas.utils import read_yaml

BUILD_CONFIG_VERSION = 1
_OWNED_BY_BUILD = ("search", "budget", "scheduler")


class BuildSection(BaseModel):
    """What a benchmark build trains and writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_archs: int = Field(300, ge=1, description="archs of the Sobol sample over the space's latent encoding")
    seed: int = Field(0, ge=0, description="seed of the Sobol sample and base training seed of every arch")
    replicate: int = Field(20, ge=0, description="the first archs of the list trained again with more seeds")
    seeds: int = Field(3, ge=1, description="training seeds of the replicated archs (seed, seed+1, ...)")
    include_zoo: bool = Field(True, description="append the zoo models that are points of the space")
    table: str = Field("benchmarks/data/table.csv.gz", description="output table (one row per arch, base seed)")
    seeds_table: str | None = Field(None, description="replicate rows (all seeds); null: <table>-seeds.csv.gz")
    max_concurrent_trials: int = Field(2, ge=1, description="trials running at the same time (may exceed the "
                                                            "cores: Ray then gets that many logical CPUs)")

    def table_path(self) -> Path:
        return Path(os.path.abspath(self.table))

    def seeds_table_path(self) -> Path:
        if self.seeds_table:
            return Path(os.path.abspath(self.seeds_table))
        p = self.table_path()
        stem = p.name.removesuffix(".gz").removesuffix(".csv")
        return p.with_name(f"{stem}-seeds.csv.gz")

    def partial_path(self) -> Path:
        """The resumable record of finished trials (rewritten atomically after each trial)."""
        p = self.table_path()
        stem = p.name.removesuffix(".gz").removesuffix(".csv")
        return p.with_name(f"{stem}.partial.csv")


class BuildConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    benchmark: BuildSection
    experiment: ExperimentConfig
    source: str = ""  # the file it came from (provenance only)


def parse_build_config(data: Mapping[str, Any], source: str = "") -> BuildConfig:
    """Validate a plain dict (``benchmark`` + ``experiment`` sections); one ConfigError line per problem."""
    if not isinstance(data, Mapping):
        raise ConfigError("benchmark config: must be a mapping with the sections benchmark and experiment")
    unknown = [k for k in data if k not in ("benchmark", "experiment")]
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key; a benchmark config has the sections benchmark and experiment")
    if "experiment" not in data or not isinstance(data["experiment"], Mapping):
        raise ConfigError("experiment: missing; give an experiment section (name, space, dataset, training, ...)")
    exp = dict(data["experiment"])
    for key in _OWNED_BY_BUILD:
        if key in exp:
            raise ConfigError(f"experiment.{key}: set by the build (the fixed arch list in pool mode); remove it")
    try:
        bench = BuildSection.model_validate(dict(data.get("benchmark") or {}))
    except ValidationError as exc:
        raise ConfigError(_error_line_bench(exc)) from None
    try:
        experiment = parse_experiment(exp)
    except ConfigError as exc:
        raise ConfigError(f"experiment.{exc}") from None
    return BuildConfig(benchmark=bench, experiment=experiment, source=source)


def _error_line_bench(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"benchmark.{loc}: unknown key; allowed keys here: {', '.join(BuildSection.model_fields)}"
    try:
        return _error_line(exc, prefix="benchmark")
    except (KeyError, AttributeError):
        return f"benchmark.{loc}: {err['msg']}"


def load_build_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> BuildConfig:
    """Read a benchmark build YAML, apply ``--set`` overrides (``benchmark.n_archs=8``), validate."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config {p}: file not found")
    data = read_yaml(p, "config", ConfigError)
    if not isinstance(data, dict):
        raise ConfigError(f"config {p}: must be a mapping with the sections benchmark and experiment")
    return parse_build_config(apply_overrides(data, overrides), source=str(p))


def experiment_for_build(cfg: BuildConfig, num_samples: int, seed: int, pool: Path, run_name: str) -> ExperimentConfig:
    """The experiment config of one pass of a build: training seed ``seed``; the ``random``
    searcher in pool mode over ``pool`` (an arch table of the archs to train) with
    ``num_samples`` = the pool size, so it trains exactly the pool; fifo; its own Tune folder
    ``<storage_path>/<run_name>``; every pass logs into the same MLflow store and experiment."""
    plain = cfg.experiment.to_plain()
    plain["name"] = f"{cfg.experiment.name}-{run_name}"
    plain["storage_path"] = str(Path(cfg.experiment.storage_path) / run_name)
    plain["training"]["seed"] = seed
    plain["mlflow"] = {**plain["mlflow"],
                       "tracking_uri": cfg.experiment.tracking_uri,
                       "experiment_name": cfg.experiment.mlflow_experiment}
    plain["search"] = {"algorithm": "random", "seed": seed, "options": {"candidates": str(pool)}}
    plain["scheduler"] = {"type": "fifo"}
    plain["budget"] = {"num_samples": num_samples, "max_concurrent_trials": cfg.benchmark.max_concurrent_trials}
    return parse_experiment(plain)
