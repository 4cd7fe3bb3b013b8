"""Learning rate per epoch for each schedule, through the callbacks `train` uses."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from keras_googlenet.config import ScheduleConfig
from keras_googlenet.training.callbacks import EpochStats
from keras_googlenet.training.schedules import (
    PersistentReduceLROnPlateau,
    lr_scheduler,
    scheduled_lr,
)


def lrs_through_fit(schedule, base_lr, epochs):
    """The learning rate each epoch trained with, as EpochStats logs it during `fit`."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(base_lr), "mse")
    history = model.fit(
        np.zeros((4, 2)),
        np.zeros((4, 1)),
        epochs=epochs,
        verbose=0,
        callbacks=[lr_scheduler(schedule, base_lr, epochs), EpochStats(4)],
    )
    return history.history["learning_rate"]


def test_step_decay_is_the_cifar_rule():
    s = ScheduleConfig(name="step", decay_rate=0.96, decay_every=8)
    expected = [0.01 * 0.96 ** math.floor((1 + e) / 8) for e in range(25)]
    assert [scheduled_lr(s, 0.01, 25, e, 0.0) for e in range(25)] == pytest.approx(expected)
    assert expected[6] == pytest.approx(0.01) and expected[7] == pytest.approx(0.0096)
    assert lrs_through_fit(s, 0.01, 25) == pytest.approx(expected, rel=1e-6)


def test_cosine_goes_from_lr_to_min_lr():
    s = ScheduleConfig(name="cosine", min_lr=1e-5)
    lrs = lrs_through_fit(s, 1e-3, 5)
    expected = [1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(5)]
    assert lrs == pytest.approx(expected, rel=1e-5)
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5)
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))


def test_linear_warmup_then_each_rule():
    warm = ScheduleConfig(name="constant", warmup_epochs=3)
    assert lrs_through_fit(warm, 0.1, 5) == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1], rel=1e-5)
    cos = ScheduleConfig(name="cosine", warmup_epochs=2, min_lr=0.0)
    lrs = [scheduled_lr(cos, 0.3, 6, e, 0.0) for e in range(6)]
    assert lrs[:3] == pytest.approx([0.1, 0.2, 0.3]) and lrs[-1] == pytest.approx(0.0)
    plateau = ScheduleConfig(name="plateau", warmup_epochs=1)
    # Warmup, then the full rate once, then whatever ReduceLROnPlateau has set.
    assert [scheduled_lr(plateau, 0.2, 5, e, 0.05) for e in range(4)] == pytest.approx(
        [0.1, 0.2, 0.05, 0.05]
    )


def _drive(callback, model, values, start=0):
    lrs = []
    for epoch, value in enumerate(values, start):
        lrs.append(float(model.optimizer.learning_rate))
        callback.on_epoch_end(epoch, {"val_main_top1": value})
    return lrs


def test_plateau_halves_after_patience_and_survives_a_restart(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse")

    def fresh():
        cb = PersistentReduceLROnPlateau(factor=0.5, patience=3, min_lr=1e-4)
        cb.set_model(model)
        return cb

    first = fresh()
    first.on_train_begin()
    # Improves twice, then stalls for 2 epochs: no reduction yet (patience 3).
    assert _drive(first, model, [0.2, 0.3, 0.3, 0.25]) == pytest.approx([0.1] * 4)

    # "Crash" after 4 epochs: the run state kept the counters (JSON); a new callback gets
    # wait=2 and best=0.3 back.
    import json

    counters = json.loads(json.dumps(first.counters()))
    second = fresh()
    assert second.restore(counters)
    second.on_train_begin()
    assert (second.wait, second.best) == (2, pytest.approx(0.3))
    lrs = _drive(second, model, [0.3, 0.31, 0.31, 0.31, 0.31], start=4)
    assert lrs == pytest.approx([0.1, 0.05, 0.05, 0.05, 0.05])
    assert float(model.optimizer.learning_rate) == pytest.approx(0.025)

    # Without the saved counters the stall would have been counted afresh (no cut at epoch 5).
    model.optimizer.learning_rate = 0.1
    third = fresh()
    assert not third.restore(None)
    third.on_train_begin()
    assert _drive(third, model, [0.3, 0.31], start=4) == pytest.approx([0.1, 0.1])
