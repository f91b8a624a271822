"""The arch-table CSV exchange format.

A header row; the 23 gene columns ``n2,t3,t4,t5,e1,e2,e3,e4,e5,c1,c2,c3,c4,c5,h3,h4,h5,f3,f4,f5,p3,p4,p5``
(same order and meaning as :meth:`hytnas.space.Space.to_vector`: channels absolute, ``f`` as a
ratio); then any metric columns (``val_accuracy``, ``latency_ms``, ``params_k``, ...). Files may be
gzip-compressed (``.csv.gz``). Lines starting with ``#`` are comments (a table's provenance).

Used by: search export (Pareto and all trials), predictor fitting and evaluation, the tabular
benchmark, warm-starting and pool mode of the searchers.
"""
from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from hytnas.errors import DataError, SpaceError
from hytnas.space import GENES, Arch, Space
from hytnas.utils import atomic_write_text


def read_arch_table(
    path: str | Path,
    space: Space,
    metrics: Sequence[str] = (),
    allow_nan: Sequence[str] = (),
) -> tuple[list[Arch], pd.DataFrame]:
    """Read and check a table: returns the archs and the whole frame (genes canonicalised).

    ``metrics``: columns that must exist and be numeric (finite unless listed in ``allow_nan``).
    Every problem is one :class:`DataError` line naming the row (1-based, header = row 1... data
    starts at row 2, as a spreadsheet shows it) and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"table {path}: file not found")
    try:
        df = pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"table {path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [g for g in GENES if g not in df.columns]
    if missing:
        raise DataError(
            f"table {path}: missing gene column {missing[0]!r} (a table needs the 23 gene columns "
            f"{','.join(GENES)})"
        )
    for m in metrics:
        if m not in df.columns:
            raise DataError(f"table {path}: missing metric column {m!r}; columns are {', '.join(df.columns)}")
    numeric_cols = list(GENES) + [c for c in df.columns if c not in GENES and c in set(metrics)]
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        if col in numeric_cols:
            vals = []
            for i, raw in enumerate(df[col]):
                row = i + 2
                s = raw.strip()
                try:
                    x = float(s)
                except ValueError:
                    if col not in GENES and col in allow_nan and s in ("", "nan", "NaN"):
                        x = math.nan
                    else:
                        raise DataError(f"table {path}: row {row}, column {col}: {raw!r} is not a number") from None
                if math.isnan(x) and col not in allow_nan:
                    raise DataError(f"table {path}: row {row}, column {col}: value is NaN (fill it or drop the row)")
                if math.isinf(x):
                    raise DataError(f"table {path}: row {row}, column {col}: value is infinite")
                vals.append(x)
            out[col] = vals
        else:
            out[col] = pd.to_numeric(df[col], errors="coerce").where(df[col].str.strip() != "", None)
            if (out[col].isna() & (df[col].str.strip() != "")).any():
                out[col] = df[col]  # a text column (e.g. a name, arch_id or trial_id): any non-number keeps it text
    archs: list[Arch] = []
    for i in range(len(out)):
        try:
            archs.append(space.from_vector([out[g].iat[i] for g in GENES]))
        except SpaceError as exc:
            msg = str(exc)
            gene = msg.split(":", 1)[0].removeprefix("gene ").strip()
            raise DataError(f"table {path}: row {i + 2}, column {gene}: {msg.split(':', 1)[1].strip()}") from None
    for g, col in zip(GENES, zip(*archs)) if archs else ():
        out[g] = list(col)
    return archs, out


def arch_table_frame(space: Space, archs: Iterable[Arch], rows: Iterable[Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """A frame in the exchange format: gene columns first, then the metric columns of ``rows``."""
    archs = list(archs)
    genes = [space.to_vector(a) for a in archs]
    df = pd.DataFrame(genes, columns=list(GENES))
    if rows is not None:
        meta = pd.DataFrame(list(rows))
        if len(meta) != len(df):
            raise DataError(f"table: {len(df)} archs but {len(meta)} metric rows")
        meta = meta.drop(columns=[c for c in meta.columns if c in GENES])
        df = pd.concat([df, meta.reset_index(drop=True)], axis=1)
    return df


def write_arch_table(
    path: str | Path,
    space: Space,
    archs: Iterable[Arch],
    rows: Iterable[Mapping[str, Any]] | None = None,
    comment: str | None = None,
) -> pd.DataFrame:
    """Write archs (+ metric rows) atomically; ``.gz`` suffix compresses. Returns the frame."""
    df = arch_table_frame(space, archs, rows)
    buf = io.StringIO()
    if comment:
        for line in comment.splitlines():
            buf.write(f"# {line}\n")
    df.to_csv(buf, index=False, float_format="%.6g")
    path = Path(path)
    if path.suffix == ".gz":
        import gzip

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with gzip.open(tmp, "wt", compresslevel=9) as fh:
            fh.write(buf.getvalue())
        tmp.replace(path)
    else:
        atomic_write_text(path, buf.getvalue())
    return df
