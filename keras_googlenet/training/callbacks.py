"""The callbacks of a training run, beyond Keras's own, and the restart housekeeping they need.

Order matters in `model.fit`'s callback list (each sees the same `logs` dict in turn):
schedule -> EpochStats (adds learning_rate, images_per_second) -> checkpoints -> CSV history ->
TensorBoard -> the epoch log line -> ReduceLROnPlateau (changes the rate for the next epoch) ->
the resume backup, last, so that a backup never claims an epoch whose history, TensorBoard
summaries and checkpoints are not yet on disk. A crash between those writes and the backup
reruns that epoch; `truncate_history` and `purge_events` then drop what the lost run wrote.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from keras_googlenet.atomic import atomic_write_text

log = logging.getLogger("keras_googlenet")


class EpochStats(keras.callbacks.Callback):
    """Adds `learning_rate` (the rate the epoch trained with) and `images_per_second` (training
    steps only, validation excluded) to the epoch's logs."""

    def __init__(self, global_batch_size: int):
        super().__init__()
        self.global_batch_size = global_batch_size

    def on_epoch_begin(self, epoch, logs=None):
        self._steps = 0
        self._start = time.perf_counter()
        self._train_end = None
        self._lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1

    def on_test_begin(self, logs=None):
        if self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = (self._train_end or time.perf_counter()) - self._start
        logs["learning_rate"] = self._lr
        logs["images_per_second"] = self._steps * self.global_batch_size / max(seconds, 1e-9)


class EpochLogLine(keras.callbacks.Callback):
    """One log line per epoch: losses, validation top-1/top-5, learning rate, images/s."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}

        def fmt(key, spec=".4f"):
            value = logs.get(key)
            return "n/a" if value is None else format(float(value), spec)

        log.info(
            "epoch %d/%d: loss %s, main_top1 %s, val_loss %s, val_main_top1 %s, "
            "val_main_top5 %s, lr %s, %s images/s, %.0f s",
            epoch + 1,
            self.epochs,
            fmt("loss"),
            fmt("main_top1"),
            fmt("val_loss"),
            fmt("val_main_top1"),
            fmt("val_main_top5"),
            fmt("learning_rate", ".3g"),
            fmt("images_per_second", ".1f"),
            time.perf_counter() - self._start,
        )


class KillAtStep(keras.callbacks.Callback):
    """Test hook: SIGKILLs this process once the optimizer has run `step` steps.

    Enabled by the KERAS_GOOGLENET_TEST_KILL_AT_STEP environment variable, so the resume tests
    can crash a run at a known point, like a power cut: no cleanup, no flush.
    """

    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) >= self.step:
            import signal

            os.kill(os.getpid(), signal.SIGKILL)


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that writes to a temporary name and renames it, so a kill during the
    save leaves the previous checkpoint intact.

    Args:
        filepath: as ModelCheckpoint (a `.keras` path, may hold `{epoch:03d}`).
        every: save only every N-th epoch.
        source: a checkpoint already saved at this epoch's end (`last.keras`): linked (or
            copied) instead of saving the same model again.
        **kwargs: ModelCheckpoint's (`monitor`, `mode`, `save_best_only`,
            `initial_value_threshold`).
    """

    def __init__(self, filepath, *, every: int = 1, source=None, **kwargs):
        super().__init__(str(filepath), **kwargs)
        self.every = every
        self.source = Path(source) if source else None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            super().on_epoch_end(epoch, logs)

    def _save_model(self, epoch, batch, logs):
        target = Path(self._get_file_path(epoch, batch, logs))
        if not self._should_save_model(epoch, batch, logs, str(target)):
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.stem}.tmp{target.suffix}")
        tmp.unlink(missing_ok=True)
        if self.source is not None and self.source.is_file():
            try:
                os.link(self.source, tmp)  # same bytes; a later save of `source` replaces it
            except OSError:
                shutil.copyfile(self.source, tmp)
        else:
            self.model.save(tmp, overwrite=True)
        os.replace(tmp, target)


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore whose state is written atomically, at each epoch's end and (optionally)
    every `save_freq` steps.

    Keras writes `latest.weights.h5` in place, then `training_metadata.json`: a kill inside
    either leaves a corrupt or mismatched pair. Here each backup is a new weights file (model
    and optimizer variables: the learning rate, momenta and step count), and `state.json`, which
    names it, is replaced atomically afterwards; older weights files are deleted after that.
    Like Keras's, a restore restarts the interrupted epoch from its first step.
    """

    STATE = "state.json"

    def __init__(self, backup_dir, save_freq="epoch"):
        super().__init__(str(backup_dir), save_freq=save_freq, delete_checkpoint=False)
        self.dir = Path(backup_dir)

    def _load_model(self):
        state = read_backup_state(self.dir)
        if state is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.dir / state["weights"])
        self.model._initial_epoch = state["epoch"]

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        self._last_batch_seen = 0
        self._batches_seen_since_last_saving = 0
        self._save_model()  # at every epoch's end, whatever save_freq says

    def _save_model(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        iterations = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        name = f"backup_{iterations:09d}.weights.h5"
        tmp = self.dir / f".tmp_{name}"
        self.model.save_weights(tmp, overwrite=True)
        os.replace(tmp, self.dir / name)
        state = {"epoch": self._current_epoch, "step": iterations, "weights": name}
        atomic_write_text(self.dir / self.STATE, json.dumps(state))
        for old in self.dir.glob("*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)


def read_backup_state(backup_dir: str | Path) -> dict | None:
    """The latest backup's `{"epoch": finished epochs, "step": ..., "weights": file}`, or None."""
    backup_dir = Path(backup_dir)
    try:
        state = json.loads((backup_dir / ResumableBackup.STATE).read_text())
    except (OSError, ValueError):
        return None
    if not (backup_dir / state.get("weights", "")).is_file():
        return None
    return state


# --------------------------------------------------------------------------------------------
# TensorBoard.


class RunTensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback with epoch-keyed summaries only, flushed every epoch.

    Everything is written at step = epoch (0-based), so curves continue where they stopped after
    a restart (batch-level steps restart from 0 in each `fit` and would repeat). The summaries
    Keras writes at the end of each validation, keyed by optimizer steps, are left out for the
    same reason. The learning rate and images/s come from `EpochStats` through the logs.
    """

    def __init__(self, log_dir):
        super().__init__(
            log_dir=str(log_dir),
            update_freq="epoch",
            write_graph=False,  # does nothing in Keras 3; see write_model_graph
            write_steps_per_second=False,
            profile_batch=0,
        )

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


# --------------------------------------------------------------------------------------------
# history.csv


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
        r[monitor] for r in rows if isinstance(r.get(monitor), float) and np.isfinite(r[monitor])
    ]
    return max(values) if values else None
