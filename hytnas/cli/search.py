"""``hytnas search CONFIG [--set key=value ...] [--address ADDRESS] [--resume]``.

CONFIG is an experiment YAML file or the name of a shipped config (``quickstart``). Everything
is validated before anything is created: a bad key, value, dataset, searcher or data folder is
one ``hytnas: error: <field>: ...`` line and exit code 2, with no experiment folder and no Ray.

Exit codes: 0 when no trial failed (every trial of the budget completed, or was stopped early
by ASHA or the time budget); 1 when a trial failed for good (after ``failure.max_failures``
retries; one ``hytnas: error:`` line says how many and where Tune wrote the traceback,
``<trial folder>/error.txt``), when the search was aborted because more than
``failure.max_failed_trials`` trials failed, or when the run itself failed (e.g. Ray killed a
worker for memory; continue it with ``--resume``); 2 for bad input (nothing created, Ray not
started; with ``--address``, resources no node of the cluster has are found after connecting);
130 when the search was interrupted (continue it with ``--resume``).

``--address``: ``HOST:PORT`` of a running cluster's GCS (probed first: nothing listening is one
line within seconds), ``auto`` (a cluster started on this machine with ``ray start``) or
``ray://HOST:PORT`` (Ray Client, the ``ray[client]`` extra).
"""
from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  hytnas search quickstart
  hytnas search configs/quickstart.yaml --set budget.num_samples=4 --set training.epochs=1
  hytnas search my.yaml --set "objectives=[val_accuracy, latency_ms]" --set search.algorithm=optuna-nsga2
  hytnas search my.yaml --resume                # continue an interrupted search (same config)
  hytnas search my.yaml --address head:6379          # a running cluster (ray start --head)
  hytnas search my.yaml --address ray://head:10001   # Ray Client (the ray[client] extra)
  hytnas search my.yaml --address auto --ship-code   # on a cluster's head; docs/cluster.md

every key and its default: configs/README.md"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search", help="run a multi-objective architecture search (Ray Tune + MLflow)",
        description="Train candidate architectures under Ray Tune, track them in MLflow and write the Pareto front.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG", help="experiment YAML file, or a shipped config name (quickstart)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted, value parsed as YAML); repeatable")
    p.add_argument("--address", default=None, metavar="ADDRESS",
                   help="connect to this Ray cluster (HOST:PORT, auto, or ray://HOST:PORT) instead of starting Ray locally")
    p.add_argument("--ship-code", action="store_true",
                   help="with --address: ship this package to the cluster's workers (Ray runtime_env py_modules) "
                        "instead of relying on it being installed on every node")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted search in the experiment folder (same config)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hytnas.config import load_experiment

    cfg = load_experiment(args.config, args.overrides)
    from hytnas.search import SearchFailed, failure_message, run_search  # heavy imports after the config is valid

    try:
        result = run_search(cfg, address=args.address, resume=args.resume, ship_code=args.ship_code)
    except SearchFailed as exc:  # not bad input: exit 1, the run can be resumed
        print(f"hytnas: error: {exc}", file=sys.stderr)
        return 1
    failed = failure_message(result, cfg)
    if failed is not None:
        print(f"hytnas: error: {failed}", file=sys.stderr)
        return 1
    if result.interrupted:
        return 130
    return 0 if result.num_done > 0 else 1
