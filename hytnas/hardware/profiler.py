"""Profiling a device: the per-unit latency table and end-to-end validation latencies.

:func:`run_profile` runs on the target device (it needs only this package and torch) and writes
two plain files into ``out_dir``, which the user copies back:

- ``lut.json`` (:mod:`hytnas.hardware.lut`): the median and IQR latency of every distinct unit
  (stem, each block repeat, head) of the space, or of the units of a sample of archs
  (``coverage="sample"``), or of none (``coverage="none"``: validation archs only, for devices
  where a per-unit sum is a poor model, e.g. GPUs);
- ``validation.csv`` (the arch-table format of :mod:`hytnas.table`): ``n_validate`` archs
  sampled with ``seed``, timed end to end (``latency_ms`` in the run's ``statistic``, and
  ``latency_median_ms``, ``latency_min_ms``, ``latency_iqr_ms``). They fit and
  check the LUT's residual correction and any learned predictor.

Both files are rewritten atomically every ``checkpoint_s`` seconds and when the run stops, so an
interrupted run continues where it stopped: units and archs already timed are skipped. A rerun
with other settings into the same folder is refused (one line naming the setting).

Timing: ``hytnas.costs.measure_latency`` with ``threads`` intra-op threads; one shared warm-up
of ``warmup_s`` seconds first (caches, allocator, CPU clock), then per unit ``warmup`` untimed
and ``runs`` timed batch-1 passes; the median, the fastest run and the inter-quartile range are
stored. ``statistic`` picks what the LUT and ``latency_ms`` stand for: ``median`` (default) or
``min``, the fastest run, which other processes disturb least: prefer it on a shared machine
(re-timing the same archs drifted 17 % by the median but 6 % by the minimum on this project's
loaded 2-core machine).

``rounds`` (default 1): time every unit, then every validation arch, in that many passes over
the whole list instead of once, so that each one is timed at several moments minutes apart (a
virtual machine's speed drifts over minutes; consecutive runs of one unit all see the same
state). An entry then keeps the fastest run over all rounds (``min_ms``) and the median, IQR and
quartiles of its fastest round (lowest median): both only ever improve as rounds are added, so a
run can be continued with more rounds. On this project's idle 2-core VM, two independent
timings of the same 40 archs (10 runs each) agreed within +-10 % for 75 % of the archs (Kendall
tau 0.88) with one round and 97 % (tau 0.96) with the minimum over 3 interleaved rounds
(BENCHMARKS.md, "Latency predictors"). ``rounds`` may differ between a run and its continuation.
"""
from __future__ import annotations

import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from hytnas.costs import measure_latency
from hytnas.errors import DataError, HardwareError
from hytnas.hardware.blocks import BlockSpec, archs_block_specs, space_block_specs
from hytnas.hardware.lut import LUT_FILE, VALIDATION_FILE, LatencyTable
from hytnas.space import Space
from hytnas.table import read_arch_table, write_arch_table


@dataclass(frozen=True)
class ProfileSettings:
    """What a profile run measures and how (recorded in ``lut.json``'s ``meta``)."""

    input_size: int
    num_classes: int = 10
    in_channels: int = 3
    threads: int = 1
    runs: int = 10  # timed passes per unit
    warmup: int = 2  # untimed passes per unit (after the shared warm-up)
    warmup_s: float = 2.0  # shared warm-up at the start, seconds
    n_validate: int = 50  # archs timed end to end
    validate_runs: int = 30
    validate_warmup: int = 5
    coverage: Literal["full", "sample", "none"] = "full"  # none: validation archs only
    sample: int = 300  # coverage="sample": archs whose units are profiled
    seed: int = 0
    torch_device: str = "cpu"
    statistic: Literal["median", "min"] = "median"
    rounds: int = 1  # passes over all units (and all validation archs); see the module doc

    def __post_init__(self) -> None:
        for name in ("input_size", "num_classes", "in_channels", "threads", "runs", "validate_runs", "sample", "rounds"):
            if int(getattr(self, name)) < 1:
                raise HardwareError(f"profile: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup", "validate_warmup", "n_validate"):
            if int(getattr(self, name)) < 0:
                raise HardwareError(f"profile: {name} must be >= 0, got {getattr(self, name)}")
        if self.statistic not in ("median", "min"):
            raise HardwareError(f"profile: statistic must be median or min, got {self.statistic!r}")
        if self.coverage not in ("full", "sample", "none"):
            raise HardwareError(f"profile: coverage must be full, sample or none, got {self.coverage!r}")


