"""Train the benchmark table's arch list on a GPU with a longer schedule (the v2 table).

    # on the GPU machine (Fashion-MNIST's four IDX .gz files in DIR; resumable: run it again)
    python3 benchmarks/build_table_gpu.py train --root DIR --out /tmp/v2 --workers 12 --time-budget 480
    # here: exact costs, host latency (interleaved rounds), the table and the seed table
    .venv/bin/python benchmarks/build_table_gpu.py finalize --raw RAW --table benchmarks/data/fmnist-hytnas-v2.csv.gz
    # a recorded trial trained again here, compared with its row
    .venv/bin/python benchmarks/build_table_gpu.py recheck --raw RAW --root DIR --keys ARCH_ID:SEED --device cpu
    # smoke test without a GPU (tiny schedule, 6 trials)
    .venv/bin/python benchmarks/build_table_gpu.py train --root /usr/share/datasets/fashion-mnist --out /tmp/v2cpu \\
        --device cpu --workers 2 --limit 6 --epochs 1 --train-size 1024 --val-size 512 --test-size 512 --batch-size 256

Why a separate builder: ``hytnas benchmark build`` (v1) trains through the whole search pipeline
(Ray Tune, Lightning, MLflow) on CPU, where v1's short proxy schedule (700 images, 3 epochs) costs
~10 CPU-s per arch and its accuracy ranks archs barely better than seed noise (Kendall tau 0.29
between seeds). A schedule long enough to rank archs needs ~100x the compute: minutes on a GPU,
but only if the GPU is kept busy. These models (0.3-114 MMACs at 32 px) are launch-bound on a
GPU, so this builder (a) captures each arch's whole training step (forward, loss, backward, AdamW
step) in one CUDA graph and replays it, and (b) trains ``--workers`` archs at once in separate
processes. It needs no Ray, MLflow or pydantic-validated config; it uses the library's space, arch
list (:func:`hytnas.benchmark.archlist.build_items`: the same 300 Sobol archs + 20 x 2 seed
replicates as v1), model builder, optimiser parameter groups, datamodule (split and pixels) and
augmentation, and writes the same table format.

The schedule (recorded in the table header) is the same for every arch: the datamodule's split
(``--train-size`` / ``--val-size`` from the training split, ``--test-size`` from the test split,
drawn with the training seed), random crop (zero padding S/8) + horizontal flip, AdamW
(``--lr``, ``--weight-decay`` on weights of rank >= 2, as ``HybridClassifier``), linear warm-up
for ``--warmup-epochs`` then cosine decay to 0 per step, batch ``--batch-size`` (last partial
batch dropped), fp32 (TF32 matmuls/convs on the GPU), validation after every epoch, test after
the last. ``--epochs auto``: every worker first times 40 graphed steps of one arch (all workers
at once, so the rate is the aggregate one), and the longest epoch count of a fixed menu whose
estimated time fits in ``--time-budget`` (with a 25 % margin) is chosen and saved in
``schedule.json``; a continued run reuses it. The estimate leaves out capture and evaluation: on
an H200 GPU machine (16 cores, 2026-11-26) whole trials ran at a third of the calibrated rate (21 vs 70 steps/s over 12
workers), so give ``--epochs`` where the budget is tight.

Output folder (``--out``): ``schedule.json``, ``rows.jsonl`` (one JSON line per finished trial,
appended and fsynced: a killed run keeps every finished trial; a run with the same folder trains
only the missing ``(arch, seed)`` pairs), ``failed.jsonl``, ``train.log``.

``finalize`` (needs the full install): adds the exact costs (``hytnas.costs.arch_costs``) and the
batch-1 host latency of every arch, timed here in ``--latency-rounds`` (default 8) interleaved
passes over all archs (the profiler's ``time_module`` / ``fold_round``; ``latency_ms`` = the median of the fastest
round, as ``hytnas profile``'s default statistic; progress kept in ``latency.json`` so an
interrupted finalize continues; when archs were trained after a finished timing, every arch is
timed again, so that all latencies of a table come from one run: this VM's speed differs between
sessions by more than the latency differences that rank archs), then writes the table (one row
per arch, base seed) and the seed table, readable by ``hytnas benchmark info|run`` and
``hytnas predictor eval``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import queue
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hytnas.benchmark.archlist import BuildItem, build_items
from hytnas.space import GENES, Space, get_space

SPACE, INPUT_SIZE, NUM_CLASSES, IN_CHANNELS = "hytnas", 32, 10, 1
EPOCH_MENU = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40)
CALIB_STEPS, CALIB_WARMUP = 40, 5
SCHEDULE_FILE, ROWS_FILE, FAILED_FILE, LOG_FILE, LATENCY_FILE = (
    "schedule.json", "rows.jsonl", "failed.jsonl", "train.log", "latency.json")


@dataclass(frozen=True)
class Schedule:
    """Everything besides the arch and the training seed that fixes a row's numbers."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_epochs: float
    train_size: int
    val_size: int
    test_size: int
    n_archs: int = 300
    list_seed: int = 0
    replicate: int = 20
    seeds: int = 3
    input_size: int = INPUT_SIZE
    dataset: str = "fashion-mnist"
    optimizer: str = "adamw"
    lr_schedule: str = "warmup-cosine-per-step"
    augment: str = "random-crop(pad S/8)+hflip"
    precision: str = "fp32 (TF32 on CUDA)"

    def steps_per_epoch(self) -> int:
        return max(1, self.train_size // self.batch_size)

    def lr_at(self, step: int) -> float:
        total = self.epochs * self.steps_per_epoch()
        warm = max(1, round(self.warmup_epochs * self.steps_per_epoch()))
        if step < warm:
            return self.lr * (step + 1) / warm
        return 0.5 * self.lr * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _space() -> Space:
    return get_space(SPACE, input_size=INPUT_SIZE)


def trial_list(space: Space, s: Schedule) -> list[BuildItem]:
    """v1's list (primaries, then replicates), run in the order: the first ``replicate`` primaries,
    their replicates, the other primaries (a run cut short still measures seed noise)."""
    items = build_items(space, s.n_archs, seed=s.list_seed, replicate=s.replicate, seeds=s.seeds)
    prim = [i for i in items if i.replicate == 0]
    reps = [i for i in items if i.replicate > 0]
    return prim[:s.replicate] + reps + prim[s.replicate:]


def table_rows(items: list[BuildItem], done: list[BuildItem]) -> list[BuildItem]:
    """The finished primaries (replicate 0) of ``items`` (:func:`trial_list`) in the list's order,
    which is v1's row order, whatever order they finished in."""
    finished = set(done)
    return [i for i in items if i.replicate == 0 and i in finished]


def key_of(space: Space, genes: dict[str, Any], seed: int) -> str:
    return f"{space.arch_id(genes)}:{int(seed)}"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete lines of an append-only JSON-lines file (a torn last line is skipped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def append_jsonl(path: Path, obj: dict[str, Any]) -> None:
    """Append one line and fsync; a torn last line (a killed writer) is closed first, so it costs
    only itself."""
    with open(path, "a+b") as fh:
        end = fh.seek(0, os.SEEK_END)
        if end:
            fh.seek(end - 1)
            if fh.read(1) != b"\n":
                fh.write(b"\n")  # append mode: every write goes to the end
        fh.write((json.dumps(obj, sort_keys=True) + "\n").encode())
        fh.flush()
        os.fsync(fh.fileno())


# ---------------------------------------------------------------------------------------- data
@dataclass
class Split:
    images: torch.Tensor  # (N, 1, S, S) uint8 on the device
    labels: torch.Tensor  # (N,) int64


class DeviceData:
    """The datamodule's split of one training seed, as uint8 tensors on the device."""

    def __init__(self, root: str, s: Schedule, seed: int, device: torch.device) -> None:
        from hytnas.data import get_datamodule

        dm = get_datamodule(s.dataset, root=root, input_size=s.input_size, train_size=s.train_size,
                            val_size=s.val_size, test_size=s.test_size, seed=seed, download=False)
        dm.setup("fit")
        self.splits = {}
        for name, ds in (("train", dm.train_set), ("val", dm.val_set), ("test", dm.test_set)):
            images = ds.images if ds.index is None else ds.images[ds.index]
            self.splits[name] = Split(torch.from_numpy(images.copy()).to(device), ds.labels.to(device))
        tf = dm.train_set.transform
        self.mean = torch.tensor(tf.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(tf.std, device=device).view(1, -1, 1, 1)
        self.pad = tf.pad

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std  # (B, 1, S, S) float32


# ------------------------------------------------------------------------------------ training
def make_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x0: torch.Tensor, y0: torch.Tensor, graph: bool):
    """``step(x, y) -> loss``: one training step, replayed from a CUDA graph when ``graph``.

    Capture follows PyTorch's whole-network recipe (warm-up iterations on a side stream, then
    capture forward, loss, backward and the capturable AdamW step); the warm-up's changes to the
    weights, buffers and optimiser state are then undone in place, so training starts from the
    freshly initialised model exactly as the eager loop does."""
    if not graph:
        def eager(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
        return eager
    static_x, static_y = x0.clone(), y0.clone()
    initial = [t.detach().clone() for t in model.state_dict().values()]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(static_x), static_y).backward()
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(g):
        static_loss = F.cross_entropy(model(static_x), static_y)
        static_loss.backward()
        opt.step()
    with torch.no_grad():
        for t, t0 in zip(model.state_dict().values(), initial):
            t.copy_(t0)
        for state in opt.state.values():
            for v in state.values():
                if torch.is_tensor(v):
                    v.zero_()

    def replay(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        static_x.copy_(x)
        static_y.copy_(y)
        g.replay()
        return static_loss
    return replay


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: DeviceData, split: str, batch: int = 2500) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on a whole split, eval mode."""
    model.eval()
    sp = data.splits[split]
    correct, loss = torch.zeros((), device=sp.labels.device), torch.zeros((), device=sp.labels.device)
    for i in range(0, len(sp.labels), batch):
        logits = model(data.normalise(sp.images[i:i + batch]))
        y = sp.labels[i:i + batch]
        correct += (logits.argmax(1) == y).sum()
        loss += F.cross_entropy(logits, y, reduction="sum")
    model.train()
    n = len(sp.labels)
    return float(correct) / n, float(loss) / n


def build(genes: dict[str, Any], seed: int, s: Schedule, device: torch.device, graph: bool):
    from hytnas.models import build_model
    from hytnas.training.module import param_groups

    space = _space()
    torch.manual_seed(seed)  # weight init (this worker process's own global RNG)
    model = build_model(space.to_arch_cfg(space.validate(genes)), NUM_CLASSES, IN_CHANNELS, s.input_size).to(device)
    lr = torch.tensor(s.lr, device=device) if graph else s.lr
    opt = torch.optim.AdamW(param_groups(model, s.weight_decay), lr=lr, capturable=graph)
    return model, opt


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def train_one(genes: dict[str, Any], seed: int, s: Schedule, data: DeviceData, device: torch.device,
              graph: bool, max_steps: int | None = None) -> dict[str, Any]:
    """Train one arch with one seed; returns the row's metrics (or, with ``max_steps``, only the
    rate of the steps after ``CALIB_WARMUP``)."""
    t0 = time.perf_counter()
    tr = data.splits["train"]
    n, b = len(tr.labels), s.batch_size
    gen = torch.Generator(device=device).manual_seed(seed)
    x0, y0 = data.normalise(tr.images[:b]), tr.labels[:b]
    graphed = graph
    model, opt = build(genes, seed, s, device, graph)
    try:
        step_fn = make_step(model, opt, x0, y0, graph)
    except RuntimeError as exc:  # a capture failure: this arch trains eagerly (recorded in the row)
        print(f"capture failed ({str(exc).splitlines()[0][:200]}); eager", flush=True)
        graphed = False
        model, opt = build(genes, seed, s, device, False)
        step_fn = make_step(model, opt, x0, y0, False)
    spe = s.steps_per_epoch()
    row: dict[str, Any] = {}
    step, t_train, t_steps0 = 0, 0.0, None
    for epoch in range(1, s.epochs + 1):
        perm = torch.randperm(n, device=device, generator=gen)
        te = time.perf_counter()
        for i in range(spe):
            if max_steps is not None and step == CALIB_WARMUP:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t_steps0 = time.perf_counter()
            if max_steps is not None and step == CALIB_WARMUP + max_steps:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                return {"steps_per_s": max_steps / (time.perf_counter() - t_steps0), "graphed": graphed}
            idx = perm[i * b:(i + 1) * b]
            x = data.normalise(_augment(tr.images[idx], data.pad, gen))
            _set_lr(opt, s.lr_at(step))
            step_fn(x, tr.labels[idx])
            step += 1
        acc, loss = evaluate(model, data, "val")  # syncs: the epoch's time is complete here
        t_train += time.perf_counter() - te
        row[f"val_accuracy_e{epoch}"] = acc
        row["val_accuracy"], row["val_loss"] = acc, loss
    if max_steps is not None:
        raise ValueError(f"calibration needs {CALIB_WARMUP + max_steps} steps; the schedule has {step}")
    row["test_accuracy"] = evaluate(model, data, "test")[0]
    row["train_time_s"] = time.perf_counter() - t0
    row["steps_per_s"] = step / t_train
    row["graphed"] = graphed
    return row


def _augment(images: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    from hytnas.data.datasets import random_crop_flip

    return random_crop_flip(images, pad, gen)


# ------------------------------------------------------------------------------------- workers
def worker(rank: int, root: str, device: str, cpu: int | None, tasks, results, deadline: float) -> None:
    """Pull tasks until a ``None``: ``("calib", genes, schedule)`` or ``("train", key, genes, seed,
    schedule)``; a train task that would end past ``deadline`` (estimated from this worker's last
    trial) is returned unstarted."""
    torch.set_num_threads(1)
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    graph = dev.type == "cuda"
    cache: dict[int, DeviceData] = {}
    last_s = 0.0

    def data_for(seed: int, s: Schedule) -> DeviceData:
        if seed not in cache:
            cache[seed] = DeviceData(root, s, seed, dev)
        return cache[seed]

    results.put(("ready", rank))
    while True:
        task = tasks.get()
        if task is None:
            break
        kind = task[0]
        try:
            if kind == "calib":
                _, genes, sd = task
                s = Schedule(**sd)
                out = train_one(genes, s.list_seed, s, data_for(s.list_seed, s), dev, graph, max_steps=CALIB_STEPS)
                results.put(("calib", rank, out))
                continue
            _, key, genes, seed, sd = task
            s = Schedule(**sd)
            if last_s and time.time() + 1.1 * last_s > deadline:
                results.put(("unstarted", rank, key))
                continue
            t = time.perf_counter()
            row = train_one(genes, seed, s, data_for(seed, s), dev, graph)
            last_s = time.perf_counter() - t
            results.put(("row", rank, key, row))
        except (RuntimeError, ValueError) as exc:
            results.put(("failed", rank, task[1] if kind == "train" else "calib", f"{type(exc).__name__}: {exc}"[:500]))
    results.put(("exit", rank))


def choose_epochs(rate: float, n_trials: int, s: Schedule, budget_s: float) -> int:
    """The longest epoch count of the menu whose estimated time (trials x steps / aggregate rate,
    +25 % for evaluation, capture and stragglers) fits the budget (at least the smallest)."""
    fits = [e for e in EPOCH_MENU if 1.25 * n_trials * e * s.steps_per_epoch() / rate <= budget_s]
    return max(fits) if fits else EPOCH_MENU[0]


def cmd_train(args: argparse.Namespace) -> int:
    import multiprocessing as mp

    t_start = time.time()
    deadline = t_start + args.time_budget
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / LOG_FILE, "a")

    def log(msg: str) -> None:
        line = f"[{time.time() - t_start:6.1f}s] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    wanted = Schedule(epochs=0 if args.epochs == "auto" else int(args.epochs), batch_size=args.batch_size, lr=args.lr,
                      weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs, train_size=args.train_size,
                      val_size=args.val_size, test_size=args.test_size)
    sched_path = out / SCHEDULE_FILE
    schedule: Schedule | None = None
    if sched_path.is_file():
        schedule = Schedule(**json.loads(sched_path.read_text())["schedule"])
        fixed = {k: v for k, v in asdict(wanted).items() if k != "epochs"}
        old = {k: v for k, v in asdict(schedule).items() if k != "epochs"}
        if fixed != old or (wanted.epochs and wanted.epochs != schedule.epochs):
            diff = [k for k in asdict(wanted) if asdict(wanted)[k] != asdict(schedule)[k] and (k != "epochs" or wanted.epochs)]
            sys.exit(f"build_table_gpu: --out {out} holds a run with another schedule ({', '.join(diff)} differ); "
                     f"use the same settings or another --out")
    space = _space()
    items = trial_list(space, wanted)
    done = {r["key"] for r in read_jsonl(out / ROWS_FILE)}
    todo = [i for i in items if key_of(space, i.arch.to_dict(), i.seed) not in done]
    if args.limit is not None:
        todo = todo[:args.limit]
    log(f"{len(items)} trials in the list, {len(done)} done, {len(todo)} to train; device {args.device}, "
        f"{args.workers} workers, budget {args.time_budget:.0f} s")
    if not todo:
        return 0
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    ncpu = os.cpu_count() or 1
    procs = [ctx.Process(target=worker, args=(r, args.root, args.device, (r % ncpu) if args.pin else None, tasks, results,
                                              deadline), daemon=True) for r in range(args.workers)]
    for p in procs:
        p.start()
    alive = set(range(args.workers))

    def get(timeout: float = 5.0):
        while True:
            try:
                return results.get(timeout=timeout)
            except queue.Empty:
                dead = [r for r in alive if not procs[r].is_alive()]
                if dead:
                    raise SystemExit(f"build_table_gpu: worker(s) {dead} died (exit codes "
                                     f"{[procs[r].exitcode for r in dead]}); see the output above") from None

    ready = 0
    while ready < args.workers:
        msg = get()
        ready += msg[0] == "ready"
    log("workers ready")
    if schedule is None:
        if wanted.epochs:
            schedule = wanted
        else:
            for k in range(args.workers):
                tasks.put(("calib", todo[k % len(todo)].arch.to_dict(), {**asdict(wanted), "epochs": 10**6}))
            rates = []
            while len(rates) < args.workers:
                msg = get()
                if msg[0] == "calib":
                    rates.append(msg[2]["steps_per_s"])
                elif msg[0] == "failed":
                    log(f"calibration failed on worker {msg[1]}: {msg[3]}")
                    rates.append(0.0)
            # time per step averaged over the archs (harmonic mean), times the workers running at once
            rate = len(rates) ** 2 / sum(1 / r for r in rates) if all(rates) else 0.0
            if rate <= 0:
                raise SystemExit("build_table_gpu: calibration failed on every worker (see above); pass --epochs N "
                                 "to skip it, or fix the error")
            left = deadline - time.time()
            epochs = choose_epochs(rate, len(todo), wanted, left)
            schedule = Schedule(**{**asdict(wanted), "epochs": epochs})
            log(f"calibration: {rate:.0f} steps/s over {args.workers} workers (per worker "
                f"{min(rates):.0f}-{max(rates):.0f}); {len(todo)} trials x {schedule.steps_per_epoch()} steps/epoch "
                f"in {left:.0f} s -> {epochs} epochs")
        sched_path.write_text(json.dumps({"schedule": asdict(schedule), "device": _device_name(args.device),
                                          "created": _now()}, indent=1))
    sd = asdict(schedule)
    device_name = _device_name(args.device)
    for i in todo:
        g = i.arch.to_dict()
        tasks.put(("train", key_of(space, g, i.seed), g, i.seed, sd))
    for _ in procs:
        tasks.put(None)
    n_rows = n_fail = n_skip = 0
    by_key = {key_of(space, i.arch.to_dict(), i.seed): i for i in todo}
    while alive:
        msg = get()
        if msg[0] == "row":
            _, rank, key, row = msg
            item = by_key[key]
            append_jsonl(out / ROWS_FILE, {"key": key, **item.arch.to_dict(), "arch_id": space.arch_id(item.arch),
                                           "seed": item.seed, "replicate": item.replicate, "source": item.source,
                                           "trained_on": device_name, **row})
            n_rows += 1
            log(f"{len(done) + n_rows}/{len(items)} {key} val {row['val_accuracy']:.4f} test {row['test_accuracy']:.4f} "
                f"{row['train_time_s']:.1f} s {row['steps_per_s']:.0f} steps/s{'' if row['graphed'] else ' (eager)'} [w{rank}]")
        elif msg[0] == "failed":
            n_fail += 1
            append_jsonl(out / FAILED_FILE, {"key": msg[2], "error": msg[3]})
            log(f"FAILED {msg[2]} on worker {msg[1]}: {msg[3]}")
        elif msg[0] == "unstarted":
            n_skip += 1
        elif msg[0] == "exit":
            alive.discard(msg[1])
    for p in procs:
        p.join(timeout=10)
    left = len(items) - len(done) - n_rows
    log(f"trained {n_rows} trials this run ({n_fail} failed, {n_skip} left unstarted at the deadline); "
        f"{len(done) + n_rows}/{len(items)} done, {left} to go; wall {time.time() - t_start:.0f} s")
    return 0


def _device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    import platform

    return f"CPU ({platform.machine()}, {os.cpu_count()} cores)"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------ finalize
def load_raw(raw: Path) -> tuple[dict[str, Any], Schedule, dict[str, dict[str, Any]]]:
    """A train folder's ``schedule.json`` (whole, and as a Schedule) and its rows by trial key."""
    path = raw / SCHEDULE_FILE
    if not path.is_file():
        sys.exit(f"build_table_gpu: --raw {raw}: no {SCHEDULE_FILE}; point it at a train --out folder")
    try:
        meta = json.loads(path.read_text())
        s = Schedule(**meta["schedule"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        sys.exit(f"build_table_gpu: --raw {raw}: {SCHEDULE_FILE} is not a build_table_gpu schedule ({exc})")
    return meta, s, {r["key"]: r for r in read_jsonl(raw / ROWS_FILE)}


def host_latency(space: Space, archs: list, path: Path, rounds: int, runs: int, warmup: int) -> dict[str, dict]:
    """Batch-1 latency of every arch on this host's CPU (1 thread), ``rounds`` interleaved passes
    over the whole list, folded per arch as ``hytnas profile`` does; resumable via ``path``."""
    from hytnas.hardware.profiler import ProfileSettings, time_archs
    from hytnas.utils import atomic_write_json

    settings = ProfileSettings(input_size=INPUT_SIZE, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS, threads=1)
    state = json.loads(path.read_text()) if path.is_file() else {}
    if stale_latency(state, [space.arch_id(a) for a in archs], rounds):
        print(f"latency: {path} was finished for fewer archs (another run, maybe another machine state); "
              f"timing all {len(archs)} archs again", flush=True)
        state = {}
    t0, n = time.perf_counter(), 0

    def timed(_arch_id: str, rnd: int) -> None:
        nonlocal n
        n += 1
        if n % 50 == 0:
            atomic_write_json(path, state)
            print(f"latency round {rnd + 1}/{rounds}: {n} timings ({time.perf_counter() - t0:.0f} s)", flush=True)

    try:
        time_archs(space, archs, settings, state, rounds=rounds, runs=runs, warmup=warmup, on_timed=timed)
    finally:
        atomic_write_json(path, state)
    print(f"latency: {len(archs)} archs x {rounds} rounds, {n} timed now ({time.perf_counter() - t0:.0f} s)", flush=True)
    return state


def latency_cost_fit(latency_ms: list[float], costs: list[dict[str, float]]) -> tuple[float, float]:
    """How well a cost model explains a timing: least squares of log latency on log MACs, log params
    and log peak memory (plus a constant); returns (residual sd, R^2). The costs are exact, so a
    noisier timing shows as a larger residual (this VM: 0.15 on quiet timings, 0.19-0.23 for 3-round
    timings on a noisy day, when 8 rounds gave 0.15 again)."""
    import numpy as np

    y = np.log(np.asarray(latency_ms, dtype=float))
    X = np.column_stack([np.ones(len(y))] + [np.log([c[k] for c in costs]) for k in ("macs_m", "params_k", "peak_sram_kb")])
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    r = y - X @ beta
    return float(r.std()), float(1 - r.var() / y.var()) if y.var() > 0 else 1.0


def stale_latency(state: dict[str, dict], ids: list[str], rounds: int) -> bool:
    """True when ``state`` is a finished timing of fewer archs (some arch of ``ids`` is missing
    while another holds all ``rounds``), not an interrupted timing of these ones (interleaved
    passes: an interrupted run leaves no arch with all rounds while another has none)."""
    from hytnas.hardware.profiler import rounds_of

    return any(i not in state for i in ids) and any(rounds_of(state.get(i)) >= rounds for i in ids)


def cmd_finalize(args: argparse.Namespace) -> int:
    from hytnas.benchmark.table import header_comment
    from hytnas.costs import arch_costs
    from hytnas.table import write_arch_table

    raw = Path(args.raw)
    meta, s, rows = load_raw(raw)
    space = _space()
    items = trial_list(space, s)
    if not rows:
        sys.exit(f"build_table_gpu: --raw {raw}: no finished trials in {ROWS_FILE}")
    unknown = [k for k in rows if k not in {key_of(space, i.arch.to_dict(), i.seed) for i in items}]
    if unknown:
        sys.exit(f"build_table_gpu: --raw {raw}: trial {unknown[0]} is not in the schedule's arch list")
    done = [i for i in items if key_of(space, i.arch.to_dict(), i.seed) in rows]
    primary = table_rows(items, done)
    lat = host_latency(space, [i.arch for i in primary], raw / LATENCY_FILE, args.latency_rounds, args.latency_runs,
                       args.latency_warmup)
    epoch_cols = [f"val_accuracy_e{e}" for e in range(1, s.epochs + 1)]
    costs = {aid: arch_costs(space.to_arch_cfg(arch), INPUT_SIZE, NUM_CLASSES, IN_CHANNELS)
             for aid, arch in {space.arch_id(i.arch): i.arch for i in done}.items()}  # every finished arch once
    timed = [aid for aid in costs if aid in lat]
    if len(timed) >= 10:
        sd, r2 = latency_cost_fit([lat[aid]["median_ms"] for aid in timed], [costs[aid] for aid in timed])
        print(f"latency check: log latency on log MACs, params, peak memory: residual sd {sd:.3f}, R^2 {r2:.3f} "
              "(quiet timings here: ~0.15; clearly above that, the machine was noisy: delete latency.json and "
              "finalize again, with more --latency-rounds)", flush=True)

    def row_of(i: BuildItem) -> dict[str, Any]:
        r = rows[key_of(space, i.arch.to_dict(), i.seed)]
        aid = space.arch_id(i.arch)
        out = {"arch_id": aid, "source": i.source, "seed": i.seed, "val_accuracy": r["val_accuracy"],
               "val_loss": r["val_loss"], "test_accuracy": r["test_accuracy"], **{c: r[c] for c in epoch_cols},
               **{k: costs[aid][k] for k in ("params_k", "macs_m", "peak_sram_kb", "model_size_kb")},
               "latency_ms": lat[aid]["median_ms"] if aid in lat else math.nan,
               "latency_min_ms": lat[aid]["min_ms"] if aid in lat else math.nan,
               "train_time_s": r["train_time_s"], "trained_on": r.get("trained_on", meta.get("device", "?"))}
        return out

    header = {"space": SPACE, "num_classes": NUM_CLASSES, "in_channels": IN_CHANNELS, "space_id": space.space_id,
              "input_size": INPUT_SIZE, "dataset": s.dataset, "schedule": asdict(s),
              "config": "benchmarks/build_table_gpu.py",
              "trained_on": ", ".join(sorted({r.get("trained_on", meta.get("device", "?")) for r in rows.values()})),
              "n_archs": s.n_archs, "seeds": s.seeds, "replicate": s.replicate,
              "complete": len(done) == len(items), "date": _now(),
              "sum_trial_time_s": round(sum(r["train_time_s"] for r in rows.values()), 1),
              "latency": f"host CPU ({_device_name('cpu')}), 1 thread, batch 1: median of the fastest of "
                         f"{args.latency_rounds} interleaved rounds of {args.latency_runs} runs (latency_min_ms: the "
                         f"fastest run)"}
    table = Path(args.table)
    write_arch_table(table, space, [i.arch for i in primary], [row_of(i) for i in primary],
                     comment=header_comment({**header, "rows": "one per arch, training seed = the list seed"}))
    replicated = {i.arch for i in done if i.replicate > 0}
    reps = sorted((i for i in done if i.arch in replicated), key=lambda i: (space.arch_id(i.arch), i.seed))
    seeds_path = table.with_name(table.name.replace(".csv", "-seeds.csv"))
    if reps:  # a replicate's latency is its arch's (timed once)
        write_arch_table(seeds_path, space, [i.arch for i in reps], [row_of(i) for i in reps],
                         comment=header_comment({**header, "rows": "one per (arch, training seed) of the replicated archs"}))
    print(f"wrote {table} ({len(primary)} archs{'' if header['complete'] else ', INCOMPLETE'})"
          + (f" and {seeds_path} ({len(reps)} rows)" if reps else ""))
    return 0


def cmd_recheck(args: argparse.Namespace) -> int:
    """Train recorded trials again here (same schedule, arch, seed, split and initial weights) and
    compare with their rows: how far a row trained on another device (other random streams for
    data order and augmentation, other kernels) lands from the recorded one."""
    from hytnas.utils import atomic_write_json

    raw = Path(args.raw)
    meta, s, rows = load_raw(raw)
    keys = args.keys.split(",")
    missing = [k for k in keys if k not in rows]
    if missing:
        sys.exit(f"build_table_gpu: --keys: {missing[0]} is not a recorded trial of {raw / ROWS_FILE}")
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    out = []
    for k in keys:
        r = rows[k]
        genes = {g: r[g] for g in GENES}
        new = train_one(genes, int(r["seed"]), s, DeviceData(args.root, s, int(r["seed"]), dev), dev, dev.type == "cuda")
        out.append({"key": k, "recorded_on": r.get("trained_on", meta.get("device", "?")), "recorded_val": r["val_accuracy"],
                    "recorded_test": r["test_accuracy"], "device": _device_name(args.device),
                    "val": new["val_accuracy"], "test": new["test_accuracy"], "train_time_s": new["train_time_s"]})
        print(f"{k}: val {r['val_accuracy']:.4f} recorded ({out[-1]['recorded_on']}) vs {new['val_accuracy']:.4f} here "
              f"(diff {new['val_accuracy'] - r['val_accuracy']:+.4f}); test {r['test_accuracy']:.4f} vs "
              f"{new['test_accuracy']:.4f}; {new['train_time_s']:.0f} s", flush=True)
    if args.out:
        atomic_write_json(Path(args.out), {"schedule": asdict(s), "rechecks": out})
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the list (or what is missing of it) on the device")
    t.add_argument("--root", required=True, help="folder of Fashion-MNIST's four IDX .gz files")
    t.add_argument("--out", required=True)
    t.add_argument("--device", default="cuda")
    t.add_argument("--workers", type=int, default=8)
    t.add_argument("--pin", action="store_true", help="pin worker r to CPU r")
    t.add_argument("--time-budget", type=float, default=480.0, help="seconds; no trial starts that would end after it")
    t.add_argument("--epochs", default="auto", help="an integer, or auto (calibrated to --time-budget)")
    t.add_argument("--batch-size", type=int, default=512)
    t.add_argument("--lr", type=float, default=0.004)
    t.add_argument("--weight-decay", type=float, default=0.05)
    t.add_argument("--warmup-epochs", type=float, default=0.5)
    t.add_argument("--train-size", type=int, default=50000)
    t.add_argument("--val-size", type=int, default=10000)
    t.add_argument("--test-size", type=int, default=10000)
    t.add_argument("--limit", type=int, default=None, help="train at most this many trials (smoke tests)")
    f = sub.add_parser("finalize", help="costs, host latency and the table files, from a train --out folder")
    f.add_argument("--raw", required=True)
    f.add_argument("--table", required=True)
    f.add_argument("--latency-rounds", type=int, default=8)
    f.add_argument("--latency-runs", type=int, default=10)
    f.add_argument("--latency-warmup", type=int, default=2)
    c = sub.add_parser("recheck", help="train recorded trials again here and compare")
    c.add_argument("--raw", required=True)
    c.add_argument("--root", required=True)
    c.add_argument("--keys", required=True, help="comma-separated trial keys (arch_id:seed) of rows.jsonl")
    c.add_argument("--device", default="cpu")
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--out", default=None, help="JSON file for the comparison")
    args = ap.parse_args(argv)
    if args.cmd == "recheck":
        return cmd_recheck(args)
    if args.cmd == "train":
        if args.epochs != "auto" and not (args.epochs.isdigit() and int(args.epochs) >= 1):
            ap.error(f"--epochs: an integer >= 1 or auto, got {args.epochs!r}")
        if args.workers < 1:
            ap.error("--workers: must be >= 1")
        return cmd_train(args)
    return cmd_finalize(args)


if __name__ == "__main__":
    sys.exit(main())
