"""Dynamic loss scaling for `mixed_float16` that every replica agrees on.

Keras's `LossScaleOptimizer` (3.15) decides whether a step's gradients are finite from each
replica's own gradients, before they are summed, and under MirroredStrategy takes the first
replica's answer. An overflow on another replica alone is then applied: the all-reduced
gradients hold an inf and every replica's weights become inf or NaN (tests/test_loss_scale.py
shows it on two logical CPUs). Where TensorFlow runs replicas without `merge_call` (XLA on
GPUs), each replica would branch on its own answer instead, and a disagreement leaves one
replica waiting in an all-reduce the others skip.

`with_loss_scaling` gives Keras's optimizer whose finiteness check sums the per-replica "not
finite" flags first, so a step is skipped (and the scale halved) on every replica when any
replica overflowed; with one replica the check is Keras's. Only the instance's check is
replaced, the class stays Keras's (as model/batch_norm.py does for batch norm), so checkpoints
still load with plain `keras.models.load_model`, without this project.
"""

from __future__ import annotations

import keras


def agree_across_replicas(optimizer: keras.optimizers.LossScaleOptimizer):
    """Makes `optimizer`'s finiteness check one answer over all replicas; returns it."""
    keras_check = optimizer.check_finite
    if getattr(keras_check, "replica_agreed", False):
        return optimizer

    def check_finite(grads):
        import tensorflow as tf

        finite = keras_check(grads)
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return finite
        overflowed = context.all_reduce(
            tf.distribute.ReduceOp.SUM, tf.cast(tf.logical_not(finite), tf.float32)
        )
        return tf.equal(overflowed, 0.0)

    check_finite.replica_agreed = True
    optimizer.check_finite = check_finite
    return optimizer


def with_loss_scaling(optimizer):
    """`optimizer` for the global policy: under `mixed_float16` (whose gradients need loss
    scaling) a LossScaleOptimizer around it whose skipped steps all replicas agree on
    (`agree_across_replicas`); otherwise `optimizer` itself. One that already scales its loss
    (a recompile keeps its state) is kept, its check made to agree."""
    if keras.config.dtype_policy().name != "mixed_float16":
        return optimizer
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name="loss_scale_optimizer")
    return agree_across_replicas(optimizer)
