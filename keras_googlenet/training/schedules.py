"""Learning-rate rules, applied once per epoch, and a ReduceLROnPlateau that survives a restart.

Rules (`schedule.name`), for 0-based `epoch`, after `warmup_epochs` of linear warmup from
`lr / (warmup_epochs + 1)` up to `lr`:
    constant  lr
    step      lr * decay_rate ** floor((1 + epoch) / decay_every)   (the CIFAR-10 seed's rule)
    cosine    min_lr + (lr - min_lr) * (1 + cos(pi * t)) / 2, t from 0 (first epoch after the
              warmup) to 1 (last epoch), so the last epoch runs at min_lr
    plateau   lr, halved (schedule.factor) by ReduceLROnPlateau when validation top-1 of `main`
              has not improved for `patience` epochs

Two-phase fine-tuning (`training.finetune.head_epochs: N`, see training/finetune.py): from
epoch N on, the same rule runs with `lr * lr_factor` in place of `lr`; `plateau` multiplies the
rate it has at the switch by `lr_factor` once (see `phase_lr`).

The optimizer is given a float learning rate, never a `LearningRateSchedule`: Keras's
LearningRateScheduler and ReduceLROnPlateau assign to it, and raise TypeError on a schedule.
"""

from __future__ import annotations

import math

import keras

MONITOR = "val_main_top1"


def scheduled_lr(schedule, base_lr: float, epochs: int, epoch: int, current_lr: float) -> float:
    """The learning rate for 0-based `epoch`.

    Args:
        schedule: a `ScheduleConfig`.
        base_lr: `optimizer.lr`.
        epochs: `training.epochs`.
        epoch: the epoch about to start (0-based).
        current_lr: the optimizer's learning rate now (what `plateau` keeps after the warmup).

    Returns:
        The learning rate to train `epoch` with.
    """
    warmup = schedule.warmup_epochs
    if epoch < warmup:
        return base_lr * (epoch + 1) / (warmup + 1)
    name = schedule.name
    if name == "constant":
        return base_lr
    if name == "step":
        return base_lr * schedule.decay_rate ** math.floor((1 + epoch) / schedule.decay_every)
    if name == "cosine":
        t = (epoch - warmup) / max(1, epochs - 1 - warmup)
        return schedule.min_lr + (base_lr - schedule.min_lr) * 0.5 * (1 + math.cos(math.pi * t))
    if name == "plateau":
        # The warmup's end hands over the full rate; after that ReduceLROnPlateau owns it.
        return base_lr if (warmup and epoch == warmup) else current_lr
    raise ValueError(f"unknown schedule {name!r}")


def phase_lr(
    schedule,
    base_lr: float,
    epochs: int,
    epoch: int,
    current_lr: float,
    head_epochs: int = 0,
    lr_factor: float = 1.0,
) -> float:
    """`scheduled_lr`, lowered by `lr_factor` from epoch `head_epochs` on (phase 2).

    Args:
        head_epochs: `training.finetune.head_epochs` (0: one phase, no factor).
        lr_factor: `training.finetune.lr_factor`.
        The others: as `scheduled_lr`.
    """
    if not head_epochs or epoch < head_epochs:
        return scheduled_lr(schedule, base_lr, epochs, epoch, current_lr)
    if epoch == head_epochs:  # the switch: what `plateau` keeps is phase 1's rate
        current_lr *= lr_factor
    return scheduled_lr(schedule, base_lr * lr_factor, epochs, epoch, current_lr)


def lr_scheduler(
    schedule, base_lr: float, epochs: int, head_epochs: int = 0, lr_factor: float = 1.0
) -> keras.callbacks.LearningRateScheduler:
    """A LearningRateScheduler applying `phase_lr` at the start of each epoch.

    A function of the epoch (and, for `plateau`, of the rate the backup restores), it gives
    the right rate after a restart too.
    """

    def rule(epoch, lr):
        return phase_lr(schedule, base_lr, epochs, epoch, float(lr), head_epochs, lr_factor)

    return keras.callbacks.LearningRateScheduler(rule, verbose=0)


class PersistentReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau on validation top-1 whose counters survive a crash.

    Keras keeps `wait`, `best` and `cooldown_counter` in memory only, so a restarted run would
    wait `patience` epochs afresh. `counters()` gives them for the run state (training/state.py
    saves them with every backup) and `restore(counters)` puts them back before `fit` starts.
    Epochs of the warmup are not counted.
    """

    def __init__(self, *, warmup_epochs: int = 0, **kwargs):
        kwargs.setdefault("monitor", MONITOR)
        kwargs.setdefault("mode", "max")
        super().__init__(**kwargs)
        self.warmup_epochs = warmup_epochs
        self._restored: dict | None = None

    def restore(self, counters: dict | None) -> bool:
        """Keeps `counters` (from `counters()`) for the next `on_train_begin`; False if None."""
        self._restored = counters
        return counters is not None

    def counters(self) -> dict:
        """`{"wait", "cooldown_counter", "best"}` now (JSON-ready)."""
        return {
            "wait": int(self.wait),
            "cooldown_counter": int(self.cooldown_counter),
            "best": None if self.best is None else float(self.best),
        }

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # resets the counters
        if self._restored:
            self.wait = int(self._restored["wait"])
            self.cooldown_counter = int(self._restored["cooldown_counter"])
            best = self._restored["best"]
            self.best = None if best is None else float(best)

    def on_epoch_end(self, epoch, logs=None):
        if epoch >= self.warmup_epochs:
            super().on_epoch_end(epoch, logs)
