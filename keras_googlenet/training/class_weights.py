"""Per-class loss weights (`training.class_weight`), applied to every head.

Keras's `fit(class_weight=...)` refuses models with several outputs, so the weights become a
per-image `sample_weight` in the training dataset: one tensor, which Keras applies to each
head's loss (main and both auxiliary heads) and to the weighted metrics. Validation is not
weighted: its numbers stay plain accuracies.

    balanced             n_images / (n_classes * images_of_class), from train.csv
    {name or id: w}      the classes named, others 1.0
    FILE                 the same mapping as YAML/JSON, or a CSV with columns class,weight
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

import yaml

from keras_googlenet.errors import ConfigError, UserError

log = logging.getLogger("keras_googlenet")
KEY = "training.class_weight"
TABLE = "class_weights.csv"  # in the run folder: id, label, weight


def for_run(cfg, info, table: Path | None) -> list[float] | None:
    """The run's class weights (None without `training.class_weight`), logged, and written to
    `table` (the chief's run folder; None on other workers)."""
    spec = cfg.training.class_weight
    if spec is None:
        return None
    labels = getattr(info, "train_labels", ())
    if spec == "balanced" and not labels:
        raise UserError(f"{KEY}: 'balanced' needs the training labels (train.csv)")
    weights = resolve_class_weights(spec, info.class_names, labels)
    log_class_weights(weights, info.class_names, table)
    return weights


def resolve_class_weights(spec, class_names, train_labels, source: str = "config") -> list[float]:
    """The weight of each class id, from `training.class_weight`.

    Args:
        spec: "balanced", a mapping {class name or id: weight}, or a file path.
        class_names: the dataset's class names, in id order.
        train_labels: the training images' class ids (for "balanced").
        source: where the config came from, for messages.

    Raises:
        ConfigError: one line naming the key: an unknown class, a missing or unreadable file,
            a weight that is not a non-negative number.
    """
    n = len(class_names)
    if spec == "balanced":
        counts = Counter(int(c) for c in train_labels)
        total = sum(counts.values())
        # A class with no training image gets weight 1: it contributes no loss anyway.
        return [total / (n * counts[c]) if counts[c] else 1.0 for c in range(n)]
    key = KEY
    if isinstance(spec, str):
        key = f"{KEY} ({spec})"
        spec = _read_file(Path(spec), source)
    weights = [1.0] * n
    ids = {name: i for i, name in enumerate(class_names)}
    for name, weight in spec.items():
        cid = ids.get(str(name))
        if cid is None and isinstance(name, int) and 0 <= name < n:
            cid = name
        if cid is None:
            raise ConfigError(f"{source}: '{key}.{name}': no such class (ids 0..{n - 1} or names)")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ConfigError(f"{source}: '{key}.{name}' must be a non-negative number")
        weights[cid] = float(weight)
    return weights


def _read_file(path: Path, source: str) -> dict:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{source}: '{KEY}': cannot read {path} ({e.strerror or e})") from None
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if rows and {"class", "weight"} <= set(rows[0]):
            try:
                return {_id_or_name(r["class"]): float(r["weight"]) for r in rows}
            except ValueError:
                pass
        raise ConfigError(f"{source}: '{KEY}': {path} needs columns class,weight with numbers")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{KEY}': {path} must hold a mapping class: weight")
    return data


def _id_or_name(text: str):
    return int(text) if text.strip().isdigit() else text


def with_class_weights(dataset, weights):
    """(images, labels) batches -> (images, labels, sample_weight) from labels["main"] (class
    ids, or soft label rows: then the rows' mix of the weights); `dataset` itself if `weights`
    is None."""
    import tensorflow as tf

    if weights is None:
        return dataset

    table = tf.constant(weights, tf.float32)

    def add(images, labels):
        y = labels["main"]
        if y.dtype.is_floating:
            return images, labels, tf.reduce_sum(y * table, axis=-1)
        return images, labels, tf.gather(table, tf.cast(y, tf.int32))

    return dataset.map(add, num_parallel_calls=tf.data.AUTOTUNE)


def log_class_weights(weights, class_names, csv_path: Path | None) -> None:
    """One log line (range, lightest and heaviest class) and the whole table as CSV."""
    low = min(range(len(weights)), key=weights.__getitem__)
    high = max(range(len(weights)), key=weights.__getitem__)
    log.info(
        "class weights on every head: %d classes, %.3g (%s) to %.3g (%s)",
        len(weights),
        weights[low],
        class_names[low],
        weights[high],
        class_names[high],
    )
    if csv_path is not None:
        with open(csv_path, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["id", "label", "weight"])
            out.writerows(
                (i, name, w) for i, (name, w) in enumerate(zip(class_names, weights, strict=True))
            )
