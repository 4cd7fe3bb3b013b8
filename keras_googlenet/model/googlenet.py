"""GoogLeNet (Inception v1) with the functional API, as in Table 1 of the paper.

Szegedy et al., "Going deeper with convolutions", CVPR 2015, https://arxiv.org/abs/1409.4842

The training model has three outputs, `main`, `aux_4a` and `aux_4d` (softmax probabilities,
float32 under any mixed-precision policy); `inference_model` drops the auxiliary heads and
shares every weight with the training model.

Run `keras-googlenet summary` for the layer-size table (`model/summary.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_googlenet.model.batch_norm import fuse_training_pass
from keras_googlenet.model.table import (
    AUX_AFTER,
    INCEPTION_TABLE,
    InceptionSpec,
    min_input_size,
)


def conv_bn_relu(
    x,
    filters,
    kernel,
    strides=1,
    *,
    name,
    batch_norm=True,
    initializer,
    symmetric_pad=0,
    sync_batch_norm=False,
):
    """Conv -> batch norm -> ReLU, 'same' padding, or `symmetric_pad` zeros on every side.

    The paper has no batch norm (it predates it) and uses LRN after the stem convs; like every
    reference implementation we use batch norm instead. The conv then needs no bias.
    `sync_batch_norm`: statistics over all replicas' batches (Keras's `synchronized=True`).
    """
    if symmetric_pad:
        # PyTorch pads both sides equally; Keras "same" pads (2, 3) for a 7x7/2 conv on an even
        # input, which shifts every output (torchvision's conv1).
        x = keras.layers.ZeroPadding2D(symmetric_pad, name=f"{name}_pad")(x)
    x = keras.layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="valid" if symmetric_pad else "same",
        use_bias=not batch_norm,
        kernel_initializer=initializer,
        name=name,
    )(x)
    if batch_norm:
        bn = keras.layers.BatchNormalization(
            epsilon=1e-3, synchronized=sync_batch_norm, name=f"{name}_bn"
        )
        x = fuse_training_pass(bn)(x)  # synchronized: Keras's own pass (see batch_norm.py)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def max_pool(x, name, strides=2, size=3, ceil_mode=False):
    """Max pool, 'same' padding (224 -> 112 -> 56 -> 28 -> 14 -> 7 as in Table 1).

    With `ceil_mode`, PyTorch's rule instead (torchvision's pools): no padding on the top/left,
    ceil((n - size) / strides) + 1 outputs. It differs from 'same' on odd sizes only.
    """
    if ceil_mode and strides > 1:
        pads = []
        for n in x.shape[1:3]:
            out = -(-(n - size) // strides) + 1
            pads.append((0, (out - 1) * strides + size - n))
        # Zeros are neutral here: every pool input follows a ReLU (>= 0), and ceil mode starts
        # each window inside the input, so no window is all padding.
        x = keras.layers.ZeroPadding2D(tuple(pads), name=f"{name}_pad")(x)
        return keras.layers.MaxPooling2D(size, strides=strides, padding="valid", name=name)(x)
    return keras.layers.MaxPooling2D(size, strides=strides, padding="same", name=name)(x)


def inception_block(
    x, spec: InceptionSpec, *, name, batch_norm=True, initializer, sync_batch_norm=False
):
    """The four parallel branches of an Inception module, concatenated on channels."""
    conv = dict(batch_norm=batch_norm, initializer=initializer, sync_batch_norm=sync_batch_norm)
    branch1 = conv_bn_relu(x, spec.ch1x1, 1, name=f"{name}_1x1", **conv)

    branch2 = conv_bn_relu(x, spec.ch3x3_reduce, 1, name=f"{name}_3x3_reduce", **conv)
    branch2 = conv_bn_relu(branch2, spec.ch3x3, 3, name=f"{name}_3x3", **conv)

    # A real 5x5, as in the paper (torchvision and TF-slim use 3x3 here, a weight-porting bug;
    # their 3x3 kernels are imported into the centre of this 5x5, which computes the same).
    branch3 = conv_bn_relu(x, spec.ch5x5_reduce, 1, name=f"{name}_5x5_reduce", **conv)
    branch3 = conv_bn_relu(branch3, spec.ch5x5, 5, name=f"{name}_5x5", **conv)

    branch4 = max_pool(x, f"{name}_pool", strides=1)
    branch4 = conv_bn_relu(branch4, spec.pool_proj, 1, name=f"{name}_pool_proj", **conv)

    return keras.layers.Concatenate(axis=-1, name=f"{name}_output")(
        [branch1, branch2, branch3, branch4]
    )


def aux_head(
    x, num_classes, *, name, dropout=0.7, batch_norm=True, initializer, sync_batch_norm=False
):
    """Auxiliary classifier (paper section 5): 14x14 -> 4x4 -> 2048 -> 1024 -> classes."""
    x = keras.layers.AveragePooling2D(5, strides=3, padding="valid", name=f"{name}_pool")(x)
    conv = dict(batch_norm=batch_norm, initializer=initializer, sync_batch_norm=sync_batch_norm)
    x = conv_bn_relu(x, 128, 1, name=f"{name}_conv", **conv)
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    x = keras.layers.Dense(
        1024, activation="relu", kernel_initializer=initializer, name=f"{name}_fc"
    )(x)
    x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = keras.layers.Dense(num_classes, kernel_initializer=initializer, name=f"{name}_classifier")(
        x
    )
    # Softmax in float32: under mixed precision a float16 softmax loses small probabilities.
    return keras.layers.Activation("softmax", dtype="float32", name=name)(x)


def build_googlenet(
    num_classes: int,
    input_shape: Sequence[int] = (224, 224, 3),
    *,
    batch_norm: bool = True,
    aux_heads: bool = True,
    dropout: float = 0.4,
    aux_dropout: float = 0.7,
    initializer: str = "glorot_normal",
    mean_rgb: Sequence[float] | None = None,
    std_rgb: float | Sequence[float] = 1.0,
    padding: str = "same",
    pool4_size: int = 3,
    sync_batch_norm: bool = False,
    name: str = "googlenet",
) -> keras.Model:
    """Builds GoogLeNet as in Table 1 of Szegedy et al. 2014 (arXiv:1409.4842).

    Args:
        num_classes: number of classes of every softmax head (at least 2).
        input_shape: (height, width, channels); height and width at least `min_input_size`.
        batch_norm: batch norm after every conv (in place of the paper's LRN).
        aux_heads: add the auxiliary classifiers after 4a and 4d.
        dropout: dropout rate before the main classifier (paper: 0.4).
        aux_dropout: dropout rate in the auxiliary heads (paper: 0.7).
        initializer: kernel initializer name (the seeds use Xavier/Glorot normal).
        mean_rgb: if given, the first layer computes `(x - mean_rgb) / std_rgb`, so the model
            takes raw 0-255 pixels (what the pipeline ships and what a served model receives).
        std_rgb: divisor of that normalization (scalar or per channel).
        padding: "same" (the paper, and TF-slim) or "torchvision": conv1 padded by 3 on every
            side and the stride-2 max pools in PyTorch's ceil mode, to reproduce torchvision.
        pool4_size: the max pool between 4e and 5a, 3 (Table 1) or 2 (torchvision, TF-slim).
        sync_batch_norm: batch-norm statistics over the global batch under a distribution
            strategy (`runtime.sync_batch_norm`); the same as plain batch norm on one replica.
        name: model name.

    Returns:
        A `keras.Model` whose outputs are named `main`, `aux_4a`, `aux_4d` (only `main` when
        `aux_heads` is False).

    Raises:
        ValueError: on fewer than 2 classes, a bad input shape or an input below the minimum.
    """
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {tuple(input_shape)}")
    smallest = min_input_size(aux_heads)
    if min(input_shape[:2]) < smallest:
        raise ValueError(
            f"input size {tuple(input_shape[:2])} is below the minimum of {smallest}x{smallest}"
            + (" (the auxiliary heads' 5x5 pool needs 5x5 at block 4a)" if aux_heads else "")
        )
    if not 0 <= dropout < 1 or not 0 <= aux_dropout < 1:
        raise ValueError(f"dropout rates must be in [0, 1), got {dropout} and {aux_dropout}")
    if padding not in ("same", "torchvision") or pool4_size not in (2, 3):
        raise ValueError(f"padding must be same or torchvision, got {padding!r}; pool4_size 2 or 3")

    conv = dict(batch_norm=batch_norm, initializer=initializer, sync_batch_norm=sync_batch_norm)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    if mean_rgb is not None:
        std = [float(std_rgb)] * 3 if isinstance(std_rgb, (int, float)) else list(std_rgb)
        x = keras.layers.Normalization(
            mean=list(mean_rgb), variance=[s * s for s in std], name="normalize"
        )(x)

    # Stem. 224x224x3
    ceil = padding == "torchvision"
    conv1_pad = 3 if ceil else 0
    x = conv_bn_relu(x, 64, 7, strides=2, name="conv1_7x7_s2", symmetric_pad=conv1_pad, **conv)
    # 112x112x64
    x = max_pool(x, "pool1_3x3_s2", ceil_mode=ceil)  # 56x56x64
    x = conv_bn_relu(x, 64, 1, name="conv2_3x3_reduce", **conv)  # 56x56x64
    x = conv_bn_relu(x, 192, 3, name="conv2_3x3", **conv)  # 56x56x192
    x = max_pool(x, "pool2_3x3_s2", ceil_mode=ceil)  # 28x28x192

    aux_outputs = []
    for stage, spec in INCEPTION_TABLE:
        if spec is None:
            # torchvision and TF-slim pool 2x2 before 5a (Table 1: 3x3); same 7x7 output.
            size = pool4_size if stage == "pool4" else 3
            x = max_pool(x, f"{stage}_{size}x{size}_s2", size=size, ceil_mode=ceil)
            continue
        x = inception_block(x, spec, name=f"inception_{stage}", **conv)
        if aux_heads and stage in AUX_AFTER:
            head = f"aux_{stage}"
            aux_outputs.append(
                (head, aux_head(x, num_classes, name=head, dropout=aux_dropout, **conv))
            )
    # 7x7x1024

    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)  # 1024
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.Dense(num_classes, kernel_initializer=initializer, name="linear")(x)
    main = keras.layers.Activation("softmax", dtype="float32", name="main")(x)

    outputs = {"main": main, **dict(aux_outputs)}
    return keras.Model(inputs, outputs, name=name)


def inference_model(model: keras.Model) -> keras.Model:
    """The main head alone, sharing every layer (and so every weight) with `model`."""
    # The single input tensor, not the `inputs` list: called on a tensor, a list-input model
    # warns that the structures differ.
    return keras.Model(
        model.inputs[0], model.get_layer("main").output, name=f"{model.name}_inference"
    )
