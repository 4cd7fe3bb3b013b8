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

import json
import math
from pathlib import Path

import keras

from keras_googlenet.atomic import atomic_write_text

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

    Keras keeps `wait`, `best` and `cooldown_counter` in memory only (the backup restores the
    learning rate, not them), so a restarted run would wait `patience` epochs afresh. They are
    written to a small JSON file after every epoch, keyed by the number of finished epochs, and
    the entry matching the restored epoch is loaded back. Epochs of the warmup are not counted.
    """

    def __init__(self, state_path: str | Path, *, warmup_epochs: int = 0, **kwargs):
        kwargs.setdefault("monitor", MONITOR)
        kwargs.setdefault("mode", "max")
        super().__init__(**kwargs)
        self.state_path = Path(state_path)
        self.warmup_epochs = warmup_epochs
        self._restored: dict | None = None

    def restore(self, finished_epochs: int) -> bool:
        """Loads the counters saved after `finished_epochs` epochs; False if there are none."""
        self._restored = load_plateau_state(self.state_path).get(str(finished_epochs))
        return self._restored is not None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # resets the counters
        if self._restored:
            self.wait = int(self._restored["wait"])
            self.cooldown_counter = int(self._restored["cooldown_counter"])
            self.best = float(self._restored["best"])

    def on_epoch_end(self, epoch, logs=None):
        if epoch >= self.warmup_epochs:
            super().on_epoch_end(epoch, logs)
        counters = {
            "wait": int(self.wait),
            "cooldown_counter": int(self.cooldown_counter),
            "best": float(self.best),
        }
        save_epoch_counters(self.state_path, epoch + 1, counters)


def save_epoch_counters(path: str | Path, finished_epochs: int, counters: dict) -> None:
    """Adds a callback's `counters` after `finished_epochs` epochs to its JSON file, atomically.

    A few entries are kept: the backup a run resumes from is never older than the previous
    epoch. `load_plateau_state` reads the file back.
    """
    states = load_plateau_state(path)
    states[str(finished_epochs)] = counters
    keep = sorted(states, key=int)[-3:]
    atomic_write_text(path, json.dumps({k: states[k] for k in keep}, indent=1))


def load_plateau_state(path: str | Path) -> dict:
    """The saved ReduceLROnPlateau counters by finished-epoch count ({} when none)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
