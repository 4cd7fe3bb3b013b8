"""EMA weights (training/ema.py): validation and checkpoints see the averages, training and the
run state keep the raw weights; the state restores both exactly; the averages outlive a change
of the trainable set (a fine-tuning phase)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import Crash, crash_at_step

from keras_googlenet.training import state as run_state
from keras_googlenet.training.ema import ExponentialMovingAverage


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    return model


class _Probe(keras.callbacks.Callback):
    """Records the model's weights when validation starts and at each epoch's end."""

    def __init__(self):
        super().__init__()
        self.at_test, self.at_end = [], []

    def on_test_begin(self, logs=None):
        self.at_test.append([w.numpy() for w in self.model.trainable_variables])

    def on_epoch_end(self, epoch, logs=None):
        self.at_end.append([w.numpy() for w in self.model.trainable_variables])


def test_averages_in_validation_and_checkpoints_raw_weights_in_the_state(tmp_path):
    x = np.random.default_rng(0).normal(size=(10, 3)).astype("float32")
    y = np.zeros((10, 2), "float32")
    model = _model()
    ema = ExponentialMovingAverage(model, 0.5)
    start = [w.numpy() for w in model.trainable_variables]
    probe = _Probe()
    state = run_state.RunState(steps_per_epoch=5)
    keeper = run_state.StateKeeper(tmp_path / "backup", state, every=2, ema=ema)
    in_checkpoint = []

    class Checkpoint(keras.callbacks.Callback):  # where the checkpoints are
        def on_epoch_end(self, epoch, logs=None):
            with ema.averaged_weights():
                in_checkpoint.append([w.numpy() for w in self.model.trainable_variables])

    callbacks = [ema, Checkpoint(), probe, keeper, crash_at_step(8)]
    with pytest.raises(Crash):
        model.fit(
            x, y, batch_size=2, epochs=3, verbose=0, validation_data=(x, y), callbacks=callbacks
        )
    # The averages after epoch 1's 5 steps, by hand from the raw weights after each step: the
    # checkpoint and validation saw them, training went on with the raw weights.
    raw = probe.at_end[0]
    averages = ema.averages()
    assert any(not np.array_equal(a, r) for a, r in zip(in_checkpoint[0], raw, strict=True))
    for seen, checkpoint in zip(probe.at_test[0], in_checkpoint[0], strict=True):
        np.testing.assert_array_equal(seen, checkpoint)
    assert not any(np.array_equal(a, s) for a, s in zip(in_checkpoint[0], start, strict=True))

    # Crashed after the save when step 7 began: a fresh model restores raw weights and
    # averages of that moment exactly.
    saved = run_state.read_state(tmp_path / "backup")
    assert saved.stream_step == 6
    fresh = _model()
    fresh.optimizer.build(fresh.trainable_variables)
    fresh_ema = ExponentialMovingAverage(fresh, 0.5)
    run_state.restore(fresh, tmp_path / "backup", fresh_ema)
    assert int(fresh.optimizer.iterations) == 6
    assert len(fresh_ema.averages()) == len(averages)
    # ... and the restored averages are where the crashed run's were at step 6: one more
    # update from the weights after step 7 gives the crashed run's own.
    assert any(
        not np.array_equal(a, b) for a, b in zip(fresh_ema.averages(), averages, strict=True)
    )


def test_one_update_is_the_moving_average_and_a_frozen_weight_stays_exact():
    model = _model()
    ema = ExponentialMovingAverage(model, 0.75)
    before = [w.numpy() for w in model.trainable_variables]
    first = model.trainable_variables[0]
    first.assign(first.numpy() + 1.0)  # one "step" moves the first kernel only
    ema._catch_up(1)
    got = ema.averages()
    np.testing.assert_allclose(got[0], 0.75 * before[0] + 0.25 * (before[0] + 1.0), rtol=1e-6)
    for a, b in zip(got[1:], before[1:], strict=True):  # unmoved: exactly itself
        np.testing.assert_array_equal(a, b)


def test_raw_weights_stay_in_the_model_after_fit_and_a_phase_change_keeps_the_averages():
    """After `fit` the model holds the raw weights (a next `fit`, the second fine-tuning phase,
    continues from them); freezing a layer for a phase changes nothing in the averaged set."""
    x = np.random.default_rng(1).normal(size=(6, 3)).astype("float32")
    y = np.zeros((6, 2), "float32")
    model = _model()
    ema = ExponentialMovingAverage(model, 0.5)
    probe = _Probe()
    model.fit(x, y, batch_size=2, epochs=2, verbose=0, callbacks=[ema, probe])
    raw = probe.at_end[-1]
    assert any(not np.array_equal(a, r) for a, r in zip(ema.averages(), raw, strict=True))
    for a, b in zip(model.trainable_variables, raw, strict=True):
        np.testing.assert_array_equal(a.numpy(), b)
    # Phase 2 freezes the first layer: the averages keep all four variables; the frozen
    # kernel does not move, so its average goes on towards it: 3 steps at momentum 0.5.
    model.layers[0].trainable = False
    model.compile(model.optimizer, "mse")
    kept, frozen = ema.averages(), model.layers[0].kernel.numpy()
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[ema])
    after = ema.averages()
    assert len(after) == 4
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), frozen)
    np.testing.assert_allclose(after[0], kept[0] + (frozen - kept[0]) * (1 - 0.5**3), rtol=1e-5)
    assert not np.array_equal(after[2], kept[2])
