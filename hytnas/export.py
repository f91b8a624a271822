"""Export trained models of a search: :func:`export_models` (``hytnas export``).

>>> from hytnas.export import export_models
>>> models = export_models("experiments/quickstart", pareto=True, fmt="onnx", quantize="int8")
>>> models[0].report["onnx"]["max_abs_diff"]

Which models: one trial (``trial="<trial id>"``) or every Pareto-optimal trial (``pareto=True``),
as :func:`hytnas.results.load` lists them (``trials.csv``, or Tune's trial folders of a search
still running or killed). The weights are the trial's last checkpoint (``model.pt``): the
search's own training schedule (``training.epochs`` epochs on ``dataset.train_size`` images),
not a full-schedule retrain.

One folder per model, ``<out>/<rank>-<arch_id>/`` (Pareto rank, best first objective first) or
``<out>/trial_<id>-<arch_id>/``, holding:

- ``arch.json`` (format ``hytnas-arch`` v1: genes, ``arch_cfg`` (``ArchCfg.to_dict()``),
  ``input_size``, ``num_classes``, ``in_channels``, the trial's metrics);
- ``weights.pt`` (the ``state_dict``; ``torch.load(p, weights_only=True)`` into
  ``hytnas.models.build_model(...)``), checked by loading it strictly into a fresh model;
- ``fmt="onnx"``: ``model.onnx`` (TorchScript-based ``torch.onnx.export``, opset
  :data:`OPSET`, input ``input`` ``(batch, C, S, S)`` float32, output ``logits`` ``(batch,
  classes)``, dynamic batch axis), checked against PyTorch with ONNX Runtime on seeded random
  batches (:data:`CHECK_BATCH_SIZES`): a max abs difference above :data:`ORT_TOLERANCE` raises
  :class:`ExportCheckFailed`; with ``quantize="int8"`` also ``model.int8.onnx``: ONNX Runtime
  static quantization (QDQ, int8 activations and per-channel int8 weights, MinMax calibration on
  ``calib_images`` training images without augmentation), both models' accuracy measured with
  ONNX Runtime on the first ``eval_images`` validation images, and the int8 weight bytes checked
  against the analytic ``model_size_kb`` of :func:`hytnas.costs.arch_costs` (see :func:`onnx_sizes`);
- ``fmt="torchscript"``: ``model.ts`` (``torch.jit.trace``; ``torch.jit.load`` loads it),
  checked the same way against the eager model;
- ``export.json`` (format ``hytnas-export`` v1: the checks, sizes, accuracies, latencies,
  the training schedule and the input normalisation) and ``README.md`` (the same for people,
  with how to run the model).

Latency (``fmt="onnx"``): batch 1, one thread, median of ``latency_runs`` runs, ONNX Runtime
(fp32 and int8) and PyTorch eager (:func:`hytnas.costs.measure_latency`) in the same process.

Errors: bad arguments (unknown format, ``quantize`` without ONNX, an unknown trial, an
unwritable ``out``) and missing inputs are :class:`~hytnas.errors.HytnasError` lines (CLI exit 2);
a model that disagrees with PyTorch is :class:`ExportCheckFailed` (CLI exit 1).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import statistics
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from hytnas.config import check_writable
from hytnas.costs import arch_costs, measure_latency
from hytnas.data import make_datamodule
from hytnas.errors import ConfigError, DataError, HytnasError
from hytnas.models import build_model
from hytnas.results import CONFIG_FILE, load, load_saved_experiment
from hytnas.space import GENES
from hytnas.trial import WEIGHTS_FILE, read_trial_state
from hytnas.utils import atomic_write_json, atomic_write_text

EXPORT_FORMAT = "hytnas-arch"
EXPORT_VERSION = 1
REPORT_FORMAT = "hytnas-export"
REPORT_VERSION = 1
FORMATS = ("onnx", "torchscript", "pt")
QUANTIZE = ("int8",)
OPSET = 17
#: max abs difference of the logits allowed between an fp32 export and PyTorch eager
ORT_TOLERANCE = 1e-4
#: relative difference allowed between the int8 weight bytes and the analytic model size
SIZE_TOLERANCE = 0.10
#: the seeded random batches of the export checks (batch sizes; 1 checks the dynamic axis)
CHECK_BATCH_SIZES = (1, 8, 32)
FILES = {"onnx": "model.onnx", "int8": "model.int8.onnx", "torchscript": "model.ts", "pt": "weights.pt"}


class ExportCheckFailed(HytnasError):
    """An exported model disagrees with the PyTorch model beyond :data:`ORT_TOLERANCE`."""


@dataclass(frozen=True)
class ExportedModel:
    """One exported model: its folder, trial, arch and the ``export.json`` content."""

    folder: Path
    trial_id: str
    arch_id: str
    format: str
    report: Mapping[str, Any]


# ------------------------------------------------------------------------------ entry points
def export_models(
    experiment_dir: str | Path,
    *,
    trial: str | None = None,
    pareto: bool = False,
    fmt: str = "pt",
    quantize: str | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    calib_images: int = 256,
    eval_images: int = 1000,
    latency_runs: int = 100,
) -> list[ExportedModel]:
    """Export one trial (``trial``) or the Pareto front (``pareto``) of a search; see the module docstring.

    Exactly one of ``trial`` and ``pareto``. ``out`` defaults to ``<experiment_dir>/export``.
    Every argument and input is checked before the first model is written.
    """
    d = Path(experiment_dir)
    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ConfigError(f"--quantize: {quantize!r} is not one of {', '.join(QUANTIZE)}")
    if quantize is not None and fmt != "onnx":
        raise ConfigError(f"--quantize {quantize}: needs --format onnx (ONNX Runtime quantizes the ONNX model)")
    if (trial is None) == (not pareto):
        raise ConfigError("choose the models: --trial ID or --pareto")
    if fmt == "onnx":
        _require_onnx()
    cfg = load_saved_experiment(d)
    out_dir = Path(out) if out is not None else d / "export"
    check_writable(out_dir, "--out")  # one line before anything is read, built or written
    space = cfg.build_space()
    rows = _select(d, trial)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a read-only or virtual file system that os.access does not see through
        raise ConfigError(f"--out: {out_dir} cannot be created ({exc.strerror or type(exc).__name__})") from None
    data = _data(cfg, space.input_size, calib_images, eval_images) if quantize else None
    norm = make_datamodule(cfg, space.input_size).batch_transform(False)  # no data read
    normalise = {"mean": list(norm.mean), "std": list(norm.std), "scale": "pixel / 255"}
    schedule = {
        "epochs": cfg.training.epochs,
        "train_size": cfg.dataset.train_size,
        "dataset": cfg.dataset.name,
        "subset_seed": cfg.training.seed,
        "retrained": False,
    }
    written = []
    for rank, (_, row) in enumerate(rows.iterrows(), start=1):
        name = f"{rank:02d}-{row['arch_id']}" if trial is None else f"trial_{row['trial_id']}-{row['arch_id']}"
        written.append(
            _export_one(
                d,
                space,
                row,
                out_dir / name,
                fmt=fmt,
                quantize=quantize,
                data=data,
                seed=seed,
                latency_runs=latency_runs,
                experiment=cfg.name,
                schedule=schedule,
                normalise=normalise,
            )
        )
    return written


def export_pareto(experiment_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """The Pareto-optimal models as ``arch.json`` + ``weights.pt`` folders (``fmt="pt"``)."""
    return [m.folder for m in export_models(experiment_dir, pareto=True, fmt="pt", out=out)]


# ------------------------------------------------------------------------------ inputs
def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--format onnx: needs the packages onnx and onnxruntime (pip install 'hytnas[export]')"
        ) from None


def _select(d: Path, trial: str | None) -> pd.DataFrame:
    if trial is None:
        rows = load(d, pareto=True)
        if rows.empty:
            raise DataError(
                f"EXPERIMENT_DIR: {d} has no Pareto-optimal trial yet (no completed feasible trial); "
                f"continue the search with: hytnas search {d / CONFIG_FILE} --resume"
            )
        return rows
    df = load(d)
    rows = df[df["trial_id"] == str(trial)]
    if rows.empty:
        known = ", ".join(df["trial_id"].astype(str)) or "none"
        raise ConfigError(f"--trial: no trial {trial!r} in {d}; its trials are {known}")
    return rows


@dataclass(frozen=True)
class _Data:
    calib: np.ndarray  # float32 (n, C, S, S), normalised
    images: np.ndarray  # validation images, float32 normalised
    labels: np.ndarray  # int64


def _data(cfg: Any, input_size: int, calib_images: int, eval_images: int) -> _Data:
    dm = make_datamodule(cfg, input_size)
    dm.augment = False  # calibration images as the model sees them at inference
    dm.setup()
    assert dm.train_set is not None and dm.val_set is not None
    xc, _ = dm.train_set[np.arange(min(calib_images, len(dm.train_set)))]
    xv, yv = dm.val_set[np.arange(min(eval_images, len(dm.val_set)))]
    return _Data(xc.numpy(), xv.numpy(), yv.numpy())


def _checkpoint(d: Path, row: Mapping[str, Any]) -> Path:
    ckpt = str(row.get("checkpoint") or "")
    folder = d / ckpt if ckpt and not Path(ckpt).is_absolute() else Path(ckpt)
    if not ckpt or not (folder / WEIGHTS_FILE).is_file():
        raise DataError(
            f"trial {row['trial_id']}: no {WEIGHTS_FILE} in its checkpoint {folder if ckpt else '(none yet)'}"
        )
    return folder


# ------------------------------------------------------------------------------ one model
def _export_one(
    d: Path,
    space: Any,
    row: pd.Series,
    folder: Path,
    *,
    fmt: str,
    quantize: str | None,
    data: _Data | None,
    seed: int,
    latency_runs: int,
    experiment: str,
    schedule: Mapping[str, Any],
    normalise: Mapping[str, Any],
) -> ExportedModel:
    ckpt = _checkpoint(d, row)
    state = read_trial_state(ckpt)
    arch = space.from_vector([row[g] for g in GENES])
    arch_cfg = space.to_arch_cfg(arch)
    size, classes, chans = int(state["input_size"]), int(state["num_classes"]), int(state["in_channels"])
    weights = torch.load(ckpt / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model = build_model(arch_cfg, num_classes=classes, in_channels=chans, input_size=size)
    model.load_state_dict(weights, strict=True)
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    genes = space.to_config(arch)
    metrics = {k: v for k, v in row.items() if k not in genes and k not in ("checkpoint", "feasible", "pareto")}
    atomic_write_json(
        folder / "arch.json",
        {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "arch_id": arch_cfg.arch_id,
            "space": space.name,
            "genes": genes,
            "arch_cfg": arch_cfg.to_dict(),
            "input_size": size,
            "num_classes": classes,
            "in_channels": chans,
            "experiment": experiment,
            "metrics": _plain(metrics),
        },
    )
    torch.save(model.state_dict(), folder / FILES["pt"])
    costs = arch_costs(arch_cfg, size, classes, chans)
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "trial_id": str(row["trial_id"]),
        "arch_id": arch_cfg.arch_id,
        "export_format": fmt,
        "files": {"weights": FILES["pt"]},
        "input": {"name": "input", "shape": ["batch", chans, size, size], "dtype": "float32", "normalise": normalise},
        "schedule": dict(schedule),
        "trial_metrics": _plain({k: row.get(k) for k in ("val_accuracy", "test_accuracy", "epoch")}),
        "analytic": {
            k: costs[k] for k in ("params", "model_size_kb", "model_size_fp32_kb", "peak_sram_kb", "peak_sram_fp32_kb")
        },
    }
    gen = torch.Generator().manual_seed(seed)
    batches = [torch.randn(n, chans, size, size, generator=gen) for n in CHECK_BATCH_SIZES]
    if fmt == "onnx":
        report.update(_onnx(model, folder, batches, quantize, data, costs, latency_runs, size, chans))
    elif fmt == "torchscript":
        report.update(_torchscript(model, folder, batches))
    atomic_write_json(folder / "export.json", report)
    atomic_write_text(folder / "README.md", readme(report))
    failed = report.get("check", {})
    if failed and not failed["passed"]:
        raise ExportCheckFailed(
            f"{folder / report['files']['model']}: max abs difference {failed['max_abs_diff']:.3g} to PyTorch "
            f"exceeds {ORT_TOLERANCE:g}; the files are kept for inspection"
        )
    return ExportedModel(folder, str(row["trial_id"]), arch_cfg.arch_id, fmt, report)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' and the quantizer's warnings (tracer notes, legacy-exporter notice,
    per-tensor fall-backs logged on the root logger)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _max_diff(model: torch.nn.Module, batches: Sequence[torch.Tensor], run: Any) -> float:
    worst = 0.0
    with torch.inference_mode():
        for x in batches:
            ref = model(x).numpy()
            worst = max(worst, float(np.abs(np.asarray(run(x)) - ref).max()))
    return worst


def _check(worst: float, batches: Sequence[torch.Tensor]) -> dict[str, Any]:
    return {
        "max_abs_diff": worst,
        "tolerance": ORT_TOLERANCE,
        "passed": bool(worst <= ORT_TOLERANCE),
        "batches": [int(x.shape[0]) for x in batches],
        "inputs": "standard normal, seeded",
    }


# ------------------------------------------------------------------------------ TorchScript
def _torchscript(model: torch.nn.Module, folder: Path, batches: Sequence[torch.Tensor]) -> dict[str, Any]:
    path = folder / FILES["torchscript"]
    with _quiet(), torch.inference_mode():
        traced = torch.jit.trace(model, batches[-1][:2])
        traced.save(str(path))
    with _quiet():
        loaded = torch.jit.load(str(path))
    worst = _max_diff(model, batches, lambda x: loaded(x).numpy())
    return {"files": {"weights": FILES["pt"], "model": FILES["torchscript"]}, "check": _check(worst, batches)}


# ------------------------------------------------------------------------------ ONNX
def _session(path: Path, threads: int = 1) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _onnx(
    model: torch.nn.Module,
    folder: Path,
    batches: Sequence[torch.Tensor],
    quantize: str | None,
    data: _Data | None,
    costs: Mapping[str, Any],
    latency_runs: int,
    size: int,
    chans: int,
) -> dict[str, Any]:
    path = folder / FILES["onnx"]
    export_onnx(model, path, batches[0])
    sess = _session(path)
    worst = _max_diff(model, batches, lambda x: sess.run(None, {"input": x.numpy()})[0])
    files = {"weights": FILES["pt"], "model": FILES["onnx"]}
    out: dict[str, Any] = {"files": files, "check": _check(worst, batches), "opset": OPSET}
    sizes = {"fp32": onnx_sizes(path)}
    x1 = batches[0].numpy()
    latency = {
        "batch": 1,
        "threads": 1,
        "runs": latency_runs,
        "pytorch_eager_ms": measure_latency(model, size, chans, threads=1, runs=latency_runs, warmup=10).median_ms,
        "ort_fp32_ms": _ort_latency(sess, x1, latency_runs),
    }
    if quantize == "int8":
        assert data is not None
        qpath = folder / FILES["int8"]
        quantize_int8(path, qpath, data.calib)
        files["int8"] = FILES["int8"]
        qsess = _session(qpath)
        sizes["int8"] = onnx_sizes(qpath)
        analytic = float(costs["params"])
        weight_bytes = sizes["int8"]["initializer_bytes"].get("int8", 0)
        rel = abs(weight_bytes - analytic) / analytic
        out["size_check"] = {
            "measure": "int8 weight initializer bytes",
            "measured_bytes": weight_bytes,
            "analytic_bytes": int(analytic),
            "relative_difference": rel,
            "tolerance": SIZE_TOLERANCE,
            "passed": bool(rel <= SIZE_TOLERANCE),
        }
        out["accuracy"] = {
            "split": "val",
            "images": int(len(data.labels)),
            "fp32": _accuracy(sess, data),
            "int8": _accuracy(qsess, data),
        }
        out["quantization"] = {
            "method": "onnxruntime.quantization.quantize_static",
            "format": "QDQ",
            "activations": "int8 per tensor",
            "weights": "int8 per channel",
            "calibration": f"MinMax on {len(data.calib)} training images (no augmentation)",
        }
        latency["ort_int8_ms"] = _ort_latency(qsess, x1, latency_runs)
    latency["ort_fp32_speedup_vs_eager"] = latency["pytorch_eager_ms"] / latency["ort_fp32_ms"]
    out["sizes"] = sizes
    out["latency"] = latency
    return out


def export_onnx(model: torch.nn.Module, path: str | Path, example: torch.Tensor) -> Path:
    """``model`` (eval mode) as ONNX at ``path``: opset :data:`OPSET`, input ``input`` and output
    ``logits`` with a dynamic batch axis.

    The TorchScript-based exporter (``dynamo=False``): it handles the attention
    (``scaled_dot_product_attention``) and the unfold/fold patching of the MobileViT blocks
    (reshapes over the batch stay symbolic; the spatial sizes are fixed by ``input_size``) and
    needs no ``onnxscript``. The exporters' notices are silenced.
    """
    path = Path(path)
    with _quiet():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            opset_version=OPSET,
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    return path


def quantize_int8(src: str | Path, dst: str | Path, calib: np.ndarray, batch_size: int = 32) -> Path:
    """ONNX Runtime static quantization of ``src`` into ``dst``: QDQ format, int8 activations
    (per tensor) and int8 weights (per channel), MinMax ranges over ``calib`` (float32
    ``(n, C, S, S)``, normalised as in training) fed in batches of ``batch_size``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": calib[i : i + batch_size]} for i in range(0, len(calib), batch_size)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with _quiet():
        quantize_static(
            str(src),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
        )
    return Path(dst)


