"""GPU training throughput: the Lightning path at four precision settings, and a plain PyTorch
loop over the same model for comparison, measured in one run.

    python3 benchmarks/gpu_train.py --root .gpudata/fashion-mnist-32px        # on a CUDA machine
    .venv/bin/python benchmarks/gpu_train.py --allow-cpu --steps 2 --warmup 1 --batch-size 32   # smoke test

Archs: ``--pool`` archs sampled (seed 0) from the ``hytnas`` space, costed at 32 px on
Fashion-MNIST (1 channel, 10 classes); small / medium / large are the 10th, 50th and 75th
percentile by MACs (as ``benchmarks/train_throughput.py``).

Lightning settings, each a fresh ``HybridClassifier`` + ``make_trainer`` fit on the datamodule's
own loader (pinned memory, 0 workers), ``max_steps = --warmup + --steps``, no validation:
``32-true``, ``bf16-mixed``, ``bf16-mixed`` + ``channels_last``, ``16-mixed`` (GradScaler).
Plain loop: the same model class and initial weights, the optimiser of ``configure_optimizers``
(Adam, the same parameter groups), the same loader, ``x.to(device, non_blocking=True)``,
forward, cross-entropy, ``zero_grad(set_to_none=True)``, backward, step; in fp32 and under
``torch.autocast(dtype=bfloat16)``.

What is timed: the wall time from the end of step ``--warmup`` to the end of step
``--warmup + --steps``, with ``torch.cuda.synchronize()`` at both ends of that window only (not
per step, so the host runs ahead of the GPU as in real training). It covers, per step, the batch
fetch from the loader, the host-to-device copy, forward, backward and optimiser step, and for
Lightning its hooks and metric logging. Not timed: process start, model build, the
trainer's setup and the warm-up steps (CUDA context, cuDNN / cuBLAS initialisation). images/s =
``--steps * --batch-size / window``; ``vs_32`` = images/s / images/s of the Lightning ``32-true``
row of the same arch; ``lightning_vs_plain`` = Lightning images/s / plain-loop images/s at the
same precision (fp32, bf16). One window per setting: on a dedicated GPU the spread between
repeats is small next to the ratios reported, on a shared one it is not.

Prints a table and writes benchmarks/results/gpu_train.json (``--out``). Target: < 90 s on an
H100/H200. Without CUDA it exits 2 with one line unless ``--allow-cpu`` is given; on CPU the
mixed precisions and ``channels_last`` are ignored by the training module (each row records the
precision the trainer used).
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback
from train_throughput import pick_archs  # noqa: E402  (benchmarks/ is on the path: the archs of the CPU benchmark)

from hytnas.data import get_datamodule
from hytnas.errors import ConfigError, DataError
from hytnas.models import ArchCfg
from hytnas.training import HybridClassifier, TrainSettings, make_trainer
from hytnas.utils import atomic_write_json

RESULTS = Path(__file__).parent / "results" / "gpu_train.json"
INPUT_SIZE, NUM_CLASSES, IN_CHANNELS = 32, 10, 1
#: (label, precision, channels_last) of the Lightning rows; the first is the reference of ``vs_32``
LIGHTNING = (("32-true", "32-true", False), ("bf16-mixed", "bf16-mixed", False),
             ("bf16-mixed+cl", "bf16-mixed", True), ("16-mixed", "16-mixed", False))
#: (label, autocast dtype or None) of the plain-loop rows, and the Lightning row each compares with
PLAIN = (("plain 32", None, "32-true"), ("plain bf16", torch.bfloat16, "bf16-mixed"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Window(Callback):
    """Times the steps ``warmup .. warmup + steps - 1`` of a fit (CUDA synchronised at both ends)."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.t0: float | None = None
        self.seconds: float | None = None
        self.precision: str | None = None
        self.channels_last: bool | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        step = batch_idx + 1  # batches done (not global_step: a GradScaler-skipped step may not count)
        if step == self.warmup:
            _sync(pl_module.device)
            self.t0 = time.perf_counter()
            self.precision, self.channels_last = str(trainer.precision), bool(pl_module._channels_last)
        elif step == self.warmup + self.steps and self.t0 is not None:
            _sync(pl_module.device)
            self.seconds = time.perf_counter() - self.t0


def _peak_mb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def lightning_row(cfg: ArchCfg, dm, settings: TrainSettings, args: argparse.Namespace, device: torch.device) -> dict:
    """Images/s of one Lightning fit over the timed window."""
    module = HybridClassifier(cfg, NUM_CLASSES, IN_CHANNELS, INPUT_SIZE, settings)
    window = Window(args.warmup, args.steps)
    trainer = make_trainer(settings, callbacks=[window], enable_progress_bar=False,
                           accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                           max_steps=args.warmup + args.steps, limit_val_batches=0)
    _reset_peak(device)
    trainer.fit(module, datamodule=dm)
    if window.seconds is None:
        raise RuntimeError(f"gpu_train: the fit stopped after {trainer.global_step} steps, before the timed window "
                           f"ended; the training split holds too few batches")
    return {"img_s": args.steps * settings.batch_size / window.seconds, "window_s": window.seconds,
            "precision_used": window.precision, "channels_last_used": window.channels_last,
            "peak_mem_mb": _peak_mb(device)}


