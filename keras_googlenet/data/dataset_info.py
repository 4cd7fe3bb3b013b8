"""What a processed folder holds, read and checked before any training starts.

A processed folder (written by `keras-googlenet preprocess` or by the seed's PyTorch
preprocessor) holds `train/`, `val/`, `train.csv` and `val.csv` (columns `image,class`),
`categories.csv` (`id,label`) and the train-set RGB mean in `rgb_val.json` (or `rgb_train.json`).
`read_dataset_info` checks all of it and returns a `DatasetInfo`, with the counts of the
preprocessor's duplicate audit (`audit.json`) when the folder has them; a run folder keeps the class
names and the mean, so evaluation can pass them in and check a CSV without the folder.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from keras_googlenet.config import Config, require
from keras_googlenet.errors import UserError

log = logging.getLogger(__name__)

MEAN_FILES = ("rgb_val.json", "rgb_train.json")  # the seed's name first, then the PyTorch one
_SHOW = 5  # how many file names an error lists


@dataclass(frozen=True)
class DatasetInfo:
    """What the pipeline and the model need to know about a processed folder.

    `train_files`/`val_files` hold full paths, in CSV order, with undecodable files left out
    (listed in `skipped`, with the reason) when `data.on_bad_image` is `skip`.
    """

    input_dir: Path
    class_names: tuple[str, ...]  # index = class id
    mean_rgb: tuple[float, float, float]  # 0-255 scale
    train_size: int
    val_size: int
    train_files: tuple[str, ...] = field(default=(), repr=False)
    train_labels: tuple[int, ...] = field(default=(), repr=False)
    val_files: tuple[str, ...] = field(default=(), repr=False)
    val_labels: tuple[int, ...] = field(default=(), repr=False)
    skipped: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    audit: dict | None = field(default=None, repr=False)  # audit.json's counts, if any

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def resolve_path(base: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else base / path


def _read_csv(path: Path, columns: tuple[str, str]) -> list[tuple[int, dict]]:
    """Rows of a CSV file as (line number, row dict); the named columns must be present."""
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in columns if c not in header]
            if missing:
                raise UserError(
                    f"{path}: expected columns {','.join(columns)}, found "
                    f"{','.join(header) or 'no header'} (missing {', '.join(missing)})"
                )
            reader.fieldnames = header
            rows = [(i + 2, row) for i, row in enumerate(reader)]
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: not a readable CSV file ({e})") from None
    if not rows:
        raise UserError(f"{path}: no rows (the CSV has a header but lists nothing)")
    return rows


def _int_field(path: Path, line: int, row: dict, column: str) -> int:
    text = (row.get(column) or "").strip()
    try:
        return int(text)
    except ValueError:
        try:
            value = float(text)  # pandas may have written "3.0"
        except ValueError:
            value = math.nan
        if value.is_integer():
            return int(value)
        raise UserError(f"{path}: line {line}: {column} must be an integer, got {text!r}") from None


def _read_categories(path: Path) -> tuple[str, ...]:
    rows = _read_csv(path, ("id", "label"))
    by_id: dict[int, str] = {}
    for line, row in rows:
        class_id = _int_field(path, line, row, "id")
        if class_id in by_id:
            raise UserError(f"{path}: line {line}: id {class_id} appears twice")
        by_id[class_id] = (row.get("label") or "").strip()
    expected = set(range(len(by_id)))
    if set(by_id) != expected:
        wrong = sorted(set(by_id) - expected)[:_SHOW]
        raise UserError(
            f"{path}: ids must be 0..{len(by_id) - 1} (one per class), found {wrong} out of range"
        )
    if len(by_id) < 2:
        raise UserError(f"{path}: needs at least 2 classes, found {len(by_id)}")
    return tuple(by_id[i] for i in range(len(by_id)))


def _read_mean(cfg: Config, input_dir: Path) -> tuple[float, float, float]:
    names = (cfg.data.mean_file,) if cfg.data.mean_file else MEAN_FILES
    path = next(
        (resolve_path(input_dir, n) for n in names if resolve_path(input_dir, n).is_file()), None
    )
    if path is None:
        tried = " or ".join(str(resolve_path(input_dir, n)) for n in names)
        raise UserError(f"{tried}: mean file not found (the preprocessor writes it)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if isinstance(data, dict):
        upper = {str(k).upper(): v for k, v in data.items()}
        values = [upper.get(c) for c in "RGB"]
    elif isinstance(data, list):
        values = data
    else:
        values = []
    ok = len(values) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 255 for v in values
    )
    if not ok:
        raise UserError(
            f'{path}: expected {{"R": r, "G": g, "B": b}} with values in 0..255 '
            f"(the train-set mean on the 0-255 scale), got {data!r:.120}"
        )
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def _read_audit(input_dir: Path) -> dict | None:
    """The preprocessing audit's counts (audit.json), or None when the folder has none.

    Only a record for the run (dataset.json): a damaged file is a warning, not an error.
    """
    from preprocessing.audit_report import AUDIT_JSON

    path = input_dir / AUDIT_JSON
    if not path.is_file():
        return None
    try:
        counts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable, the run will not record the audit (%s)", path, e)
        return None
    if not isinstance(counts, dict):
        log.warning("%s: not a JSON object, the run will not record the audit", path)
        return None
    return counts


_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def probe_image(path: str) -> str | None:
    """Why a file cannot be decoded (empty, not an image, truncated), or None if it looks fine.

    Reads the first and last bytes only, so checking a whole dataset takes seconds. Corruption
    inside an otherwise complete file is not caught here (see `data.on_bad_image`).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            if not head:
                return "empty file"
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64))
            tail = f.read()
    except OSError as e:
        return f"cannot read ({e.strerror or e})"
    if not head.startswith(_MAGIC):
        return "not a JPEG, PNG, GIF or BMP image"
    if head.startswith(b"\xff\xd8") and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end marker)"
    if head.startswith(b"\x89PNG") and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    return _declared_size_problem(path)


