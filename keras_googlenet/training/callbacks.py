"""The callbacks of a training run, beyond Keras's own, and the order `fit` runs them in.

Order matters in `model.fit`'s callback list (each sees the same `logs` dict in turn):

    schedule -> EpochStats (adds learning_rate, images_per_second) -> StopOnNaN -> EMA ->
    checkpoints -> history.csv -> TensorBoard -> the epoch log line -> ReduceLROnPlateau
    (changes the rate for the next epoch) -> EarlyStopping -> the run state (state.py),
    then `preemption.StopOnSignal`, which saves it on SIGTERM,

so that the run state never claims an epoch whose history row, TensorBoard summaries and
checkpoints are not yet on disk. A crash between those writes and the state's reruns nothing:
the resumed run drops what the lost process wrote after its last state (`history.truncate_history`,
`tensorboard.purge_events`) and trains on from that state's step.

No callback here acts at a step's end: Keras then runs the batch-end hooks without waiting for
each step (the ones that act per step do so when the next one begins).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from pathlib import Path

import keras

from keras_googlenet import atomic
from keras_googlenet.errors import UserError

log = logging.getLogger("keras_googlenet")


class EpochStats(keras.callbacks.Callback):
    """Adds `learning_rate` (the rate the epoch trained with) and `images_per_second` (training
    steps only, validation excluded) to the epoch's logs."""

    def __init__(self, global_batch_size: int):
        super().__init__()
        self.global_batch_size = global_batch_size
        self.steps = 0  # the last epoch's training steps

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._train_end = None
        self._lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_test_begin(self, logs=None):
        if self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = (self._train_end or time.perf_counter()) - self._start
        self.steps = self.params.get("steps") or 0  # this fit's steps per epoch
        logs["learning_rate"] = self._lr
        logs["images_per_second"] = self.steps * self.global_batch_size / max(seconds, 1e-9)


class StopOnNaN(keras.callbacks.Callback):
    """Stops the run when an epoch's loss is NaN or infinite, before anything of that epoch is
    saved (the run state stays at the last good epoch). Checked once an epoch, not after each
    step as Keras's TerminateOnNaN does, which would wait for every step."""

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise UserError(
                f"the loss became NaN or infinite in epoch {epoch + 1}; nothing of that epoch "
                "was saved (lower optimizer.lr, or check the data)",
                exit_code=1,
            )


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


def save_model_atomically(model, target: Path, source: Path | None = None) -> None:
    """Saves `model` as a `.keras` file through a temporary name, or links `source` (a file
    just saved from the same weights) under the new name; a kill leaves the old file whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.tmp{target.suffix}")
    tmp.unlink(missing_ok=True)
    if source is not None and source.is_file():
        try:
            os.link(source, tmp)  # same bytes; a later save of `source` replaces it
        except OSError:
            shutil.copyfile(source, tmp)
    else:
        model.save(tmp, overwrite=True)
    atomic.commit(tmp, target)


class Checkpoints(keras.callbacks.Callback):
    """last.keras after every epoch, best.keras when validation top-1 improves, and
    epoch_NNN.keras every `every` epochs, each written atomically (with the EMA weights in the
    model when `ema` is given).

    Args:
        run: the run folder (`RunDir`).
        monitor: the logged value best.keras follows (higher is better).
        best: the best value so far (a resumed run's), or None.
        every: `training.checkpoint_interval`.
        ema: the run's `ExponentialMovingAverage`, or None.
    """

    def __init__(self, run, *, monitor: str, best: float | None, every: int, ema=None):
        super().__init__()
        self.run = run
        self.monitor = monitor
        self.best = best
        self.every = every
        self.ema = ema

    def on_epoch_end(self, epoch, logs=None):
        import contextlib

        value = (logs or {}).get(self.monitor)
        improved = value is not None and math.isfinite(float(value))
        improved = improved and (self.best is None or float(value) > self.best)
        swap = self.ema.averaged_weights() if self.ema else contextlib.nullcontext()
        with swap:
            save_model_atomically(self.model, self.run.last)
        if improved:
            save_model_atomically(self.model, self.run.best, source=self.run.last)
            self.best = float(value)
        if (epoch + 1) % self.every == 0:
            target = self.run.epoch_checkpoint(epoch + 1)
            save_model_atomically(self.model, target, source=self.run.last)


def run_callbacks(cfg, plan, run, own, keeper, *, chief, ema=None, stop_together=None) -> list:
    """The callback list of one `fit`, in the order the module docstring explains.

    Args:
        cfg: the resolved config.
        plan: the run's `Plan` (global batch, epochs).
        run: the run folder (`RunDir`); `own`: this worker's (the same on the chief).
        keeper: the `state.StateKeeper` of this fit (counters and best are read from the
            callbacks made here at each save).
        chief: whether this worker writes checkpoints, history and TensorBoard.
        ema: the run's `ExponentialMovingAverage`, or None.
        stop_together: for `StopOnSignal` under several workers (see `preemption.py`).
    """
    from keras_googlenet.training import early_stopping, schedules, tensorboard
    from keras_googlenet.training.history import HistoryWriter
    from keras_googlenet.training.preemption import StopOnSignal

    s, t = cfg.schedule, cfg.training
    state = keeper.state
    callbacks = [
        schedules.lr_scheduler(
            s, cfg.optimizer.lr, t.epochs, t.finetune.head_epochs, t.finetune.lr_factor
        ),
        EpochStats(plan.global_batch),
        StopOnNaN(),
    ]
    if ema is not None:  # before the checkpoints, which save the averages
        callbacks.append(ema)
    if chief:
        checkpoints = Checkpoints(
            run,
            monitor=schedules.MONITOR,
            best=state.best,
            every=t.checkpoint_interval,
            ema=ema,
        )
        keeper.best = lambda: checkpoints.best
        callbacks += [
            checkpoints,
            HistoryWriter(run.history),
            tensorboard.RunTensorBoard(
                run.tensorboard, profile_batches=cfg.logging.profile_batches
            ),
        ]
    callbacks.append(EpochLogLine(t.epochs))
    keeper.counters = {}
    if s.name == "plateau":
        plateau = schedules.PersistentReduceLROnPlateau(
            warmup_epochs=s.warmup_epochs,
            factor=s.factor,
            patience=s.patience,
            min_lr=s.min_lr,
        )
        plateau.restore(state.plateau)
        keeper.counters["plateau"] = plateau
        callbacks.append(plateau)
    if t.early_stopping.patience is not None:
        early = early_stopping.for_run(t.early_stopping, state.early_stopping)
        keeper.counters["early_stopping"] = early
        callbacks.append(early)
    callbacks += [keeper, StopOnSignal(keeper, stop_together, every=plan.agree_every)]
    return callbacks
