"""EarlyStopping (`training.early_stopping`) whose wait count survives a crash.

Keras keeps `wait` and `best` in memory: a resumed run would wait `patience` epochs afresh.
They are written after every epoch, keyed by the number of finished epochs (as
`PersistentReduceLROnPlateau` does for its counters), and the entry of the restored epoch is
loaded back. `train()` tells a run that stopped early from one that failed by `stopped_epoch`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras

from keras_googlenet.training.schedules import load_plateau_state as load_counters
from keras_googlenet.training.schedules import save_epoch_counters

log = logging.getLogger("keras_googlenet")
STATE_FILE = "early_stopping.json"  # in the run's backup folder, beside plateau.json


class PersistentEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping on `monitor` (a loss is minimized, other metrics maximized)."""

    def __init__(self, state_path: str | Path, *, monitor: str, patience: int, min_delta=0.0):
        super().__init__(
            monitor=monitor,
            patience=patience,
            min_delta=min_delta,
            mode="min" if monitor.endswith("loss") else "max",
        )
        self.state_path = Path(state_path)
        self._restored: dict | None = None

    def restore(self, finished_epochs: int) -> bool:
        """Loads the counters saved after `finished_epochs` epochs; False if there are none."""
        self._restored = load_counters(self.state_path).get(str(finished_epochs))
        return self._restored is not None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # resets the counters
        if self._restored:
            self.wait = int(self._restored["wait"])
            self.best = self._restored["best"]

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        if self.stopped_epoch:  # Keras prints its own line only with verbose > 0
            log.info(
                "early stopping: %s did not improve for %d epochs; stopped after epoch %d",
                self.monitor,
                self.patience,
                self.stopped_epoch + 1,
            )

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        best = None if self.best is None else float(self.best)
        save_epoch_counters(self.state_path, epoch + 1, {"wait": int(self.wait), "best": best})


def for_run(e, backup: Path, initial_epoch: int) -> PersistentEarlyStopping:
    """The callback of `training.early_stopping` `e`, its counters restored on a resume."""
    early = PersistentEarlyStopping(
        Path(backup) / STATE_FILE, monitor=e.monitor, patience=e.patience, min_delta=e.min_delta
    )
    if initial_epoch:
        early.restore(initial_epoch)
    return early


def epochs_done(callbacks, epochs: int, initial_epoch: int) -> int:
    """The epochs a run has done after its `fit`: `epochs`, or fewer if early stopping among
    `callbacks` stopped it."""
    for c in callbacks:
        if isinstance(c, PersistentEarlyStopping) and c.stopped_epoch and initial_epoch < epochs:
            return c.stopped_epoch + 1  # stopped_epoch: the 0-based epoch it stopped after
    return epochs
