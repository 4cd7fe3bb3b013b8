"""TensorBoard for a run: epoch-keyed scalars, the model graph, an image grid, and purging the
summaries of an epoch that a crash made run twice."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np


class RunTensorBoard(keras.callbacks.Callback):
    """Epoch-keyed scalars for TensorBoard, flushed every epoch, and an optional profile.

    Every value of the epoch's logs is written at step = epoch (0-based) as `epoch_NAME`:
    training values under `train/`, `val_NAME` ones as `epoch_NAME` under `validation/`
    (the layout of Keras's own callback, so TensorBoard pairs the curves), so curves continue
    where they stopped after a restart. The learning rate and images/s come from `EpochStats`
    through the logs. `profile_batches` [first, last] traces those training steps of each
    `fit`'s first epoch with the profiler (TensorBoard's Profile tab, under train/plugins/).
    """

    def __init__(self, log_dir, profile_batches=None):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.profile_batches = tuple(profile_batches) if profile_batches else None
        self._writers = {}
        self._profiling = False
        self._profiled = False

    def _writer(self, split: str):
        import tensorflow as tf

        if split not in self._writers:
            self._writers[split] = tf.summary.create_file_writer(str(self.log_dir / split))
        return self._writers[split]

    def on_train_batch_begin(self, batch, logs=None):
        if self.profile_batches is None or self._profiled:
            return
        first, last = self.profile_batches
        if batch == first and not self._profiling:
            import tensorflow as tf

            tf.profiler.experimental.start(str(self.log_dir / "train"))
            self._profiling = True
        elif batch > last:
            self._stop_profile()

    def _stop_profile(self):
        if self._profiling:
            import tensorflow as tf

            tf.profiler.experimental.stop()
            self._profiling = False
            self._profiled = True

    def on_test_begin(self, logs=None):
        self._stop_profile()

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        self._stop_profile()
        values = {"train": {}, "validation": {}}
        for key, value in (logs or {}).items():
            split, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            try:
                values[split][name] = float(value)
            except (TypeError, ValueError):
                continue
        for split, scalars in values.items():
            if not scalars:
                continue
            writer = self._writer(split)
            with writer.as_default():
                for name, value in scalars.items():
                    tf.summary.scalar(f"epoch_{name}", value, step=epoch)
            # A writer flushes every 2 minutes by default; a crash would lose finished epochs.
            writer.flush()

    def on_train_end(self, logs=None):
        self._stop_profile()
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


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
