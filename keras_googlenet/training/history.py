"""history.csv: one row per finished epoch (Keras's CSVLogger writes it), read back for resumes,
plots and summaries."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from keras_googlenet.atomic import atomic_write_text


def read_history(path: str | Path) -> list[dict]:
    """Rows of history.csv as dicts (numbers as floats, `epoch` as int); [] if there is none.

    Rows cut short by a crash (fewer fields than the header, or a non-integer epoch) are left
    out.
    """
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    rows = []
    for fields in reader:
        if not header or len(fields) != len(header):
            continue
        row = dict(zip(header, fields, strict=True))
        try:
            row["epoch"] = int(row["epoch"])
        except ValueError:
            continue
        for key, value in row.items():
            if key != "epoch":
                try:
                    row[key] = float(value)
                except ValueError:
                    pass
        rows.append(row)
    return rows


def truncate_history(path: str | Path, finished_epochs: int) -> int:
    """Keeps the rows of epochs < `finished_epochs` (0-based); returns how many were dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    lines = path.read_text().splitlines(keepends=True)
    if not lines:
        return 0
    header, kept, dropped = lines[0], [], 0
    width = len(next(csv.reader([header])))
    for line in lines[1:]:
        fields = next(csv.reader([line]), [])
        ok = len(fields) == width and line.endswith("\n")
        try:
            ok = ok and int(fields[0]) < finished_epochs
        except (ValueError, IndexError):
            ok = False
        if ok:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, header + "".join(kept))
    return dropped


def best_so_far(rows: list[dict], monitor: str = "val_main_top1") -> float | None:
    """The best (highest) value of `monitor` in history rows, or None."""
    values = [
        r[monitor] for r in rows if isinstance(r.get(monitor), float) and math.isfinite(r[monitor])
    ]
    return max(values) if values else None
