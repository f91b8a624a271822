"""``hytnas status EXPERIMENT_DIR [--format table|json]``: where a search stands, live or dead.

Ray-free and MLflow-free: it reads only the files of the experiment folder, which a search keeps
readable at any time (also after a SIGKILL):

- ``experiment.yaml``: the config (the space, the budget ``budget.num_samples``);
- ``trials.csv``: every trial Tune knew when a trial last finished (rewritten atomically by
  :class:`hytnas.callbacks.LiveReport`, and at the end of the search);
- ``searcher.json``: the searcher's write-ahead record (:mod:`search_algos.tune`): the trials
  handed out and not finished yet, and the archs waiting to be retried;
- ``tune/trial_<id>/result.json``: the last result of a trial that is running (or was, when
  the search stopped).

Counts: ``done``, ``failed``, ``stopped`` (from ``trials.csv``), ``running`` (handed out and not
finished; for a dead search: interrupted, continued by ``--resume``), ``pending`` (the rest of
the budget). A folder that holds no search: one ``hytnas: error:`` line, exit 2.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

FINAL = ("done", "failed", "stopped")
COLUMNS = ("trial_id", "arch_id", "status", "epoch", "val_accuracy", "test_accuracy", "params_k", "latency_ms")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "status", help="trial counts and table of a search (running or stopped), from its folder",
        description="Where a search stands (done / running / failed / pending / stopped trials), read from its "
                    "experiment folder; works while it runs and after it was killed.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT_DIR", help="the experiment folder of a search (storage_path)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    p.set_defaults(func=run)


def search_status(experiment_dir: str | Path) -> dict[str, Any]:
    """The status of the search in ``experiment_dir`` as a plain dict (see the module docstring):
    ``name``, ``folder``, ``num_samples``, ``counts`` (per status), ``trials`` (rows: ``trial_id``,
    ``arch_id``, ``status`` and metrics; unknown values None), ``finished``.
    Raises :class:`~hytnas.errors.ConfigError` when the folder holds no search."""
    from hytnas.errors import ConfigError, HytnasError
    from hytnas.results import TRIALS_FILE, TUNE_DIR, load_saved_experiment
    from hytnas.table import read_arch_table
    from search_algos.record import RECORD_FILE

    d = Path(experiment_dir)
    cfg = load_saved_experiment(d)
    space = cfg.build_space()
    rows: dict[str, dict[str, Any]] = {}
    if (d / TRIALS_FILE).is_file():
        try:
            _, df = read_arch_table(d / TRIALS_FILE, space)
        except HytnasError as exc:
            raise ConfigError(f"EXPERIMENT_DIR: {d / TRIALS_FILE} is unreadable ({exc})") from None
        for rec in df.to_dict("records"):
            rows[str(rec["trial_id"])] = {c: _plain(rec.get(c)) for c in COLUMNS}
    record = _record(d / RECORD_FILE)
    for tid, genes in (record.get("trials") or {}).items():
        row = rows.get(str(tid))
        if row is not None and row["status"] in FINAL:
            continue
        arch = space.from_vector(genes)
        last = _last_result(d / TUNE_DIR / f"trial_{tid}" / "result.json")
        rows[str(tid)] = {**dict.fromkeys(COLUMNS), **{c: _plain(last.get(c)) for c in COLUMNS if c in last},
                          "trial_id": str(tid), "arch_id": space.arch_id(arch), "status": "running"}
    counts = dict.fromkeys(("done", "running", "failed", "pending", "stopped"), 0)
    for row in rows.values():
        counts[row["status"] if row["status"] in counts else "pending"] += 1
    total = cfg.budget.num_samples
    counts["pending"] += max(0, total - len(rows))
    return {"name": cfg.name, "folder": str(d), "num_samples": total, "counts": counts,
            "finished": sum(counts[s] for s in FINAL) >= total, "trials": list(rows.values())}


def _record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _last_result(path: Path) -> dict[str, Any]:
    """:func:`hytnas.results.last_result`; an unreadable file is no result yet."""
    from hytnas.errors import DataError
    from hytnas.results import last_result

    try:
        return last_result(path)
    except DataError:
        return {}


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def format_status(st: dict[str, Any]) -> str:
    c = st["counts"]
    head = (f"search {st['name']!r} in {st['folder']}: {c['done']}/{st['num_samples']} done, {c['running']} running, "
            f"{c['failed']} failed, {c['stopped']} stopped, {c['pending']} pending"
            + (" (finished)" if st["finished"] else ""))
    if not st["trials"]:
        return head + "\nno trial yet"
    cells = [list(COLUMNS)] + [[_cell(r.get(k)) for k in COLUMNS] for r in st["trials"]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join([head, *lines])


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def run(args: argparse.Namespace) -> int:
    st = search_status(args.experiment)
    print(json.dumps(st, indent=1) if args.format == "json" else format_status(st))
    return 0
