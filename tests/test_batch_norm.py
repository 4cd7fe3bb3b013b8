"""The fused training pass of batch norm against Keras's own: outputs, gradients, statistics."""

from __future__ import annotations

import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_googlenet.model.batch_norm import fuse_training_pass
from keras_googlenet.model.googlenet import build_googlenet

# Relative tolerance per policy: float32 rounding, or the activation dtype's own precision.
RTOL = {"float32": 1e-5, "mixed_float16": 2e-3, "mixed_bfloat16": 1e-2}


def _pair(shape, momentum=0.9):
    """A Keras layer and a fused one with the same (non-trivial) weights."""
    keras_bn = keras.layers.BatchNormalization(epsilon=1e-3, momentum=momentum)
    fused = fuse_training_pass(keras.layers.BatchNormalization(epsilon=1e-3, momentum=momentum))
    keras_bn.build(shape)
    fused.build(shape)
    rng = np.random.default_rng(0)
    weights = [w + rng.uniform(0.1, 0.5, w.shape).astype(w.dtype) for w in keras_bn.get_weights()]
    keras_bn.set_weights(weights)
    fused.set_weights(weights)
    return keras_bn, fused


def _relative(a, b):
    a, b = np.asarray(tf.cast(a, "float32")), np.asarray(tf.cast(b, "float32"))
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))


@pytest.mark.parametrize("policy", list(RTOL))
def test_fused_training_pass_equals_keras(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        shape = (6, 9, 9, 16)
        keras_bn, fused = _pair(shape)
        rng = np.random.default_rng(1)
        x = tf.cast(rng.normal(2.0, 3.0, shape).astype("float32"), keras_bn.compute_dtype)
        weight = tf.constant(rng.normal(size=shape).astype("float32"))

        def forward_backward(layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(tf.cast(y, "float32") * weight)
            return [y, *tape.gradient(loss, [x, layer.gamma, layer.beta])]

        expected, got = forward_backward(keras_bn), forward_backward(fused)
        assert got[0].dtype == expected[0].dtype == keras_bn.compute_dtype
        for name, a, b in zip(("output", "dx", "dgamma", "dbeta"), expected, got, strict=True):
            assert _relative(a, b) < RTOL[policy], name
        # The moving statistics follow Keras's update (biased batch variance), in float32.
        for a, b in zip(keras_bn.get_weights()[2:], fused.get_weights()[2:], strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        # Inference is Keras's own code on both (the moving statistics differ by rounding).
        assert _relative(keras_bn(x), fused(x)) < RTOL[policy]
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_googlenet_training_pass_equals_keras_batch_norm(tmp_path):
    """GoogLeNet's loss, gradients and moving statistics with and without the fused pass.

    At 72 px and batch 8 the deep blocks normalize over 8 to 32 values per channel, so rounding
    alone moves gradients by percents: Keras's own pass on inputs scaled by 1 + 1e-7 moved
    conv1's by 1.6% and aux_4d_conv's by 12%. So each gradient must agree with Keras's within
    twice that noise (measured here the same way) or 5%, whichever is larger; a wrong fused pass
    (the unbiased variance, a missed layer) is off by far more.
    """
    keras.utils.set_random_seed(3)
    # Dropout off: both passes must see the same network, not the same random stream.
    model = build_googlenet(
        4, (72, 72, 3), mean_rgb=(120.0, 110.0, 100.0), std_rgb=58.0, dropout=0, aux_dropout=0
    )
    batch_norms = [
        layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert len(batch_norms) == 59 and all("call" in vars(layer) for layer in batch_norms)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 72, 72, 3)).astype("float32")
    y = rng.integers(0, 4, 8)
    initial = [w.numpy() for w in model.weights]

    def training_pass(scale=1.0):
        for weight, value in zip(model.weights, initial, strict=True):
            weight.assign(value)
        with tf.GradientTape() as tape:
            out = model(x * np.float32(scale), training=True)
            loss = sum(
                w * tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, out[head]))
                for head, w in (("main", 1.0), ("aux_4a", 0.3), ("aux_4d", 0.3))
            )
        moving = [layer.moving_variance.numpy() for layer in batch_norms]
        return float(loss), tape.gradient(loss, model.trainable_weights), moving

    loss_fused, grads_fused, moving_fused = training_pass()
    for layer in batch_norms:  # back to Keras's own training pass
        del layer.call
    loss_keras, grads_keras, moving_keras = training_pass()
    _, grads_noise, _ = training_pass(scale=1 + 1e-7)
    assert loss_fused == pytest.approx(loss_keras, rel=1e-5)
    for weight, a, b, c in zip(
        model.trainable_weights, grads_keras, grads_fused, grads_noise, strict=True
    ):
        noise = max(0.05, 2 * np.linalg.norm(c - a) / np.linalg.norm(a))
        assert np.linalg.norm(b - a) <= noise * np.linalg.norm(a), weight.path
    for a, b in zip(moving_keras, moving_fused, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4)

    # Saved models name Keras's own layer class: they load without this project's code.
    path = tmp_path / "m.keras"
    build_googlenet(4, (72, 72, 3)).save(path)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    classes = {layer["class_name"] for layer in config["config"]["layers"]}
    assert "BatchNormalization" in classes
    assert all(layer["module"].startswith("keras") for layer in config["config"]["layers"])
