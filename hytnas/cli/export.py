"""``hytnas export EXPERIMENT_DIR (--trial ID | --pareto) [--format onnx|torchscript|pt] [--quantize int8] [--out DIR]``.

Exports one trial or every Pareto-optimal trial of a search (finished, running or killed), one
folder per model with ``arch.json``, ``weights.pt``, the chosen format (``model.onnx`` and with
``--quantize int8`` ``model.int8.onnx``; ``model.ts``), ``export.json`` and ``README.md``: see
:mod:`hytnas.export`. Without ``--trial`` the Pareto front is exported; the default format is ``pt``.

Exit codes: 0 exported and checked; 1 an exported model disagrees with PyTorch (max abs
difference above the tolerance; the files are kept); 2 bad input (not an experiment folder, an
unknown trial id, an unwritable ``--out``, ``--quantize`` without ``--format onnx``).
"""
from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  hytnas export experiments/quickstart --pareto --format onnx --quantize int8
  hytnas export experiments/quickstart --trial 2cb0e617 --format torchscript --out models/
  hytnas export experiments/quickstart --pareto            # arch.json + weights.pt only"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="export trained models of a search (ONNX + int8, TorchScript or weights)",
        description="Export one trial or the Pareto-optimal trials of a search: per model arch.json, weights.pt, "
                    "the chosen format, export.json and a README.md.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("experiment", metavar="EXPERIMENT_DIR", help="the experiment folder of a search (storage_path)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", default=None, metavar="ID", help="export this trial (its trial_id in hytnas results)")
    which.add_argument("--pareto", action="store_true", help="export every Pareto-optimal trial (the default)")
    p.add_argument("--format", dest="fmt", default="pt", choices=("onnx", "torchscript", "pt"),
                   help="onnx (model.onnx, checked with ONNX Runtime), torchscript (model.ts) or pt "
                        "(weights.pt only); default pt")
    p.add_argument("--quantize", default=None, choices=("int8",),
                   help="with --format onnx: also model.int8.onnx (ONNX Runtime static quantization)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: EXPERIMENT_DIR/export)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hytnas.export import ExportCheckFailed, export_models

    try:
        models = export_models(args.experiment, trial=args.trial, pareto=args.trial is None, fmt=args.fmt,
                               quantize=args.quantize, out=args.out)
    except ExportCheckFailed as exc:  # not bad input: exit 1
        print(f"hytnas: error: {exc}", file=sys.stderr)
        return 1
    for m in models:
        print(f"{m.folder}  {summary_line(m.report)}")
    print(f"[hytnas] exported {len(models)} model(s) as {args.fmt}")
    return 0


def summary_line(report) -> str:
    """One line per model: the check, accuracies, sizes and latencies that the export measured."""
    parts = []
    chk = report.get("check")
    if chk:
        parts.append(f"check max|diff| {chk['max_abs_diff']:.2g} (ok)")
    acc = report.get("accuracy")
    if acc:
        parts.append(f"val acc fp32 {100 * acc['fp32']:.2f}% int8 {100 * acc['int8']:.2f}% ({acc['images']} images)")
    sizes, a = report.get("sizes", {}), report["analytic"]
    if sizes:
        z = "  ".join(f"{k} {v['file_bytes'] / 1024:.1f}" for k, v in sizes.items())
        parts.append(f"files KiB {z}")
    sc = report.get("size_check")
    if sc:
        parts.append(f"int8 weights {sc['measured_bytes'] / 1024:.1f} KiB vs analytic {a['model_size_kb']:.1f} "
                     f"({100 * sc['relative_difference']:+.1f}%)")
    parts.append(f"peak SRAM {a['peak_sram_kb']:.1f} KiB")
    lat = report.get("latency")
    if lat:
        parts.append(f"b1 1-thread ms: eager {lat['pytorch_eager_ms']:.2f} ort {lat['ort_fp32_ms']:.2f}"
                     + (f" int8 {lat['ort_int8_ms']:.2f}" if "ort_int8_ms" in lat else ""))
    return "; ".join(parts)
