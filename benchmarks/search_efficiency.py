"""Search efficiency: every searcher through Ray Tune with equal budgets and several seeds.

Searchers: ``mobo`` (GP, ParEGO), ``mobo-qlognehvi`` (GP, qLogNEHVI: ``mobo``'s default
acquisition before ParEGO), ``mobo-rank_ensemble``, ``random``, ``optuna-nsga2``, ``optuna-tpe``,
``optuna-gp`` and ``ax`` (all from ``search_algos.make_searcher``; ``ax`` is Ax's default
multi-objective generation strategy, ``search_algos.ax_search.AxArchSearch``; ax-platform is
a benchmark-only extra). Each run is one ``tune.Tuner`` with one trial at a time
(``max_concurrent_trials=1``), so "evaluations" is the number of completed trials.

Problems (``--problem``):

- ``dtlz2`` (default): BoTorch's ``DTLZ2(dim=16, num_objectives=2)`` of ``space.encode(arch)``
  of the 23-gene ``hytnas`` space (so the search grid is exactly our space): ``z0`` = mean of
  genes 1-8, ``z1..z15`` = genes 9-23 (see :func:`dtlz2_problem`); both objectives minimised,
  reported by a cheap function trainable. Reference point and "best known HV": from the union of
  every point evaluated by any run of this benchmark (``infer_reference_point`` of its Pareto
  front, i.e. nadir - 10 % of the range, as for the table; DTLZ2's own 1.1 is never reached by
  the early evaluations on this grid).
- ``table``: the real tabular benchmark (``--table``, default
  ``benchmarks/data/fmnist-hytnas-v1.csv.gz``) through the lookup trainable, every searcher in
  pool mode over the table's archs; objectives ``--objectives`` (default
  ``val_accuracy,params_k``); reference point and best HV from the table's exact Pareto front
  (``hytnas.mo.true_front``).

Every run is written as soon as it ends (``<out>/runs/<searcher>-seed<k>.json``; existing runs
are skipped, so the script resumes); ``--report`` (also run at the end) aggregates them into
``<out>/search_efficiency.json``, ``hv_curves.png`` and a printed table: HV (as a fraction of the
best known) at 50/100/200/500 evaluations, evaluations to reach 95 % and 99 % of the best known
HV (median over seeds, and how many seeds got there), and the median wall time per suggestion
(time spent in ``Searcher.suggest`` for the calls that returned a trial).

Example (what the report in docs/searcher.md ran; searchers in separate processes)::

    python benchmarks/search_efficiency.py --searchers random,optuna-nsga2,optuna-tpe --seeds 5 --budget 500
    python benchmarks/search_efficiency.py --searchers mobo,optuna-gp,ax --seeds 5 --budget 200
    python benchmarks/search_efficiency.py --report
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hytnas.mo import curve_of, evals_to_reach, hypervolume, reference_point, true_front  # noqa: E402
from hytnas.objectives import Objective, get_objectives  # noqa: E402
from hytnas.space import get_space  # noqa: E402
from hytnas.utils import atomic_write_json  # noqa: E402

MILESTONES = (50, 100, 200, 500)
TARGETS = (0.95, 0.99)
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "search_efficiency"
DEFAULT_TABLE = ROOT / "benchmarks" / "data" / "fmnist-hytnas-v1.csv.gz"


# ---------------------------------------------------------------------------------- problems
class Problem:
    """What a run needs: space, objectives, trainable, reference point (maximised), pool, best HV."""

    def __init__(self, name: str, space, objectives: Sequence[Objective], trainable: Callable,
                 ref_point: torch.Tensor | None,
                 candidates=None, best_hv: float | None = None, factory_kwargs: dict | None = None) -> None:
        self.name, self.space, self.objectives, self.trainable = name, space, tuple(objectives), trainable
        self.ref_point, self.candidates, self.best_hv = ref_point, candidates, best_hv
        self.factory_kwargs = factory_kwargs or {}


def dtlz2_values(space, archs) -> torch.Tensor:
    """``(n, 2)`` DTLZ2 objectives (both minimised) of ``archs``: BoTorch's ``DTLZ2(dim=16)`` of
    ``z0`` = mean of genes 1-8 of ``space.encode``, ``z1..z15`` = genes 9-23."""
    from botorch.test_functions.multi_objective import DTLZ2

    X = space.encode(archs)
    Z = torch.cat([X[:, :8].mean(-1, keepdim=True), X[:, 8:]], -1)
    return DTLZ2(dim=16, num_objectives=2).evaluate_true(Z)


def dtlz2_problem() -> Problem:
    """DTLZ2 (2 objectives, 16 inputs) of the 23-gene encoding: ``z0`` = mean of genes 1-8 (the
    position on the front; a mean of 8 genes takes many values on the grid, where one gene would
    give only 3 or 4 front positions), ``z1..z15`` = genes 9-23 (the distance to the front, optimal
    at 0.5)."""
    from ray import tune

    space = get_space("hytnas")
    objectives = get_objectives([{"name": "f1", "sense": "min"}, {"name": "f2", "sense": "min"}])

    def trainable(config: dict) -> None:
        y = dtlz2_values(space, [space.from_config(config)])[0]
        tune.report({"f1": float(y[0]), "f2": float(y[1]), "arch_id": config.get("arch_id", "")})

    return Problem("dtlz2", space, objectives, trainable, ref_point=None)


def table_problem(path: Path, objective_names: Sequence[str]) -> Problem:
    from hytnas.benchmark.table import BenchmarkTable
    from trainables.lookup import make_lookup_trainable

    table = BenchmarkTable.load(path)
    objectives = get_objectives(objective_names)
    tf = true_front(table.Y(objectives), objectives)
    head = table.header
    kwargs = {"num_classes": int(head.get("num_classes", 10)), "in_channels": int(head.get("in_channels", 1)),
              "input_size": table.space.input_size}
    return Problem("table", table.space, objectives, make_lookup_trainable(table), tf.ref_point,
                   candidates=list(table.archs), best_hv=tf.hypervolume, factory_kwargs=kwargs)


# ---------------------------------------------------------------------------------- one run
def make_searcher(name: str, problem: Problem, seed: int):
    from hytnas.benchmark.run import make_benchmark_searcher

    return make_benchmark_searcher(name, problem.space, problem.objectives, seed, candidates=problem.candidates,
                                   options={"torch_threads": 1} if name.startswith("mobo") else None,
                                   **problem.factory_kwargs)


def run_one(name: str, problem: Problem, seed: int, budget: int, storage: Path) -> dict[str, Any]:
    """One Tune run of ``name`` on ``problem`` (the Tuner and the completion record of
    ``hytnas benchmark run``), with the time of every suggestion."""
    from hytnas.benchmark.run import run_one as tune_run

    t0 = time.monotonic()
    results, suggest_s = tune_run(problem.trainable, make_searcher(name, problem, seed), budget, storage,
                                  f"{name}-seed{seed}")
    Y = [[float(r[o.name]) for o in problem.objectives] if r.get("done") and all(o.name in r for o in problem.objectives)
         else None for r in results]
    return {"searcher": name, "seed": seed, "budget": budget, "Y": Y, "arch_ids": [r.get("arch_id") for r in results],
            "suggest_s": suggest_s, "wall_s": time.monotonic() - t0}


# ---------------------------------------------------------------------------------- report
def curve(run: dict[str, Any], problem_objectives: Sequence[Objective], ref: torch.Tensor) -> list[float]:
    """HV after each evaluation (failed/unfinished evaluations add nothing)."""
    names = [o.name for o in problem_objectives]
    return curve_of([{**dict(zip(names, y)), "done": True} if y is not None else {} for y in run["Y"]],
                    problem_objectives, ref)


def report(out: Path, problem: Problem) -> dict[str, Any]:
    from hytnas.benchmark.run import SEARCHERS

    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    if not runs:
        raise SystemExit(f"no runs in {out / 'runs'}")
    objs, ref = problem.objectives, problem.ref_point
    best = problem.best_hv
    if ref is None or best is None:  # from the union of everything any run evaluated
        Y = torch.tensor([y for r in runs for y in r["Y"] if y is not None], dtype=torch.float64)
        ref = reference_point(Y, objs, front_only=True) if ref is None else ref
        best = hypervolume(Y, objs, ref)
    by: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        r["curve"] = curve(r, objs, ref)
        by.setdefault(r["searcher"], []).append(r)
    rows = []
    for name in [s for s in SEARCHERS if s in by]:
        rs = by[name]
        row: dict[str, Any] = {"searcher": name, "seeds": len(rs), "budget": min(len(r["curve"]) for r in rs)}
        for m in MILESTONES:
            vals = [r["curve"][m - 1] / best for r in rs if len(r["curve"]) >= m]
            row[f"hv@{m}"] = (statistics.mean(vals), statistics.pstdev(vals)) if len(vals) == len(rs) else None
        for t in TARGETS:
            reach = [evals_to_reach(r["curve"], t * best) for r in rs]
            got = [x for x in reach if x is not None]
            row[f"evals_to_{int(t * 100)}"] = (statistics.median(got) if len(got) == len(rs) else None, len(got))
        times = [t for r in rs for t in r["suggest_s"]]
        row["median_suggest_s"] = statistics.median(times) if times else math.nan
        row["p95_suggest_s"] = sorted(times)[int(0.95 * (len(times) - 1))] if times else math.nan
        rows.append(row)
    # the targets: evaluations mobo needs to reach what random / NSGA-II reach at 500
    targets = {}
    for base in ("random", "optuna-nsga2"):
        if base in by and "mobo" in by and all(len(r["curve"]) >= 500 for r in by[base]):
            level = statistics.mean(r["curve"][499] for r in by[base])
            reach = [evals_to_reach(r["curve"], level) for r in by["mobo"]]
            targets[f"mobo_evals_to_{base}@500"] = {"level_frac": level / best, "per_seed": reach,
                                                    "median": statistics.median([x if x is not None else math.inf
                                                                                 for x in reach])}
    doc = {"format": "hytnas-search-efficiency", "version": 1, "problem": problem.name,
           "objectives": [o.name for o in objs], "ref_point_max": ref.tolist(),
           "ref_point_definition": ("table's true front" if problem.ref_point is not None else
                                    "infer_reference_point of the Pareto front of all evaluated points"),
           "best_known_hv": best,
           "best_known_hv_definition": ("true front of the table" if problem.best_hv is not None else
                                        "HV of the union of all points evaluated by all runs"),
           "rows": rows, "targets": targets,
           "curves": {r["searcher"] + f"/seed{r['seed']}": r["curve"] for r in runs},
           "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    atomic_write_json(out / "search_efficiency.json", _finite(doc))
    _plot(by, best, out / "hv_curves.png", problem.name)
    print(format_table(rows, best, problem.name))
    for k, v in targets.items():
        print(f"{k}: median {v['median']} evaluations (per seed {v['per_seed']}), level {v['level_frac']:.4f} of best")
    return doc


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def format_table(rows: Sequence[dict[str, Any]], best: float, problem: str) -> str:
    def ms(v):
        return "-" if v is None else f"{v[0]:.3f}±{v[1]:.3f}"

    def reach(v):
        med, n = v
        return f"{med:g} ({n})" if med is not None else f"- ({n})"

    head = (["searcher", "seeds"] + [f"HV@{m}" for m in MILESTONES] + ["evals→95%", "evals→99%", "median s/suggest",
                                                                         "p95 s/suggest"])
    lines = [f"problem {problem}: HV as a fraction of the best known ({best:.6g}); mean±std over seeds; "
             "evals→x%: median over seeds (seeds that got there)", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["searcher"], str(r["seeds"])] + [ms(r[f"hv@{m}"]) for m in MILESTONES]
        cells += [reach(r["evals_to_95"]), reach(r["evals_to_99"]), f"{r['median_suggest_s']:.3f}",
                  f"{r['p95_suggest_s']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot(by: dict[str, list[dict[str, Any]]], best: float, path: Path, problem: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, rs in by.items():
        n = min(len(r["curve"]) for r in rs)
        c = np.array([r["curve"][:n] for r in rs]) / best
        x = np.arange(1, n + 1)
        ax.plot(x, c.mean(0), label=f"{name} ({len(rs)} seeds)")
        ax.fill_between(x, c.mean(0) - c.std(0), c.mean(0) + c.std(0), alpha=0.15)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume / best known")
    ax.set_title(f"search efficiency ({problem})")
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    from hytnas.benchmark.run import SEARCHERS  # imports Ray: not at module level (mobo_ablation.py runs without it)

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problem", choices=("dtlz2", "table"), default="dtlz2")
    ap.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    ap.add_argument("--objectives", default="val_accuracy,params_k", help="table problem: comma-separated")
    ap.add_argument("--searchers", default=",".join(SEARCHERS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed + seeds - 1")
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--report", action="store_true", help="only aggregate the runs already made")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process (shared machines: 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    out = args.out or DEFAULT_OUT / args.problem
    problem = dtlz2_problem() if args.problem == "dtlz2" else table_problem(args.table, args.objectives.split(","))
    if not args.report:
        from hytnas.runtime import NO_TRIAL_LOGGERS, init_ray, shutdown

        names = [s.strip() for s in args.searchers.split(",") if s.strip()]
        bad = [s for s in names if s not in SEARCHERS]
        if bad:
            ap.error(f"--searchers: unknown {bad[0]!r}; use any of {', '.join(SEARCHERS)}")
        started = init_ray(num_cpus=1, env=NO_TRIAL_LOGGERS, configure_logging=False)
        for name in names:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                path = out / "runs" / f"{name}-seed{seed}.json"
                if path.exists() and json.loads(path.read_text())["budget"] >= args.budget:
                    continue
                run = run_one(name, problem, seed, args.budget, out / "ray")
                atomic_write_json(path, run)
                t = run["suggest_s"]
                print(f"{name} seed {seed}: {len(run['Y'])} evaluations in {run['wall_s']:.0f} s, "
                      f"median suggest {statistics.median(t) if t else float('nan'):.3f} s", flush=True)
        shutdown(started)
    report(out, problem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
