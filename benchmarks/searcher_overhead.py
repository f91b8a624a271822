"""Searcher overhead: wall time of one ``ask(1)`` at 50, 200 and 1000 observations.

Problem: the 23-gene ``hytnas`` space, 2 objectives: ``val_accuracy`` (reported; a smooth
synthetic function of the encoding) and ``params_k`` (known: exact ``hytnas.costs.arch_costs``
at 224 px, 10 classes). The searcher is first given ``N`` observations of distinct random archs
(``tell`` for mobo, ``study.add_trial`` for Optuna), then ``1 + --repeats`` times:
``ask(1)`` (timed) and the ``tell`` of that arch, so that every ``ask`` refits the
model on new data (the worst case of an asynchronous search). The first call fits from scratch
and is reported apart (``first_call_s``): during a search the model is refitted from the
previous fit's hyperparameters. Wall time and process CPU time are both reported: on a shared
machine the wall time also counts the time other processes hold the cores.

Searchers: ``mobo`` (GP, ParEGO; the breakdown fit / candidates / acquisition comes from
``MOBOSearcher.last_timings``), ``mobo-qlognehvi`` (GP, qLogNEHVI), ``mobo-rank_ensemble`` and
Optuna's ``GPSampler`` through ``search_algos`` (``optuna-gp``) on the same problem.

Targets: mobo p95 < 2 s at 200 observations and < 10 s at 1000; mobo median no slower than
Optuna's GPSampler. Output: a printed table and ``benchmarks/results/searcher_overhead.json``.

    python benchmarks/searcher_overhead.py                       # all sizes, all searchers
    python benchmarks/searcher_overhead.py --sizes 50,200 --repeats 5 --searchers mobo,optuna-gp
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hytnas.space import get_space  # noqa: E402
from hytnas.utils import atomic_write_json  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "searcher_overhead.json"
SEARCHERS = ("mobo", "mobo-qlognehvi", "mobo-rank_ensemble", "optuna-gp")
SPACE = get_space("hytnas")
_W = torch.linspace(0.5, 1.5, 23, dtype=torch.float64)


def accuracy(arch) -> float:
    """A smooth synthetic accuracy in (0, 1): best near the middle of every gene's range."""
    x = SPACE.encode(arch)[0]
    return float(0.95 - 0.4 * (_W * (x - 0.55) ** 2).sum() / _W.sum())


def build(name: str, seed: int):
    from hytnas.benchmark.run import SEARCHER_VARIANTS
    from search_algos import make_searcher

    opts: dict[str, Any] = {}
    if name.startswith("mobo"):
        name, extra = SEARCHER_VARIANTS.get(name, (name, {}))
        opts = {"n_initial": 0, **extra}
    return make_searcher(name, space=SPACE, objectives=["val_accuracy", "params_k"], seed=seed, options=opts)


def prefill(searcher, archs) -> None:
    if hasattr(searcher, "study"):  # Optuna: finished trials straight into the study
        import optuna

        known = searcher.problem.known_values(archs)[:, 0].tolist()
        for a, k in zip(archs, known):
            searcher.study.add_trial(optuna.trial.create_trial(
                params=SPACE.latent(a), distributions=searcher.distributions, values=[accuracy(a), k]))
        searcher.used.update(archs)
    else:
        for a in archs:
            searcher.tell(a, {"val_accuracy": accuracy(a)})


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, math.ceil(0.95 * len(s)) - 1)]


def measure(name: str, n_obs: int, repeats: int, seed: int) -> dict[str, Any]:
    s = build(name, seed)
    prefill(s, SPACE.sample(n_obs, seed=1000 + seed))
    times, cpu, parts = [], [], []
    for _ in range(repeats + 1):  # the first call fits from scratch: reported apart (a search fits warm)
        t0, c0 = time.perf_counter(), time.process_time()
        (arch,) = s.ask(1)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        parts.append(dict(getattr(s, "last_timings", {}) or {}))
        s.tell(arch, {"val_accuracy": accuracy(arch)})
    first, times, cpu, parts = times[0], times[1:], cpu[1:], parts[1:]
    row = {"searcher": name, "observations": n_obs, "repeats": repeats, "times_s": times, "cpu_s": cpu,
           "first_call_s": first, "median_s": statistics.median(times), "p95_s": p95(times),
           "median_cpu_s": statistics.median(cpu), "p95_cpu_s": p95(cpu)}
    if parts and parts[0]:
        for k in ("fit_s", "candidates_s", "acquisition_s", "n_candidates", "n_scored"):
            row[f"median_{k}"] = statistics.median(p[k] for p in parts)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="50,200,1000")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--searchers", default=",".join(SEARCHERS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared: 1 by default)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--merge", type=Path, default=None,
                    help="also keep the rows of this earlier output for searchers not measured now")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [x for x in args.searchers.split(",") if x]
    rows = []
    if args.merge is not None:
        import json

        rows = [r for r in json.loads(args.merge.read_text())["rows"] if r["searcher"] not in names]
    for n in [int(x) for x in args.sizes.split(",")]:
        for name in names:
            row = measure(name, n, args.repeats, args.seed)
            rows.append(row)
            extra = ""
            if "median_fit_s" in row:
                extra = (f"  (fit {row['median_fit_s']:.2f} s, candidates {row['median_candidates_s']:.2f} s, "
                         f"acquisition {row['median_acquisition_s']:.2f} s over {row['median_n_scored']:.0f} archs)")
            print(f"{name:20s} {n:5d} obs: median {row['median_s']:.2f} s, p95 {row['p95_s']:.2f} s (CPU median "
                  f"{row['median_cpu_s']:.2f} s, p95 {row['p95_cpu_s']:.2f} s; first call {row['first_call_s']:.2f} s)"
                  f"{extra}", flush=True)
    load = os.getloadavg()
    doc = {"format": "hytnas-searcher-overhead", "version": 1, "space": SPACE.name, "genes": 23,
           "objectives": ["val_accuracy (reported, synthetic)", "params_k (known, exact)"],
           "torch_threads": args.threads, "cpu_count": os.cpu_count(), "loadavg_at_end": list(load), "rows": rows,
           "targets": {"mobo_p95_at_200_lt_s": 2.0, "mobo_p95_at_1000_lt_s": 10.0,
                       "mobo_median_le_optuna_gp_median": True}}
    rows.sort(key=lambda r: (r["observations"], SEARCHERS.index(r["searcher"])))
    atomic_write_json(args.out, doc)
    print()
    print("| searcher | obs | median s | p95 s | median CPU s | p95 CPU s | first call s | fit s | candidates s "
          "| acquisition s | archs scored |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        def f(k: str, r: dict = r) -> str:
            return f"{r[k]:.2f}" if k in r else "-"

        print(f"| {r['searcher']} | {r['observations']} | {r['median_s']:.2f} | {r['p95_s']:.2f} | "
              f"{r['median_cpu_s']:.2f} | {r['p95_cpu_s']:.2f} | {r['first_call_s']:.2f} | {f('median_fit_s')} "
              f"| {f('median_candidates_s')} | {f('median_acquisition_s')} | "
              f"{r.get('median_n_scored', float('nan')):.0f} |")
    print(f"(torch threads {args.threads}, load average at the end {load[0]:.1f} on {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
