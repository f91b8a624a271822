"""``hytnas benchmark run``: searchers x seeds on a table (or its surrogate), hypervolume curves.

Every run goes through Ray Tune: the searcher (``search_algos.tune.make_search_alg``, ``ax`` included) +
the lookup trainable (``--problem table``) or the surrogate trainable (``--problem surrogate``),
one trial at a time, so "evaluations" is well defined: the ``i``-th completed trial.

- ``table``: searchers are restricted to the table's archs (pool mode, ``candidates: TABLE``);
  a run ends early when the pool is used up (its curve then stays at its last value, which is
  the true-front HV). The true front is exact: every arch of the problem is in the table.
- ``surrogate``: searchers roam the whole space; the surrogate answers. HV is still measured
  with the table's reference point and normalised by the table's true-front HV (so a
  surrogate run may exceed 1.0: the surrogate's optimum is not the table's).

Outputs in ``--out``, per objective pair ``<a>-vs-<b>``: ``curves.json`` (every run's curve,
reference point, true HV, ...), ``curves.png`` (mean +- std of HV / true HV across seeds),
``summary.csv`` and ``summary.md`` (per searcher: HV / true HV at 50/100/200/500 evaluations,
mean +- std over seeds; evaluations to reach 95 % and 99 % of the true HV, median over seeds and
how many seeds got there; the fraction of the true Pareto archs evaluated within 50 and 100
evaluations, mean over seeds: stricter than HV, whose bulk a few good archs already cover; the
median and 95th percentile of the wall time of a suggestion, over every suggestion of its runs:
the time in ``Searcher.suggest`` of each call that returned a trial, :class:`TimedSearcher`).

Every finished run is also written on its own (``<a>-vs-<b>/runs/<searcher>-seed<k>.json``, with
the table's SHA-256, problem and budget). A run whose file matches is kept, not run again, so an
interrupted benchmark continues where it stopped, and several invocations with different
``--searchers`` (e.g. in parallel) fill one folder: the curves and the summary cover every
matching run in it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune
from ray.tune.search import ConcurrencyLimiter

from hytnas.benchmark.surrogate import Surrogate
from hytnas.benchmark.table import BenchmarkTable
from hytnas.callbacks import Completions
from hytnas.errors import ConfigError
from hytnas.mo import curve_of, evals_to_reach, hv_at, true_front
from hytnas.objectives import Objective, get_objectives
from hytnas.runtime import NO_TRIAL_LOGGERS, init_ray, shutdown
from hytnas.utils import atomic_write_json, atomic_write_text
from trainables.lookup import make_lookup_trainable
from trainables.surrogate import make_surrogate_trainable

logger = logging.getLogger(__name__)

#: benchmark labels that are a built-in searcher with options: label -> (searcher, options)
SEARCHER_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "mobo-qlognehvi": ("mobo", {"acquisition": "qlognehvi"}),  # mobo's default acquisition before ParEGO
    "mobo-rank_ensemble": ("mobo", {"surrogate": "rank_ensemble"}),  # the paper's surrogate
}
SEARCHERS = ("mobo", *SEARCHER_VARIANTS, "random", "optuna-nsga2", "optuna-tpe", "optuna-gp", "ax")
PROBLEMS = ("table", "surrogate")
MILESTONES = (50, 100, 200, 500)
TARGETS = (0.95, 0.99)
#: Evaluation counts at which the fraction of the true Pareto archs found is reported.
FRONT_AT = (50, 100)
DEFAULT_PAIRS = (("val_accuracy", "latency_ms"), ("val_accuracy", "params_k"))


@dataclass(frozen=True)
class RunSpec:
    problem: str
    table: Path
    searchers: tuple[str, ...]
    budget: int
    seeds: int
    pairs: tuple[tuple[str, ...], ...] = DEFAULT_PAIRS
    out: Path = Path("benchmarks/results/run")
    searcher_options: dict[str, dict[str, Any]] | None = None

    def check(self) -> None:
        if self.problem not in PROBLEMS:
            raise ConfigError(f"--problem: must be one of {', '.join(PROBLEMS)} (got {self.problem!r})")
        bad = [s for s in self.searchers if s not in SEARCHERS]
        if bad:
            raise ConfigError(f"--searchers: unknown searcher {bad[0]!r}; use any of {', '.join(SEARCHERS)}")
        if not self.searchers:
            raise ConfigError("--searchers: give at least one searcher")
        if self.budget < 1:
            raise ConfigError(f"--budget: must be >= 1 (got {self.budget})")
        if self.seeds < 1:
            raise ConfigError(f"--seeds: must be >= 1 (got {self.seeds})")
        for pair in self.pairs:
            if len(pair) < 2:
                raise ConfigError(f"--objectives: give at least two objectives per pair (got {','.join(pair)})")
            get_objectives(pair)


def make_benchmark_searcher(name: str, space: Any, objectives: Sequence[Objective], seed: int, *,
                            candidates: Sequence[Any] | None = None, options: dict[str, Any] | None = None,
                            **factory_kwargs: Any):
    """The searcher labelled ``name`` (:data:`SEARCHERS`) for Ray Tune, one trial at a time; pool
    mode over ``candidates`` when given; ``factory_kwargs`` (``num_classes``, ...) go to
    :func:`search_algos.make_searcher`."""
    from search_algos.tune import make_search_alg

    name, extra = SEARCHER_VARIANTS.get(name, (name, {}))
    opts = {**(options or {}), **extra}
    if candidates is not None:
        opts["candidates"] = list(candidates)
    return make_search_alg(name, space=space, objectives=objectives, seed=seed, max_concurrent=1, options=opts,
                           **factory_kwargs)


def make_searcher(name: str, table: BenchmarkTable, objectives: Sequence[Objective], seed: int, pool: bool,
                  options: dict[str, Any] | None = None):
    """The searcher ``name`` for the benchmark (pool mode over the table's archs when ``pool``)."""
    head = table.header
    return make_benchmark_searcher(name, table.space, objectives, seed, candidates=table.archs if pool else None,
                                   options=options, num_classes=int(head.get("num_classes", 10)),
                                   in_channels=int(head.get("in_channels", 1)), input_size=table.space.input_size)


class TimedSearcher(ConcurrencyLimiter):
    """A ``ConcurrencyLimiter`` of one trial at a time that records in :attr:`suggest_s` the wall
    time of every ``suggest`` call that returned a trial config (not the calls that said "wait"
    or "finished")."""

    def __init__(self, searcher: Any) -> None:
        super().__init__(searcher, max_concurrent=1)
        self.suggest_s: list[float] = []

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        t0 = time.perf_counter()
        out = super().suggest(trial_id)
        if isinstance(out, dict):
            self.suggest_s.append(time.perf_counter() - t0)
        return out


def run_one(trainable: Any, searcher: Any, budget: int, storage: Path, name: str) -> tuple[list[dict[str, Any]], list[float]]:
    """One Tune run (one trial at a time): the trials' final results in completion order, and
    the wall time of each suggestion (:class:`TimedSearcher`)."""
    rec = Completions()
    searcher = TimedSearcher(searcher)
    # Trial loggers are off (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS): Completions is the record, so
    # the ResultGrid's complaint about missing result.json files is noise.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    tuner = tune.Tuner(
        trainable,
        # one trial at a time: TimedSearcher is a ConcurrencyLimiter (Tune warns when
        # max_concurrent_trials is given as well)
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=budget, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), callbacks=[rec], verbose=0,
                                  log_to_file=False, failure_config=tune.FailureConfig(max_failures=0)),
    )
    tuner.fit()
    return rec.results, searcher.suggest_s


