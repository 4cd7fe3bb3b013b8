"""The callbacks of a training run, beyond Keras's own, and the restart housekeeping they need.

Order matters in `model.fit`'s callback list (each sees the same `logs` dict in turn):
schedule -> EpochStats (adds learning_rate, images_per_second) -> checkpoints -> CSV history ->
TensorBoard -> the epoch log line -> ReduceLROnPlateau (changes the rate for the next epoch) ->
the resume backup, last (then only `preemption.StopOnSignal`, which writes it on SIGTERM), so
that a backup never claims an epoch whose history, TensorBoard summaries and checkpoints are not
yet on disk. A crash between those writes and the backup
reruns that epoch; `history.truncate_history` and `tensorboard.purge_events` then drop what
the lost run wrote.

With `optimizer.ema`, `EmaWeightsIn` goes just before the checkpoints and `EmaWeightsOut` just
before the backup (training/ema.py); `training.early_stopping` goes after the plateau.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import keras

from keras_googlenet.atomic import atomic_write_text
from keras_googlenet.training.preemption import StopOnSignal

log = logging.getLogger("keras_googlenet")

KILL_ENV = "KERAS_GOOGLENET_TEST_KILL_AT_STEP"  # test hook: see KillAtStep


class EpochStats(keras.callbacks.Callback):
    """Adds `learning_rate` (the rate the epoch trained with) and `images_per_second` (training
    steps only, validation excluded) to the epoch's logs."""

    def __init__(self, global_batch_size: int):
        super().__init__()
        self.global_batch_size = global_batch_size

    def on_epoch_begin(self, epoch, logs=None):
        self._steps = 0
        self._first_step = None
        self._start = time.perf_counter()
        self._train_end = None
        self._lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_train_batch_begin(self, batch, logs=None):
        if self._first_step is None:  # not 0 when a resumed run starts mid-epoch
            self._first_step = batch

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the last step Keras ran: with steps_per_execution > 1 this is called once
        # per group of steps, so counting calls would undercount.
        self._steps = batch + 1 - self._first_step

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
    """Test hook: sends `signal_name` (default SIGKILL) to this process once the optimizer has
    run `step` steps.

    Enabled by the KERAS_GOOGLENET_TEST_KILL_AT_STEP environment variable ("STEP" or
    "STEP:SIGTERM"), so the resume tests can crash a run at a known point, like a power cut
    (no cleanup, no flush), or preempt it like a cloud scheduler.
    """

    def __init__(self, step: int, signal_name: str = "SIGKILL"):
        super().__init__()
        self.step = step
        self.signal_name = signal_name
        self._sent = False

    def on_train_batch_end(self, batch, logs=None):
        import signal

        if self._sent:
            return
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) >= self.step:
            self._sent = True
            os.kill(os.getpid(), getattr(signal, self.signal_name))


KILL_DURING_ENV = "KERAS_GOOGLENET_TEST_KILL_DURING"  # test hook: "backup:N", "checkpoint:N", ...
_kill_counts: dict[str, int] = {}


def test_kill_point(kind: str, half_line_to: Path | None = None) -> None:
    """Test hook: SIGKILLs this process the N-th time a write of `kind` is under way.

    KERAS_GOOGLENET_TEST_KILL_DURING=KIND:N (kinds: `backup`, `checkpoint`, `history`) lets
    the resume tests cut a run in the middle of a write, like a power cut. `half_line_to`: a
    CSV file that first gets half a row, as a write cut short leaves it.
    """
    wanted = os.environ.get(KILL_DURING_ENV, "")
    if not wanted.startswith(f"{kind}:"):
        return
    _kill_counts[kind] = _kill_counts.get(kind, 0) + 1
    if _kill_counts[kind] != int(wanted.split(":")[1]):
        return
    if half_line_to is not None:
        with open(half_line_to, "a") as f:
            f.write("9,0.12")
            f.flush()
            os.fsync(f.fileno())
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


