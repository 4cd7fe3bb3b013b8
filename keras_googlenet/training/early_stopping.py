"""EarlyStopping (`training.early_stopping`) whose wait count survives a crash.

Keras keeps `wait` and `best` in memory: a resumed run would wait `patience` epochs afresh.
`counters()` gives them to the run state (training/state.py), `restore(counters)` puts them back
before `fit` starts. `train()` tells a run that stopped early from one that failed by
`stopped_epoch`.
"""

from __future__ import annotations

import logging

import keras

log = logging.getLogger("keras_googlenet")


class PersistentEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping on `monitor` (a loss is minimized, other metrics maximized)."""

    def __init__(self, *, monitor: str, patience: int, min_delta=0.0):
        super().__init__(
            monitor=monitor,
            patience=patience,
            min_delta=min_delta,
            mode="min" if monitor.endswith("loss") else "max",
        )
        self._restored: dict | None = None

    def restore(self, counters: dict | None) -> bool:
        """Keeps `counters` (from `counters()`) for the next `on_train_begin`; False if None."""
        self._restored = counters
        return counters is not None

    def counters(self) -> dict:
        """`{"wait", "best"}` now (JSON-ready; best None before the first epoch)."""
        best = None if self.best is None else float(self.best)
        return {"wait": int(self.wait), "best": best}

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


def for_run(e, counters: dict | None = None) -> PersistentEarlyStopping:
    """The callback of `training.early_stopping` `e`, with a resumed run's `counters`."""
    early = PersistentEarlyStopping(monitor=e.monitor, patience=e.patience, min_delta=e.min_delta)
    early.restore(counters)
    return early


def epochs_done(callbacks, epochs: int, initial_epoch: int) -> int:
    """The epochs a run has done after its `fit`: `epochs`, or fewer if early stopping among
    `callbacks` stopped it."""
    for c in callbacks:
        if isinstance(c, PersistentEarlyStopping) and c.stopped_epoch and initial_epoch < epochs:
            return c.stopped_epoch + 1  # stopped_epoch: the 0-based epoch it stopped after
    return epochs
