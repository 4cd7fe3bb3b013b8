"""The input pipeline: tf.data datasets from a processed folder's CSV files.

A processed folder (written by `preprocessing.image_dir_preprocessor` or by the seed's PyTorch
preprocessor) holds `train/`, `val/`, `train.csv` and `val.csv` (columns `image,class`),
`categories.csv` (`id,label`) and the train-set RGB mean in `rgb_val.json` (or `rgb_train.json`).

`read_dataset_info` checks all of it before training starts. The datasets ship raw pixels:
images are uint8, `[batch, input_size, input_size, 3]`, on the 0-255 scale; the model's first
layer subtracts the mean and divides by `data.std_rgb` (`build_googlenet(..., mean_rgb=...)`),
so an exported model takes the same raw images. Labels are a dict keyed by the model's outputs
(`{"main", "aux_4a", "aux_4d"}`, int32 class ids), as Keras 3 matches labels to outputs by name.

Training order, per input pipeline (one per worker):

    file list --shuffle (whole list, seeded: the same on every worker)--> shard over workers
    --> read + decode (+ first crop, JPEG window only) + augment, parallel --> batch (drop
    remainder) --> labels per head --> prefetch
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

import tensorflow as tf

from keras_googlenet.albumentations_ops import compile_albumentations
from keras_googlenet.augment import Augment, compile_augment
from keras_googlenet.config import Config, ConfigError, require
from keras_googlenet.errors import UserError

log = logging.getLogger(__name__)

MEAN_FILES = ("rgb_val.json", "rgb_train.json")  # the seed's name first, then the PyTorch one
HEADS = ("main", "aux_4a", "aux_4d")
_SHOW = 5  # how many file names an error lists

# --------------------------------------------------------------------------------------------
# Reading and checking the processed folder.


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

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _resolve(base: Path, name: str) -> Path:
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
    path = next((_resolve(input_dir, n) for n in names if _resolve(input_dir, n).is_file()), None)
    if path is None:
        tried = " or ".join(str(_resolve(input_dir, n)) for n in names)
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
    return None


def _read_split(cfg: Config, csv_path: Path, image_dir: Path, num_classes: int, skipped: list):
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
        paths.append(str(_resolve(image_dir, name)))
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


def read_dataset_info(cfg: Config) -> DatasetInfo:
    """Reads and checks a processed folder before any training starts.

    Checks: the CSVs exist, have the right columns and at least one row; class ids are within
    0..N-1 of `categories.csv` (ids exactly 0..N-1); `model.num_classes`, if set, equals N; every
    listed file exists; the mean file is present with three values in 0..255; every file starts
    like an image and is not truncated (skipped with a warning, or an error with
    `data.on_bad_image: fail`).

    Returns:
        A `DatasetInfo`.

    Raises:
        UserError: naming the file (and line) at fault.
    """
    require(cfg, "data.input_dir")
    input_dir = Path(cfg.data.input_dir).expanduser()
    if not input_dir.is_dir():
        raise UserError(f"{input_dir}: data.input_dir is not a folder")
    d = cfg.data
    categories = _resolve(input_dir, d.categories_csv)
    class_names = _read_categories(categories)
    n = len(class_names)
    if cfg.model.num_classes is not None and cfg.model.num_classes != n:
        raise UserError(
            f"{categories}: lists {n} classes but model.num_classes is {cfg.model.num_classes} "
            "(set model.num_classes to null to take it from the file)"
        )
    mean_rgb = _read_mean(cfg, input_dir)
    skipped: list = []
    train_files, train_labels = _read_split(
        cfg, _resolve(input_dir, d.train_csv), _resolve(input_dir, d.train_dir), n, skipped
    )
    val_files, val_labels = _read_split(
        cfg, _resolve(input_dir, d.valid_csv), _resolve(input_dir, d.valid_dir), n, skipped
    )
    return DatasetInfo(
        input_dir=input_dir,
        class_names=class_names,
        mean_rgb=mean_rgb,
        train_size=len(train_files),
        val_size=len(val_files),
        train_files=train_files,
        train_labels=train_labels,
        val_files=val_files,
        val_labels=val_labels,
        skipped=tuple(skipped),
    )


# --------------------------------------------------------------------------------------------
# Batch sizes and distribution.


def global_batch_size(cfg: Config, num_replicas: int) -> int:
    """The batch summed over all replicas, from `data.batch_size` and `data.batch_size_is`.

    Raises:
        ConfigError: a global batch that the replicas cannot share evenly.
    """
    b = cfg.data.batch_size
    if cfg.data.batch_size_is == "per_replica":
        return b * num_replicas
    if b % num_replicas:
        raise ConfigError(
            f"config: 'data.batch_size' {b} (global) is not divisible by the {num_replicas} "
            "replicas; change it or set data.batch_size_is: per_replica"
        )
    return b


def distribute_for_fit(strategy: tf.distribute.Strategy, dataset_fn):
    """What to pass to `model.fit` under `strategy`.

    Args:
        strategy: the training strategy (default, Mirrored or MultiWorkerMirrored).
        dataset_fn: `fn(input_context) -> tf.data.Dataset`, e.g.
            `lambda ctx: make_train_dataset(cfg, info, input_context=ctx)`; the dataset must be
            batched per replica and sharded by `input_context` (the datasets of this module are).

    Returns:
        The plain dataset with one replica (Keras then knows its length for the progress bar);
        else `strategy.distribute_datasets_from_function(dataset_fn)`: each worker builds its
        own pipeline over its shard of the files, which Keras 3 `fit` accepts as is. (A plain
        global-batch dataset would also work, but under MultiWorkerMirroredStrategy Keras would
        auto-shard it by element: every worker would read and decode every file.)
    """
    if strategy.num_replicas_in_sync == 1:
        return dataset_fn(tf.distribute.InputContext())
    return strategy.distribute_datasets_from_function(dataset_fn)


def _batch_for(cfg: Config, input_context, num_replicas: int) -> tuple[int, int, int, int]:
    """(batch of this pipeline, examples per step of this pipeline, pipelines, pipeline id)."""
    if input_context is None:
        batch = global_batch_size(cfg, num_replicas)
        return batch, batch, 1, 0
    replicas = input_context.num_replicas_in_sync
    pipelines = input_context.num_input_pipelines
    per_replica = input_context.get_per_replica_batch_size(global_batch_size(cfg, replicas))
    return (
        per_replica,
        per_replica * (replicas // pipelines),
        pipelines,
        input_context.input_pipeline_id,
    )


# --------------------------------------------------------------------------------------------
# Decoding.


def decode_rgb(contents: tf.Tensor) -> tf.Tensor:
    """JPEG/PNG/GIF/BMP bytes -> HxWx3 uint8 (grayscale and RGBA become RGB; GIF: first frame).

    The format comes from the bytes, not the file name (PNG content under a .jpg name works).
    """
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


# Decode only the crop window when it covers less than this fraction of the image.
_WINDOW_DECODE_BELOW = 0.5


def _window_decode_pays(augment: Augment, sample_path: str) -> bool:
    """Whether decoding only the first crop's window is worth its extra steps (reading the
    JPEG header, conditionals), judged once from one file: processed folders hold one size.

    Measured (bench/pipeline.py, `always_window`): cropping 224 out of 256 (77% of the area)
    the window decode is slower than decoding everything; it pays off for small windows
    (random_resized_crop, large source images).
    """
    if not augment.crops_first:
        return False
    step = augment.steps[0]
    if step.name == "random_resized_crop":
        return True
    try:
        h, w, _ = tf.io.extract_jpeg_shape(tf.io.read_file(sample_path)).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
        return False  # not a JPEG
    size = dict(step.params)["size"]
    return size * size < _WINDOW_DECODE_BELOW * h * w


def _decode_and_augment(
    contents, seed, augment: Augment, albumentations=None, window_decode: bool = True
) -> tf.Tensor:
    """Decodes one file and applies the transforms, then albumentations.

    With `window_decode`, a first crop of under half a JPEG's area decodes only its window:
    `decode_and_crop_jpeg` skips the pixels outside it, giving the same window as decoding the
    whole image and cutting it, with the same pixels but for chroma rounding (a few levels)
    along the window's left/top edge.
    """
    if window_decode and augment.crops_first:
        is_jpeg = tf.equal(tf.strings.substr(contents, 0, 3), b"\xff\xd8\xff")

        def whole():
            return augment(decode_rgb(contents), seed, stop=1)

        def window_only():
            shape = tf.io.extract_jpeg_shape(contents)

            window = augment.first_window(shape, seed)

            def cropped():
                pixels = tf.io.decode_and_crop_jpeg(contents, window, channels=3)
                return augment.finish_first(pixels)

            area = tf.cast(window[2] * window[3], tf.float32)
            small = area < _WINDOW_DECODE_BELOW * tf.cast(shape[0] * shape[1], tf.float32)
            return tf.cond(augment.fits_window(shape) & small, cropped, whole)

        image = tf.cond(is_jpeg, window_only, whole)
        image.set_shape([None, None, 3])
        image = augment(image, seed, start=1)
    else:
        image = augment(decode_rgb(contents), seed)
    if albumentations is not None:
        image = albumentations(image, tf.random.experimental.stateless_fold_in(seed, 7919))
    return image


def _check_output_size(augment: Augment, albumentations, cfg: Config, key: str) -> None:
    size = cfg.model.input_size
    out = augment.output_size
    if out is not None and out != size and albumentations is None:
        raise ConfigError(
            f"config: '{key}' makes {out}x{out} images but model.input_size is {size}; "
            f"end the list with a crop or resize of size {size}"
        )
    if out is None and albumentations is None:
        raise ConfigError(
            f"config: '{key}' sets no image size; add e.g. {{name: center_crop, size: {size}}} "
            f"or {{name: resize, size: {size}}} (model.input_size is {size})"
        )


def _check_albumentations_output(cfg, info, augment, albumentations) -> None:
    """Runs the albumentations path once on the first training image: a wrong output size
    is a config mistake, better reported now than as skipped images mid-epoch."""
    size = cfg.model.input_size
    contents = tf.io.read_file(info.train_files[0])
    out = _decode_and_augment(contents, tf.constant([0, 0], tf.int64), augment, albumentations)
    if tuple(out.shape) != (size, size, 3):
        raise ConfigError(
            f"config: 'data.train_augment' + 'data.albumentations' make {tuple(out.shape)} "
            f"images from {info.train_files[0]}, but model.input_size is {size}"
        )


def _labels(images, labels, heads):
    labels = tf.cast(labels, tf.int32)
    return images, {h: labels for h in heads}


def _options(cfg: Config, *, deterministic: bool, sharded: bool) -> tf.data.Options:
    options = tf.data.Options()
    # Out-of-order parallel map is faster; a reproducible run needs the order fixed.
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True
    if sharded:  # we shard by file ourselves; stop tf.distribute from sharding again
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options


def _heads(cfg: Config) -> tuple[str, ...]:
    return HEADS if cfg.model.aux_heads else HEADS[:1]


# --------------------------------------------------------------------------------------------
# The datasets.


def train_files(cfg: Config, info: DatasetInfo, *, input_context=None, num_replicas: int = 1):
    """The (path, label) dataset one training pipeline reads per epoch, before decoding.

    The whole file list is shuffled with `data.seed`, the same way on every worker (a new order
    each epoch), then cut to a multiple of what all pipelines consume per step and sharded, so
    every pipeline gets the same number of full batches and each example is read at most once
    per epoch across workers (the few left over change each epoch, like a dropped remainder).
    """
    _, per_step, pipelines, pipeline_id = _batch_for(cfg, input_context, num_replicas)
    n = info.train_size
    usable = (n // (per_step * pipelines)) * per_step * pipelines
    if usable == 0:
        raise ConfigError(
            f"config: 'data.batch_size' {cfg.data.batch_size} is larger than the "
            f"{n} training images (drop_remainder would leave no batch)"
        )
    files = tf.data.Dataset.from_tensor_slices(
        (list(info.train_files), tf.constant(info.train_labels, tf.int32))
    )
    if not cfg.data.cache:
        files = files.shuffle(n, seed=cfg.data.seed, reshuffle_each_iteration=True)
    files = files.take(usable)
    if pipelines > 1:
        files = files.shard(pipelines, pipeline_id)
    return files


def make_train_dataset(
    cfg: Config, info: DatasetInfo, *, input_context=None, num_replicas: int = 1
) -> tf.data.Dataset:
    """The training dataset: `(images, labels)` batches, shuffled and augmented.

    Args:
        cfg: the config (`data.*`, `model.input_size`, `model.aux_heads`).
        info: from `read_dataset_info`.
        input_context: given by `distribute_for_fit`: batch per replica and this pipeline's
            shard of the files. None: one pipeline, global batch over `num_replicas`.
        num_replicas: replicas sharing the global batch when `input_context` is None.

    Returns:
        A dataset of `(uint8 [B, S, S, 3], {"main": int32 [B], ...})`, S = model.input_size,
        raw 0-255 pixels. One pass over the train CSV per iteration (reshuffled each time);
        infinite (`repeat`) when `data.steps_per_epoch` is set.

    Raises:
        ConfigError: augmentation lists that do not produce model.input_size images.
    """
    d = cfg.data
    augment = compile_augment(d.train_augment, "data.train_augment")
    albumentations = compile_albumentations(
        d.albumentations, "data.albumentations", reseed=d.deterministic
    )
    _check_output_size(augment, albumentations, cfg, "data.train_augment")
    if albumentations is not None:
        _check_albumentations_output(cfg, info, augment, albumentations)
    batch, per_step, pipelines, pipeline_id = _batch_for(cfg, input_context, num_replicas)
    size = cfg.model.input_size

    files = train_files(cfg, info, input_context=input_context, num_replicas=num_replicas)
    aug_seed = None
    if d.deterministic:
        aug_seed = d.seed + 1_000_003 * pipeline_id
    if d.cache:
        # Decoded whole images are cached; shuffling must then come after the cache (else every
        # epoch would replay the first epoch's order) and hold decoded images.
        files = files.map(
            lambda p, y: (decode_rgb(tf.io.read_file(p)), y), num_parallel_calls=tf.data.AUTOTUNE
        )
        if d.on_bad_image == "skip":
            files = files.ignore_errors(log_warning=True)
        files = files.cache()
        buffer = min(d.shuffle_buffer, info.train_size) or 1
        files = files.shuffle(buffer, seed=d.seed, reshuffle_each_iteration=True)
    if d.steps_per_epoch is not None:
        files = files.repeat()
    seeds = tf.data.Dataset.random(seed=aug_seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((files, seeds))

    window = _window_decode_pays(augment, info.train_files[0])

    def load(item, seed):
        source, label = item
        if d.cache:
            image = augment(source, seed)
            if albumentations is not None:
                image = albumentations(image, tf.random.experimental.stateless_fold_in(seed, 7919))
        else:
            contents = tf.io.read_file(source)
            image = _decode_and_augment(contents, seed, augment, albumentations, window)
        return tf.ensure_shape(image, [size, size, 3]), label

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if d.on_bad_image == "skip":
        # Files that looked fine to `probe_image` but fail to decode: dropped, one warning each.
        ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(batch, drop_remainder=True, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda x, y: _labels(x, y, _heads(cfg)))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(
        _options(cfg, deterministic=d.deterministic, sharded=input_context is not None)
    )


def make_val_dataset(
    cfg: Config,
    info: DatasetInfo,
    *,
    csv_path: str | os.PathLike | None = None,
    input_context=None,
    num_replicas: int = 1,
) -> tf.data.Dataset:
    """The validation dataset: every listed image once, in CSV order, deterministic.

    Args:
        cfg: the config (`data.val_augment`, batch size, `model.input_size`).
        info: from `read_dataset_info` (its validation files are used unless `csv_path`).
        csv_path: another CSV (columns `image,class`) of files in `data.valid_dir`, checked the
            same way (e.g. a test split for evaluation).
        input_context: batch per replica. Validation is not sharded across workers: each worker
            evaluates the whole set (the metrics are the same; it keeps every worker's step
            count equal, which collective ops need).
        num_replicas: replicas sharing the global batch when `input_context` is None.

    Returns:
        A dataset of `(uint8 [B, S, S, 3], {"main": int32 [B], ...})`; the last batch may be
        smaller.
    """
    d = cfg.data
    augment = compile_augment(d.val_augment, "data.val_augment")
    _check_output_size(augment, None, cfg, "data.val_augment")
    batch, _, _, _ = _batch_for(cfg, input_context, num_replicas)
    size = cfg.model.input_size
    paths, labels = info.val_files, info.val_labels
    if csv_path is not None:
        image_dir = _resolve(info.input_dir, d.valid_dir)
        paths, labels = _read_split(cfg, Path(csv_path), image_dir, info.num_classes, [])
    fixed_seed = tf.constant([0, 0], tf.int64)  # val transforms are deterministic anyway
    window = _window_decode_pays(augment, paths[0])

    def load(path, label):
        image = _decode_and_augment(tf.io.read_file(path), fixed_seed, augment, None, window)
        return tf.ensure_shape(image, [size, size, 3]), label

    ds = tf.data.Dataset.from_tensor_slices((list(paths), tf.constant(labels, tf.int32)))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if d.on_bad_image == "skip":
        ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(batch, drop_remainder=False)
    ds = ds.map(lambda x, y: _labels(x, y, _heads(cfg)))
    if d.cache:
        ds = ds.cache()
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_options(cfg, deterministic=True, sharded=input_context is not None))