class TestKill(keras.callbacks.Callback):
    """Test hook placed after the CSV logger: a kill while history.csv's row is half written."""

    def __init__(self, history: Path):
        super().__init__()
        self.history = Path(history)

    def on_epoch_end(self, epoch, logs=None):
        test_kill_point("history", half_line_to=self.history)


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

    # Keras internals, on purpose: ModelCheckpoint has no public hook for *how* a file is
    # written, so `_save_model` is overridden and reuses `_get_file_path` (the `{epoch}`
    # formatting) and `_should_save_model` (save_best_only's comparison) rather than copying
    # them. pyproject.toml caps keras below the next minor release; tests/test_train.py and
    # tests/test_run_dir.py exercise every path.
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
        test_kill_point("checkpoint")
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
        # How Keras's own BackupAndRestore tells `fit` where to resume (no public API does).
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
        test_kill_point("backup")
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


def run_callbacks(
    cfg, run, own, *, chief, initial_epoch, best, global_batch, stop_together=None
) -> list:
    """The callback list of a run's `fit`, in the order the module docstring explains.

    Args:
        cfg: the resolved config.
        run: the run folder (`RunDir`); `own`: this worker's (the same on the chief).
        chief: whether this worker writes checkpoints, history and TensorBoard.
        initial_epoch: the epoch a resumed run starts from (restores the plateau state).
        best: the best validation top-1 so far (so `best.keras` is not overwritten by worse).
        global_batch: images per step over all replicas (for images/s).
        stop_together: for `StopOnSignal` under several workers (see `preemption.py`).
    """
    s, t = cfg.schedule, cfg.training
    from keras_googlenet.training import early_stopping, ema, schedules, tensorboard

    callbacks = [
        schedules.lr_scheduler(
            s, cfg.optimizer.lr, t.epochs, t.finetune.head_epochs, t.finetune.lr_factor
        ),
        EpochStats(global_batch),
        keras.callbacks.TerminateOnNaN(),
    ]
    ema_in = ema.EmaWeightsIn() if cfg.optimizer.ema else None
    if ema_in:  # before the checkpoints: they save the EMA weights (see training/ema.py)
        callbacks.append(ema_in)
    if chief:
        monitor = dict(monitor=schedules.MONITOR, mode="max")
        callbacks += [
            AtomicModelCheckpoint(run.last),  # first: the two below link to it
            AtomicModelCheckpoint(
                run.best,
                source=run.last,
                save_best_only=True,
                initial_value_threshold=best,
                **monitor,
            ),
            AtomicModelCheckpoint(
                run.checkpoints / "epoch_{epoch:03d}.keras",
                source=run.last,
                every=t.checkpoint_interval,
            ),
            keras.callbacks.CSVLogger(str(run.history), append=True),
            TestKill(run.history),  # does nothing unless the test hook asks
            tensorboard.RunTensorBoard(
                run.tensorboard, profile_batches=cfg.logging.profile_batches
            ),
        ]
    callbacks.append(EpochLogLine(t.epochs))
    if s.name == "plateau":
        plateau = schedules.PersistentReduceLROnPlateau(
            own.backup / "plateau.json",
            warmup_epochs=s.warmup_epochs,
            factor=s.factor,
            patience=s.patience,
            min_lr=s.min_lr,
        )
        if initial_epoch:
            plateau.restore(initial_epoch)
        callbacks.append(plateau)
    if t.early_stopping.patience is not None:
        callbacks.append(early_stopping.for_run(t.early_stopping, own.backup, initial_epoch))
    if ema_in:  # the backup keeps the raw weights and the averages where training left them
        callbacks.append(ema.EmaWeightsOut(ema_in))
    if os.environ.get(KILL_ENV):  # before the backup: a signal it sends is seen at that step
        step, _, signal_name = os.environ[KILL_ENV].partition(":")
        callbacks.append(KillAtStep(int(step), signal_name or "SIGKILL"))
    backup = ResumableBackup(own.backup, save_freq=t.backup_every)
    callbacks += [backup, StopOnSignal(backup, stop_together=stop_together)]
    return callbacks
