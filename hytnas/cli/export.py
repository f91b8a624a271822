"""``hytnas export EXPERIMENT_DIR [--out DIR]``: the Pareto-optimal models of a finished search.

Per model a folder ``<rank>-<arch_id>/`` with ``arch.json`` (genes, the ``ArchCfg`` dict, input
size, classes, channels and the trial's metrics and costs) and ``weights.pt`` (the model's
``state_dict`` from the trial's last checkpoint, saved with ``torch.save`` and loadable with
``torch.load(..., weights_only=True)`` into ``hytnas.models.build_model(...)``).
"""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="export the Pareto-optimal models of a search (arch.json + weights.pt)",
        description="Export the Pareto-optimal models of a finished search: per model arch.json and weights.pt.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT_DIR", help="the experiment folder of a search (storage_path)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: EXPERIMENT_DIR/export)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hytnas.search import export_pareto

    paths = export_pareto(args.experiment, args.out)
    for p in paths:
        print(p)
    print(f"[hytnas] exported {len(paths)} Pareto-optimal model(s)")
    return 0
