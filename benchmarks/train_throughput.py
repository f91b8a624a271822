"""Training throughput: the Lightning path (HybridClassifier + make_trainer + the datamodule's
loader) against a plain PyTorch loop over the same model, the same optimiser and the same
DataLoader, measured in one run.

    .venv/bin/python benchmarks/train_throughput.py                  # 3 archs of 'hytnas', 32 px
    .venv/bin/python benchmarks/train_throughput.py --steps 40 --threads 2

Archs: ``--pool`` archs sampled (seed 0) from the ``hytnas`` space, costed at 32 px on
Fashion-MNIST (1 channel, 10 classes); small / medium / large are the 10th, 50th and 75th
percentile by MACs.

Protocol (interleaved, so that load from other processes on a shared machine hits both paths
alike): ``trainer.fit`` runs the Lightning path; a callback runs one step of the plain loop
(its own iterator over a second loader of the same datamodule, a copy of the same initial
weights, the same AdamW parameter groups) after every Lightning step. Lightning step k is timed
from the end of plain step k-1 to Lightning's ``on_train_batch_end`` (its batch fetch, hooks,
logging, forward, backward and optimiser step inside); plain step k from there to the end of
its own fetch + step. The first ``--warmup`` pairs are not timed. ``ratio`` = Lightning images/s
/ plain images/s over the timed steps; ``paired_median`` is the median of the per-step ratios.

Prints a table and writes benchmarks/results/train_throughput.json.
Target: the Lightning path reaches >= 90 % of the plain loop; the run takes < 3 min on 2 cores.
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback

from hytnas.costs import arch_costs
from hytnas.data import get_datamodule
from hytnas.models import ArchCfg
from hytnas.space import get_space
from hytnas.training import HybridClassifier, TrainSettings, make_trainer
from hytnas.training.module import param_groups
from hytnas.utils import atomic_write_json

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"
INPUT_SIZE, NUM_CLASSES, IN_CHANNELS = 32, 10, 1


class InterleavedPlainLoop(Callback):
    """Runs one plain-PyTorch training step after every Lightning step and times both."""

    def __init__(self, model: torch.nn.Module, loader, settings: TrainSettings) -> None:
        self.model = model.train()
        self.opt = torch.optim.AdamW(param_groups(model, settings.weight_decay), lr=settings.lr)
        self.batches = iter(loader)
        self.smoothing = settings.label_smoothing
        self.lightning_s: list[float] = []
        self.plain_s: list[float] = []
        self._t: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if self._t is None:  # the first Lightning fetch happened before this hook: step 0 is warm-up
            self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        t1 = time.perf_counter()
        self.lightning_s.append(t1 - self._t)
        x, y = next(self.batches)  # the plain loop: fetch, forward, backward, step
        loss = F.cross_entropy(self.model(x), y, label_smoothing=self.smoothing)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self._t = time.perf_counter()
        self.plain_s.append(self._t - t1)


def pick_archs(pool: int, seed: int) -> list[tuple[str, ArchCfg, dict]]:
    space = get_space("hytnas")
    cfgs = [space.to_arch_cfg(a) for a in space.sample(pool, seed=seed)]
    costed = sorted(((arch_costs(c, INPUT_SIZE, NUM_CLASSES, IN_CHANNELS), c) for c in cfgs), key=lambda t: t[0]["macs_m"])
    out = []
    for label, q in (("small", 0.1), ("medium", 0.5), ("large", 0.75)):
        costs, cfg = costed[min(int(q * len(costed)), len(costed) - 1)]
        out.append((label, cfg, costs))
    return out


def measure(cfg: ArchCfg, dm, settings: TrainSettings, total: int, warmup: int) -> dict:
    module = HybridClassifier(cfg, NUM_CLASSES, IN_CHANNELS, INPUT_SIZE, settings)
    plain_model = copy.deepcopy(module.model)  # same class, same initial weights
    plain = InterleavedPlainLoop(plain_model, dm.train_dataloader(), settings)
    trainer = make_trainer(settings, callbacks=[plain], enable_progress_bar=False, accelerator="cpu", devices=1,
                           max_steps=total, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    assert len(plain.lightning_s) == len(plain.plain_s) == total
    lt, pt = plain.lightning_s[warmup:], plain.plain_s[warmup:]
    b = settings.batch_size
    return {
        "lightning_img_s": len(lt) * b / sum(lt), "plain_img_s": len(pt) * b / sum(pt), "ratio": sum(pt) / sum(lt),
        "paired_median": statistics.median(p / q for p, q in zip(pt, lt)),
        "lightning_step_ms": [round(1e3 * v, 2) for v in lt], "plain_step_ms": [round(1e3 * v, 2) for v in pt],
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=15, help="timed steps of each path per arch")
    ap.add_argument("--warmup", type=int, default=3, help="untimed step pairs at the start")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 = one Ray trial per CPU)")
    ap.add_argument("--pool", type=int, default=64, help="archs sampled to pick small/medium/large from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--root", default=None, help="Fashion-MNIST folder (default: the platform's lookup)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        ap.error("--warmup and --steps must be >= 1")
    torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # no per-fit banners in the table
    t_start = time.perf_counter()

    total = args.warmup + args.steps
    settings = TrainSettings(epochs=1, batch_size=args.batch_size, seed=args.seed)
    dm = get_datamodule("fashion-mnist", root=args.root, input_size=INPUT_SIZE, batch_size=args.batch_size,
                        train_size=total * args.batch_size + 1, val_size=args.batch_size, test_size=0,
                        seed=args.seed, download=False)
    dm.setup("fit")

    rows = []
    for label, cfg, costs in pick_archs(args.pool, args.seed):
        m = measure(cfg, dm, settings, total, args.warmup)
        rows.append({"arch": label, "arch_id": cfg.arch_id, "params_k": round(costs["params_k"], 1),
                     "macs_m": round(costs["macs_m"], 2), **{k: round(v, 3) if isinstance(v, float) else v
                                                             for k, v in m.items()},
                     "arch_cfg": cfg.to_dict()})

    head = (f"{'arch':<7} {'params_k':>8} {'MMACs':>7} {'lightning img/s':>16} {'plain img/s':>12} {'ratio':>6} "
            f"{'paired median':>13}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['arch']:<7} {r['params_k']:>8.1f} {r['macs_m']:>7.2f} {r['lightning_img_s']:>16.1f} "
              f"{r['plain_img_s']:>12.1f} {r['ratio']:>6.3f} {r['paired_median']:>13.3f}")
    worst = min(r["ratio"] for r in rows)
    wall = time.perf_counter() - t_start
    print(f"worst ratio {worst:.3f} (target >= 0.90); {args.steps} timed interleaved step pairs "
          f"(+{args.warmup} warm-up) of batch {args.batch_size} at {INPUT_SIZE} px, {args.threads} thread(s); "
          f"wall {wall:.0f} s")
    result = {
        "benchmark": "train_throughput",
        "dataset": "fashion-mnist", "input_size": INPUT_SIZE, "in_channels": IN_CHANNELS, "num_classes": NUM_CLASSES,
        "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "protocol": "interleaved",
        "threads": args.threads, "seed": args.seed, "pool": args.pool,
        "rows": rows, "worst_ratio": worst, "target_ratio": 0.9, "wall_s": round(wall, 1),
        "machine": {"cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                    "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__},
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
