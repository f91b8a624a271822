"""Throughput of the analytic cost model: sample N archs of a space, turn them into ArchCfgs and
cost them (``space.sample`` + ``space.to_arch_cfg`` + ``hytnas.costs.arch_costs``).

    .venv/bin/python benchmarks/costs.py                    # 10,000 archs of 'hytnas' at 224 px
    .venv/bin/python benchmarks/costs.py --space hytnas-tiny -n 2000

Prints a table and writes benchmarks/results/costs.json (timings, archs/s, machine info).
Target: 10,000 archs of 'hytnas' in < 30 s on a 2-core machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from hytnas.costs import arch_costs
from hytnas.space import get_space
from hytnas.utils import atomic_write_json

RESULTS = Path(__file__).parent / "results" / "costs.json"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="hytnas")
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    space = get_space(args.space)
    t0 = time.perf_counter()
    archs = space.sample(args.n, seed=args.seed)
    t1 = time.perf_counter()
    cfgs = [space.to_arch_cfg(a) for a in archs]
    t2 = time.perf_counter()
    costs = [arch_costs(c, space.input_size, args.num_classes) for c in cfgs]
    t3 = time.perf_counter()

    total = t3 - t0
    phases = {"sample_s": t1 - t0, "to_arch_cfg_s": t2 - t1, "arch_costs_s": t3 - t2, "total_s": total}
    med = {k: statistics.median(c[k] for c in costs) for k in ("params_k", "macs_m", "peak_sram_kb", "model_size_kb")}
    result = {
        "benchmark": "costs",
        "space": space.name,
        "input_size": space.input_size,
        "num_classes": args.num_classes,
        "n_archs": args.n,
        "seed": args.seed,
        **{k: round(v, 4) for k, v in phases.items()},
        "archs_per_s": round(args.n / total, 1),
        "arch_costs_us_per_arch": round(1e6 * (t3 - t2) / args.n, 1),
        "median_costs": {k: round(v, 3) for k, v in med.items()},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
        },
    }
    rows = [("phase", "seconds"), *[(k.removesuffix("_s"), f"{v:.3f}") for k, v in phases.items()],
            ("archs/s", f"{result['archs_per_s']:.0f}"), ("arch_costs us/arch", f"{result['arch_costs_us_per_arch']:.1f}")]
    w = max(len(r[0]) for r in rows)
    print(f"costs benchmark: {args.n} archs of {space.name!r} at {space.input_size} px, {args.num_classes} classes")
    for name, val in rows:
        print(f"  {name.ljust(w)}  {val.rjust(9)}")
    print("  median: " + ", ".join(f"{k}={v:.1f}" for k, v in med.items()))
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
