"""Batch normalization layers whose training pass runs TensorFlow's fused kernel.

Keras 3's `BatchNormalization` builds the training pass from separate ops (mean, squared
difference, normalize, scale), and under mixed precision it first casts the whole activation to
float32 and back; its backward pass is as many elementwise passes again over the largest tensors
of the network. `FusedBatchNormV3` does the same arithmetic in one kernel each way (oneDNN's on
CPU, cuDNN's on GPU), reading bfloat16/float16 activations directly with float32 statistics:
three times less CPU for conv1's batch norm at batch 32 (bench/README.md).

The layers stay Keras's own class, with the same variables, moving-average update and config:
only the instance's training pass is swapped. So checkpoints still load with plain
`keras.models.load_model`, without this project, and inference, synchronized batch norm, masks
and anything but a 4-D channels-last input keep Keras's code.
"""

from __future__ import annotations

import keras


def fuse_training_pass(layer: keras.layers.BatchNormalization) -> keras.layers.BatchNormalization:
    """Makes `layer`'s training pass use the fused kernel where it applies; returns `layer`."""
    keras_call = layer.call

    def call(inputs, training=None, mask=None):
        if not _fused_applies(layer, inputs, training, mask):
            return keras_call(inputs, training=training, mask=mask)
        return _fused_training_pass(layer, inputs)

    layer.call = call
    return layer


def _fused_applies(layer, inputs, training, mask) -> bool:
    return (
        bool(training)
        and layer.trainable
        and mask is None
        and keras.backend.backend() == "tensorflow"
        and len(inputs.shape) == 4
        and layer.axis in (-1, 3)
        and layer.scale
        and layer.center
        and not layer.synchronized
        and not layer.renorm
    )


def _fused_training_pass(layer, inputs):
    """Normalizes with the batch statistics and updates the moving ones, as Keras does."""
    import tensorflow as tf

    outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        inputs,
        tf.cast(layer.gamma, "float32"),
        tf.cast(layer.beta, "float32"),
        epsilon=layer.epsilon,
        data_format="NHWC",
        is_training=True,
    )
    # The kernel returns the unbiased (n - 1) batch variance for the running average; Keras
    # averages the biased one it normalized with. Undone, so the moving statistics match.
    count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], variance.dtype)
    variance = variance * tf.maximum(count - 1.0, 0.0) / count
    momentum = layer.momentum
    layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1.0 - momentum))
    return tf.cast(outputs, layer.compute_dtype)
