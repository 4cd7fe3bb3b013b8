"""Class folders of raw images -> the processed dataset the training pipeline reads (SPEC §2).

    keras-googlenet preprocess --input 256_ObjectCategories \\
        --output data/caltech256 [--val-split 0.2] [--image-size 256] [--no-center-crop] \\
        [--include-clutter] [--seed 42] [--workers N] [--overwrite] [--config FILE] \\
        [--no-audit] [--dedupe] [--drop-conflicts]

Writes into the output folder:
    train/*.jpg, val/*.jpg  random unique names (16 hex digits), size x size RGB JPEGs
    train.csv, val.csv      image,class  (file name inside train/ or val/, integer class id)
    categories.csv          id,label     (ids 0..N-1 in sorted folder order)
    rgb_val.json            {"R", "G", "B"}: mean over every train pixel after resizing, 0-255
    skipped.csv             file,reason,detail: every entry that is not in train/ or val/
    sources.csv             image,split,class,source: where each written image came from
    audit.csv, audit.json, audit/   copies found among the images (preprocessing/audit.py,
                            audit_report.py); absent with --no-audit

How a run goes, and why in this order:
1. List the class folders (no decoding); refuse bad arguments before any work.
2. Decode, crop and resize every file in worker processes; each worker writes its JPEG into
   `.staging/` and returns only the image's per-channel pixel sums and its audit fingerprint
   (hashes of the pixels it decoded anyway), so memory stays flat.
3. Group the copies (the audit); with --drop-conflicts leave out groups filed under two or
   more classes, with --dedupe keep only each group's largest file (both listed in skipped.csv).
4. Split the readable images per class (seeded), each group of copies wholly to one side, and
   move each file to train/ or val/ (a rename).
5. Write the audit report, then the CSVs and the mean last, each atomically, then remove the
   `.preprocess-incomplete` marker. An interrupted run therefore never leaves a CSV naming an
   image that is not there.

Interrupted runs start clean: a folder holding the marker is recognised as our unfinished output,
its partial contents are removed and the run starts again (no --overwrite needed). A full
Caltech256 pass takes minutes, too little to be worth the extra state a resume would need.

A class with a single readable image goes to train only; a class with none is dropped (both
with a warning); class ids are then assigned over the remaining folders in sorted order.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from keras_googlenet.atomic import atomic_open, atomic_write_text
from keras_googlenet.errors import UserError
from preprocessing.audit import Audit, file_digest, find_groups
from preprocessing.audit_report import AUDIT_CSV, AUDIT_DIR, AUDIT_JSON, write_report
from preprocessing.folders import scan_input, stratified_split, unique_names
from preprocessing.workers import default_workers, run_tasks

log = logging.getLogger(__name__)

STAGING_DIR = ".staging"
MARKER = ".preprocess-incomplete"
TABLES = ("train.csv", "val.csv", "categories.csv", "rgb_val.json", "skipped.csv", "sources.csv")
REPORTS = (AUDIT_CSV, AUDIT_JSON, AUDIT_DIR)

# Reason codes of skipped.csv for readable images the audit left out.
DUPLICATE = "duplicate"
CONFLICT = "label conflict"


@dataclass
class Summary:
    """What a run did. `found == train + val + sum(skipped.values())` always holds."""

    output_dir: Path
    found: int
    train: int
    val: int
    skipped: dict[str, int]  # reason -> count
    num_classes: int
    mean_rgb: dict[str, float]
    left_out: list[tuple[str, int]] = field(default_factory=list)  # (folder, entries)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    audit: dict | None = None  # the audit's counts (audit.json); None with --no-audit

    @property
    def written(self) -> int:
        return self.train + self.val

    def line(self) -> str:
        """The one-line report printed at the end of a run."""
        total = sum(self.skipped.values())
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(self.skipped.items()))
        skipped = f"{total} skipped ({reasons}; see skipped.csv)" if total else "0 skipped"
        rate = self.found / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"found {self.found} files in {self.num_classes} classes: wrote {self.train} train "
            f"+ {self.val} val, {skipped} -> {self.output_dir} ({self.seconds:.1f} s, "
            f"{rate:.0f} files/s)"
        )
        for folder, count in self.left_out:
            text += f"; left out {folder} ({count} entries; --include-clutter uses it)"
        return text


# --------------------------------------------------------------------------------------------
# Checks and the output folder.


def check_options(val_split: float, size: int, workers: int | None, names=None) -> None:
    """Raises `UserError` for values that cannot work; `names` maps option to how to call it."""
    names = names or {}
    if isinstance(val_split, bool) or not 0 < val_split < 1:
        name = names.get("val_split", "val_split")
        raise UserError(f"{name} must be between 0 and 1 (exclusive), got {val_split}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise UserError(f"{names.get('size', 'size')} must be a positive integer, got {size}")
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise UserError(f"{names.get('workers', 'workers')} must be at least 1, got {workers}")


def _clear_previous(output: Path) -> None:
    """Removes what a run of ours writes (nothing else) from `output`."""
    for name in ("train", "val", STAGING_DIR, *TABLES, *REPORTS, MARKER):
        path = output / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # a failure here stops the run: stale images must not mix in
        elif path.exists() or path.is_symlink():
            path.unlink()


def prepare_output(input_dir: Path, output: Path, overwrite: bool) -> str | None:
    """Checks the output folder, clears a previous or interrupted run, writes the marker.

    Returns:
        A note for the user when something was cleared, else None.

    Raises:
        UserError: output is a file, overlaps the input, or is not empty without `overwrite`.
    """
    src, dst = input_dir.resolve(), output.resolve()
    if dst == src or dst.is_relative_to(src):
        raise UserError(f"output folder {output} is inside the input folder {input_dir}")
    if src.is_relative_to(dst):
        raise UserError(f"input folder {input_dir} is inside the output folder {output}")
    if output.exists() and not output.is_dir():
        raise UserError(f"output {output} exists and is not a folder")
    note = None
    if output.is_dir() and any(output.iterdir()):
        if (output / MARKER).exists():
            note = f"{output} holds an interrupted run: removed it, starting again"
        elif overwrite:
            note = f"--overwrite: replaced the previous output in {output}"
        else:
            raise UserError(
                f"output folder {output} is not empty (pass --overwrite to replace its contents)"
            )
        _clear_previous(output)
    (output / STAGING_DIR).mkdir(parents=True, exist_ok=True)
    (output / MARKER).write_text("preprocessing in progress; a rerun starts again from scratch\n")
    return note


# --------------------------------------------------------------------------------------------
# The per-image work, run in worker processes.


# --------------------------------------------------------------------------------------------
# The run.


def _write_csv(path: Path, header: Sequence[str], rows) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def preprocess(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    val_split: float = 0.2,
    size: int = 256,
    center_crop: bool = True,
    include_clutter: bool = False,
    seed: int = 42,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    audit: bool = True,
    dedupe: bool = False,
    drop_conflicts: bool = False,
) -> Summary:
    """Turns a folder of class folders into the processed dataset (see the module docstring).

    Args:
        input_dir: `NNN.label/` or `label/` class folders of images.
        output_dir: where train/, val/ and the tables go; must be empty or absent unless
            `overwrite` (or it holds an interrupted run of ours, which is cleared).
        val_split: fraction of each class for validation, in (0, 1).
        size: side of the square output images.
        center_crop: crop the centred square before resizing (False: stretch the whole image).
        include_clutter: use Caltech256's `257.clutter` folder as a class.
        seed: seed for the split and the file names; the same seed gives the same output.
        workers: processes decoding images; None uses every core.
        overwrite: replace a previous output in `output_dir`.
        progress: show a progress bar on stderr.
        audit: find exact and near duplicates, keep each group on one side of the split and
            write the audit report (preprocessing/audit_report.py).
        dedupe: keep one file of each group of copies (the most pixels, then the most bytes).
        drop_conflicts: leave out every group whose copies are filed under two or more classes.

    Returns:
        A `Summary` (`summary.line()` is the end-of-run report). Warnings also go to the
        `preprocessing.image_dir_preprocessor` logger.

    Raises:
        UserError: bad arguments, no class folders, an unusable output folder, or fewer than
            two classes with readable images.
    """
    start = time.perf_counter()
    check_options(val_split, size, workers)
    if (dedupe or drop_conflicts) and not audit:
        flag = "--dedupe" if dedupe else "--drop-conflicts"
        raise UserError(f"{flag} needs the audit (leave out --no-audit)")
    input_dir, output = Path(input_dir).expanduser(), Path(output_dir).expanduser()
    if not input_dir.exists():
        raise UserError(f"input folder {input_dir} does not exist")
    if not input_dir.is_dir():
        raise UserError(f"input {input_dir} is not a folder")
    found = scan_input(input_dir, include_clutter)
    if len(found.classes) < 2:
        what = "no class folders" if not found.classes else "only one class folder"
        hint = f"expected {input_dir}/NNN.label/*.jpg or {input_dir}/label/*.jpg, two or more"
        if len(found.classes) == 1:
            inner = input_dir / found.classes[0].name
            if sum(p.is_dir() for p in inner.iterdir()) >= 2:  # one level too high
                hint = f"did you mean --input {inner}?"
        raise UserError(f"{what} in {input_dir} ({hint})")
    labels = Counter(c.label for c in found.classes)
    if duplicate := next((lab for lab, n in labels.items() if n > 1), None):
        folders = [c.name for c in found.classes if c.label == duplicate]
        raise UserError(f"folders {', '.join(folders)} both give the label '{duplicate}'")
    note = prepare_output(input_dir, output, overwrite)
    warnings: list[str] = []
    if note:
        log.warning(note)
        warnings.append(note)

    # 2. Decode everything; results arrive in any order, indexed by candidate.
    staging = output / STAGING_DIR
    n = len(found.candidates)
    names = unique_names(n, seed)
    # Plain strings, not Path objects: tens of thousands of joins (pathlib's cost 0.2 s here).
    source_dir, staging_dir = str(input_dir), str(staging)
    tasks = [
        (i, os.path.join(source_dir, rel), os.path.join(staging_dir, names[i]))
        for i, (rel, _) in enumerate(found.candidates)
    ]
    sums = np.zeros((n, 3), dtype=np.int64)
    failures: dict[int, tuple[str, str]] = {}
    prints = {}
    workers = min(workers or default_workers(), max(1, n))
    results = run_tasks(tasks, size, center_crop, workers, progress, audit)
    for index, reason, detail, pixel_sum, fingerprint in results:
        if reason is None:
            sums[index] = pixel_sum
            prints[index] = fingerprint
        else:
            failures[index] = (reason, detail)
    report = None
    if audit:
        report = _audit(found, input_dir, prints, size, dedupe, drop_conflicts, failures)

    # 3. Split the readable images per class; classes left empty are dropped.
    by_class: dict[int, list[int]] = {c: [] for c in range(len(found.classes))}
    for i, (_, c) in enumerate(found.candidates):
        if i not in failures:
            by_class[c].append(i)
    kept = []
    for c, folder in enumerate(found.classes):
        count = len(by_class[c])
        if count:
            kept.append(c)
        if count >= 2:
            continue
        if count == 1:
            message = f"class folder {folder.name} has a single readable image: train only"
        else:
            message = f"class folder {folder.name} has no readable image: left out"
        log.warning(message)
        warnings.append(message)
    skipped = list(found.skipped)
    skipped += [(found.candidates[i][0], r, d) for i, (r, d) in sorted(failures.items())]
    skipped.sort()
    # Written now (it names no image), so a run that stops just below still says why.
    _write_csv(output / "skipped.csv", ("file", "reason", "detail"), skipped)
    if len(kept) < 2:
        raise UserError(
            f"fewer than two classes in {input_dir} have readable images "
            f"(see {output / 'skipped.csv'})"
        )
    class_id = {c: new for new, c in enumerate(kept)}
    rel_of = {i: found.candidates[i][0] for c in kept for i in by_class[c]}
    together = [] if report is None else _groups_left(report)
    train_rel, _ = stratified_split(
        {found.classes[c].name: [rel_of[i] for i in by_class[c]] for c in kept},
        val_split,
        seed,
        together,
    )
    rows = {"train": [], "val": []}
    for c in kept:
        for i in by_class[c]:
            split = "train" if rel_of[i] in train_rel else "val"
            rows[split].append((names[i], class_id[c], rel_of[i]))
    for split in ("train", "val"):
        (output / split).mkdir(exist_ok=True)
        final_dir = str(output / split)
        for name, _, _ in rows[split]:
            os.replace(os.path.join(staging_dir, name), os.path.join(final_dir, name))
    shutil.rmtree(staging)

    # 5. The audit report, then the tables, last and atomically.
    counts = None
    if report is not None:
        place = {rel: split for split in ("train", "val") for _, _, rel in rows[split]}
        report.splits = [place.get(rel, "") for rel in report.files]
        counts = write_report(report, output)
        for line in report.lines():
            log.info(line)
    train_idx = [i for c in kept for i in by_class[c] if rel_of[i] in train_rel]
    mean = sums[train_idx].sum(axis=0) / (len(train_idx) * size * size)
    mean_rgb = {k: float(v) for k, v in zip("RGB", mean, strict=True)}
    _write_csv(
        output / "sources.csv",
        ("image", "split", "class", "source"),
        [(name, split, cid, rel) for split in ("train", "val") for name, cid, rel in rows[split]],
    )
    _write_csv(
        output / "categories.csv",
        ("id", "label"),
        [(class_id[c], found.classes[c].label) for c in kept],
    )
    atomic_write_text(output / "rgb_val.json", json.dumps(mean_rgb, indent=2) + "\n")
    for split in ("train", "val"):
        _write_csv(output / f"{split}.csv", ("image", "class"), [r[:2] for r in rows[split]])
    (output / MARKER).unlink()
    return Summary(
        output_dir=output,
        found=n + len(found.skipped),
        train=len(rows["train"]),
        val=len(rows["val"]),
        skipped=dict(Counter(reason for _, reason, _ in skipped)),
        num_classes=len(kept),
        mean_rgb=mean_rgb,
        left_out=found.left_out,
        warnings=warnings,
        seconds=time.perf_counter() - start,
        audit=counts,
    )


def _audit(found, input_dir: Path, prints, size: int, dedupe: bool, drop_conflicts: bool, failures):
    """Groups the readable images' copies; adds what --dedupe / --drop-conflicts leave out to
    `failures` (index -> (reason, detail)). Returns the `Audit`, its splits not yet known."""
    readable = sorted(prints)
    rel = [found.candidates[i][0] for i in readable]
    report = Audit(
        files=rel,
        paths=[str(input_dir / r) for r in rel],
        classes=[found.classes[found.candidates[i][1]].name for i in readable],
        splits=[""] * len(readable),
        groups=find_groups(
            [prints[i] for i in readable], lambda k: file_digest(str(input_dir / rel[k]), size)
        ),
        notes={},
    )
    for group in report.groups:
        reference = rel[group.members[0]]
        if drop_conflicts and report.spans_classes(group):
            classes = ", ".join(sorted({report.classes[k] for k in group.members}))
            for k in group.members:
                failures[readable[k]] = (CONFLICT, f"copies filed under {classes}")
                report.notes[k] = "--drop-conflicts: copies filed under two or more classes"
        elif dedupe:
            for k in group.members[1:]:
                failures[readable[k]] = (DUPLICATE, f"a copy of {reference} (--dedupe)")
                report.notes[k] = "--dedupe: a smaller copy of the group's reference"
    return report


def _groups_left(report: Audit) -> list[list[str]]:
    """The groups' files still to be split (left-out copies removed)."""
    groups = []
    for group in report.groups:
        members = [report.files[k] for k in group.members if k not in report.notes]
        if len(members) > 1:
            groups.append(members)
    return groups


# --------------------------------------------------------------------------------------------
# Command line.
