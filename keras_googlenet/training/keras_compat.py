"""The one place that reaches into Keras's internals: `fit` under MultiWorkerMirroredStrategy.

Keras 3's `fit` fails twice under MultiWorkerMirroredStrategy (keras-team/keras#20585), and no
public API avoids either failure:

1. Before training, `fit` averages one distributed batch over the workers to build the metrics
   (`Model._maybe_symbolic_build`), which MultiWorkerMirroredStrategy cannot reduce (a nested
   PerReplica): the build is given a local batch instead.
2. After each step, the per-replica logs (scalars) are averaged with
   `strategy.reduce("MEAN", v, axis=0)`, which fails on a scalar: they are averaged over the
   replicas with `axis=None`, what the same function does for one machine.

Both hooks were written against the Keras versions in `TESTED`; any other version stops with
one line before training starts instead of failing somewhere inside `fit`. Nothing else in the
project uses a private Keras name (single-device and MirroredStrategy runs need none of this).
"""

from __future__ import annotations

import keras

from keras_googlenet.errors import UserError

# major.minor of the Keras releases whose internals these hooks were checked against (the suite's
# multi-worker tests pass on each).
TESTED = ("3.15", "3.16")


def check_version(version: str = keras.__version__) -> None:
    """Refuses a Keras release these hooks were not written for (one line)."""
    if ".".join(version.split(".")[:2]) not in TESTED:
        raise UserError(
            f"runtime.strategy multi_worker: the workaround for Keras's multi-worker fit was "
            f"written for Keras {' and '.join(TESTED)}, and Keras {version} is installed; "
            "install one of those (pip install 'keras>=3.15,<3.17'), or train on one machine"
        )


def patch_keras_for_multi_worker(model, sample_batch) -> None:
    """Applies the two workarounds of the module docstring to `model` (and Keras's TF trainer).

    Args:
        model: the compiled model (its `_maybe_symbolic_build` is replaced).
        sample_batch: one `(images, labels)` batch, not distributed.

    Raises:
        UserError: a Keras release the hooks were not written for, or one without them.
    """
    check_version()
    try:
        from keras.src import tree
        from keras.src.backend.tensorflow import trainer as tf_trainer

        build = model._maybe_symbolic_build
        original = tf_trainer.reduce_per_replica
        is_multi_worker = tf_trainer._collective_all_reduce_multi_worker
    except (ImportError, AttributeError) as e:
        raise UserError(
            f"runtime.strategy multi_worker: Keras {keras.__version__} lacks what the "
            f"multi-worker workaround needs ({e}); install keras>=3.15,<3.17"
        ) from None
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: build(
        data_batch=sample_batch
    )
    if getattr(original, "_multi_worker_fix", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and is_multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica._multi_worker_fix = True
    tf_trainer.reduce_per_replica = reduce_per_replica