def plain_row(cfg: ArchCfg, dm, settings: TrainSettings, dtype: torch.dtype | None, args: argparse.Namespace,
              device: torch.device) -> dict:
    """Images/s of the plain loop (same model class and initial weights, same optimiser and loader)."""
    module = HybridClassifier(cfg, NUM_CLASSES, IN_CHANNELS, INPUT_SIZE, settings)
    model = module.model.to(device).train()
    opt = module.configure_optimizers()["optimizer"]
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    batches = iter(dm.train_dataloader())
    _reset_peak(device)
    t0 = None
    for step in range(1, args.warmup + args.steps + 1):
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast:
            loss = F.cross_entropy(model(x), y, label_smoothing=settings.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step == args.warmup:
            _sync(device)
            t0 = time.perf_counter()
    _sync(device)
    seconds = time.perf_counter() - t0
    return {"img_s": args.steps * settings.batch_size / seconds, "window_s": seconds,
            "precision_used": "fp32" if dtype is None else f"autocast {str(dtype).removeprefix('torch.')}",
            "peak_mem_mb": _peak_mb(device)}


def _table(rows: list[dict]) -> None:
    head = f"{'arch':<7} {'MMACs':>6} {'setting':<14} {'img/s':>9} {'vs 32':>6} {'vs plain':>8} {'peak MB':>8} {'used':<16}"
    print(head)
    print("-" * len(head))
    for r in rows:
        for s in r["settings"]:
            vs32 = "" if s.get("vs_32") is None else f"{s['vs_32']:.2f}"
            vsp = "" if s.get("lightning_vs_plain") is None else f"{s['lightning_vs_plain']:.2f}"
            peak = "" if s["peak_mem_mb"] is None else f"{s['peak_mem_mb']:.0f}"
            used = s["precision_used"] + ("+cl" if s.get("channels_last_used") else "")
            print(f"{r['arch']:<7} {r['macs_m']:>6.2f} {s['setting']:<14} {s['img_s']:>9.0f} {vs32:>6} {vsp:>8} "
                  f"{peak:>8} {used:<16}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=None, help="Fashion-MNIST folder (IDX files; 28 px needs torchvision to "
                                                  "resize, a 32 px copy does not)")
    ap.add_argument("--steps", type=int, default=40, help="timed steps per setting (default 40)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--pool", type=int, default=64, help="archs sampled to pick small/medium/large from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    ap.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no CUDA (a smoke test)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.warmup < 1 or args.steps < 1 or args.batch_size < 1:
        ap.error("--warmup, --steps and --batch-size must be >= 1")
    if args.root is not None and not Path(args.root).is_dir():
        sys.exit(f"gpu_train: --root {args.root} is not a folder (it must hold the four Fashion-MNIST IDX files)")
    if torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    elif args.allow_cpu:
        device = torch.device("cpu")
    else:
        print("gpu_train: no CUDA device (torch.cuda.is_available() is False); this benchmark needs a GPU "
              "(--allow-cpu runs it on the CPU as a smoke test)", file=sys.stderr)
        sys.exit(2)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # no per-fit banners in the table
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    t_start = time.perf_counter()

    total = args.warmup + args.steps
    settings = TrainSettings(epochs=1, batch_size=args.batch_size, seed=args.seed)
    try:
        dm = get_datamodule("fashion-mnist", root=args.root, input_size=INPUT_SIZE, batch_size=args.batch_size,
                            train_size=total * args.batch_size, val_size=args.batch_size, test_size=0,
                            seed=args.seed, download=False)
        dm.setup("fit")
    except (ConfigError, DataError) as exc:
        sys.exit(f"gpu_train: {exc}")
    except ModuleNotFoundError as exc:
        sys.exit(f"gpu_train: {exc.name} is needed to resize the images to {INPUT_SIZE} px; install it or pass --root "
                 f"a folder of {INPUT_SIZE} px IDX files (benchmarks/make_gpudata.py writes one)")

    rows = []
    for label, cfg, costs in pick_archs(args.pool, args.seed):
        out: list[dict] = []
        for name, precision, cl in LIGHTNING:
            s = TrainSettings(epochs=1, batch_size=args.batch_size, seed=args.seed, precision=precision, channels_last=cl)
            out.append({"setting": name, "path": "lightning", **lightning_row(cfg, dm, s, args, device)})
        for name, dtype, _ in PLAIN:
            out.append({"setting": name, "path": "plain", **plain_row(cfg, dm, settings, dtype, args, device)})
        by_name = {r["setting"]: r for r in out}
        ref = by_name["32-true"]["img_s"]
        for r in out:
            if r["path"] == "lightning":
                r["vs_32"] = r["img_s"] / ref
        for name, _, lightning_name in PLAIN:
            by_name[lightning_name]["lightning_vs_plain"] = by_name[lightning_name]["img_s"] / by_name[name]["img_s"]
            by_name[name]["vs_32"] = by_name[name]["img_s"] / ref
        rows.append({"arch": label, "arch_id": cfg.arch_id, "params_k": round(costs["params_k"], 1),
                     "macs_m": round(costs["macs_m"], 2),
                     "settings": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in out],
                     "arch_cfg": cfg.to_dict()})
        print(f"{label}: done ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)

    _table(rows)
    wall = time.perf_counter() - t_start
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})"
    print(f"{args.steps} timed steps (+{args.warmup} warm-up) of batch {args.batch_size} at {INPUT_SIZE} px per setting "
          f"on {dev_name}; wall {wall:.0f} s")
    result = {
        "benchmark": "gpu_train", "device": dev_name, "dataset": "fashion-mnist", "root": args.root,
        "input_size": INPUT_SIZE, "in_channels": IN_CHANNELS, "num_classes": NUM_CLASSES,
        "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "seed": args.seed, "pool": args.pool,
        "timed": "wall time of steps warmup+1 .. warmup+steps, CUDA synchronised at both ends of the window",
        "rows": rows, "wall_s": round(wall, 1),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "cuda": torch.version.cuda,
                    "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
                    "float32_matmul_precision": torch.get_float32_matmul_precision(),
                    "torch_threads": torch.get_num_threads()},
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
