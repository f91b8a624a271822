"""``hytnas results EXPERIMENT_DIR [--pareto] [--format table|csv|json] [--out FILE]``.

All trials (or the Pareto front) of a search, finished, still running or killed, from its
experiment folder alone (:func:`hytnas.results.load`: ``trials.csv``, else Tune's trial folders).
``table`` is for a terminal; ``csv`` is the arch-table layout of ``trials.csv``; ``json`` is one
object per trial (NaN as null). ``--out`` writes the file instead of printing.

Exit codes: 0; 2 for a folder that holds no search (one ``hytnas: error:`` line).
"""
from __future__ import annotations

import argparse
import sys

#: leading columns of the table format
TABLE_LEAD = ("trial_id", "status", "pareto")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "results", help="print or write the trials (or the Pareto front) of a search",
        description="The trials of a search (finished, running or killed) as a table, CSV or JSON.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT_DIR", help="the experiment folder of a search (storage_path)")
    p.add_argument("--pareto", action="store_true", help="only the Pareto-optimal trials, best first objective first")
    p.add_argument("--format", dest="fmt", default="table", choices=("table", "csv", "json"), help="default: table")
    p.add_argument("--out", default=None, metavar="FILE", help="write to FILE instead of printing")
    p.set_defaults(func=run)


def render(df, fmt: str, objectives=()) -> str:
    """``df`` (a :func:`hytnas.results.load` frame) as ``table``, ``csv`` or ``json`` text."""
    if fmt == "csv":
        return df.to_csv(index=False, float_format="%.6g")
    if fmt == "json":
        return df.to_json(orient="records", indent=1) + "\n"
    from hytnas.report import format_table

    if df.empty:
        return "no trials yet\n"
    shown = df.assign(pareto=df["pareto"].map({True: "*", False: ""}))
    return format_table(shown, objectives, leading=TABLE_LEAD) + "\n"


def run(args: argparse.Namespace) -> int:
    from hytnas.errors import ConfigError
    from hytnas.results import load, load_saved_experiment
    from hytnas.utils import atomic_write_text

    df = load(args.experiment, pareto=args.pareto)
    text = render(df, args.fmt, load_saved_experiment(args.experiment).get_objectives())
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        atomic_write_text(args.out, text)
    except OSError as exc:
        raise ConfigError(f"--out: cannot write {args.out} ({exc.strerror or type(exc).__name__})") from None
    print(f"[hytnas] {len(df)} trial(s) written to {args.out}")
    return 0
