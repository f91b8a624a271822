"""Latency predictors: profile each built-in space on this machine (per-unit LUT + N archs
timed end to end) on the CPU (``--torch-device cpu``, default) or a CUDA GPU
(``--torch-device cuda``), then train every predictor on ``--n-train`` archs and test on the rest.

    .venv/bin/python benchmarks/latency_predictor.py                                  # full run
    .venv/bin/python benchmarks/latency_predictor.py --spaces hytnas-tiny --n-archs 60 --n-train 30  # quick
    python3 benchmarks/latency_predictor.py --torch-device cuda --runs 5              # on a GPU

Per space it reports: the number of distinct units and the LUT profiling time; the timing noise
(per-arch IQR / median over the timed runs, and the drift of re-timing ``--repeat`` archs at
the end); for the plain LUT sum and each predictor, RMSE, MAPE, the fraction within +-5 % and
+-10 %, Kendall tau and Spearman rho on the held-out archs. Every unit and arch keeps both the
median and the fastest of its runs; the evaluation is done twice, with latency = the median
(the convention of the trials) and latency = the minimum (the least disturbed by other
processes; what a dedicated device would show).

Writes: benchmarks/results/latency_predictor.json, benchmarks/data/host-latency-<space>.csv (the
end-to-end latencies, arch-table format, reusable with `hytnas predictor eval`), and the profile
folders benchmarks/data/host-profile-<space>/ (lut.json, validation.csv; an interrupted run
continues from them). With ``--torch-device cuda`` the defaults are
benchmarks/results/latency_predictor_cuda.json, gpu-latency-<space>.csv and gpu-profile-<space>/,
so a GPU run never overwrites (or continues) a CPU one. The results file is also written after
each space (``"complete": false`` until the last), so a run cut short keeps the spaces it
finished. Targets: best predictor >= 95 % within +-10 % and Kendall tau >= 0.9; LUT profiling
<= 20 min per space. CPU timings use ``--threads`` torch threads (default 1, as one trial per
CPU); on a shared machine they are noisy, and the noise bounds what any predictor can reach:
compare with the drift column. CUDA timings are batch-1 forwards with ``torch.cuda.synchronize``
after each (``hytnas.costs.measure_latency``): for these tiny models mostly kernel-launch time.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hytnas.errors import HardwareError
from hytnas.hardware import LatencyTable, ProfileSettings, run_profile
from hytnas.hardware.profiler import time_archs
from hytnas.predictors import PREDICTORS, make_predictor, prediction_metrics
from hytnas.space import builtin_spaces, get_space
from hytnas.table import read_arch_table
from hytnas.utils import atomic_write_json

ROOT = Path(__file__).parent
RESULTS = ROOT / "results" / "latency_predictor.json"
RESULTS_CUDA = ROOT / "results" / "latency_predictor_cuda.json"
TARGET_WITHIN_10, TARGET_TAU, TARGET_LUT_S = 0.95, 0.9, 20 * 60


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _prefix(args: argparse.Namespace) -> str:
    """File-name prefix of the data files: ``host`` (CPU) or ``gpu`` (CUDA)."""
    return "gpu" if args.torch_device == "cuda" else "host"


def device_name(torch_device: str) -> str:
    """What the profile records as the device: the GPU's name, or the host's."""
    if torch_device == "cuda":
        return f"{torch.cuda.get_device_name()} ({platform.node() or 'this machine'})"
    return f"host ({platform.node() or 'this machine'})"


def bench_space(name: str, args: argparse.Namespace) -> dict:
    space = get_space(name)
    work = args.data_dir / f"{_prefix(args)}-profile-{name}"
    settings = ProfileSettings(input_size=space.input_size, num_classes=args.num_classes, threads=args.threads,
                               runs=args.runs, warmup=args.warmup, n_validate=args.n_archs,
                               validate_runs=args.validate_runs, validate_warmup=5, coverage=args.lut,
                               sample=args.lut_sample, seed=args.seed, torch_device=args.torch_device,
                               statistic="min", rounds=args.rounds)
    _log(f"== {name}: profiling into {work}")
    prev_s = _read_meta(work).get("bench_lut_seconds")  # a finished earlier run's LUT time (profiling rewrites meta)
    res = run_profile(space, work, settings, device_name=device_name(args.torch_device),
                      report=None if args.quiet else (lambda m: _log(f"  {m}")))
    # LUT time: this call's when it timed every unit (plus the earlier run's when it added rounds to
    # a finished one), else (resumed run) the recorded one
    if res.n_units_timed_now == res.n_units:
        lut_s = res.lut_seconds + (prev_s or 0.0)
        _record_lut_seconds(work, lut_s)
    else:
        lut_s = prev_s
        if lut_s is not None:
            _record_lut_seconds(work, lut_s)
    archs, df = read_arch_table(res.validation_path, space,
                                metrics=("latency_ms", "latency_median_ms", "latency_min_ms", "latency_iqr_ms"))
    csv = args.data_dir / f"{_prefix(args)}-latency-{name}.csv"
    shutil.copyfile(res.validation_path, csv)
    rel_iqr = df["latency_iqr_ms"].to_numpy(float) / df["latency_median_ms"].to_numpy(float)
    drift = _redrift(space, archs[: args.repeat], df.iloc[: args.repeat], settings) if args.repeat else None

    perm = np.random.default_rng(args.seed).permutation(len(archs))
    tr, te = perm[: args.n_train], perm[args.n_train:]
    a_tr, a_te = [archs[i] for i in tr], [archs[i] for i in te]
    lut = LatencyTable.load(work)
    per_stat = {}
    for stat in ("median", "min"):
        y = df[f"latency_{stat}_ms"].to_numpy(float)
        table = lut.with_statistic(stat)
        rows = []
        if len(table):
            plain = make_predictor("lut", space, table=table, num_classes=args.num_classes)
            rows.append({"model": "lut-sum (no correction)", "fit_s": 0.0,
                         **prediction_metrics(y[te], plain(a_te)), "n_fallback": plain.n_fallback})
        for model in args.models:
            needs_table = PREDICTORS[model].needs_table
            if needs_table and not len(table):
                continue
            kw = {"table": table} if needs_table else {}
            pred = make_predictor(model, space, num_classes=args.num_classes, seed=args.seed, **kw)
            t0 = time.perf_counter()
            pred.fit(a_tr, y[tr])
            fit_s = time.perf_counter() - t0
            rows.append({"model": model, "fit_s": round(fit_s, 2), **prediction_metrics(y[te], pred(a_te))})
        best = max((r for r in rows if r["model"] in args.models), key=lambda r: (r["within_10"], r["kendall_tau"]),
                   default=None)
        per_stat[stat] = {
            "latency_ms": {"min": float(y.min()), "median": float(np.median(y)), "max": float(y.max())},
            "models": rows, "best": None if best is None else best["model"],
            "targets_met": None if best is None else {
                "within_10": best["within_10"] >= TARGET_WITHIN_10, "kendall_tau": best["kendall_tau"] >= TARGET_TAU},
        }
    return {
        "space": name, "input_size": space.input_size, "torch_device": args.torch_device, "threads": args.threads,
        "n_units": res.n_units, "lut_coverage": args.lut, "rounds": args.rounds,
        "lut_profile_s": None if lut_s is None else round(lut_s, 1), "unit_runs": args.runs,
        "lut_profile_met": lut_s is not None and lut_s <= TARGET_LUT_S,
        "n_archs": len(archs), "n_train": len(tr), "n_test": len(te), "validate_runs": args.validate_runs,
        "noise_iqr_over_median": {"median": float(np.median(rel_iqr)), "p90": float(np.percentile(rel_iqr, 90))},
        "retime_drift": drift, "by_statistic": per_stat,
        "csv": str(csv.relative_to(ROOT.parent)) if csv.is_relative_to(ROOT.parent) else str(csv),
    }


def _read_meta(work: Path) -> dict:
    try:
        return dict(LatencyTable.load(work).meta)
    except HardwareError:  # first run: no table yet
        return {}


def _record_lut_seconds(work: Path, seconds: float) -> None:
    table = LatencyTable.load(work)
    LatencyTable(table.entries, {**table.meta, "bench_lut_seconds": seconds}, table.complete).save(work / "lut.json")


def _redrift(space, archs, first, settings) -> dict:
    """Re-time archs at the end: ``|new - old| / old`` per statistic (what a second measurement
    of the same arch disagrees by: the floor under any predictor's error), on the profile's device."""
    again: dict[str, dict] = {}
    time_archs(space, archs, settings, again, rounds=settings.rounds, runs=settings.validate_runs,
               warmup=5)  # the same interleaved rounds as the profile
    rel: dict[str, list[float]] = {"median": [], "min": []}
    for r, (_, old) in zip((again[space.arch_id(a)] for a in archs), first.iterrows()):
        rel["median"].append(abs(r["median_ms"] - old["latency_median_ms"]) / old["latency_median_ms"])
        rel["min"].append(abs(r["min_ms"] - old["latency_min_ms"]) / old["latency_min_ms"])
    return {stat: {"n": len(v), "median": float(np.median(v)), "p90": float(np.percentile(v, 90)),
                   "within_10": float(np.mean(np.array(v) <= 0.10))} for stat, v in rel.items()}


def _print(results: list[dict]) -> None:
    for r in results:
        lut = "n/a" if r["lut_profile_s"] is None else f"{r['lut_profile_s'] / 60:.1f} min"
        noise = r["noise_iqr_over_median"]
        print(f"\n{r['space']} ({r['input_size']} px, {r['torch_device']}): {r['n_units']} units ({r['lut_coverage']}), LUT profiling {lut} "
              f"({'met' if r['lut_profile_met'] else 'MISSED'}: <= 20 min); {r['n_archs']} archs timed x "
              f"{r['validate_runs']} runs; per-arch noise IQR/median: median {100 * noise['median']:.1f} %, "
              f"p90 {100 * noise['p90']:.1f} %")
        for stat, res in r["by_statistic"].items():
            lat = res["latency_ms"]
            print(f"  latency = {stat} of the runs: {lat['min']:.2f}-{lat['max']:.2f} ms (median {lat['median']:.2f})")
            if r["retime_drift"]:
                d = r["retime_drift"][stat]
                print(f"  re-timing {d['n']} archs: median drift {100 * d['median']:.1f} %, p90 {100 * d['p90']:.1f} %, "
                      f"{100 * d['within_10']:.0f} % within +-10 % of the first timing")
            print(f"  {'model':<24} {'fit s':>6} {'rmse ms':>8} {'mape':>6} {'<=5%':>6} {'<=10%':>6} {'tau':>6} {'rho':>6}"
                  f"   (train {r['n_train']}, test {r['n_test']})")
            for m in res["models"]:
                print(f"  {m['model']:<24} {m['fit_s']:>6.1f} {m['rmse']:>8.3f} {100 * m['mape']:>5.1f}% "
                      f"{100 * m['within_5']:>5.1f}% {100 * m['within_10']:>5.1f}% {m['kendall_tau']:>6.3f} "
                      f"{m['spearman_rho']:>6.3f}")
            if res["targets_met"]:
                t = res["targets_met"]
                print(f"  best: {res['best']}; within+-10% >= 95 %: {'met' if t['within_10'] else 'MISSED'}, "
                      f"tau >= 0.9: {'met' if t['kendall_tau'] else 'MISSED'}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", default=",".join(builtin_spaces()), help="comma-separated (default: all built-in)")
    ap.add_argument("--n-archs", type=int, default=300, help="archs timed end to end per space (default 300)")
    ap.add_argument("--n-train", type=int, default=100, help="training archs; the rest are the test set (default 100)")
    ap.add_argument("--models", default="lut,lut_gp,gp,rank_ensemble")
    ap.add_argument("--runs", type=int, default=10, help="timed passes per unit and round (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed passes per unit (default 2)")
    ap.add_argument("--validate-runs", type=int, default=30, help="timed passes per arch and round (default 30)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="interleaved passes over all units, then all archs (hytnas profile --rounds; default 1)")
    ap.add_argument("--lut", choices=("full", "sample", "none"), default="full")
    ap.add_argument("--lut-sample", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=30, help="archs re-timed at the end to measure drift (default 30)")
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torch-device", choices=("cpu", "cuda"), default="cpu",
                    help="where units and archs are timed (default cpu)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads while timing (default 1)")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data")
    ap.add_argument("--out", type=Path, default=None,
                    help="results json (default benchmarks/results/latency_predictor.json, "
                         "latency_predictor_cuda.json with --torch-device cuda)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not 2 <= args.n_train <= args.n_archs - 2:
        ap.error(f"--n-train must be between 2 and --n-archs - 2 ({args.n_archs - 2})")
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    if args.torch_device == "cuda" and not torch.cuda.is_available():
        print("latency_predictor: --torch-device cuda but torch.cuda.is_available() is False (no CUDA device or a "
              "CPU-only torch build); use --torch-device cpu", file=sys.stderr)
        sys.exit(2)
    if args.out is None:
        args.out = RESULTS_CUDA if args.torch_device == "cuda" else RESULTS
    args.data_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    spaces = [s.strip() for s in args.spaces.split(",") if s.strip()]
    results: list[dict] = []
    for name in spaces:
        results.append(bench_space(name, args))
        out = _results(results, args, argv, time.perf_counter() - t0, complete=len(results) == len(spaces))
        atomic_write_json(args.out, out)  # after every space: a run cut short keeps what it finished
    _print(results)
    print(f"\nwrote {args.out} ({out['total_s'] / 60:.1f} min)")
    return out


def _results(results: list[dict], args: argparse.Namespace, argv: list[str] | None, seconds: float,
             complete: bool) -> dict:
    """The results file's content."""
    return {
        "benchmark": "latency_predictor", "complete": complete, "results": results, "total_s": round(seconds, 1),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "targets": {"within_10": TARGET_WITHIN_10, "kendall_tau": TARGET_TAU, "lut_profile_s": TARGET_LUT_S},
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "threads": args.threads, "torch_device": args.torch_device,
                    "device": device_name(args.torch_device), "cuda": torch.version.cuda,
                    "loadavg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    }


if __name__ == "__main__":
    main()