#: the validation table's metric columns (``latency_rounds``: rounds folded in; absent in files
#: written before rounds existed, which count as one round)
VALIDATION_COLUMNS = ("latency_ms", "latency_median_ms", "latency_min_ms", "latency_iqr_ms")
ROUNDS_COLUMN = "latency_rounds"
#: settings that must match to continue a run in the same folder
_MUST_MATCH = ("space_id", "input_size", "num_classes", "in_channels", "threads", "runs", "warmup",
               "coverage", "sample", "seed", "n_validate", "validate_runs", "validate_warmup", "torch_device",
               "statistic")


@dataclass(frozen=True)
class ProfileResult:
    out_dir: Path
    n_units: int
    n_units_timed_now: int
    n_validate: int
    n_validate_timed_now: int
    seconds: float  # the whole call
    lut_seconds: float  # timing the units (shared warm-up included)

    @property
    def lut_path(self) -> Path:
        return self.out_dir / LUT_FILE

    @property
    def validation_path(self) -> Path:
        return self.out_dir / VALIDATION_FILE


def units_to_profile(space: Space, settings: ProfileSettings) -> dict[str, BlockSpec]:
    """The units the run times: every unit of the space, those of ``sample`` archs, or none."""
    kw = dict(input_size=settings.input_size, num_classes=settings.num_classes, in_channels=settings.in_channels)
    if settings.coverage == "none":
        return {}
    if settings.coverage == "full":
        return space_block_specs(space, **kw)
    archs = space.sample(min(settings.sample, space.cardinality()), seed=settings.seed)
    return archs_block_specs(space, archs, **kw)


def validation_archs(space: Space, settings: ProfileSettings) -> list:
    """The archs timed end to end (a seeded sample, disjoint in seed from the LUT sample)."""
    n = min(settings.n_validate, space.cardinality())
    return space.sample(n, seed=settings.seed + 1_000_003)


class _Progress:
    def __init__(self, report: Callable[[str], None] | None, label: str, total: int, every_s: float = 2.0):
        self.report, self.label, self.total, self.every_s = report, label, total, every_s
        self.t0 = self.last = time.perf_counter()

    def __call__(self, done: int, timed: int, force: bool = False) -> None:
        now = time.perf_counter()
        if self.report is None or not (force or now - self.last >= self.every_s):
            return
        self.last = now
        el = now - self.t0
        left = el / timed * (self.total - done) if timed else float("nan")
        eta = f", ~{left:.0f} s left" if timed and done < self.total else ""
        self.report(f"{self.label}: {done}/{self.total} ({100 * done / max(self.total, 1):.0f} %), {el:.0f} s{eta}")


def _meta(space: Space, settings: ProfileSettings, device_name: str) -> dict[str, Any]:
    return {
        "device": device_name, "space": space.to_dict(), "space_id": space.space_id,
        **asdict(settings),
        "torch": torch.__version__, "machine": platform.machine(), "processor": platform.processor(),
        "python": platform.python_version(),
    }


def _check_resume(old: LatencyTable, meta: dict[str, Any], path: Path) -> None:
    for k in _MUST_MATCH:
        if old.meta.get(k) != meta[k]:
            raise HardwareError(
                f"profile: {path} was made with {k}={old.meta.get(k)!r}, this run has {k}={meta[k]!r}; "
                f"continue with the same settings or use another --out folder"
            )