def onnx_sizes(path: str | Path) -> dict[str, Any]:
    """The file size of an ONNX model and its initializer bytes by element type.

    An int8 QDQ model stores one byte per quantised weight (``int8``), like the analytic
    ``model_size_kb`` (params x 1 byte), plus what that convention leaves out: int32 biases
    (BatchNorm folded into the convolutions), fp32 per-channel scales, int8 zero points
    and fp32 LayerNorm parameters (``float32``), and the graph itself (Q/DQ nodes, the
    shape arithmetic of the dynamic batch axis). The size check therefore compares the
    ``int8`` initializer bytes with the analytic size; the file size is reported next to it.
    """
    import onnx

    path = Path(path)
    by_type: dict[str, int] = {}
    for init in onnx.load(str(path)).graph.initializer:
        arr = onnx.numpy_helper.to_array(init)
        by_type[arr.dtype.name] = by_type.get(arr.dtype.name, 0) + int(arr.nbytes)
    return {"file_bytes": path.stat().st_size, "initializer_bytes": by_type, "initializer_total": sum(by_type.values())}


def _ort_latency(sess: Any, x: np.ndarray, runs: int, warmup: int = 10) -> float:
    feed = {"input": x}
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    return float(statistics.median(times))


def _accuracy(sess: Any, data: _Data, batch_size: int = 100) -> float:
    correct = 0
    for i in range(0, len(data.labels), batch_size):
        logits = sess.run(None, {"input": data.images[i : i + batch_size]})[0]
        correct += int((logits.argmax(1) == data.labels[i : i + batch_size]).sum())
    return correct / len(data.labels)


