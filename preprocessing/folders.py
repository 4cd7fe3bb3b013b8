"""Finding class folders and their files, and the seeded stratified train/val split.

Layout: `INPUT/NNN.label/*` (Caltech256; the label is the text after the first dot) or plain
`INPUT/label/*`. Class ids follow the sorted folder names, so `001.ak47` is id 0. Every entry
met is either a candidate image or a skipped entry with a reason; nothing is dropped unseen.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

# Reason codes for entries skipped before any decoding (the `reason` column of skipped.csv).
HIDDEN = "hidden"
SUBFOLDER = "subfolder"
OUTSIDE = "not in a class folder"

CLUTTER_LABEL = "clutter"  # Caltech256's 257.clutter: background images, not a class
# Folders that archive tools and file managers leave behind; never classes.
SYSTEM_FOLDERS = {"__MACOSX", "$RECYCLE.BIN", "System Volume Information"}

_NUMBERED = re.compile(r"(\d+)\.(.+)")


@dataclass(frozen=True)
class ClassFolder:
    """One class folder: its name on disk and the label parsed from it."""

    name: str
    label: str


@dataclass
class Scan:
    """What `scan_input` found.

    Attributes:
        classes: class folders in sorted name order (clutter left out unless asked).
        candidates: (path relative to the input, index into `classes`) for every file in a
            class folder that is not hidden, in sorted order; each is decoded later.
        skipped: (relative path, reason, detail) for entries skipped without decoding.
        left_out: (folder name, number of entries) for folders deliberately not used.
    """

    classes: list[ClassFolder] = field(default_factory=list)
    candidates: list[tuple[str, int]] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    left_out: list[tuple[str, int]] = field(default_factory=list)


def parse_label(folder_name: str) -> str:
    """`"001.ak47"` -> `"ak47"`; `"cats"` -> `"cats"`; `"045.computer-keyboard"` keeps dashes."""
    match = _NUMBERED.fullmatch(folder_name)
    return match.group(2) if match else folder_name


def _is_hidden(name: str) -> bool:
    # Dot files include macOS's .DS_Store and the "._name" AppleDouble twins of real images.
    return name.startswith(".") or name in SYSTEM_FOLDERS


def scan_input(input_dir: str | os.PathLike, include_clutter: bool = False) -> Scan:
    """Lists class folders and their files without opening any image.

    Args:
        input_dir: the folder of class folders.
        include_clutter: use `257.clutter` (any folder whose label is "clutter") as a class.

    Returns:
        A `Scan`; its `classes` may be empty (the caller decides whether that is an error).
    """
    root = Path(input_dir)
    result = Scan()
    folders = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if _is_hidden(entry.name):
            result.skipped.append((entry.name, HIDDEN, ""))
        elif entry.is_dir():
            folders.append(entry)
        else:
            result.skipped.append((entry.name, OUTSIDE, "files must be inside a class folder"))
    for folder in folders:
        label = parse_label(folder.name)
        entries = sorted(os.scandir(folder.path), key=lambda e: e.name)
        if label.lower() == CLUTTER_LABEL and not include_clutter:
            result.left_out.append((folder.name, len(entries)))
            continue
        class_index = len(result.classes)
        result.classes.append(ClassFolder(folder.name, label))
        for entry in entries:
            rel = f"{folder.name}/{entry.name}"
            if _is_hidden(entry.name):
                result.skipped.append((rel, HIDDEN, ""))
            elif entry.is_dir():
                result.skipped.append((rel, SUBFOLDER, "class folders are not searched deeper"))
            else:
                result.candidates.append((rel, class_index))
    return result


def val_count(num_images: int, val_split: float) -> int:
    """How many of a class's images go to validation.

    The fraction is rounded, then kept within [1, n - 1] so that every class with two or more
    images is in both splits; a class with a single image gives 0 (it goes to train).
    """
    if num_images < 2:
        return 0
    return min(num_images - 1, max(1, int(num_images * val_split + 0.5)))


def stratified_split(
    files_by_class: dict[str, list[str]],
    val_split: float,
    seed: int,
    groups: list[list[str]] | None = None,
) -> tuple[set[str], set[str]]:
    """Splits each class's files into train and val with the same fraction, reproducibly.

    Each class is shuffled by its own generator seeded from (seed, folder name), so a class's
    split does not change when other classes are added, removed or lose files.

    Files of one group (copies of one image, found by the audit) go to the same side, so no
    copy is trained on and validated on. A group is placed with the class of its first file
    (sorted), counts its whole size against that class's validation share, and goes to val
    only while it fits in it: without groups this is the plain per-class split.

    Args:
        files_by_class: folder name -> its readable files (relative paths).
        val_split: fraction of each class that goes to validation (see `val_count`).
        seed: the split seed.
        groups: lists of files that must land on one side (a file in no group is alone).

    Returns:
        (train files, val files).
    """
    unit_of: dict[str, list[str]] = {}
    for group in groups or []:
        members = sorted(group)
        for name in members:
            unit_of[name] = members
    train, val = set(), set()
    for folder, files in files_by_class.items():
        # A unit is handled by the class holding its first file, so exactly once.
        units = [unit_of.get(f, [f]) for f in sorted(files)]
        units = [u for u, f in zip(units, sorted(files), strict=True) if u[0] == f]
        random.Random(f"{seed}:{folder}").shuffle(units)
        room = val_count(len(files), val_split)
        for unit in units:
            if len(unit) <= room:
                room -= len(unit)
                val.update(unit)
            else:
                train.update(unit)
    return train, val


def unique_names(count: int, seed: int, suffix: str = ".jpg") -> list[str]:
    """`count` distinct random file names (16 hex digits), the same ones for the same seed."""
    rng = random.Random(f"names:{seed}")
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        name = f"{rng.getrandbits(64):016x}{suffix}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names
