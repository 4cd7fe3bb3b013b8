"""history.csv: one row per finished epoch (`HistoryWriter` appends it), read back for resumes,
plots and summaries.

Columns: `epoch` (0-based) then the epoch's logs in sorted order, as Keras's CSVLogger writes
them; a run resumed with a column more (a key added later) rewrites the file with the union.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import keras

from keras_googlenet.atomic import atomic_write_text


class HistoryWriter(keras.callbacks.Callback):
    """Appends each finished epoch's logs to history.csv, flushed to disk at once."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch}
        for key, value in sorted((logs or {}).items()):
            try:
                row[key] = float(value)
            except (TypeError, ValueError):
                row[key] = value
        append_row(self.path, row)


def _csv_line(values) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def append_row(path: Path, row: dict) -> None:
    """Appends `row` under the file's header (written first for a new file); a row with keys
    the header lacks rewrites the file atomically with the wider header."""
    path = Path(path)
    lines = path.read_text().splitlines(keepends=True) if path.is_file() else []
    header = next(csv.reader([lines[0]])) if lines else []
    if not lines or set(row) - set(header):
        wider = header + sorted(set(row) - set(header), key=lambda k: (k != "epoch", k))
        body = [
            _csv_line([old.get(k, "") for k in wider])
            for old in (dict(zip(header, f, strict=False)) for f in csv.reader(lines[1:]))
        ]
        atomic_write_text(
            path, _csv_line(wider) + "".join(body) + _csv_line([row.get(k, "") for k in wider])
        )
        return
    if lines and not lines[-1].endswith("\n"):  # a row cut short by a kill: finish its line
        lines[-1] += "\n"
        atomic_write_text(path, "".join(lines))
    with open(path, "a", newline="") as f:
        f.write(_csv_line([row.get(k, "") for k in header]))
        f.flush()
        os.fsync(f.fileno())


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
