"""Ablation of ``mobo``'s acquisition optimisation and kernel on the DTLZ2 grid problem, Ray-free.

The problem, reference point and "best known" HV are those of ``benchmarks/search_efficiency.py
--problem dtlz2`` (read from its ``search_efficiency.json`` when a run starts, and stored with
the run), so the HV fractions compare with that table. The searcher is driven directly (``suggest`` / ``on_trial_complete``, one trial at a
time, no Ray: the same calls Tune makes), which makes a 100-evaluation run take minutes.

Variants (``--variants``, comma-separated; each is a set of ``mobo`` options (``search_algos.settings.MOBOSettings``), see
:data:`VARIANTS`): ``default`` (the shipped settings: ParEGO since 7adf720, 2026-11-26) and ``parego``;
``nehvi`` (qLogNEHVI, the default until 7adf720, with the reference point from the observed
front) and, around it: ``ref-data`` (reference point from all observations), ``relax`` (continuous
relaxation: L-BFGS-B on the acquisition over the encoding from the 4 best candidates, rounded
with ``Space.nearest``), ``relax-long`` (``relax`` + 8 starts and 40 hill-climb steps),
``categorical`` / ``categorical-front`` (BoTorch's ``CategoricalKernel`` instead of the ordinal
Matern-5/2), ``deep-ls`` (8 starts, 40 steps), ``big-pool`` (2048 random + 512 mutated
candidates), ``n-init-5`` (a 5-point Sobol design), ``center`` (``initial_center``), and
``qlogehvi``; ``parego-deep-ls``, ``parego-categorical``, ``parego-full-fit`` and
``parego-n-init-20`` try the longer hill-climb, the categorical kernel, a full GP refit at every
step and a 20-point Sobol design on ParEGO.
``relax``, ``relax-long`` and ``categorical`` use ``ref_point="data"``: they were compared with
the default of the time.

Every run is stored as it ends (``<out>/runs/<variant>-seed<k>.json``; existing runs are
skipped, so the script resumes and several processes can fill one folder); the summary (printed
and ``<out>/mobo_ablation.json``) gives HV / best known at 25, 50, 100 and 200 evaluations (mean,
std and per seed) and the median time per suggestion. ``benchmarks/device_ablation.sh`` runs it
one process per run on a many-core machine.

    .venv/bin/python benchmarks/mobo_ablation.py --variants nehvi,ref-data --seeds 5
    .venv/bin/python benchmarks/mobo_ablation.py --report
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from search_efficiency import DEFAULT_OUT, dtlz2_values  # noqa: E402

from hytnas.space import get_space  # noqa: E402
from hytnas.utils import atomic_write_json  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},  # the shipped settings (ParEGO since 7adf720)
    "parego": {"acquisition": "parego"},
    "parego-deep-ls": {"acquisition": "parego", "local_search_starts": 8, "local_search_steps": 40},
    "parego-categorical": {"acquisition": "parego", "surrogate_options": {"kernel": "categorical"}},
    "parego-full-fit": {"acquisition": "parego", "surrogate_options": {"warm_maxiter": 200}},
    "parego-n-init-20": {"acquisition": "parego", "n_initial": 20},
    # qLogNEHVI (the default until 7adf720) and what was tried around it
    "nehvi": {"acquisition": "qlognehvi"},
    "ref-data": {"acquisition": "qlognehvi", "ref_point": "data"},
    # relax, relax-long and categorical were measured against the "data" reference point (the default then)
    "relax": {"acquisition": "qlognehvi", "ref_point": "data", "relax_starts": 4, "relax_iters": 50},
    "relax-long": {"acquisition": "qlognehvi", "ref_point": "data", "relax_starts": 4, "relax_iters": 50,
                   "local_search_starts": 8, "local_search_steps": 40},
    "categorical": {"acquisition": "qlognehvi", "ref_point": "data", "surrogate_options": {"kernel": "categorical"}},
    "categorical-front": {"acquisition": "qlognehvi", "surrogate_options": {"kernel": "categorical"}},
    "deep-ls": {"acquisition": "qlognehvi", "local_search_starts": 8, "local_search_steps": 40},
    "big-pool": {"acquisition": "qlognehvi", "num_random": 2048, "num_mutations": 512},
    "n-init-5": {"acquisition": "qlognehvi", "n_initial": 5},
    "center": {"acquisition": "qlognehvi", "initial_center": True},
    "qlogehvi": {"acquisition": "qlogehvi"},
}
MILESTONES = (25, 50, 100, 200)
OUT = ROOT / "benchmarks" / "results" / "mobo_ablation"


def reference() -> tuple[torch.Tensor, float]:
    """Reference point (maximised sense) and best known HV of the search-efficiency DTLZ2 run."""
    path = DEFAULT_OUT / "dtlz2" / "search_efficiency.json"
    if not path.is_file():
        raise SystemExit(f"{path}: missing; run benchmarks/search_efficiency.py --problem dtlz2 first")
    doc = json.loads(path.read_text())
    return torch.tensor(doc["ref_point_max"], dtype=torch.float64), float(doc["best_known_hv"])


def run_one(variant: str, seed: int, budget: int, ref: torch.Tensor, best: float) -> dict[str, Any]:
    from hytnas.mo import curve_of
    from hytnas.objectives import get_objectives
    from search_algos import make_searcher

    space = get_space("hytnas")
    objectives = get_objectives([{"name": "f1", "sense": "min"}, {"name": "f2", "sense": "min"}])
    s = make_searcher("mobo", space=space, objectives=objectives, seed=seed,
                      options={"torch_threads": 1, **VARIANTS[variant]})
    Ys, results, times = [], [], []
    for _ in range(budget):
        t0 = time.perf_counter()
        (arch,) = s.ask(1)
        times.append(time.perf_counter() - t0)
        y = dtlz2_values(space, [arch])[0]
        results.append({"f1": float(y[0]), "f2": float(y[1]), "done": True})
        s.tell(arch, results[-1])
        Ys.append(y)
    curve = [hv / best for hv in curve_of(results, objectives, ref)]
    return {"variant": variant, "options": VARIANTS[variant], "seed": seed, "budget": budget, "curve": curve,
            "Y": torch.stack(Ys).tolist(), "suggest_s": times, "ref_point_max": ref.tolist(), "best_known_hv": best}


def report(out: Path) -> dict[str, Any]:
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    if not runs:
        raise SystemExit(f"no runs in {out / 'runs'}")
    rows = []
    for v in [v for v in VARIANTS if any(r["variant"] == v for r in runs)]:
        rs = sorted((r for r in runs if r["variant"] == v), key=lambda r: r["seed"])
        row: dict[str, Any] = {"variant": v, "options": VARIANTS[v], "seeds": [r["seed"] for r in rs]}
        for m in MILESTONES:
            vals = [r["curve"][m - 1] for r in rs if len(r["curve"]) >= m]
            row[f"hv@{m}"] = vals
        model_calls = [t for r in rs for t in r["suggest_s"][10:]]  # after the 10-point Sobol design
        row["median_suggest_s"] = statistics.median(model_calls) if model_calls else None
        rows.append(row)
    head = "| variant | seeds | " + " | ".join(f"HV@{m} mean±std (per seed)" for m in MILESTONES) + " | median s/suggest |"
    lines = [head, "|" + "---|" * (len(MILESTONES) + 3)]
    for r in rows:
        cells = []
        for m in MILESTONES:
            v = r[f"hv@{m}"]
            cells.append(f"{statistics.mean(v):.3f}±{statistics.pstdev(v):.3f} ({', '.join(f'{x:.2f}' for x in v)})"
                         if v else "-")
        t = r["median_suggest_s"]
        lines.append(f"| {r['variant']} | {len(r['seeds'])} | " + " | ".join(cells) + f" | {t:.2f} |")
    print("\n".join(lines))
    doc = {"format": "hytnas-mobo-ablation", "version": 1, "problem": "dtlz2 (benchmarks/search_efficiency.py)",
           "hv": "fraction of the best known HV of benchmarks/results/search_efficiency/dtlz2", "rows": rows,
           "torch_threads": 1}
    atomic_write_json(out / "mobo_ablation.json", doc)
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default="default,relax")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--report", action="store_true", help="only summarise the runs already made")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if not args.report:
        names = [v.strip() for v in args.variants.split(",") if v.strip()]
        bad = [v for v in names if v not in VARIANTS]
        if bad:
            ap.error(f"--variants: unknown {bad[0]!r}; use any of {', '.join(VARIANTS)}")
        ref, best = reference()
        for v in names:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                path = args.out / "runs" / f"{v}-seed{seed}.json"
                if path.exists() and json.loads(path.read_text())["budget"] >= args.budget:
                    continue
                t0 = time.perf_counter()
                run = run_one(v, seed, args.budget, ref, best)
                atomic_write_json(path, run)
                print(f"{v} seed {seed}: HV@{args.budget} {run['curve'][-1]:.3f} ({time.perf_counter() - t0:.0f} s)",
                      flush=True)
    report(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
