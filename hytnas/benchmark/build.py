"""``hytnas benchmark build``: train a fixed arch list through the normal pipeline into a table.

The list (:func:`hytnas.benchmark.archlist.build_items`) goes through the pieces of the ordinary
search path (:mod:`hytnas.search`: preflight, the training trainable, the ``random`` searcher in
pool mode over the archs still to train, FIFO, MLflow tracking) in a Ray Tune run per training
seed (the seed is an experiment setting, ``training.seed``).

Resumable: :class:`TableRecorder` (a Tune callback on the driver) rewrites a partial table
atomically after every finished trial. A new build with the same config reads it, checks its
fingerprint (the arch list + the schedule) and trains only the missing ``(arch, seed)`` pairs.
When every pair is there, the table (one row per arch, base seed, in list order) and the seed
table (every seed of the replicated archs) are written.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from ray.tune import Callback

from hytnas.benchmark.archlist import BuildItem, build_items
from hytnas.benchmark.config import BuildConfig, experiment_for_build
from hytnas.benchmark.table import header_comment, read_header
from hytnas.data import make_datamodule
from hytnas.errors import ConfigError, DataError
from hytnas.runtime import NO_TRIAL_LOGGERS, init_ray, machine_cpus, shutdown
from hytnas.search import CONFIG_FILE, build_tuner, preflight
from hytnas.space import GENES, Space
from hytnas.table import read_arch_table, write_arch_table
from hytnas.utils import atomic_write_text

logger = logging.getLogger(__name__)

#: result keys copied into the table (when the trainable reports them)
RESULT_COLUMNS = ("val_accuracy", "val_loss", "test_accuracy", "params_k", "macs_m", "peak_sram_kb",
                  "model_size_kb", "latency_ms")


def schedule_of(cfg: BuildConfig) -> dict[str, Any]:
    """What fixes the numbers of a table besides the arch: data, training, input, hardware."""
    exp = cfg.experiment
    return {
        "space": exp.space.model_dump(mode="json"),
        "dataset": {k: v for k, v in exp.dataset.model_dump(mode="json").items() if k not in ("root", "num_workers")},
        "training": {k: v for k, v in exp.training.model_dump(mode="json").items() if k != "seed"},
        "hardware": exp.hardware.model_dump(mode="json"),
        "resources": exp.resources.model_dump(mode="json"),
    }


def fingerprint(space: Space, items: Sequence[BuildItem], schedule: Mapping[str, Any]) -> str:
    blob = json.dumps({"items": [[space.arch_id(i.arch), i.seed] for i in items], "schedule": schedule},
                      sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


@dataclass
class BuildState:
    """Rows of finished trials, keyed by ``(arch_id, seed)``."""

    space: Space
    path: Path
    fingerprint: str
    header: dict[str, Any]
    rows: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    def save(self) -> None:
        archs, rows = [], []
        for r in self.rows.values():
            archs.append(self.space.validate({g: r[g] for g in GENES}))
            rows.append({k: v for k, v in r.items() if k not in GENES})
        write_arch_table(self.path, self.space, archs, rows,
                         comment=header_comment({**self.header, "fingerprint": self.fingerprint, "partial": True}))

    @classmethod
    def load_or_new(cls, space: Space, path: Path, fp: str, header: dict[str, Any]) -> BuildState:
        state = cls(space, path, fp, header)
        if not path.is_file():
            return state
        old = read_header(path).get("fingerprint")
        if old != fp:
            raise ConfigError(
                f"benchmark.table: partial build {path} comes from another arch list or schedule "
                f"(fingerprint {old} != {fp}); restore that config or delete the partial file to start over"
            )
        archs, frame = read_arch_table(path, space, metrics=["seed"])
        for a, (_, r) in zip(archs, frame.iterrows()):
            row = {**r.to_dict(), **a.to_dict()}
            state.rows[(space.arch_id(a), int(row["seed"]))] = row
        return state


class TableRecorder(Callback):
    """Tune callback: turns each finished trial into a table row and saves the partial table.

    Per-epoch accuracy comes from every result (``val_accuracy`` at ``epoch``); the row's final
    metrics from the trial's last result; ``train_time_s`` is Ray's ``time_total_s`` (the whole
    trial: data, training, evaluation, cost and latency measurement).
    """

    def __init__(self, state: BuildState, items: Mapping[tuple[str, int], BuildItem], seed: int,
                 log: Callable[[str], None] = logger.info):
        self.state = state
        self.items = items
        self.seed = seed
        self.log = log
        self._curves: dict[str, dict[int, float]] = {}
        self.failed: list[str] = []
        self.finished = 0  # trials that completed or errored (recorded or not)
        self._t0 = time.monotonic()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "val_accuracy" in result and "epoch" in result:
            self._curves.setdefault(trial.trial_id, {})[int(result["epoch"])] = float(result["val_accuracy"])

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finished += 1
        result = trial.last_result or {}
        space = self.state.space
        arch = space.from_config(trial.config)
        key = (space.arch_id(arch), self.seed)
        if not result.get("done"):
            self.failed.append(key[0])
            self.log(f"benchmark build: trial {trial.trial_id} ({key[0]}) ended without a final result; not recorded")
            return
        item = self.items[key]
        row: dict[str, Any] = {**arch.to_dict(), "arch_id": key[0], "seed": self.seed,
                               "replicate": item.replicate, "source": item.source}
        for k in RESULT_COLUMNS:
            row[k] = float(result[k]) if k in result and result[k] is not None else math.nan
        row["train_time_s"] = float(result.get("time_total_s", math.nan))
        for e, acc in sorted(self._curves.pop(trial.trial_id, {}).items()):
            row[f"val_accuracy_e{e}"] = acc
        self.state.rows[key] = row
        self.state.save()
        n = len(self.state.rows)
        self.log(f"benchmark build: {n} trials recorded ({key[0]} seed {self.seed}: val_accuracy "
                 f"{row['val_accuracy']:.4f}, {row['train_time_s']:.1f} s; {time.monotonic() - self._t0:.0f} s this pass)")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finished += 1
        arch_id = self.state.space.arch_id(self.state.space.from_config(trial.config))
        self.failed.append(arch_id)
        self.log(f"benchmark build: trial {trial.trial_id} ({arch_id}) failed: {trial.error_file}")


@dataclass
class BuildResult:
    table: Path | None
    seeds_table: Path | None
    trained: int  # trials recorded by this call
    recorded: int  # trials in the partial table
    total: int  # trials of the whole list
    failed: list[str]
    wall_s: float
    interrupted: bool = False

    @property
    def complete(self) -> bool:
        return self.recorded == self.total


def build_table(cfg: BuildConfig, *, max_trials: int | None = None, write_partial: bool = False,
                log: Callable[[str], None] = logger.info) -> BuildResult:
    """Train what is missing of the build's list (at most ``max_trials`` trials this call);
    write the final tables when the list is complete (again, from the partial table, when it
    already is). ``write_partial``: train nothing, write the tables from the trials recorded so
    far (header ``complete: False``). Returns what happened."""
    t0 = time.monotonic()
    bench, exp = cfg.benchmark, cfg.experiment
    exp.check_paths()
    space = exp.build_space()
    items = build_items(space, bench.n_archs, seed=bench.seed, replicate=bench.replicate, seeds=bench.seeds,
                        include_zoo=bench.include_zoo)
    by_key = {i.key(space): i for i in items}
    schedule = schedule_of(cfg)
    fp = fingerprint(space, items, schedule)
    dm = make_datamodule(exp, space.input_size)
    header = {
        "space": exp.space.name,
        "num_classes": dm.num_classes,
        "in_channels": dm.in_channels,
        "space_id": space.space_id,
        "input_size": space.input_size,
        "dataset": exp.dataset.name,
        "schedule": schedule,
        "config": cfg.source or "(python)",
        "n_archs": bench.n_archs,
        "seeds": bench.seeds,
        "replicate": bench.replicate,
    }
    state = BuildState.load_or_new(space, bench.partial_path(), fp, header)
    todo = [i for i in items if i.key(space) not in state.rows]
    if max_trials is not None or write_partial:
        todo = todo[:0 if write_partial else max(0, max_trials or 0)]
    log(f"benchmark build: {len(items)} trials in the list, {len(state.rows)} already recorded, "
        f"{len(todo)} to train now")
    failed: list[str] = []
    interrupted = False
    for seed in sorted({i.seed for i in todo}):
        batch = [i for i in todo if i.seed == seed]
        recorder = TableRecorder(state, by_key, seed, log)
        _run_pass(cfg, space, batch, seed, recorder)
        failed += recorder.failed
        if recorder.finished < len(batch):  # Tune returns normally after Ctrl-C: stop here
            interrupted = True
            log(f"benchmark build: interrupted after {recorder.finished} of {len(batch)} trials of seed {seed}")
            break
    result = BuildResult(None, None, sum(1 for i in todo if i.key(space) in state.rows), len(state.rows), len(items),
                         failed, time.monotonic() - t0, interrupted)
    if len(state.rows) == len(items) or (write_partial and state.rows):
        header["complete"] = len(state.rows) == len(items)
        header["date"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        header["sum_trial_time_s"] = round(sum(r["train_time_s"] for r in state.rows.values()), 1)
        result.table, result.seeds_table = write_final_tables(cfg, space, items, state, header)
        log(f"benchmark build: wrote {result.table} and {result.seeds_table}")
    return result


def _run_pass(cfg: BuildConfig, space: Space, batch: Sequence[BuildItem], seed: int, recorder: TableRecorder) -> None:
    """One Tune run of the normal search pieces over exactly the archs of ``batch``, with training
    seed ``seed``: the training trainable, the ``random`` searcher in pool mode (``candidates``:
    the batch written as an arch table; ``num_samples`` = the batch size, so every arch of the
    batch is trained once), FIFO, the MLflow tracker, and ``recorder``.

    Unlike a search, the Tuner reuses its trial actors (``reuse_actors=True``): a build runs
    hundreds of short trials, and a fresh worker process per trial (importing torch and
    Lightning again) costs more than the training on a loaded 2-core machine."""
    storage = Path(cfg.experiment.storage_path)
    attempt = 0
    while (storage / f"seed{seed}-pass{attempt}").exists():
        attempt += 1
    run_name = f"seed{seed}-pass{attempt}"
    pool = storage / "pools" / f"{run_name}.csv"
    write_arch_table(pool, space, [i.arch for i in batch], comment=f"benchmark build pool, seed {seed}")
    exp = experiment_for_build(cfg, len(batch), seed, pool, run_name)
    plan = preflight(exp)
    # max(CPUs, max_concurrent * cpu per trial) logical CPUs, so that benchmark.max_concurrent_trials trials
    # really run at once (oversubscription on purpose; each trial still uses floor(resources.cpu) threads)
    started = init_ray(num_cpus=max(machine_cpus(), math.ceil(exp.budget.max_concurrent_trials * exp.resources.cpu)),
                       env=NO_TRIAL_LOGGERS)
    try:
        exp.storage_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(exp.storage_dir / CONFIG_FILE, exp.to_yaml())
        tuner = build_tuner(exp, plan=plan, callbacks=[recorder], quiet=True)
        # trial loggers are off (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS): the recorder is the record, so the
        # ResultGrid's complaint about missing result.json files is noise
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
        tuner.fit()
    finally:
        shutdown(started)


def write_final_tables(cfg: BuildConfig, space: Space, items: Sequence[BuildItem], state: BuildState,
                       header: Mapping[str, Any]) -> tuple[Path, Path | None]:
    """The table (replicate 0, list order) and the seed table (all seeds of replicated archs),
    from the recorded trials (all of them once the build is complete)."""
    bench = cfg.benchmark
    epoch_cols = sorted({k for r in state.rows.values() for k in r if k.startswith("val_accuracy_e")},
                        key=lambda c: int(c.removeprefix("val_accuracy_e")))
    cols = ["arch_id", "source", "seed", "val_accuracy", "val_loss", "test_accuracy", *epoch_cols,
            "params_k", "macs_m", "peak_sram_kb", "model_size_kb", "latency_ms", "train_time_s"]

    def pick(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{c: r.get(c, math.nan) for c in cols} for r in rows]

    done = {i for i in items if i.key(space) in state.rows}  # all of them, unless writing a partial build
    primary = [i for i in items if i.replicate == 0 and i in done]
    rows = [state.rows[i.key(space)] for i in primary]
    table = bench.table_path()
    write_arch_table(table, space, [i.arch for i in primary], pick(rows),
                     comment=header_comment({**header, "rows": "one per arch, training seed = benchmark.seed"}))
    replicated = {i.arch for i in done if i.replicate > 0}
    reps = sorted((i for i in done if i.arch in replicated), key=lambda i: (space.arch_id(i.arch), i.seed))
    if not reps:
        return table, None
    seeds_path = bench.seeds_table_path()
    write_arch_table(seeds_path, space, [i.arch for i in reps], pick([state.rows[i.key(space)] for i in reps]),
                     comment=header_comment({**header, "rows": "one per (arch, training seed) of the replicated archs"}))
    return table, seeds_path


def seed_noise(path: str | Path, space: Space, metrics: Sequence[str] = ("val_accuracy", "test_accuracy")) -> dict[str, Any]:
    """Seed noise of a seed table: per metric, the across-seed standard deviation of each arch
    (ddof=1), summarised (mean, median, max over archs), and the Kendall tau between the arch
    rankings of every pair of seeds (mean over pairs)."""
    from scipy.stats import kendalltau

    archs, frame = read_arch_table(path, space, metrics=["seed", *metrics])
    frame["arch_id"] = [space.arch_id(a) for a in archs]
    if frame.groupby("arch_id").size().min() < 2:
        raise DataError(f"table {path}: needs at least two seeds per arch to measure seed noise")
    out: dict[str, Any] = {"archs": int(frame["arch_id"].nunique()), "seeds": sorted(int(s) for s in frame["seed"].unique())}
    for m in metrics:
        std = frame.groupby("arch_id")[m].std(ddof=1)
        wide = frame.pivot(index="arch_id", columns="seed", values=m)
        taus = [kendalltau(wide[a], wide[b], nan_policy="omit").statistic for i, a in enumerate(wide.columns) for b in wide.columns[i + 1:]]
        out[m] = {"std_mean": float(std.mean()), "std_median": float(std.median()), "std_max": float(std.max()),
                  "kendall_tau_between_seeds": float(pd.Series(taus).mean())}
    return out