def time_module(module: torch.nn.Module, res: int, chs: int, settings: ProfileSettings, runs: int,
                warmup: int) -> dict[str, float]:
    """``runs`` timed batch-1 passes of ``module`` on the profile's device (after ``warmup``): the
    timings an entry stores (one round of them)."""
    module = module.to(settings.torch_device)
    r = measure_latency(module, res, chs, threads=settings.threads, runs=runs, warmup=warmup)
    return {"median_ms": r.median_ms, "min_ms": r.min_ms, "iqr_ms": r.iqr_ms, "p25_ms": r.p25_ms, "p75_ms": r.p75_ms,
            "runs": r.runs}


def fold_round(entry: Mapping[str, float] | None, new: Mapping[str, float]) -> dict[str, float]:
    """One more round of timings (``time_module``'s keys) folded into a unit's entry: the fastest run
    over all rounds, and the median / quartiles / IQR of the round with the lowest median."""
    if entry is None:
        return {**new, "rounds": 1}
    best = new if new["median_ms"] < entry["median_ms"] else entry
    out = {k: best[k] for k in ("median_ms", "iqr_ms", "p25_ms", "p75_ms") if k in best}
    return {**out, "min_ms": min(entry.get("min_ms", entry["median_ms"]), new["min_ms"]),
            "runs": int(entry.get("runs", 0)) + int(new["runs"]), "rounds": rounds_of(entry) + 1}


def rounds_of(entry: Mapping[str, float] | None) -> int:
    """Rounds folded into an entry (0 for none; entries written before rounds existed: 1)."""
    return 0 if entry is None else int(entry.get("rounds", 1))


def time_archs(space: Space, archs: list, settings: ProfileSettings, rows: dict[str, dict[str, float]], *,
               rounds: int, runs: int, warmup: int,
               on_timed: Callable[[str, int], None] | None = None) -> None:
    """Time ``archs`` end to end (batch 1, built afresh) in ``rounds`` interleaved passes over the
    whole list, folding each pass into ``rows[arch_id]`` with :func:`fold_round`. An arch that
    already holds ``k`` rounds sits out the first ``k`` passes, so a run continues where it
    stopped. ``on_timed(arch_id, pass_index)`` is called after each timing (progress, saving)."""
    from hytnas.models import build_model

    ids = [space.arch_id(a) for a in archs]
    for rnd in range(rounds):
        for a, i in zip(archs, ids):
            if rounds_of(rows.get(i)) > rnd:
                continue
            model = build_model(space.to_arch_cfg(a), settings.num_classes, settings.in_channels, settings.input_size)
            rows[i] = fold_round(rows.get(i), time_module(model, settings.input_size, settings.in_channels, settings,
                                                          runs, warmup))
            if on_timed is not None:
                on_timed(i, rnd)


def _shared_warmup(specs: list[BlockSpec], settings: ProfileSettings) -> None:
    """Run the largest units for ``warmup_s`` seconds (clock up, caches and allocator warm)."""
    if settings.warmup_s <= 0 or not specs:
        return
    big = sorted(specs, key=lambda s: s.in_chs * s.res * s.res, reverse=True)[:3]
    t_end = time.perf_counter() + settings.warmup_s
    while time.perf_counter() < t_end:
        for s in big:
            time_module(s.build(), s.res, s.in_chs, settings, runs=1, warmup=0)


