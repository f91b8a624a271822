"""``hytnas benchmark``: build a trained table of the space, inspect it, replay searchers on it.

    hytnas benchmark build configs/benchmark-fmnist.yaml            # resumable: re-run to continue
    hytnas benchmark build configs/benchmark-fmnist.yaml --max-trials 10
    hytnas benchmark info benchmarks/data/fmnist-hytnas-v1.csv.gz
    hytnas benchmark run --problem table --searchers mobo,random,optuna-nsga2,optuna-tpe,ax \\
        --budget 500 --seeds 5 --objectives val_accuracy,latency_ms --out benchmarks/results/table

``--objectives`` may be repeated (one objective set each); default: both
``val_accuracy,latency_ms`` and ``val_accuracy,params_k``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hytnas.errors import ConfigError

DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "fmnist-hytnas-v1.csv.gz"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("benchmark", help="build / inspect / replay a trained benchmark table",
                              description="Trained evaluations of the space as a table, and searchers replayed on it.")
    sub = p.add_subparsers(dest="benchmark_command", required=True, metavar="ACTION")

    b = sub.add_parser("build", help="train a fixed arch list into a table (resumable)",
                       description="Train the config's fixed arch list through the normal pipeline (Ray Tune, MLflow) "
                                   "and write the table; re-running continues an interrupted build.")
    b.add_argument("config", help="benchmark build YAML (sections benchmark and experiment)")
    b.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set benchmark.n_archs=8 (repeatable)")
    b.add_argument("--max-trials", type=int, default=None, metavar="N", help="train at most N trials in this call")
    b.add_argument("--write-partial", action="store_true",
                   help="train nothing; write the tables from the trials recorded so far (header complete: False)")
    b.set_defaults(func=run_build)

    i = sub.add_parser("info", help="true Pareto fronts, hypervolumes and seed noise of a table")
    i.add_argument("table", nargs="?", default=str(DEFAULT_TABLE), help="benchmark table (default: the shipped one)")
    i.add_argument("--objectives", action="append", default=None, metavar="A,B",
                   help="objective set (repeatable; default: val_accuracy,latency_ms and val_accuracy,params_k)")
    i.set_defaults(func=run_info)

    r = sub.add_parser("run", help="searchers x seeds on the table or its surrogate: HV curves and summary")
    r.add_argument("--problem", required=True, choices=("table", "surrogate"))
    r.add_argument("--searchers", default="mobo,random,optuna-nsga2,optuna-tpe,ax",
                   help="comma-separated: mobo, mobo-qlognehvi, mobo-rank_ensemble, random, optuna-nsga2, "
                        "optuna-tpe, optuna-gp, ax")
    r.add_argument("--budget", type=int, default=500, help="evaluations per run (default: 500)")
    r.add_argument("--seeds", type=int, default=5, help="runs per searcher, seeds 0..N-1 (default: 5)")
    r.add_argument("--table", default=str(DEFAULT_TABLE), help="benchmark table (default: the shipped one)")
    r.add_argument("--objectives", action="append", default=None, metavar="A,B",
                   help="objective set (repeatable; default: val_accuracy,latency_ms and val_accuracy,params_k)")
    r.add_argument("--out", required=True, help="output folder")
    r.set_defaults(func=run_run)


def _pairs(values: list[str] | None) -> tuple[tuple[str, ...], ...]:
    from hytnas.benchmark.run import DEFAULT_PAIRS

    if not values:
        return DEFAULT_PAIRS
    out = []
    for v in values:
        names = tuple(x.strip() for x in v.split(",") if x.strip())
        if len(names) < 2:
            raise ConfigError(f"--objectives: {v!r} needs at least two comma-separated objectives, e.g. val_accuracy,latency_ms")
        out.append(names)
    return tuple(out)


def run_build(args: argparse.Namespace) -> int:
    from hytnas.benchmark.build import build_table, seed_noise
    from hytnas.benchmark.config import load_build_config

    if args.max_trials is not None and args.max_trials < 0:
        raise ConfigError(f"--max-trials: must be >= 0, got {args.max_trials}")
    cfg = load_build_config(args.config, args.overrides)
    res = build_table(cfg, max_trials=args.max_trials, write_partial=args.write_partial, log=lambda s: print(f"[hytnas] {s}", flush=True))
    print(f"[hytnas] trained {res.trained} trials in {res.wall_s:.0f} s; {res.recorded}/{res.total} recorded"
          + (f"; {len(res.failed)} failed: {', '.join(res.failed)}" if res.failed else ""))
    if res.table is not None:
        print(f"table:       {res.table}\nseed table:  {res.seeds_table}")
        if res.seeds_table is not None:
            print("seed noise:  " + json.dumps(seed_noise(res.seeds_table, cfg.experiment.build_space()), indent=1))
    if not res.complete:
        print(f"incomplete: run the same command again to continue ({cfg.benchmark.partial_path()})")
    if res.interrupted:
        return 130
    return 0 if not res.failed else 1


def run_info(args: argparse.Namespace) -> int:
    from hytnas.benchmark.build import seed_noise
    from hytnas.benchmark.table import BenchmarkTable
    from hytnas.mo import true_front
    from hytnas.objectives import get_objectives

    table = BenchmarkTable.load(args.table)
    print(f"{table.path}: {len(table)} archs of space {table.space.name} at {table.space.input_size} px, "
          f"{len(table.epoch_columns)} epochs per arch")
    for pair in _pairs(args.objectives):
        objs = get_objectives(pair)
        tf = true_front(table.Y(objs), objs)
        ref = ", ".join(f"{o.name} {v:.6g}" for o, v in zip(objs, tf.ref_point_natural()))
        print(f"{' vs '.join(pair)}: true-front HV {tf.hypervolume:.6g} ({len(tf.pareto_rows)} Pareto archs), "
              f"reference point {ref}")
    seeds_path = Path(str(table.path).replace(".csv.gz", "-seeds.csv.gz"))
    if seeds_path.is_file() and seeds_path != table.path:
        print("seed noise (" + seeds_path.name + "): " + json.dumps(seed_noise(seeds_path, table.space)))
    return 0


def run_run(args: argparse.Namespace) -> int:
    from hytnas.benchmark.run import RunSpec, run_benchmark

    spec = RunSpec(problem=args.problem, table=Path(args.table),
                   searchers=tuple(s.strip() for s in args.searchers.split(",") if s.strip()),
                   budget=args.budget, seeds=args.seeds, pairs=_pairs(args.objectives), out=Path(args.out))
    spec.check()
    run_benchmark(spec, log=lambda s: print(f"[hytnas] {s}", flush=True))
    return 0
