"""Dynamic loss scaling under mixed_float16 (training/loss_scale.py): the initial scale, a
skipped step on an overflow (scale halved, weights unchanged), the scale saved and restored
with the weights, and under MirroredStrategy an overflow on one replica only."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from test_strategy import _run_script

from keras_googlenet.training.loss_scale import with_loss_scaling
from keras_googlenet.training.precision import precision_policy

# A 4 -> 3 linear model whose loss is the mean squared output: small inputs give finite
# float16 gradients at Keras's initial scale; one 1e30 input overflows them.
SMALL, HUGE = 0.01, 1e30


def _model():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, kernel_initializer="ones"),
            keras.layers.Activation("linear", dtype="float32"),
        ]
    )
    model.compile(with_loss_scaling(keras.optimizers.SGD(0.1)), "mse")
    return model


def _batch(huge_row=None):
    x = np.full((4, 4), SMALL, "float32")
    if huge_row is not None:
        x[huge_row, 0] = HUGE
    return x, np.zeros((4, 3), "float32")


def test_overflow_skips_the_step_and_halves_the_scale(tmp_path):
    with precision_policy("mixed_float16"):
        model = _model()
        optimizer = model.optimizer
        assert type(optimizer) is keras.optimizers.LossScaleOptimizer  # loads without us
        assert optimizer.check_finite.replica_agreed
        assert optimizer.initial_scale == 2.0**15  # Keras's default, kept

        model.train_on_batch(*_batch())
        assert float(optimizer.dynamic_scale) == 2.0**15  # growth only after 2,000 steps
        assert int(optimizer.iterations) == 1
        kernel = model.layers[0].kernel.numpy()
        assert not np.allclose(kernel, 1.0)

        model.train_on_batch(*_batch(huge_row=0))
        assert float(optimizer.dynamic_scale) == 2.0**14
        assert int(optimizer.iterations) == 1  # the skipped step is not counted
        np.testing.assert_array_equal(model.layers[0].kernel.numpy(), kernel)

        # The scale is an optimizer variable, and model.save_weights keeps the optimizer's
        # variables: a resume from the weights file goes on at the halved scale.
        assert any(v is optimizer.dynamic_scale for v in optimizer.variables)
        path = tmp_path / "state.weights.h5"
        model.save_weights(path)
        again = _model()
        again.optimizer.build(again.trainable_variables)
        assert float(again.optimizer.dynamic_scale) == 2.0**15
        again.load_weights(path)
        assert float(again.optimizer.dynamic_scale) == 2.0**14
        assert int(again.optimizer.iterations) == 1
        np.testing.assert_array_equal(again.layers[0].kernel.numpy(), kernel)
        # A whole-model checkpoint keeps Keras's class: plain load_model reads it back.
        model.save(tmp_path / "model.keras")
        loaded = keras.models.load_model(tmp_path / "model.keras")
        assert float(loaded.optimizer.dynamic_scale) == 2.0**14


def test_only_mixed_float16_is_wrapped():
    sgd = keras.optimizers.SGD()
    for policy in ("float32", "mixed_bfloat16"):
        with precision_policy(policy):
            assert with_loss_scaling(sgd) is sgd
    with precision_policy("mixed_float16"):
        wrapped = with_loss_scaling(sgd)
        assert with_loss_scaling(wrapped) is wrapped  # a recompile keeps its optimizer
        loaded = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD())  # e.g. load_model
        assert with_loss_scaling(loaded) is loaded and loaded.check_finite.replica_agreed


MIRRORED_SCRIPT = """
import json
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
import sys
sys.path.insert(0, "tests")
from test_loss_scale import _batch, _model
from keras_googlenet.training.precision import precision_policy

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
out = {}
with precision_policy("mixed_float16"):
    for ours in (True, False):
        # Global batch 4: rows 0-1 go to replica 0, rows 2-3 to replica 1.
        for huge_row in (None, 0, 3):
            with strategy.scope():
                model = _model()
                if not ours:  # Keras's own optimizer, for comparison
                    model.compile(keras.optimizers.LossScaleOptimizer(
                        keras.optimizers.SGD(0.1)), "mse")
            model.fit(*_batch(huge_row), batch_size=4, verbose=0, shuffle=False)
            kernels = [v.numpy().tolist() for v in
                       strategy.experimental_local_results(model.layers[0].kernel)]
            out[f"{ours}/{huge_row}"] = {
                "scale": float(model.optimizer.dynamic_scale.numpy()),
                "steps": int(model.optimizer.iterations.numpy()),
                "kernels": kernels,
                "agreed": getattr(model.optimizer.check_finite, "replica_agreed", False),
            }
print("RESULT " + json.dumps(out))
"""


@pytest.mark.slow
def test_overflow_on_one_replica_skips_the_step_on_every_replica():
    out = _run_script(MIRRORED_SCRIPT)

    def kernels(case):
        return [np.array(k) for k in out[case]["kernels"]]

    assert out["True/None"]["agreed"] and not out["False/None"]["agreed"]
    for ours in (True, False):
        finite = out[f"{ours}/None"]
        assert finite["steps"] == 1 and finite["scale"] == 2.0**15
        assert all(
            np.isfinite(k).all() and not np.allclose(k, 1.0) for k in kernels(f"{ours}/None")
        )
        # An overflow on the first replica: Keras's check reads that replica, both skip.
        first = out[f"{ours}/0"]
        assert first["steps"] == 0 and first["scale"] == 2.0**14
        assert all(np.array_equal(k, np.ones((4, 3))) for k in kernels(f"{ours}/0"))
    # An overflow on the second replica only: ours skips the step on both replicas ...
    second = out["True/3"]
    assert second["steps"] == 0 and second["scale"] == 2.0**14
    assert all(np.array_equal(k, np.ones((4, 3))) for k in kernels("True/3"))
    # ... where Keras's (3.15) applies the inf to every replica's weights: the bug it fixes.
    keras_second = out["False/3"]
    assert keras_second["steps"] == 1 and keras_second["scale"] == 2.0**15
    assert all(not np.isfinite(k).all() for k in kernels("False/3"))
