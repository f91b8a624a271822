"""What a search shows: one progress line at a time while it runs, the Pareto report at the end.

Ray-free maths (plain functions over records and tensors) plus one thin Ray Tune callback:

- :func:`trials_frame` turns trial records (``trial_id``, ``status``, ``config``, ``metrics``,
  ``checkpoint``) into one row per trial in the arch-table exchange format (23 genes first).
- :func:`pareto_mask` marks the Pareto-optimal rows: completed trials (``status == "done"``: the
  last report is at the last epoch, see :func:`is_complete`) that meet every constraint, non-dominated under
  :func:`hytnas.objectives.to_maximize` of the objectives
  (``botorch.utils.multi_objective.pareto.is_non_dominated``; ties are all kept). Trials stopped
  early by ASHA report partial-fidelity accuracies and are never on the front.
- :func:`write_report` writes ``trials.csv``, ``pareto.csv`` (``hytnas.table.write_arch_table``)
  and ``pareto.png``; :func:`format_table` renders the front for a terminal.
- :class:`ProgressCallback` prints one compact line per finished trial, and a heartbeat at most
  every ``interval_s`` seconds, readable in a plain terminal and in CI logs.

Trial statuses: ``done`` (trained to the last epoch), ``stopped`` (ended early by the scheduler or
an interruption), ``failed`` (raised), ``running``, ``pending``.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TextIO

import numpy as np
import pandas as pd
import torch
from ray.tune import Callback

from hytnas.objectives import Constraint, Objective, to_maximize
from hytnas.space import GENES, Space

#: Metric columns of the trial tables (after the 23 genes), in this order.
METRIC_COLUMNS = (
    "val_accuracy", "test_accuracy", "val_loss", "latency_ms", "host_latency_ms", "params_k", "macs_m",
    "peak_sram_kb", "peak_sram_fp32_kb", "model_size_kb", "model_size_fp32_kb", "epoch",
)
#: Text/flag columns of the trial tables (after the metrics).
INFO_COLUMNS = ("trial_id", "arch_id", "status", "feasible", "pareto", "checkpoint")
#: Columns of the terminal table, when present.
TABLE_COLUMNS = ("arch_id", "val_accuracy", "test_accuracy", "latency_ms", "params_k", "macs_m",
                 "peak_sram_kb", "model_size_kb")
STATUSES = ("done", "stopped", "failed", "running", "pending")


# ------------------------------------------------------------------------------ tables
def trials_frame(
    records: Iterable[Mapping[str, Any]],
    space: Space,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint] = (),
) -> tuple[list[Any], pd.DataFrame]:
    """The archs and one row per trial: metrics, ``feasible`` and ``pareto`` flags.

    A record: ``trial_id``, ``status`` (one of :data:`STATUSES`), ``config`` (the trial config),
    ``metrics`` (the last reported result, may be empty) and ``checkpoint`` (a path or None).
    Rows keep the order of ``records``.
    """
    archs, rows = [], []
    for rec in records:
        archs.append(space.from_config(rec["config"]))
        metrics = rec.get("metrics") or {}
        row: dict[str, Any] = {}
        for col in METRIC_COLUMNS:
            row[col] = _number(metrics.get(col))
        for o in objectives:
            row.setdefault(o.name, _number(metrics.get(o.name)))
        row["trial_id"] = str(rec["trial_id"])
        row["arch_id"] = metrics.get("arch_id") or space.arch_id(archs[-1])
        row["status"] = str(rec["status"])
        row["checkpoint"] = rec.get("checkpoint") or ""
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(dict.fromkeys([*METRIC_COLUMNS, *(o.name for o in objectives), *INFO_COLUMNS])))
    df["feasible"] = feasible_mask(df, constraints)
    df["pareto"] = pareto_mask(df, objectives, constraints)
    return archs, df


def _number(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def feasible_mask(df: pd.DataFrame, constraints: Sequence[Constraint]) -> np.ndarray:
    """Rows whose metrics meet every constraint (a missing metric is not feasible)."""
    ok = np.ones(len(df), dtype=bool)
    for c in constraints:
        vals = df[c.name].to_numpy(dtype=float) if c.name in df else np.full(len(df), math.nan)
        ok &= np.array([not math.isnan(v) and c.ok(v) for v in vals], dtype=bool)
    return ok


def pareto_mask(df: pd.DataFrame, objectives: Sequence[Objective], constraints: Sequence[Constraint] = ()) -> np.ndarray:
    """Pareto-optimal rows among the completed, feasible trials with finite objectives."""
    mask = np.zeros(len(df), dtype=bool)
    if not len(df):
        return mask
    Y = torch.tensor(df[[o.name for o in objectives]].to_numpy(dtype=float), dtype=torch.float64)
    cand = (df["status"].to_numpy() == "done") & feasible_mask(df, constraints) & torch.isfinite(Y).all(-1).numpy()
    if cand.any():
        with warnings.catch_warnings():  # botorch's import-time torch.jit deprecation notice
            warnings.simplefilter("ignore", FutureWarning)
            from botorch.utils.multi_objective.pareto import is_non_dominated

        idx = np.flatnonzero(cand)
        front = is_non_dominated(to_maximize(Y[idx], objectives), deduplicate=False).numpy()
        mask[idx[front]] = True
    return mask


def sort_front(df: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """Best first objective first."""
    first = objectives[0]
    return df.sort_values(first.name, ascending=first.sense == "min", kind="stable")


def format_table(df: pd.DataFrame, objectives: Sequence[Objective] = ()) -> str:
    """A fixed-width text table of ``df`` (accuracies in %, other metrics rounded)."""
    cols = [c for c in dict.fromkeys([*TABLE_COLUMNS, *(o.name for o in objectives)]) if c in df.columns]
    cells = [[_header(c) for c in cols]]
    for _, row in df.iterrows():
        cells.append([_cell(c, row[c]) for c in cols])
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


_HEADERS = {"val_accuracy": "val_acc%", "test_accuracy": "test_acc%", "latency_ms": "lat_ms",
            "peak_sram_kb": "sram_kB", "model_size_kb": "size_kB", "params_k": "params_k", "macs_m": "MACs_M"}


def _header(col: str) -> str:
    return _HEADERS.get(col, col)


def _cell(col: str, v: Any) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if col.endswith("accuracy"):
        return f"{100 * v:.2f}"
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


# ------------------------------------------------------------------------------ files
def write_report(
    storage: str | Path,
    space: Space,
    archs: Sequence[Any],
    df: pd.DataFrame,
    objectives: Sequence[Objective],
    *,
    comment: str | None = None,
) -> dict[str, Path]:
    """``trials.csv`` (all trials), ``pareto.csv`` (the front, best first) and ``pareto.png``."""
    from hytnas.table import write_arch_table

    storage = Path(storage)
    paths = {"trials": storage / "trials.csv", "pareto": storage / "pareto.csv", "plot": storage / "pareto.png"}
    rows = df.drop(columns=[c for c in df.columns if c in GENES]).to_dict("records")
    write_arch_table(paths["trials"], space, archs, rows, comment=comment)
    front = sort_front(df[df["pareto"]], objectives)
    write_arch_table(paths["pareto"], space, [archs[i] for i in front.index],
                     front.to_dict("records"), comment=comment)
    plot_front(df, objectives, paths["plot"])
    return paths


def plot_front(df: pd.DataFrame, objectives: Sequence[Objective], path: str | Path) -> Path:
    """Scatter of the completed trials, the first objective (y) against each other one (x),
    Pareto-optimal trials highlighted. With one objective, ``params_k`` is the x axis."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    y_obj = objectives[0]
    xs = [o.name for o in objectives[1:]] or ["params_k"]
    fig = Figure(figsize=(5.0 * len(xs), 4.0), layout="constrained")
    axes = fig.subplots(1, len(xs), squeeze=False)[0]
    done = df[df["status"] == "done"]
    front = done[done["pareto"]]
    for ax, x in zip(axes, xs):
        other = done[~done["pareto"]]
        ax.scatter(other[x], other[y_obj.name], s=18, c="0.6", label="trial")
        pts = front.sort_values(x)
        ax.plot(pts[x], pts[y_obj.name], "o-", c="tab:red", ms=6, lw=1, label="Pareto-optimal")
        for _, r in pts.iterrows():
            ax.annotate(str(r["arch_id"])[:6], (r[x], r[y_obj.name]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        vals = done[x].dropna()
        if len(vals) and vals.min() > 0 and vals.max() / vals.min() > 20:  # costs span decades
            ax.set_xscale("log")
        ax.set_xlabel(_axis_label(x))
        ax.set_ylabel(_axis_label(y_obj.name))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(f"{len(front)} Pareto-optimal of {len(done)} completed trials")
    fig.savefig(path, dpi=120)
    return Path(path)


def _axis_label(name: str) -> str:
    from hytnas.objectives import METRICS

    o = METRICS.get(name)
    return f"{name} ({o.unit}, {o.sense})" if o else name


# ------------------------------------------------------------------------------ progress
def progress_line(
    elapsed_s: float,
    counts: Mapping[str, int],
    total: int | None,
    best: tuple[str, float] | None,
    front_size: int,
) -> str:
    """``[hytnas] 0:01:23  trials 3/12 done, 2 running, 0 failed  best val_accuracy 0.8412  pareto 3``."""
    m, s = divmod(int(elapsed_s), 60)
    h, m = divmod(m, 60)
    parts = [f"[hytnas] {h}:{m:02d}:{s:02d}"]
    of = f"/{total}" if total else ""
    t = f"trials {counts.get('done', 0)}{of} done, {counts.get('running', 0)} running, {counts.get('failed', 0)} failed"
    for extra in ("stopped", "pending"):
        if counts.get(extra):
            t += f", {counts[extra]} {extra}"
    parts.append(t)
    parts.append(f"best {best[0]} {best[1]:.4f}" if best else "best -")
    parts.append(f"pareto {front_size}")
    return "  ".join(parts)


class ProgressCallback(Callback):
    """A Ray Tune callback on the driver printing :func:`progress_line` on each finished trial
    and at most every ``interval_s`` seconds otherwise. Pickle-safe (Tune stores callbacks)."""

    def __init__(
        self,
        objectives: Sequence[Objective],
        constraints: Sequence[Constraint] = (),
        total: int | None = None,
        interval_s: float = 10.0,
        stream: TextIO | None = None,
        max_epochs: int | None = None,
    ) -> None:
        self.objectives = tuple(objectives)
        self.constraints = tuple(constraints)
        self.total = total
        self.max_epochs = max_epochs
        self.interval_s = float(interval_s)
        self._stream = stream  # None: sys.stdout at print time
        self._start: float | None = None
        self._last = 0.0

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_stream"] = None
        d["_start"] = None
        return d

    def setup(self, **info: Any) -> None:
        self._start = time.monotonic()
        self.total = info.get("total_num_samples") or self.total

    def summary(self, trials: Sequence[Any]) -> str:
        counts = dict.fromkeys(STATUSES, 0)
        done_rows = []
        for t in trials:
            st = trial_status(t.status, t.last_result or {}, max_epochs=self.max_epochs)
            counts[st] += 1
            if st == "done":
                done_rows.append(t.last_result)
        best = None
        first = next((o for o in self.objectives if o.source == "reported"), self.objectives[0])
        vals = [r[first.name] for r in done_rows if _finite(r.get(first.name))]
        if vals:
            best = (first.name, max(vals) if first.sense == "max" else min(vals))
        front = 0
        if done_rows:
            df = pd.DataFrame([{**{o.name: _number(r.get(o.name)) for o in self.objectives},
                                **{c.name: _number(r.get(c.name)) for c in self.constraints},
                                "status": "done"} for r in done_rows])
            front = int(pareto_mask(df, self.objectives, self.constraints).sum())
        elapsed = time.monotonic() - (self._start or time.monotonic())
        return progress_line(elapsed, counts, self.total, best, front)

    def _print(self, trials: Sequence[Any]) -> None:
        print(self.summary(trials), file=self._stream or sys.stdout, flush=True)
        self._last = time.monotonic()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(trials)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self._last >= self.interval_s:
            self._print(trials)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def is_complete(result: Mapping[str, Any] | None, max_epochs: int | None = None) -> bool:
    """Whether ``result`` is the final, full-fidelity report of a trial: its ``epoch`` reached
    ``max_epochs`` (when known), else its ``done`` flag. Ray Tune also sets ``done: True`` on the
    last result of a trial a scheduler stopped (e.g. ASHA), so ``done`` alone is not enough."""
    result = result or {}
    if max_epochs is not None:
        epoch = result.get("epoch")
        return isinstance(epoch, (int, float)) and epoch >= max_epochs
    return bool(result.get("done"))


def trial_status(tune_status: str, last_result: Mapping[str, Any] | None, error: bool = False,
                 max_epochs: int | None = None) -> str:
    """Map a Ray Tune trial status (+ its last result) to one of :data:`STATUSES`."""
    if error or tune_status == "ERROR":
        return "failed"
    if tune_status == "TERMINATED":
        return "done" if is_complete(last_result, max_epochs) else "stopped"
    if tune_status == "RUNNING":
        return "running"
    if tune_status == "PAUSED":
        return "stopped"
    return "pending"
