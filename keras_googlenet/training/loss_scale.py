"""Dynamic loss scaling for `mixed_float16` that every replica agrees on.

Keras's `LossScaleOptimizer` (3.15) decides whether a step's gradients are finite from each
replica's own gradients, before they are summed, and under MirroredStrategy takes the first
replica's answer. An overflow on another replica alone is then applied: the all-reduced
gradients hold an inf and every replica's weights become inf or NaN (tests/test_loss_scale.py
shows it on two logical CPUs). Where TensorFlow runs replicas without `merge_call` (XLA on
GPUs), each replica would branch on its own answer instead, and a disagreement leaves one
replica waiting in an all-reduce the others skip.

`ReplicaAgreedLossScaleOptimizer` sums the per-replica "not finite" flags first, so a step is
skipped (and the scale halved) on every replica when any replica overflowed. With one replica
it is Keras's optimizer unchanged.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="keras_googlenet")
class ReplicaAgreedLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras's LossScaleOptimizer whose finiteness check is all-reduced over the replicas."""

    def check_finite(self, grads):
        """True when every replica's gradients are finite (one answer, the same everywhere)."""
        import tensorflow as tf

        finite = super().check_finite(grads)
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return finite
        overflowed = context.all_reduce(
            tf.distribute.ReduceOp.SUM, tf.cast(tf.logical_not(finite), tf.float32)
        )
        return tf.equal(overflowed, 0.0)


def with_loss_scaling(optimizer):
    """`optimizer` wrapped for the global policy: under `mixed_float16` (whose gradients need
    loss scaling) a `ReplicaAgreedLossScaleOptimizer`, otherwise `optimizer` itself. An
    optimizer that already scales its loss (a recompile keeps its state) is returned as is."""
    if keras.config.dtype_policy().name != "mixed_float16":
        return optimizer
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    return ReplicaAgreedLossScaleOptimizer(optimizer, name="loss_scale_optimizer")
