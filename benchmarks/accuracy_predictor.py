"""Accuracy predictors on a benchmark table: how well each learned predictor ranks archs it has
not seen, against the ranking by a cost alone (no fitting).

    .venv/bin/python benchmarks/accuracy_predictor.py                        # v2 table, 10 splits
    .venv/bin/python benchmarks/accuracy_predictor.py --fresh-after 158      # + archs added after row 158

Protocols (each arch's features are what ``hytnas predictor eval`` uses; the table header gives
the space and input shapes):

- ``random``: ``--repeats`` seeded splits of ``--n-train`` training archs / the rest (split ``s``
  is exactly ``hytnas predictor eval --train-size N --seed s``);
- ``cv``: ``--cv``-fold cross-validation, every arch held out once (pooled);
- ``fresh`` (with ``--fresh-after K``): the table's rows are in the arch list's order, so rows
  after the K-th are archs added to the table later; ``--repeats`` draws of ``--n-train``
  training archs among the first K, tested on every later arch (a test set nobody looked at
  while choosing the models, if K was the table's size when they were chosen).

Baselines: Kendall tau between the target and one cost column (``--baselines``, e.g.
``params_k``: bigger models are more accurate) on the same test rows. Target (the hardware issue):
Kendall tau >= 0.7 with 100 training archs. Prints a table; writes
benchmarks/results/accuracy_predictor.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

from hytnas.benchmark.table import REQUIRED_METRICS, BenchmarkTable
from hytnas.errors import DataError, HytnasError
from hytnas.predictors import PREDICTORS, make_predictor
from hytnas.predictors.metrics import evaluate_predictor, split_indices
from hytnas.utils import atomic_write_json

ROOT = Path(__file__).parent
TARGET_TAU = 0.7


def _summary(taus: list[float]) -> dict:
    a = np.asarray(taus)
    return {"mean": float(a.mean()), "sd": float(a.std()), "min": float(a.min()), "max": float(a.max()),
            "frac_ge_target": float(np.mean(a >= TARGET_TAU)), "per_split": [float(t) for t in a]}


def run(args: argparse.Namespace) -> dict:
    models = [m for m in args.models.split(",") if m]
    baselines = [b for b in args.baselines.split(",") if b]
    unknown = [m for m in models if m not in PREDICTORS or PREDICTORS[m].needs_table]
    if not models or unknown:
        raise DataError(f"--models: {unknown[0] if unknown else 'none given'}; choose from "
                        f"{', '.join(k for k, v in PREDICTORS.items() if not v.needs_table)}")
    # the table's own checks: --target and --baselines columns present, numbers, finite (one line, row and column)
    table = BenchmarkTable.load(args.table, metrics=(*REQUIRED_METRICS, args.target, *baselines))
    space, archs = table.space, table.archs
    df = table.frame
    n = len(archs)
    kw = dict(input_size=space.input_size, num_classes=int(table.header.get("num_classes", 10)),
              in_channels=int(table.header.get("in_channels", 3)))
    cols = {c: df[c].to_numpy(dtype=float) for c in [args.target, *baselines]}
    y = cols[args.target]
    protocols: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    protocols["random"] = [split_indices(n, train_size=args.n_train, seed=s)[0] for s in range(args.repeats)]
    if args.fresh_after:
        k = args.fresh_after
        if not args.n_train < k < n - 1:
            raise DataError(f"--fresh-after: must be between --n-train ({args.n_train}) and {n - 2} (the table has {n} rows), got {k}")
        protocols["fresh"] = [(np.random.default_rng(s).permutation(k)[:args.n_train], np.arange(k, n))
                              for s in range(args.repeats)]
    out: dict = {"benchmark": "accuracy_predictor", "table": str(args.table), "target": args.target, "n_archs": n,
                 "n_train": args.n_train, "repeats": args.repeats, "target_tau": TARGET_TAU, "protocols": {}}
    for proto, splits in protocols.items():
        res: dict = {"n_test": int(len(splits[0][1])), "models": {}, "baselines": {}}
        for m in models:
            t0 = time.perf_counter()
            taus = [evaluate_predictor(lambda s=s, m=m: make_predictor(m, space, seed=s, **kw), archs, y, [sp])["kendall_tau"]
                    for s, sp in enumerate(splits)]
            res["models"][m] = {**_summary(taus), "seconds": round(time.perf_counter() - t0, 1)}
            print(f"[{proto}] {m}: tau {np.mean(taus):.3f}", file=sys.stderr, flush=True)
        for b in baselines:
            col = cols[b]
            res["baselines"][b] = _summary([float(stats.kendalltau(y[te], col[te]).statistic) for _, te in splits])
        out["protocols"][proto] = res
    if args.cv:
        splits = split_indices(n, cv=args.cv, seed=0)
        res = {"n_test": n, "models": {}, "baselines": {}}
        for m in models:
            r = evaluate_predictor(lambda m=m: make_predictor(m, space, seed=0, **kw), archs, y, splits)
            res["models"][m] = {"mean": r["kendall_tau"], "n_train": r["n_train"]}
        for b in baselines:
            res["baselines"][b] = {"mean": float(stats.kendalltau(y, cols[b]).statistic)}
        out["protocols"][f"cv{args.cv}"] = res
    return out


def _print(out: dict) -> None:
    print(f"\n{out['target']} on {out['table']} ({out['n_archs']} archs); Kendall tau on held-out archs, "
          f"target >= {out['target_tau']} with {out['n_train']} training archs\n")
    print("| protocol | test archs | model | tau mean ± sd | min - max | splits >= target |")
    print("| --- | --- | --- | --- | --- | --- |")
    for proto, res in out["protocols"].items():
        rows = [(m, r) for m, r in res["models"].items()] + [(f"{b} alone", r) for b, r in res["baselines"].items()]
        for name, r in rows:
            if "sd" in r:
                print(f"| {proto} ({out['repeats']} splits) | {res['n_test']} | {name} | {r['mean']:.3f} ± {r['sd']:.3f} | "
                      f"{r['min']:.3f} - {r['max']:.3f} | {100 * r['frac_ge_target']:.0f} % |")
            else:
                extra = f" ({r['n_train']} train per fold)" if "n_train" in r else ""
                print(f"| {proto}{extra} | {res['n_test']} | {name} | {r['mean']:.3f} | | |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", type=Path, default=ROOT / "data" / "fmnist-hytnas-v2.csv.gz")
    ap.add_argument("--target", default="val_accuracy")
    ap.add_argument("--models", default="gp,rank_ensemble")
    ap.add_argument("--baselines", default="params_k,macs_m", help="cost columns to rank by, comma-separated")
    ap.add_argument("--n-train", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--cv", type=int, default=5, help="folds (0: skip)")
    ap.add_argument("--fresh-after", type=int, default=0, metavar="K",
                    help="also test on the rows after the K-th, training on archs among the first K")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "accuracy_predictor.json")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats: must be at least 1, got {args.repeats}")
    t0 = time.perf_counter()
    try:
        out = run(args)
    except HytnasError as exc:
        raise SystemExit(f"accuracy_predictor: {exc}") from None
    out["total_s"] = round(time.perf_counter() - t0, 1)
    out["argv"] = sys.argv[1:] if argv is None else argv
    atomic_write_json(args.out, out)
    _print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
