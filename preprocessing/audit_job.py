"""`keras-googlenet audit --input DATA_DIR`: the preprocessing audit over a processed folder.

For a dataset processed before the audit existed, or by another tool (the seed's PyTorch
preprocessor): every image listed in train.csv and val.csv is decoded and fingerprinted, the
copies are grouped as `preprocess` groups them, and each group with copies on both sides of
the split is reported as leakage. The report (audit.csv, audit.json, audit/) goes into the
folder, or `--output`. Nothing is moved or changed: re-run `preprocess` to fix the split.
"""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

from keras_googlenet.errors import UserError
from preprocessing.audit import Audit, file_digest, find_groups
from preprocessing.audit_report import AUDIT_CSV, write_report
from preprocessing.workers import NO_DRAFT, default_workers, fingerprint_one, map_tasks

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
SHOW = 10  # leaking groups named in the log


def _rows(path: Path, columns: tuple[str, str]) -> list[dict]:
    """A CSV's rows; one clear error naming the file when it is missing or has other columns."""
    if not path.is_file():
        raise UserError(f"{path}: file not found (is --input a processed folder?)")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"{path}: expected columns {','.join(columns)}")
            return list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: not a readable CSV file ({e})") from None


def audit_folder(data_dir: str | Path, workers: int | None = None, progress: bool = True):
    """Fingerprints every listed image of a processed folder and groups the copies.

    Returns:
        (the `Audit`, [(file, reason)] for listed images that could not be read).

    Raises:
        UserError: a CSV is missing or malformed.
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: not a folder")
    labels = {r["id"].strip(): r["label"] for r in _rows(root / "categories.csv", ("id", "label"))}
    files, paths, classes, splits = [], [], [], []
    for split in SPLITS:
        for row in _rows(root / f"{split}.csv", ("image", "class")):
            name = row["image"].strip()
            files.append(f"{split}/{name}")
            paths.append(str(root / split / name))
            classes.append(labels.get(row["class"].strip(), row["class"].strip()))
            splits.append(split)
    workers = min(workers or default_workers(), max(1, len(paths)))
    prints, unreadable = {}, []
    tasks = list(enumerate(paths))
    for index, reason, detail, fingerprint in map_tasks(
        fingerprint_one, tasks, workers, progress, "audit"
    ):
        if reason is None:
            prints[index] = fingerprint
        else:
            unreadable.append((files[index], f"{reason} {detail}".strip()))
    keep = sorted(prints)
    audit = Audit(
        files=[files[i] for i in keep],
        paths=[paths[i] for i in keep],
        classes=[classes[i] for i in keep],
        splits=[splits[i] for i in keep],
        groups=find_groups(
            [prints[i] for i in keep], lambda k: file_digest(paths[keep[k]], NO_DRAFT)
        ),
        notes={},
    )
    return audit, sorted(unreadable)


def leak_lines(audit: Audit) -> list[str]:
    """One line per group with copies in both train and val (the first `SHOW`)."""
    leaking = [g for g in audit.groups if audit.across_split(g)]
    lines = []
    for group in leaking[:SHOW]:
        shown = ", ".join(
            f"{audit.files[i]} ({audit.classes[i]}, {d} bits)"
            for i, d in zip(group.members, group.distances, strict=True)
        )
        lines.append(f"leak: {shown}")
    if len(leaking) > SHOW:
        lines.append(f"... and {len(leaking) - SHOW} more leaking groups in {AUDIT_CSV}")
    return lines


def run(args) -> int:
    """Runs `keras-googlenet audit` with the parsed flags; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    audit, unreadable = audit_folder(args.input, args.workers, not args.no_progress)
    for name, reason in unreadable:
        log.warning("%s: not audited (%s)", name, reason)
    output = Path(args.output or args.input).expanduser()
    output.mkdir(parents=True, exist_ok=True)
    write_report(audit, output)
    for line in audit.lines() + leak_lines(audit):
        print(line)
    print(f"report: {output / AUDIT_CSV}, {output / 'audit'}/")
    return 0
