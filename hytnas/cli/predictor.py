"""``hytnas predictor eval|fit``: learned predictors of a per-arch metric from an arch-table CSV.

- ``eval`` fits each ``--model`` on training rows and prints, on the held-out rows, RMSE, MAPE,
  the fraction within +-5 % and +-10 %, Kendall tau and Spearman rho (``--train-size N``: one
  seeded split, or ``--repeats R`` splits with seeds ``--seed`` ... ``--seed + R - 1``, each
  metric then the mean over the splits with its standard deviation beside it; ``--cv K``: K folds,
  every row held out once; default ``--cv 5``).
- ``fit`` fits one model on every row and saves it as a JSON file that a device profile
  (``latency: {method: learned, path: ...}``) or a searcher can use.

The table is read with :func:`hytnas.table.read_arch_table` (23 gene columns + metrics): a
missing gene column, a value outside the space or a non-numeric cell is one error line naming
the row and column.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hytnas.errors import DataError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predictor", help="evaluate or fit a learned predictor (latency, accuracy) on an arch table",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    psub = p.add_subparsers(dest="predictor_command", required=True, metavar="{eval,fit}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", required=True, metavar="FILE.csv", help="arch table (23 gene columns + metric columns)")
    common.add_argument("--target", required=True, metavar="COLUMN", help="metric column to predict, e.g. latency_ms")
    common.add_argument("--space", default=None,
                        help="space of the table: built-in name or YAML (default: the table header's, else hytnas)")
    common.add_argument("--input-size", type=int, default=None,
                        help="input resolution for the cost features (default: the table header's, else the space's)")
    common.add_argument("--num-classes", type=int, default=None,
                        help="classes of the head (cost features, LUT keys; default: the table header's, else 10)")
    common.add_argument("--in-channels", type=int, default=None,
                        help="input channels (default: the table header's, else 3)")
    common.add_argument("--lut", metavar="DIR", default=None, help="latency table folder (or lut.json) for --model lut / lut_gp")
    common.add_argument("--seed", type=int, default=0, help="seed of the split and of the models (default 0)")

    e = psub.add_parser("eval", parents=[common], help="held-out accuracy of predictors")
    e.add_argument("--model", default="gp", help="model name(s), comma-separated: lut, lut_gp, gp, rank_ensemble (default gp)")
    split = e.add_mutually_exclusive_group()
    split.add_argument("--train-size", type=int, default=None, metavar="N", help="train on N random rows, test on the rest")
    split.add_argument("--cv", type=int, default=None, metavar="K", help="K-fold cross-validation (default 5)")
    e.add_argument("--repeats", type=int, default=1, metavar="R",
                   help="with --train-size: R random splits (seeds --seed ... --seed+R-1); metrics are their mean (default 1)")
    e.add_argument("--json", action="store_true", help="print the results as JSON")
    e.set_defaults(func=_eval)

    f = psub.add_parser("fit", parents=[common], help="fit on all rows and save the predictor (JSON)")
    f.add_argument("--model", default="gp", help="lut, lut_gp, gp or rank_ensemble (default gp)")
    f.add_argument("--out", required=True, metavar="PATH", help="predictor file to write (.json)")
    f.set_defaults(func=_fit)


#: settings a benchmark table's ``# key: value`` header fixes, and the defaults without one
_HEADER_DEFAULTS = {"space": ("space", str, "hytnas"), "input_size": ("input_size", int, None),
                    "num_classes": ("num_classes", int, 10), "in_channels": ("in_channels", int, 3)}


def _resolve_shapes(args: argparse.Namespace) -> list[str]:
    """Fill ``--space``, ``--input-size``, ``--num-classes``, ``--in-channels`` not given on the
    command line from the table's header (a benchmark table records what it was trained at, e.g.
    32 px, 1 channel), else the defaults; returns the names taken from the header."""
    from hytnas.benchmark.table import read_header

    head = read_header(args.data)
    taken = []
    for attr, (key, cast, default) in _HEADER_DEFAULTS.items():
        if getattr(args, attr) is not None:
            continue
        value = default
        if key in head:
            try:
                value = cast(head[key])
                taken.append(attr)
            except ValueError:
                raise DataError(f"table {args.data}: header line {key!r} is {head[key]!r}, not a valid {attr}; "
                                f"fix the header or pass --{attr.replace('_', '-')}") from None
        setattr(args, attr, value)
    return taken


def _load(args: argparse.Namespace) -> tuple[Any, list, Any]:
    from hytnas.errors import SpaceError
    from hytnas.space import get_space
    from hytnas.table import read_arch_table

    args.from_header = _resolve_shapes(args)
    try:
        space = get_space(args.space, input_size=args.input_size)
    except SpaceError as exc:
        if "space" not in args.from_header:
            raise
        raise DataError(f"table {args.data}: its header's space {args.space!r}: {exc}; pass --space") from None
    archs, df = read_arch_table(args.data, space, metrics=(args.target,))
    if len(archs) < 4:
        raise DataError(f"table {args.data}: {len(archs)} rows; a predictor needs at least 4")
    return space, archs, df[args.target].to_numpy(dtype=float)


def _factory(name: str, space: Any, args: argparse.Namespace):
    """``make(seed=args.seed)`` -> a fresh predictor ``name`` (its latency table loaded once)."""
    from hytnas.hardware import LatencyTable
    from hytnas.predictors import PREDICTORS, make_predictor

    if name not in PREDICTORS:
        raise DataError(f"--model: unknown model {name!r}; choose from {', '.join(PREDICTORS)}")
    kw: dict[str, Any] = dict(input_size=space.input_size, num_classes=args.num_classes,
                              in_channels=args.in_channels)
    if PREDICTORS[name].needs_table:
        if args.lut is None:
            raise DataError(f"--lut: model {name} needs a latency table; give --lut DIR (a folder written by `hytnas profile`)")
        kw["table"] = LatencyTable.load(args.lut)
    return lambda seed=args.seed: make_predictor(name, space, seed=seed, **kw)


def _models(arg: str) -> list[str]:
    names = [m.strip() for m in arg.split(",") if m.strip()]
    if not names:
        raise DataError("--model: give at least one model name")
    return names


def _eval(args: argparse.Namespace) -> int:
    from functools import partial

    import numpy as np

    from hytnas.predictors.metrics import METRIC_NAMES, evaluate_predictor, split_indices

    if args.repeats < 1:
        raise DataError(f"--repeats: must be at least 1, got {args.repeats}")
    if args.repeats > 1 and args.train_size is None:
        raise DataError("--repeats: needs --train-size N (cross-validation already holds every row out once)")
    space, archs, y = _load(args)
    cv = args.cv if args.cv is not None or args.train_size is not None else 5
    seeds = [args.seed + r for r in range(args.repeats)]
    runs = [split_indices(len(archs), train_size=args.train_size, cv=cv, seed=s) for s in seeds]
    protocol = f"cv{cv}" if args.train_size is None else f"train{args.train_size}"
    factories = {name: _factory(name, space, args) for name in _models(args.model)}
    results = []
    for name, make in factories.items():
        per = [evaluate_predictor(partial(make, seed=s), archs, y, splits) for s, splits in zip(seeds, runs)]
        r: dict[str, Any] = {"model": name, "target": args.target, "protocol": protocol, **per[0]}
        if len(per) > 1:
            for k in (*METRIC_NAMES[1:], "fit_s"):
                vals = [p[k] for p in per]
                r[k], r[f"{k}_sd"] = float(np.mean(vals)), float(np.std(vals))
            r["repeats"] = len(per)
            r["per_split"] = [{"seed": s, **p} for s, p in zip(seeds, per)]
        results.append(r)
    if args.json:
        json.dump(results, sys.stdout, indent=1)
        print()
        return 0
    rep = args.repeats > 1
    print(f"{args.target} on {args.data}: {len(archs)} rows, "
          + (f"{cv}-fold cross-validation" if args.train_size is None else f"{args.train_size} train / {len(archs) - args.train_size} test")
          + (f", mean over {args.repeats} splits (seeds {seeds[0]}-{seeds[-1]})" if rep else "")
          + f"; space {space.name} at {space.input_size} px, {args.in_channels} input channel(s), {args.num_classes} classes"
          + (f" ({', '.join(a.replace('_', ' ') for a in args.from_header)} from the table header)" if args.from_header else ""))
    print(f"{'model':<14} {'n_train':>7} {'n_test':>6} {'rmse':>10} {'mape':>7} {'<=5%':>6} {'<=10%':>6} {'tau':>6}"
          + (f" {'tau sd':>6}" if rep else "") + f" {'rho':>6}")
    for r in results:
        print(f"{r['model']:<14} {r['n_train']:>7} {r['n']:>6} {r['rmse']:>10.4g} {100 * r['mape']:>6.1f}% "
              f"{100 * r['within_5']:>5.1f}% {100 * r['within_10']:>5.1f}% {r['kendall_tau']:>6.3f}"
              + (f" {r['kendall_tau_sd']:>6.3f}" if rep else "") + f" {r['spearman_rho']:>6.3f}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    names = _models(args.model)
    if len(names) != 1:
        raise DataError("--model: fit takes one model")
    out = Path(args.out)
    if out.suffix != ".json":
        raise DataError(f"--out: {out} must end in .json (the predictor is a JSON file)")
    space, archs, y = _load(args)
    pred = _factory(names[0], space, args)().fit(archs, y)
    pred.save(out)
    print(f"{names[0]} predictor of {args.target} fitted on {len(archs)} archs of space {space.name!r} -> {out}")
    return 0