# TensorFlow decodes a whole image before any crop: a header claiming more pixels than this
# (300 MB as RGB) would take that memory per parallel decode, or abort the process.
MAX_PIXELS = 100_000_000


def _declared_size_problem(path: str) -> str | None:
    """Why the size a header declares is unusable, or None; reads the header only."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # our own limit below; Pillow's would warn or raise first
    try:
        with Image.open(path) as im:
            width, height = im.size
    except Exception as e:  # any header Pillow cannot parse is one TensorFlow cannot decode
        return f"unreadable image header ({type(e).__name__})"
    if width * height > MAX_PIXELS or not width or not height:
        return f"declared size {width}x{height} is too large to decode"
    return None


def read_split(cfg: Config, csv_path: Path, image_dir: Path, num_classes: int, skipped: list):
    """Checked (paths, labels) of one CSV; undecodable files skipped or reported."""
    rows = _read_csv(csv_path, ("image", "class"))
    paths, labels = [], []
    for line, row in rows:
        label = _int_field(csv_path, line, row, "class")
        if not 0 <= label < num_classes:
            raise UserError(
                f"{csv_path}: line {line}: class {label} is outside 0..{num_classes - 1} "
                f"(categories.csv lists {num_classes} classes)"
            )
        name = (row.get("image") or "").strip()
        if not name:
            raise UserError(f"{csv_path}: line {line}: empty image name")
        paths.append(str(resolve_path(image_dir, name)))
        labels.append(label)
    # Threads: on a network file system the checks are latency-bound.
    with ThreadPoolExecutor(max_workers=16) as pool:
        exists = list(pool.map(os.path.isfile, paths))
        missing = [p for p, e in zip(paths, exists, strict=True) if not e]
        if missing:
            raise UserError(
                f"{csv_path}: {len(missing)} of {len(paths)} listed files are missing from "
                f"{image_dir}, e.g. {', '.join(Path(p).name for p in missing[:_SHOW])}"
            )
        reasons = list(pool.map(probe_image, paths))
    bad = [(p, r) for p, r in zip(paths, reasons, strict=True) if r]
    if bad and cfg.data.on_bad_image == "fail":
        shown = "; ".join(f"{p}: {r}" for p, r in bad[:_SHOW])
        raise UserError(
            f"{csv_path}: {len(bad)} undecodable image(s) (data.on_bad_image=fail): {shown}"
        )
    if bad:
        shown = "; ".join(f"{Path(p).name}: {r}" for p, r in bad[:_SHOW])
        log.warning("%s: skipping %d undecodable image(s): %s", csv_path, len(bad), shown)
        skipped.extend(bad)
        keep = [i for i, r in enumerate(reasons) if not r]
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
        if not paths:
            raise UserError(f"{csv_path}: every listed image is undecodable")
    return tuple(paths), tuple(labels)


def read_dataset_info(
    cfg: Config,
    *,
    class_names: tuple[str, ...] | None = None,
    mean_rgb: tuple[float, float, float] | None = None,
    splits: tuple[str, ...] = ("train", "val"),
) -> DatasetInfo:
    """Reads and checks a processed folder before any training starts.

    Checks: the CSVs exist, have the right columns and at least one row; class ids are within
    0..N-1 of `categories.csv` (ids exactly 0..N-1); `model.num_classes`, if set, equals N; every
    listed file exists; the mean file is present with three values in 0..255; every file starts
    like an image and is not truncated (skipped with a warning, or an error with
    `data.on_bad_image: fail`).

    Args:
        cfg: the config (`data.*`, `model.num_classes`).
        class_names, mean_rgb: known already (a run folder keeps them): categories.csv and the
            mean file are then not read, so a CSV can be checked without its dataset folder.
        splits: which of `train` and `val` to list (evaluation needs only `val`).

    Returns:
        A `DatasetInfo` (an unlisted split is empty).

    Raises:
        UserError: naming the file (and line) at fault.
    """
    d = cfg.data
    require(cfg, "data.input_dir")
    input_dir = Path(d.input_dir).expanduser()
    needs_folder = class_names is None or mean_rgb is None or "train" in splits
    if needs_folder and not input_dir.is_dir():
        raise UserError(f"{input_dir}: data.input_dir is not a folder")
    if class_names is None:
        categories = resolve_path(input_dir, d.categories_csv)
        class_names = _read_categories(categories)
        if cfg.model.num_classes is not None and cfg.model.num_classes != len(class_names):
            raise UserError(
                f"{categories}: lists {len(class_names)} classes but model.num_classes is "
                f"{cfg.model.num_classes} (set model.num_classes to null to take it from the file)"
            )
    n = len(class_names)
    if mean_rgb is None:
        mean_rgb = _read_mean(cfg, input_dir)
    skipped: list = []
    train_files, train_labels, val_files, val_labels = (), (), (), ()
    if "train" in splits:
        train_files, train_labels = read_split(
            cfg,
            resolve_path(input_dir, d.train_csv),
            resolve_path(input_dir, d.train_dir),
            n,
            skipped,
        )
    if "val" in splits:
        val_files, val_labels = read_split(
            cfg,
            resolve_path(input_dir, d.valid_csv),
            resolve_path(input_dir, d.valid_dir),
            n,
            skipped,
        )
    return DatasetInfo(
        input_dir=input_dir,
        class_names=tuple(class_names),
        mean_rgb=tuple(mean_rgb),
        train_size=len(train_files),
        val_size=len(val_files),
        train_files=train_files,
        train_labels=train_labels,
        val_files=val_files,
        val_labels=val_labels,
        skipped=tuple(skipped),
        audit=_read_audit(input_dir) if input_dir.is_dir() else None,
    )
