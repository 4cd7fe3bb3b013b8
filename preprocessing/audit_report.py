"""What the audit leaves for the user: audit.csv, audit.json and pictures in audit/.

    audit.csv          group,file,class,split,distance,kind,conflict,note: one row per copy
    audit.json         the counts (`Audit.counts`); a training run copies them to dataset.json
    audit/classes.png  images per class, with the imbalance ratio
    audit/conflict_NNN.jpg  each group filed under two or more classes, side by side
    audit/group_NNN.jpg     the largest groups, side by side

Every file is written atomically and audit/ is built beside its final place, then renamed
into it, so an interrupted audit leaves the previous report or none, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from keras_googlenet.atomic import atomic_open, atomic_write_bytes, atomic_write_text
from preprocessing.audit import Audit, Group
from preprocessing.image_io import BadImage, load_rgb

AUDIT_CSV = "audit.csv"
AUDIT_JSON = "audit.json"
AUDIT_DIR = "audit"
LARGEST = 8  # pictures of this many of the largest groups
MAX_PICTURES = 200  # conflict pictures at most; audit.csv lists every group
MAX_SHOWN = 12  # copies drawn per picture
THUMB = 160


def csv_rows(audit: Audit) -> list[tuple]:
    """audit.csv's rows: every member of every group, the group's reference first."""
    rows = []
    for number, group in enumerate(audit.groups, 1):
        conflict = "yes" if audit.spans_classes(group) else ""
        for k, i in enumerate(group.members):
            kind = "reference" if k == 0 else ("exact" if group.exact[k] else "near")
            split = audit.splits[i] or "left out"
            rows.append(
                (number, audit.files[i], audit.classes[i], split, group.distances[k], kind,
                 conflict, audit.notes.get(i, ""))
            )  # fmt: skip
    return rows


def _caption(audit: Audit, group: Group, k: int) -> str:
    i = group.members[k]
    return f"{audit.classes[i][:22]}\n{audit.splits[i] or 'left out'}, d={group.distances[k]}"


def group_picture(audit: Audit, group: Group) -> bytes:
    """JPEG bytes of a group's copies side by side, each captioned class, split and distance.

    JPEG, not PNG: these are photos, and zlib took 40 ms a picture (8 s for 200 conflicts on
    Caltech-sized files) against 1 ms; 4:4:4 keeps the captions sharp.
    """
    shown = group.members[:MAX_SHOWN]
    sheet = Image.new("RGB", (THUMB * len(shown), THUMB + 30), "white")
    draw = ImageDraw.Draw(sheet)
    for k, i in enumerate(shown):
        try:
            pixels = load_rgb(audit.paths[i], THUMB)
        except BadImage:  # removed since it was read: a grey square still shows the slot
            pixels = np.full((THUMB, THUMB, 3), 128, np.uint8)
        sheet.paste(Image.fromarray(pixels), (k * THUMB, 0))
        draw.text((k * THUMB + 4, THUMB + 2), _caption(audit, group, k), fill="black")
    buffer = io.BytesIO()
    sheet.save(buffer, "JPEG", quality=90, subsampling=0)
    return buffer.getvalue()


def class_chart(per_class: dict[str, int], imbalance: float | None) -> bytes:
    """PNG bytes of a bar chart of images per class, titled with the imbalance ratio.

    Drawn with Pillow: matplotlib's import and layout took 3 s, most of the audit's time.
    """
    labels = list(per_class)
    bar, left, top, plot_h, label_h = 12, 60, 30, 240, 130
    width = left + bar * max(1, len(labels)) + 20
    sheet = Image.new("RGB", (max(width, 420), top + plot_h + label_h), "white")
    draw = ImageDraw.Draw(sheet)
    most = max(per_class.values(), default=1)
    ratio = f"{imbalance:.1f}x" if imbalance else "n/a"
    draw.text((left, 8), f"images per class: largest / smallest = {ratio}", fill="black")
    draw.line((left - 2, top, left - 2, top + plot_h), fill="black")
    for value in (0, most // 2, most):  # three ticks: enough to read the scale
        y = top + plot_h - plot_h * value / most
        draw.text((4, y - 6), f"{value:>6}", fill="black")
        draw.line((left - 6, y, left - 2, y), fill="black")
    for k, label in enumerate(labels):
        x = left + k * bar
        height = plot_h * per_class[label] / most
        draw.rectangle((x, top + plot_h - height, x + bar - 2, top + plot_h), fill=(31, 119, 180))
        text = Image.new("L", (label_h - 4, bar + 2), 255)
        ImageDraw.Draw(text).text((0, -2), label[:24], fill=0)
        sheet.paste(
            (0, 0, 0),
            (x - 1, top + plot_h + 4),
            text.rotate(90, expand=True).point(lambda v: 255 - v),
        )
    buffer = io.BytesIO()
    sheet.save(buffer, "PNG")
    return buffer.getvalue()


def _write_pictures(audit: Audit, folder: Path, counts: dict) -> None:
    atomic_write_bytes(
        folder / "classes.png", class_chart(counts["images_per_class"], counts["imbalance"])
    )
    conflicts = [g for g in audit.groups if audit.spans_classes(g)]
    for number, group in enumerate(conflicts[:MAX_PICTURES], 1):
        atomic_write_bytes(folder / f"conflict_{number:03d}.jpg", group_picture(audit, group))
    for number, group in enumerate(audit.groups[:LARGEST], 1):
        atomic_write_bytes(folder / f"group_{number:03d}.jpg", group_picture(audit, group))


def write_report(audit: Audit, output: str | Path) -> dict:
    """Writes audit.csv, the pictures and audit.json (last) into `output`; returns the counts."""
    output = Path(output)
    counts = audit.counts()
    with atomic_open(output / AUDIT_CSV, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("group", "file", "class", "split", "distance", "kind", "conflict", "note"))
        writer.writerows(csv_rows(audit))
    building = Path(tempfile.mkdtemp(prefix=f".{AUDIT_DIR}-", dir=output))
    try:
        _write_pictures(audit, building, counts)
        final = output / AUDIT_DIR
        if final.is_dir():
            shutil.rmtree(final)
        building.rename(final)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    atomic_write_text(output / AUDIT_JSON, json.dumps(counts, indent=2) + "\n")
    return counts
