"""``hytnas profile``: time a space's units and a validation set on this device.

Run it on the target device (it needs only hytnas and torch). It writes ``DIR/lut.json`` (the
median latency of every distinct unit of the space: stem, each MV2 and MobileViT
configuration at each resolution it occurs, head) and ``DIR/validation.csv`` (N sampled archs
timed end to end, arch-table format). Copy the folder back and point a device profile's
``latency.path`` at it. Interrupt it at any time: the same command continues where it stopped.
"""
from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="profile a space's latency on this device (lookup table + validation archs)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", required=True, help="device profile name or YAML file (recorded in the files)")
    p.add_argument("--space", required=True, help="built-in space name or space YAML file")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for lut.json and validation.csv (continued if present)")
    p.add_argument("--n-validate", type=int, default=50, metavar="N", help="archs timed end to end (default 50)")
    p.add_argument("--threads", type=int, default=1, metavar="T", help="torch intra-op threads (default 1)")
    p.add_argument("--runs", type=int, default=10, metavar="R", help="timed passes per unit (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed passes per unit after the shared warm-up (default 2)")
    p.add_argument("--validate-runs", type=int, default=30, help="timed passes per validation arch (default 30)")
    p.add_argument("--lut", choices=("full", "sample", "none"), default="full",
                   help="units to time: every unit of the space (full, default), those of --lut-sample archs, or none")
    p.add_argument("--lut-sample", type=int, default=300, metavar="N", help="archs whose units --lut sample times (default 300)")
    p.add_argument("--input-size", type=int, default=None, help="input resolution (default: the device's, else the space's)")
    p.add_argument("--num-classes", type=int, default=10, help="classes of the head (default 10)")
    p.add_argument("--in-channels", type=int, default=3, help="input channels (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled archs (default 0)")
    p.add_argument("--torch-device", default="cpu", help="torch device to time on: cpu (default) or cuda")
    p.add_argument("--statistic", choices=("median", "min"), default="median",
                   help="timing the table and latency_ms stand for: median (default) or min, the fastest run "
                        "(least disturbed by other processes: prefer it on a shared machine)")
    p.add_argument("--rounds", type=int, default=1, metavar="K",
                   help="passes over all units (then all validation archs), each timing every one --runs "
                        "(--validate-runs) times; a unit keeps its fastest run and its fastest round's median. "
                        "K >= 3 evens out a virtual machine's drift over minutes (default 1; a finished run can be "
                        "continued with a larger K)")
    p.add_argument("--count", action="store_true", help="only print how many units the run would time, then exit")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from collections import Counter

    from hytnas.errors import HardwareError
    from hytnas.hardware import get_profile
    from hytnas.hardware.profiler import ProfileSettings, run_profile, units_to_profile
    from hytnas.space import get_space

    profile = get_profile(args.device)
    if profile.kind == "mcu":
        raise HardwareError(
            f"--device: {profile.name} is a microcontroller; PyTorch does not run on it, so it cannot be profiled "
            f"with `hytnas profile` (its latency is {profile.latency.method}; see docs/hardware.md to calibrate it)"
        )
    size = args.input_size or profile.input_size
    space = get_space(args.space, input_size=size)
    if args.torch_device not in ("cpu", "cuda"):
        raise HardwareError(f"--torch-device: must be cpu or cuda, got {args.torch_device!r}")
    if args.torch_device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise HardwareError("--torch-device: cuda is not available on this machine; use --torch-device cpu")
    settings = ProfileSettings(
        input_size=space.input_size, num_classes=args.num_classes, in_channels=args.in_channels, threads=args.threads,
        runs=args.runs, warmup=args.warmup, n_validate=args.n_validate, validate_runs=args.validate_runs,
        coverage=args.lut, sample=args.lut_sample, seed=args.seed, torch_device=args.torch_device,
        statistic=args.statistic, rounds=args.rounds,
    )
    if args.count:
        units = units_to_profile(space, settings)
        kinds = Counter(s.kind for s in units.values())
        print(f"space {space.name} at {space.input_size}px ({args.lut} coverage): {len(units)} distinct units ("
              + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ")")
        return 0
    report = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    res = run_profile(space, args.out, settings, device_name=profile.name, report=report)
    print(f"{profile.name}: {res.n_units} units in {res.lut_path} ({res.n_units_timed_now} timed now), "
          f"{res.n_validate} validation archs in {res.validation_path} ({res.n_validate_timed_now} timed now), "
          f"{res.seconds:.0f} s")
    if res.n_units and res.n_validate:
        _summary(space, res, settings)
    return 0


def _summary(space, res, settings) -> None:
    """How well the plain LUT sum matches the end-to-end timings (no correction)."""
    from hytnas.hardware import LatencyTable
    from hytnas.predictors import LUTPredictor, prediction_metrics
    from hytnas.table import read_arch_table

    archs, df = read_arch_table(res.validation_path, space, metrics=("latency_ms", "latency_median_ms", "latency_iqr_ms"))
    if len(archs) < 2:
        return
    pred = LUTPredictor(space, table=LatencyTable.load(res.lut_path), input_size=settings.input_size,
                        num_classes=settings.num_classes, in_channels=settings.in_channels)
    m = prediction_metrics(df["latency_ms"], pred.lut_sum(archs))
    noise = float((df["latency_iqr_ms"] / df["latency_median_ms"]).median())
    print(f"validation: latency ({settings.statistic}) {df['latency_ms'].median():.3g} ms for the median arch, "
          f"timing noise IQR/median {100 * noise:.1f} %; "
          f"plain LUT sum: within +-10 % {100 * m['within_10']:.0f} %, Kendall tau {m['kendall_tau']:.3f}"
          + (f" ({pred.n_fallback} units estimated)" if pred.n_fallback else ""))
