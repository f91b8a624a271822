"""What a search shows: one progress line at a time while it runs, the Pareto report at the end.

Ray-free plain functions over trial records and frames (the Ray Tune callback that prints the
progress lines is :class:`hytnas.callbacks.ProgressCallback`):

- :func:`trials_frame` turns trial records (``trial_id``, ``status``, ``config``, ``metrics``,
  ``checkpoint``) into one row per trial in the arch-table exchange format (23 genes first).
- the ``pareto`` flag (:func:`hytnas.mo.trials_pareto_mask`) marks the completed trials
  (``status == "done"``: the last report is at the last epoch, :func:`hytnas.trial.is_complete`)
  that meet every constraint and are non-dominated (ties are all kept). Trials stopped early by
  ASHA report partial-fidelity accuracies and are never on the front.
- :func:`write_report` writes ``trials.csv``, ``pareto.csv`` (``hytnas.table.write_arch_table``)
  and ``pareto.png``; :func:`format_table` renders the front for a terminal.
- :func:`progress_line` is the compact line printed per finished trial and as a heartbeat.

Trial statuses (:data:`hytnas.trial.STATUSES`): ``done`` (trained to the last epoch), ``stopped``
(ended early by the scheduler or an interruption), ``failed`` (raised), ``running``, ``pending``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hytnas.mo import feasible_mask, hv_curve, reference_point, trials_pareto_mask
from hytnas.objectives import METRICS, Constraint, Objective, to_maximize
from hytnas.space import GENES, Space
from hytnas.table import write_arch_table
from hytnas.trial import STATUSES, trial_status

#: Metric columns of the trial tables (after the 23 genes), in this order.
METRIC_COLUMNS = (
    "val_accuracy", "test_accuracy", "val_loss", "latency_ms", "host_latency_ms", "params_k", "macs_m",
    "peak_sram_kb", "peak_sram_fp32_kb", "model_size_kb", "model_size_fp32_kb", "epoch",
)
#: Text/flag columns of the trial tables (after the metrics).
INFO_COLUMNS = ("trial_id", "arch_id", "status", "feasible", "pareto", "checkpoint", "node_id", "hostname")
#: Columns of the terminal table, when present.
TABLE_COLUMNS = ("arch_id", "val_accuracy", "test_accuracy", "latency_ms", "params_k", "macs_m",
                 "peak_sram_kb", "model_size_kb")


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
    The flags: :func:`hytnas.mo.feasible_mask` and :func:`hytnas.mo.trials_pareto_mask`.
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
        row["node_id"] = str(metrics.get("node_id") or "")  # where the last report came from
        row["hostname"] = str(metrics.get("hostname") or "")
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(dict.fromkeys([*METRIC_COLUMNS, *(o.name for o in objectives), *INFO_COLUMNS])))
    df["feasible"] = feasible_mask(df, constraints)
    df["pareto"] = trials_pareto_mask(df, objectives, constraints)
    return archs, df


def _number(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def sort_front(df: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """Best first objective first."""
    first = objectives[0]
    return df.sort_values(first.name, ascending=first.sense == "min", kind="stable")


def format_table(df: pd.DataFrame, objectives: Sequence[Objective] = (), leading: Sequence[str] = ()) -> str:
    """A fixed-width text table of ``df`` (accuracies in %, other metrics rounded): the
    ``leading`` columns, then :data:`TABLE_COLUMNS` and the objectives, those present in ``df``."""
    cols = [c for c in dict.fromkeys([*leading, *TABLE_COLUMNS, *(o.name for o in objectives)]) if c in df.columns]
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
    plot: bool = True,
) -> dict[str, Path]:
    """``trials.csv`` (all trials), ``pareto.csv`` (the front, best first), each written
    atomically, and ``pareto.png`` (unless ``plot`` is false: then no ``plot`` key)."""
    storage = Path(storage)
    paths = {"trials": storage / "trials.csv", "pareto": storage / "pareto.csv", "plot": storage / "pareto.png"}
    if not plot:
        del paths["plot"]
    rows = df.drop(columns=[c for c in df.columns if c in GENES]).to_dict("records")
    write_arch_table(paths["trials"], space, archs, rows, comment=comment)
    front = sort_front(df[df["pareto"]], objectives)
    write_arch_table(paths["pareto"], space, [archs[i] for i in front.index],
                     front.to_dict("records"), comment=comment)
    if plot:
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


def hv_history(
    df: pd.DataFrame, objectives: Sequence[Objective], constraints: Sequence[Constraint] = ()
) -> tuple[list[float], list[float]]:
    """The anytime hypervolume of a trial frame in its row order (the order of evaluation) and its
    reference point in the objectives' own units (:func:`hytnas.mo.reference_point` of the done,
    feasible rows with finite objectives; the other rows add nothing). Empty lists without such rows."""
    names = [o.name for o in objectives]
    Y = df[names].to_numpy(dtype=float) if len(df) else np.zeros((0, len(names)))
    ok = (df["status"].to_numpy() == "done") & feasible_mask(df, constraints) & np.isfinite(Y).all(axis=1)
    if not ok.any():
        return [], []
    ref = reference_point(Y[ok], objectives)
    curve = iter(hv_curve(Y[ok], objectives, ref))
    out, last = [], 0.0
    for flag in ok:
        last = next(curve) if flag else last
        out.append(last)
    ref_natural = to_maximize(ref.unsqueeze(0), objectives).squeeze(0).tolist()
    return out, ref_natural


def plot_hypervolume(curve: Sequence[float], ref: Sequence[float], objectives: Sequence[Objective],
                     path: str | Path) -> Path:
    """Hypervolume after each evaluation (a step line), the reference point in the title."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.step(range(1, len(curve) + 1), list(curve), where="post", c="tab:blue")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume")
    ax.grid(alpha=0.3)
    where = ", ".join(f"{o.name}={v:.4g}" for o, v in zip(objectives, ref))
    ax.set_title(f"reference point: {where}", fontsize=8)
    fig.savefig(path, dpi=100)
    return Path(path)


def _axis_label(name: str) -> str:
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


def progress_summary(trials: Iterable[tuple[str, Mapping[str, Any] | None]], objectives: Sequence[Objective],
                     constraints: Sequence[Constraint] = (), total: int | None = None, elapsed_s: float = 0.0,
                     max_epochs: int | None = None) -> str:
    """:func:`progress_line` of trials given as (Ray Tune status string, last result) pairs: the
    counts per status, the best first reported objective and the front size among the done trials."""
    counts = dict.fromkeys(STATUSES, 0)
    done_rows = []
    for tune_status, result in trials:
        st = trial_status(tune_status, result or {}, max_epochs=max_epochs)
        counts[st] += 1
        if st == "done":
            done_rows.append(result)
    best = None
    first = next((o for o in objectives if o.source == "reported"), objectives[0])
    vals = [r[first.name] for r in done_rows if _finite(r.get(first.name))]
    if vals:
        best = (first.name, max(vals) if first.sense == "max" else min(vals))
    front = 0
    if done_rows:
        df = pd.DataFrame([{**{o.name: _number(r.get(o.name)) for o in objectives},
                            **{c.name: _number(r.get(c.name)) for c in constraints},
                            "status": "done"} for r in done_rows])
        front = int(trials_pareto_mask(df, objectives, constraints).sum())
    return progress_line(elapsed_s, counts, total, best, front)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