def run_profile(
    space: Space,
    out_dir: str | Path,
    settings: ProfileSettings,
    *,
    device_name: str = "unnamed",
    report: Callable[[str], None] | None = None,
    checkpoint_s: float = 10.0,
) -> ProfileResult:
    """Profile ``space`` on this machine into ``out_dir`` (continues an interrupted run)."""
    t_start = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise HardwareError(f"profile: --out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    lut_path, val_path = out / LUT_FILE, out / VALIDATION_FILE
    meta = _meta(space, settings, device_name)
    entries: dict[str, dict[str, float]] = {}
    if lut_path.exists():
        old = LatencyTable.load(lut_path)
        _check_resume(old, meta, lut_path)
        entries = {k: dict(v) for k, v in old.entries.items()}

    specs = units_to_profile(space, settings)
    R = settings.rounds
    total = len(specs) * R  # unit-rounds
    done = sum(min(rounds_of(entries.get(k)), R) for k in specs)
    if report:
        report(f"lut: {len(specs)} distinct units ({settings.coverage} coverage) x {R} round(s), "
               f"{done} unit-rounds already timed")

    def save_lut(complete: bool) -> None:
        LatencyTable(entries=entries, meta=meta, complete=complete).save(lut_path)

    timed_now: set[str] = set()
    n_timed = 0
    last_save = time.perf_counter()
    progress = _Progress(report, "lut", total)
    try:
        _shared_warmup([s for k, s in specs.items() if rounds_of(entries.get(k)) < R], settings)
        progress = _Progress(report, "lut", total)  # ETA from the timed units only
        for rnd in range(R):
            for key, spec in sorted(specs.items()):
                if rounds_of(entries.get(key)) > rnd:
                    continue
                t = time_module(spec.build(), spec.res, spec.in_chs, settings, settings.runs, settings.warmup)
                entries[key] = fold_round(entries.get(key), t)
                timed_now.add(key)
                n_timed += 1
                progress(done + n_timed, n_timed)
                if time.perf_counter() - last_save >= checkpoint_s:
                    save_lut(False)
                    last_save = time.perf_counter()
    finally:
        save_lut(all(rounds_of(entries.get(k)) >= R for k in specs))
    progress(total, n_timed, force=True)
    lut_seconds = time.perf_counter() - t_start

    # ---- end-to-end validation archs
    archs = validation_archs(space, settings)
    rows: dict[str, dict[str, float]] = {}
    if val_path.exists():
        try:
            done_archs, df = read_arch_table(val_path, space, metrics=VALIDATION_COLUMNS)
        except DataError as exc:
            raise HardwareError(f"profile: cannot continue from {val_path} ({exc}); delete it to re-time the archs") from None
        has_rounds = ROUNDS_COLUMN in df.columns
        for a, (_, r) in zip(done_archs, df.iterrows()):
            rows[space.arch_id(a)] = {"median_ms": float(r["latency_median_ms"]), "min_ms": float(r["latency_min_ms"]),
                                      "iqr_ms": float(r["latency_iqr_ms"]),
                                      "rounds": int(r[ROUNDS_COLUMN]) if has_rounds else 1}
    ids = [space.arch_id(a) for a in archs]

    def save_val() -> None:
        done = [(a, rows[i]) for a, i in zip(archs, ids) if i in rows]
        write_arch_table(val_path, space, [a for a, _ in done],
                         [{"latency_ms": r[f"{settings.statistic}_ms"], "latency_median_ms": r["median_ms"],
                           "latency_min_ms": r["min_ms"], "latency_iqr_ms": r["iqr_ms"], ROUNDS_COLUMN: r["rounds"]}
                          for _, r in done],
                         comment=f"hytnas profile: end-to-end batch-1 latency on {device_name}; latency_ms is the "
                                 f"{settings.statistic} of {settings.validate_runs} runs per round, {R} round(s) "
                                 f"(the fastest run / the median of the fastest round); threads={settings.threads} "
                                 f"space={space.name}")

    total = len(archs) * R
    done = sum(min(rounds_of(rows.get(i)), R) for i in ids)
    progress = _Progress(report, "validation", total)
    val_now: set[str] = set()
    n_val = 0
    last_save = time.perf_counter()

    def timed(i: str, _rnd: int) -> None:
        nonlocal n_val, last_save
        val_now.add(i)
        n_val += 1
        progress(done + n_val, n_val)
        if time.perf_counter() - last_save >= checkpoint_s:
            save_val()
            last_save = time.perf_counter()

    try:
        time_archs(space, archs, settings, rows, rounds=R, runs=settings.validate_runs,
                   warmup=settings.validate_warmup, on_timed=timed)
    finally:
        if rows:  # nothing timed yet: no file (an empty one would have no metric columns to continue from)
            save_val()
    progress(total, n_val, force=True)
    return ProfileResult(out, len(specs), len(timed_now), len(archs), len(val_now), time.perf_counter() - t_start,
                         lut_seconds)
