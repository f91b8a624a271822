"""The quickstart search end to end (``hytnas search quickstart``), timed.

    .venv/bin/python benchmarks/quickstart.py                       # configs/quickstart.yaml
    .venv/bin/python benchmarks/quickstart.py --set budget.num_samples=4

Runs the search in this process (into a temporary folder unless ``--storage``), and reports:
wall time, the CPU seconds of this process and all its descendants (Ray's workers included,
sampled from /proc every second: processes living less than that are missed), the load average
before and after (the machine may be shared),
trials done and the best test/validation accuracy. On a shared machine the wall time says little;
``cpu_s / cores`` (``idle_wall_lower_bound_s``) is what the run needs at least on that many idle
cores (start-up waits and the searcher's turns between trials come on top).

Prints a table and writes benchmarks/results/quickstart.json.
Targets: >= 12 trials, best test accuracy >= 0.85, at most 10 minutes on an idle 2-core machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

from hytnas.utils import atomic_write_json

RESULTS = Path(__file__).parent / "results" / "quickstart.json"
TICK = os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(root: int) -> dict[int, float]:
    """CPU seconds (user + system) of ``root`` and its descendants, by pid."""
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(name)
        children.setdefault(int(fields[1]), []).append(pid)
        stats[pid] = (int(fields[11]) + int(fields[12])) / TICK
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            out[pid] = stats[pid]
        todo += children.get(pid, [])
    return out


class CpuMonitor(threading.Thread):
    """Keeps the largest CPU time seen per process of this process tree (processes that exit
    keep their last sample)."""

    def __init__(self, interval_s: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.interval_s, self.seen, self._done = interval_s, {}, threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for pid, s in _tree_cpu_s(os.getpid()).items():
                self.seen[pid] = max(s, self.seen.get(pid, 0.0))
            self._done.wait(self.interval_s)

    def stop(self) -> float:
        self._done.set()
        self.join()
        for pid, s in _tree_cpu_s(os.getpid()).items():
            self.seen[pid] = max(s, self.seen.get(pid, 0.0))
        return sum(self.seen.values())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="quickstart")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--storage", type=Path, default=None, help="experiment folder (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    from hytnas.config import load_experiment
    from hytnas.search import run_search

    tmp = None
    storage = args.storage
    if storage is None:
        tmp = tempfile.TemporaryDirectory(prefix="hytnas-quickstart-")
        storage = Path(tmp.name) / "run"
    cfg = load_experiment(args.config, [*args.overrides, f"storage_path={storage}"])
    cores = len(os.sched_getaffinity(0))
    load_before = os.getloadavg()
    monitor = CpuMonitor()
    monitor.start()
    t0 = time.perf_counter()
    result = run_search(cfg)
    wall = time.perf_counter() - t0
    cpu = monitor.stop()
    load_after = os.getloadavg()
    done = result.trials[result.trials["status"] == "done"]
    best = done.sort_values("val_accuracy", ascending=False).iloc[0] if len(done) else None
    out = {
        "config": args.config, "overrides": args.overrides, "searcher": cfg.search.algorithm,
        "num_samples": cfg.budget.num_samples, "max_concurrent_trials": cfg.budget.max_concurrent_trials,
        "epochs": cfg.training.epochs, "train_size": cfg.dataset.train_size, "input_size": cfg.build_space().input_size,
        "trials_done": int(len(done)), "trials_failed": result.num_failed,
        "best_test_accuracy": float(done["test_accuracy"].max()) if len(done) else None,
        "best_val_accuracy": float(done["val_accuracy"].max()) if len(done) else None,
        "test_accuracy_of_best_val": float(best["test_accuracy"]) if best is not None else None,
        "pareto_size": int(len(result.pareto)),
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "cores": cores,
        "idle_wall_lower_bound_s": round(cpu / cores, 1),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after],
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    rows = [("trials done / asked", f"{out['trials_done']} / {out['num_samples']}"),
            ("best test accuracy", f"{out['best_test_accuracy']:.4f}" if len(done) else "-"),
            ("best val accuracy (its test)", f"{out['best_val_accuracy']:.4f} ({out['test_accuracy_of_best_val']:.4f})"
             if len(done) else "-"),
            ("wall time", f"{wall:.0f} s"), ("CPU time (all processes)", f"{cpu:.0f} s"),
            (f"CPU time / {cores} cores", f"{cpu / cores:.0f} s"),
            ("load average before / after", f"{load_before[0]:.1f} / {load_after[0]:.1f}")]
    w = max(len(k) for k, _ in rows)
    print("\n".join(f"{k.ljust(w)}  {v}" for k, v in rows))
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    if tmp is not None:
        tmp.cleanup()
    return out


if __name__ == "__main__":
    main()
