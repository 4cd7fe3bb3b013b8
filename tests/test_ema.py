"""EMA weights: validation and the epoch-end callbacks between EmaWeightsIn and EmaWeightsOut
see the averages; the backup keeps raw weights and averages and restores both exactly."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import Crash, crash_at_step

from keras_googlenet.training.callbacks import ResumableBackup, read_backup_state
from keras_googlenet.training.ema import EmaWeightsIn, EmaWeightsOut


class _Probe(keras.callbacks.Callback):
    """Records (the model's weights, the optimizer's averages) at each epoch's end."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        opt = self.model.optimizer
        averages = [v.numpy() for v in opt._model_variables_moving_average]
        self.seen.append(([w.numpy() for w in self.model.trainable_variables], averages))


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9, use_ema=True, ema_momentum=0.5), "mse")
    return model


def test_ema_weights_in_checkpoints_raw_weights_in_backup(tmp_path):
    x = np.random.default_rng(0).normal(size=(10, 3)).astype("float32")
    y = np.zeros((10, 2), "float32")
    model = _model()
    before, between, after = _Probe(), _Probe(), _Probe()
    swap_in = EmaWeightsIn()
    callbacks = [
        before,
        swap_in,
        between,  # where the checkpoints are
        EmaWeightsOut(swap_in),
        after,
        ResumableBackup(tmp_path / "backup", save_freq=2),
        crash_at_step(7),
    ]
    with pytest.raises(Crash):
        model.fit(x, y, batch_size=2, epochs=3, verbose=0, callbacks=callbacks)
    (raw, averages), (swapped, _), (back, back_averages) = (
        before.seen[0],
        between.seen[0],
        after.seen[0],
    )
    assert any(not np.array_equal(a, r) for a, r in zip(averages, raw, strict=True))
    for a, b in zip(swapped, averages, strict=True):  # checkpoints see the averages
        np.testing.assert_array_equal(a, b)
    for a, b in zip(back + back_averages, raw + averages, strict=True):  # and training goes on
        np.testing.assert_array_equal(a, b)

    # Killed after the step-7 backup: a fresh model restores weights and averages exactly.
    assert read_backup_state(tmp_path / "backup")["step"] == 7
    state = [v.numpy() for v in model.trainable_variables]
    state += [v.numpy() for v in model.optimizer._model_variables_moving_average]
    fresh = _model()
    restore = ResumableBackup(tmp_path / "backup")
    restore.set_model(fresh)
    restore.on_train_begin()
    got = [v.numpy() for v in fresh.trainable_variables]
    got += [v.numpy() for v in fresh.optimizer._model_variables_moving_average]
    for a, b in zip(got, state, strict=True):
        np.testing.assert_array_equal(a, b)


def test_raw_weights_stay_in_the_model_after_fit():
    """Keras copies the averages into the model when `fit` ends; EmaWeightsOut puts the raw
    weights back, so a next `fit` (a second fine-tuning phase) continues from them."""
    x = np.random.default_rng(1).normal(size=(6, 3)).astype("float32")
    y = np.zeros((6, 2), "float32")
    model = _model()
    swap_in, after = EmaWeightsIn(), _Probe()
    callbacks = [swap_in, EmaWeightsOut(swap_in), after]
    model.fit(x, y, batch_size=2, epochs=2, verbose=0, callbacks=callbacks)
    raw, averages = after.seen[-1]
    assert any(not np.array_equal(a, r) for a, r in zip(averages, raw, strict=True))
    for a, b in zip(model.trainable_variables, raw, strict=True):
        np.testing.assert_array_equal(a.numpy(), b)
