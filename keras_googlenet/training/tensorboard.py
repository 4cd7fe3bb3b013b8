"""TensorBoard for a run: epoch-keyed scalars, the model graph, an image grid, and purging the
summaries of an epoch that a crash made run twice."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np


class RunTensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback with epoch-keyed summaries only, flushed every epoch.

    Everything is written at step = epoch (0-based), so curves continue where they stopped after
    a restart (batch-level steps restart from 0 in each `fit` and would repeat). The summaries
    Keras writes at the end of each validation, keyed by optimizer steps, are left out for the
    same reason. The learning rate and images/s come from `EpochStats` through the logs.
    `profile_batches` [first, last] traces those training steps with the profiler.
    """

    def __init__(self, log_dir, profile_batches=None):
        super().__init__(
            log_dir=str(log_dir),
            update_freq="epoch",
            write_graph=False,  # does nothing in Keras 3; see write_model_graph
            write_steps_per_second=False,
            # logging.profile_batches: a trace of these training steps of each fit, in
            # tensorboard/train/plugins/profile/ (TensorBoard's Profile tab).
            profile_batch=tuple(profile_batches) if profile_batches else 0,
        )

    # `_pop_writer` and `_writers` are Keras internals (keras is capped below its next minor
    # release in pyproject.toml): the callback has no public switch for either behaviour.
    def on_test_end(self, logs=None):
        self._pop_writer()

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        # The default writer flushes every 2 minutes; a crash would lose finished epochs.
        for writer in self._writers.values():
            writer.flush()


def write_model_graph(model: keras.Model, log_dir: str | Path) -> None:
    """Writes the inference graph of `model` for TensorBoard's Graphs tab (tensorboard/train)."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32, name="image")
    concrete = tf.function(lambda images: model(images, training=False)).get_concrete_function(spec)
    writer = tf.summary.create_file_writer(str(Path(log_dir) / "train"))
    with writer.as_default():
        tf.summary.graph(concrete.graph)
    writer.flush()
    writer.close()


def image_grid(images: np.ndarray, columns: int = 4) -> np.ndarray:
    """Tiles a batch of HxWx3 images into one image, `columns` wide (blank cells at the end)."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    rows = -(-n // columns)
    grid = np.zeros((rows * h, columns * w, c), images.dtype)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = image
    return grid


def write_image_grid(images, log_dir: str | Path, tag: str = "augmented_train_images") -> None:
    """Writes one grid of (augmented, un-normalized) training images to tensorboard/train."""
    import tensorflow as tf

    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = np.clip(images, 0, 255).astype(np.uint8)
    grid = image_grid(images[:16])
    writer = tf.summary.create_file_writer(str(Path(log_dir) / "train"))
    with writer.as_default():
        tf.summary.image(tag, grid[None], step=0)
    writer.flush()
    writer.close()


def event_files(log_dir: str | Path) -> list[Path]:
    """TensorBoard event files under `log_dir`, oldest first."""
    return sorted(Path(log_dir).rglob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)


def purge_events(log_dir: str | Path, from_step: int) -> int:
    """Drops summaries at `step >= from_step` from the event files under `log_dir`.

    Called before a resumed run reruns epoch `from_step`, so that no step appears twice (the
    killed run may have written that epoch's summaries before its backup). Files are rewritten
    atomically; a record cut short by the kill ends the file. Returns the summaries dropped (the
    files deleted when `from_step` is 0).
    """
    import tensorflow as tf

    if from_step <= 0:  # nothing survives: the graph and the image grid are written again
        files = event_files(log_dir)
        for path in files:
            path.unlink()
        return len(files)
    dropped = 0
    for path in event_files(log_dir):
        kept, changed = [], False
        try:
            for record in tf.data.TFRecordDataset(str(path)):
                event = tf.compat.v1.Event.FromString(record.numpy())
                if event.HasField("summary") and event.step >= from_step:
                    dropped += 1
                    changed = True
                    continue
                kept.append(record.numpy())
        except tf.errors.DataLossError:
            changed = True
        if not changed:
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for record in kept:
                writer.write(record)
        os.replace(tmp, path)
    return dropped
