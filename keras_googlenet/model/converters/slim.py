"""TF-slim's Inception v1 checkpoint (`inception_v1.ckpt`, 2016_08_28) -> Keras arrays.

Read with `tf.train.load_checkpoint` (TensorFlow only). Slim's names (models/research/slim
`nets/inception_v1.py`): `InceptionV1/Conv2d_1a_7x7`, `Conv2d_2b_1x1`, `Conv2d_2c_3x3`, then
`Mixed_3b`..`Mixed_5c` (our 3a..5b) with `Branch_0/Conv2d_0a_1x1`, `Branch_1/Conv2d_0a_1x1`,
`Branch_1/Conv2d_0b_3x3`, `Branch_2/Conv2d_0a_1x1`, `Branch_2/Conv2d_0b_3x3` (its "5x5", a
3x3; `Conv2d_0a_3x3` in Mixed_5b, a quirk of the original), `Branch_3/Conv2d_0b_1x1`. Batch norm
has no gamma (scale=False), eps 0.001. The classifier is the 1x1 conv `Logits/Conv2d_0c_1x1`
with 1001 outputs, output 0 being "background".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_googlenet.errors import UserError
from keras_googlenet.model.converters import (
    BRANCH_CONVS,
    STEM_CONVS,
    Imported,
    centre_in_5x5,
    imagenet_class_names,
)
from keras_googlenet.model.table import INCEPTION_SPECS

SCOPE = "InceptionV1"
MODEL_KEYS = {
    "num_classes": 1001,  # background + the 1000 ImageNet classes
    "padding": "same",  # TensorFlow's SAME is Keras's same, conv1 included
    "pool4_size": 2,  # MaxPool_5a_2x2
    "input_scaling": "minus_one_one",
}
_MIXED = dict(
    zip(INCEPTION_SPECS, ("3b", "3c", "4b", "4c", "4d", "4e", "4f", "5b", "5c"), strict=True)
)
_BRANCHES = (
    "Branch_0/Conv2d_0a_1x1",
    "Branch_1/Conv2d_0a_1x1",
    "Branch_1/Conv2d_0b_3x3",
    "Branch_2/Conv2d_0a_1x1",
    "Branch_2/Conv2d_0b_3x3",
    "Branch_3/Conv2d_0b_1x1",
)
_LOGITS = f"{SCOPE}/Logits/Conv2d_0c_1x1"
# Optimizer slots and moving averages a training checkpoint may carry beside the weights.
_SLOT_SUFFIXES = ("/Momentum", "/RMSProp", "/RMSProp_1", "/ExponentialMovingAverage")


def slim_conv_names() -> dict[str, str]:
    """Keras conv layer name -> slim variable scope."""
    names = dict(
        zip(
            STEM_CONVS,
            (f"{SCOPE}/Conv2d_1a_7x7", f"{SCOPE}/Conv2d_2b_1x1", f"{SCOPE}/Conv2d_2c_3x3"),
            strict=True,
        )
    )
    for stage, mixed in _MIXED.items():
        for ours, branch in zip(BRANCH_CONVS, _BRANCHES, strict=True):
            if mixed == "5b" and branch == "Branch_2/Conv2d_0b_3x3":
                branch = "Branch_2/Conv2d_0a_3x3"  # the original's name
            names[f"inception_{stage}_{ours}"] = f"{SCOPE}/Mixed_{mixed}/{branch}"
    return names


def expected_variables() -> set[str]:
    """The variable names of slim's inception_v1 with 1001 classes."""
    names = {f"{_LOGITS}/weights", f"{_LOGITS}/biases"}
    for scope in slim_conv_names().values():
        names.add(f"{scope}/weights")
        names.update(f"{scope}/BatchNorm/{k}" for k in ("beta", "moving_mean", "moving_variance"))
    return names


def read(prefix: str | Path) -> Imported:
    """Reads a slim Inception v1 checkpoint (the prefix, e.g. `inception_v1.ckpt`).

    Raises:
        UserError: unreadable, or not slim's Inception v1 (a variable missing or of another
            shape, or an unexpected one under InceptionV1/).
    """
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(str(prefix))
        shapes = reader.get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{prefix}: not a readable TensorFlow checkpoint ({first:.200})") from None
    expected = expected_variables()
    missing = sorted(expected - set(shapes))
    extra = sorted(
        n
        for n in shapes
        if n.startswith(f"{SCOPE}/") and n not in expected and not n.endswith(_SLOT_SUFFIXES)
    )
    if missing or extra:
        what = f"missing variable {missing[0]}" if missing else f"unexpected variable {extra[0]}"
        count = f" ({len(missing)} missing, {len(extra)} unexpected)"
        raise UserError(f"{prefix}: not TF-slim's Inception v1: {what}{count}")

    def get(name, shape=None):
        try:
            value = np.asarray(reader.get_tensor(name), np.float32)
        except (tf.errors.OpError, ValueError) as e:
            raise UserError(f"{prefix}: cannot read {name} (damaged? {e})") from None
        if shape is not None and value.shape != tuple(shape):
            raise UserError(f"{prefix}: {name} has shape {value.shape}, expected {tuple(shape)}")
        return value

    convs, batch_norms = {}, {}
    for ours, scope in slim_conv_names().items():
        kernel = get(f"{scope}/weights")  # already HWIO
        if ours.endswith("_5x5"):
            if kernel.shape[:2] != (3, 3):
                raise UserError(f"{prefix}: {scope}/weights is not 3x3")
            kernel = centre_in_5x5(kernel)
        convs[ours] = kernel
        out = kernel.shape[3:]
        beta, mean, var = (
            get(f"{scope}/BatchNorm/{k}", out) for k in ("beta", "moving_mean", "moving_variance")
        )
        batch_norms[ours] = (np.ones_like(beta), beta, mean, var)  # scale=False: gamma is 1
    kernel = get(f"{_LOGITS}/weights", (1, 1, 1024, 1001))
    classifier = (kernel[0, 0].copy(), get(f"{_LOGITS}/biases", (1001,)))
    names = ["background", *imagenet_class_names()]
    return Imported("slim", dict(MODEL_KEYS), convs, batch_norms, classifier, names)