def run_benchmark(spec: RunSpec, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every searcher x seed for every objective pair; write the files; return the summaries."""
    spec.check()
    table = BenchmarkTable.load(spec.table)
    out = Path(spec.out).resolve()  # Ray Tune needs an absolute storage path
    out.mkdir(parents=True, exist_ok=True)
    if spec.problem == "table":
        trainable = make_lookup_trainable(table)
    else:
        log(f"benchmark run: fitting the surrogate on {len(table)} archs of {table.path}")
        model = Surrogate.fit(table)
        atomic_write_json(out / "surrogate.json", model.to_dict())
        trainable = make_surrogate_trainable(model)
    started = init_ray(env=NO_TRIAL_LOGGERS)
    try:
        return {"-vs-".join(pair): _run_pair(spec, table, trainable, get_objectives(pair), out, log)
                for pair in spec.pairs}
    finally:
        shutdown(started)


def _run_pair(spec: RunSpec, table: BenchmarkTable, trainable: Any, objectives: Sequence[Objective], out: Path,
              log: Callable[[str], None]) -> dict[str, Any]:
    """Every searcher x seed for one objective set; writes ``<out>/<a>-vs-<b>/``; returns its summary."""
    tf = true_front(table.Y(objectives), objectives)
    tag = "-vs-".join(o.name for o in objectives)
    pdir = out / tag
    rdir = pdir / "runs"
    key = {"problem": spec.problem, "table_sha256": table_sha256(table.path), "budget": spec.budget}
    for name in spec.searchers:
        for seed in range(spec.seeds):
            path = rdir / f"{name}-seed{seed}.json"
            if _matching_run(path, key) is not None:
                log(f"benchmark run [{spec.problem} {tag}] {name} seed {seed}: kept {path}")
                continue
            t0 = time.monotonic()
            searcher = make_searcher(name, table, objectives, seed, pool=spec.problem == "table",
                                     options=(spec.searcher_options or {}).get(name))
            shutil.rmtree(pdir / "ray" / f"{name}-seed{seed}", ignore_errors=True)  # Tune's scratch of an interrupted try
            results, suggest_s = run_one(trainable, searcher, spec.budget, pdir / "ray", f"{name}-seed{seed}")
            curve = curve_of(results, objectives, tf.ref_point, spec.budget)
            atomic_write_json(path, {**key, "searcher": name, "seed": seed, "curve": curve,
                                     "evaluations": len(results), "wall_s": time.monotonic() - t0,
                                     "arch_ids": [r.get("arch_id") for r in results],
                                     "suggest_s": [round(t, 6) for t in suggest_s]})
            log(f"benchmark run [{spec.problem} {tag}] {name} seed {seed}: {len(results)} evaluations, "
                f"final HV {curve[-1] / tf.hypervolume:.4f} of the true front, {time.monotonic() - t0:.0f} s")
    runs: dict[str, dict[str, Any]] = {}
    for name in SEARCHERS:  # every matching run in the folder, in the canonical searcher order
        for path in sorted(rdir.glob(f"{name}-seed*.json"), key=lambda p: int(p.stem.rsplit("seed", 1)[1])):
            run = _matching_run(path, key)
            if run is not None:
                runs.setdefault(name, {})[str(run["seed"])] = {k: run[k] for k in
                                                               ("curve", "evaluations", "wall_s", "arch_ids")}
                runs[name][str(run["seed"])]["suggest_s"] = run.get("suggest_s", [])  # none in runs before timing
    doc = {
        "format": "hytnas-benchmark-curves", "version": 1, "problem": spec.problem, "table": str(table.path),
        "objectives": [o.name for o in objectives], "senses": [o.sense for o in objectives],
        "ref_point": tf.ref_point_natural(), "ref_point_derivation":
            "botorch infer_reference_point(all table rows, scale=0.1): worst - 0.1 * (best - worst) per objective "
            "over the whole table, in the maximised space",
        "true_hypervolume": tf.hypervolume, "true_front_size": len(tf.pareto_rows),
        "true_front_arch_ids": [str(table.frame["arch_id"].iloc[i]) for i in tf.pareto_rows],
        "table_rows": len(table), "table_sha256": key["table_sha256"], "budget": spec.budget,
        "seeds": max((len(v) for v in runs.values()), default=0), "runs": runs,
    }
    atomic_write_json(pdir / "curves.json", doc)
    rows = summarize(doc)
    _write_summary(pdir, rows, doc)
    plot_curves(doc, pdir / "curves.png")
    log(f"benchmark run [{spec.problem} {tag}] wrote {pdir}/curves.json, curves.png, summary.md\n"
        + format_summary(rows, doc))
    return {"true_hypervolume": tf.hypervolume, "ref_point": doc["ref_point"], "rows": rows}


def table_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the table file: runs on another table are never mixed into a summary."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _matching_run(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The run stored at ``path`` when it was made with ``key`` (problem, table, budget), else None."""
    try:
        run = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(run, dict) or any(run.get(k) != v for k, v in key.items()):
        return None
    return run


def milestones(budget: int) -> list[int]:
    """The evaluation counts reported: :data:`MILESTONES` up to ``budget``, and ``budget`` itself."""
    return sorted({m for m in MILESTONES if m <= budget} | {budget})


def summarize(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per searcher: normalised HV at the milestones (mean, std over seeds) and evaluations to
    reach each target fraction of the true HV (median over the seeds that reached it, and how many)."""
    true_hv = doc["true_hypervolume"]
    rows = []
    for name, seeds in doc["runs"].items():
        curves = [r["curve"] for r in seeds.values()]
        row: dict[str, Any] = {"searcher": name, "seeds": len(curves)}
        for m in milestones(doc["budget"]):
            vals = [hv_at(c, m) / true_hv for c in curves if m <= len(c)]
            row[f"hv@{m}"] = statistics.fmean(vals) if vals else math.nan
            row[f"hv@{m}_std"] = statistics.stdev(vals) if len(vals) > 1 else (0.0 if vals else math.nan)
        for t in TARGETS:
            hits = [n for c in curves if (n := evals_to_reach(c, t * true_hv)) is not None]
            row[f"evals_to_{round(t * 100)}%"] = statistics.median(hits) if hits else math.nan
            row[f"reached_{round(t * 100)}%"] = len(hits)
        front = set(doc.get("true_front_arch_ids") or ())
        if front:  # the stricter view: how many of the true Pareto archs a run evaluated
            for m in FRONT_AT:
                found = [len(front & set(r["arch_ids"][:m])) / len(front) for r in seeds.values()]
                row[f"front_found@{m}"] = statistics.fmean(found)
        times = sorted(t for r in seeds.values() for t in r.get("suggest_s") or ())
        row["median_suggest_s"] = statistics.median(times) if times else math.nan
        row["p95_suggest_s"] = times[int(0.95 * (len(times) - 1))] if times else math.nan
        rows.append(row)
    return rows


def format_summary(rows: Sequence[dict[str, Any]], doc: dict[str, Any]) -> str:
    """A Markdown table of :func:`summarize` rows."""
    ms = milestones(doc["budget"])
    fronts = [m for m in FRONT_AT if any(f"front_found@{m}" in r for r in rows)]
    timed = any(not math.isnan(r.get("median_suggest_s", math.nan)) for r in rows)
    head = (["searcher", "seeds"] + [f"HV@{m}" for m in ms] + [f"evals to {round(t * 100)}%" for t in TARGETS]
            + [f"true front found @{m}" for m in fronts] + (["median s/suggest", "p95 s/suggest"] if timed else []))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["searcher"], str(r["seeds"])]
        for m in ms:
            v, s = r.get(f"hv@{m}", math.nan), r.get(f"hv@{m}_std", math.nan)
            cells.append("n/a" if math.isnan(v) else f"{v:.4f} ± {s:.4f}")
        for t in TARGETS:
            k = round(t * 100)
            n, hits = r[f"evals_to_{k}%"], r[f"reached_{k}%"]
            cells.append(f"never (0/{r['seeds']})" if math.isnan(n) else f"{n:g} ({hits}/{r['seeds']})")
        cells += [f"{r[f'front_found@{m}']:.0%}" if f"front_found@{m}" in r else "n/a" for m in fronts]
        if timed:
            cells += ["n/a" if math.isnan(r[k]) else f"{r[k]:.3f}" for k in ("median_suggest_s", "p95_suggest_s")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_summary(pdir: Path, rows: list[dict[str, Any]], doc: dict[str, Any]) -> None:
    pd.DataFrame(rows).to_csv(pdir / "summary.csv.tmp", index=False, float_format="%.6g")
    (pdir / "summary.csv.tmp").replace(pdir / "summary.csv")
    ref = ", ".join(f"{o} {v:.6g}" for o, v in zip(doc["objectives"], doc["ref_point"]))
    text = (f"# {doc['problem']}: {' vs '.join(doc['objectives'])}\n\n"
            f"table {doc['table']} ({doc['table_rows']} archs); true-front HV {doc['true_hypervolume']:.6g} "
            f"({doc['true_front_size']} Pareto archs); reference point {ref} ({doc['ref_point_derivation']}).\n"
            "HV values are fractions of the true-front HV (mean ± std over each searcher's seeds); "
            f"evaluations to a target: median over the seeds that reached it (reached/seeds); true front found @m: "
            f"the fraction of the true Pareto archs among the first m evaluations (mean over seeds); s/suggest: "
            f"wall time of a suggestion, median and 95th percentile over every suggestion of the searcher's runs.\n\n"
            + format_summary(rows, doc) + "\n")
    atomic_write_text(pdir / "summary.md", text)


def plot_curves(doc: dict[str, Any], path: Path) -> None:
    """HV / true HV vs evaluations, mean +- std across seeds, one line per searcher."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    true_hv = doc["true_hypervolume"]
    for name, seeds in doc["runs"].items():
        C = np.array([r["curve"] for r in seeds.values()], dtype=float) / true_hv
        x = np.arange(1, C.shape[1] + 1)
        mean, std = C.mean(0), C.std(0)
        ax.plot(x, mean, label=name)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    for t in TARGETS:
        ax.axhline(t, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume / true-front hypervolume")
    ax.set_title(f"{doc['problem']}: {' vs '.join(doc['objectives'])}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


__all__ = ["RunSpec", "TimedSearcher", "run_benchmark", "run_one", "make_searcher", "make_benchmark_searcher",
           "summarize", "format_summary", "plot_curves", "SEARCHERS", "SEARCHER_VARIANTS", "PROBLEMS"]