# ------------------------------------------------------------------------------ README
def readme(report: Mapping[str, Any]) -> str:
    """The ``README.md`` of an export folder, from its ``export.json`` content."""
    s, a, tm = report["schedule"], report["analytic"], report["trial_metrics"]
    files = report["files"]
    lines = [
        f"# {report['arch_id']} (trial {report['trial_id']})",
        "",
        "## Where the weights come from",
        "",
        f"The trial's last checkpoint of the search: {s['epochs']} epoch(s) on "
        f"{s['train_size'] if s['train_size'] is not None else 'all'} training images of {s['dataset']} "
        f"(subset seed {s['subset_seed']}), the search's own training schedule. This is **not** a "
        "full-schedule retrain: a longer training of the same architecture gives a higher accuracy.",
        "",
        "## Accuracy",
        "",
        "| measure | value |",
        "|---|---|",
        f"| trial val_accuracy (PyTorch, validation split) | {_pct(tm.get('val_accuracy'))} |",
        f"| trial test_accuracy (PyTorch, test split) | {_pct(tm.get('test_accuracy'))} |",
    ]
    acc = report.get("accuracy")
    if acc:
        lines += [
            f"| ONNX Runtime fp32 ({acc['images']} validation images) | {_pct(acc['fp32'])} |",
            f"| ONNX Runtime int8 ({acc['images']} validation images) | {_pct(acc['int8'])} |",
        ]
    lines += ["", "## Size and memory", "", "| measure | KiB |", "|---|---|"]
    lines += [
        f"| analytic model size, int8 (params x 1 byte) | {a['model_size_kb']:.1f} |",
        f"| analytic model size, fp32 (params x 4 bytes) | {a['model_size_fp32_kb']:.1f} |",
    ]
    sizes = report.get("sizes", {})
    for key, label in (("fp32", files.get("model")), ("int8", files.get("int8"))):
        if key in sizes:
            z = sizes[key]
            lines.append(f"| `{label}` file | {z['file_bytes'] / 1024:.1f} |")
            lines.append(f"| `{label}` initializers (all types) | {z['initializer_total'] / 1024:.1f} |")
    sc = report.get("size_check")
    if sc:
        lines.append(f"| `{files['int8']}` int8 weight bytes | {sc['measured_bytes'] / 1024:.1f} |")
    lines.append(f"| analytic peak activation memory, int8 (batch 1) | {a['peak_sram_kb']:.1f} |")
    if sc:
        verdict = "within" if sc["passed"] else "OUTSIDE"
        lines += [
            "",
            f"The int8 weight bytes differ from the analytic size by {100 * sc['relative_difference']:.1f} % "
            f"({verdict} the {100 * sc['tolerance']:.0f} % tolerance). The file is larger than its weights: "
            "it also holds int32 biases (BatchNorm folded into the convolutions), fp32 per-channel "
            "scales, fp32 LayerNorm parameters and the graph (quantize/dequantize nodes, the shape "
            "arithmetic of the dynamic batch axis), which the analytic params x 1 byte leaves out.",
        ]
    chk = report.get("check")
    if chk:
        lines += [
            "",
            "## Check against PyTorch",
            "",
            f"`{files['model']}` vs the PyTorch model on seeded random batches of sizes "
            f"{', '.join(map(str, chk['batches']))}: max abs difference of the logits "
            f"{chk['max_abs_diff']:.3g} ({'passed' if chk['passed'] else 'FAILED'}, tolerance {chk['tolerance']:g}).",
        ]
    lat = report.get("latency")
    if lat:
        lines += [
            "",
            f"Latency on the exporting machine (batch 1, {lat['threads']} thread, median of {lat['runs']} runs): "
            f"PyTorch eager {lat['pytorch_eager_ms']:.2f} ms, ONNX Runtime fp32 {lat['ort_fp32_ms']:.2f} ms"
            + (f", int8 {lat['ort_int8_ms']:.2f} ms" if "ort_int8_ms" in lat else "")
            + ".",
        ]
    lines += ["", "## Run it", "", *_usage(report), ""]
    return "\n".join(lines)


def _usage(report: Mapping[str, Any]) -> list[str]:
    c, s = report["input"]["shape"][1], report["input"]["shape"][2]
    norm = report["input"]["normalise"]
    pre = f"# images: (pixel / 255 - mean) / std, mean {_short(norm['mean'])}, std {_short(norm['std'])}"
    files = report["files"]
    if "model" in files and files["model"].endswith(".onnx"):
        model = files.get("int8", files["model"])
        return [
            "```python",
            "import numpy as np, onnxruntime as ort",
            f'sess = ort.InferenceSession("{model}", providers=["CPUExecutionProvider"])',
            f"x = np.zeros((1, {c}, {s}, {s}), np.float32)  {pre}",
            'logits = sess.run(None, {"input": x})[0]',
            "print(logits.argmax(1))",
            "```",
        ]
    if "model" in files:
        return [
            "```python",
            "import torch",
            f'model = torch.jit.load("{files["model"]}").eval()',
            f"x = torch.zeros(1, {c}, {s}, {s})  {pre}",
            "print(model(x).argmax(1))",
            "```",
        ]
    return [
        "```python",
        "import json, torch",
        "from hytnas.models import ArchCfg, build_model",
        'meta = json.load(open("arch.json"))',
        'model = build_model(ArchCfg.from_dict(meta["arch_cfg"]), meta["num_classes"], meta["in_channels"], meta["input_size"])',
        f'model.load_state_dict(torch.load("{files["weights"]}", weights_only=True)); model.eval()',
        "```",
    ]


def _short(v: Sequence[float]) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"


def _pct(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * float(v):.2f} %"


def _plain(d: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[str(k)] = v
    return out


__all__ = [
    "ExportCheckFailed",
    "ExportedModel",
    "export_models",
    "export_pareto",
    "export_onnx",
    "quantize_int8",
    "onnx_sizes",
    "readme",
    "FORMATS",
    "QUANTIZE",
    "OPSET",
    "ORT_TOLERANCE",
    "SIZE_TOLERANCE",
]
