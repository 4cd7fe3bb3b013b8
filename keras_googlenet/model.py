"""GoogLeNet (Inception v1) with the functional API, as in Table 1 of the paper.

Szegedy et al., "Going deeper with convolutions", CVPR 2015, https://arxiv.org/abs/1409.4842

The training model has three outputs, `main`, `aux_4a` and `aux_4d` (softmax probabilities,
float32 under any mixed-precision policy); `inference_model` drops the auxiliary heads and
shares every weight with the training model.

Run `python -m keras_googlenet.model --summary` for the layer-size table.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import NamedTuple

import keras

OUTPUT_NAMES = ("main", "aux_4a", "aux_4d")
AUX_AFTER = ("4a", "4d")


class InceptionSpec(NamedTuple):
    """One row of the paper's Table 1, columns in the paper's order."""

    ch1x1: int
    ch3x3_reduce: int
    ch3x3: int
    ch5x5_reduce: int
    ch5x5: int
    pool_proj: int

    @property
    def out_channels(self) -> int:
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj


# Table 1. A `None` entry is the 3x3/2 max pool between stages.
INCEPTION_TABLE: tuple[tuple[str, InceptionSpec | None], ...] = (
    ("3a", InceptionSpec(64, 96, 128, 16, 32, 32)),  # 28x28x256
    ("3b", InceptionSpec(128, 128, 192, 32, 96, 64)),  # 28x28x480
    ("pool3", None),  # 14x14x480
    ("4a", InceptionSpec(192, 96, 208, 16, 48, 64)),  # 14x14x512
    ("4b", InceptionSpec(160, 112, 224, 24, 64, 64)),  # 14x14x512
    ("4c", InceptionSpec(128, 128, 256, 24, 64, 64)),  # 14x14x512
    ("4d", InceptionSpec(112, 144, 288, 32, 64, 64)),  # 14x14x528
    ("4e", InceptionSpec(256, 160, 320, 32, 128, 128)),  # 14x14x832
    ("pool4", None),  # 7x7x832
    ("5a", InceptionSpec(256, 160, 320, 32, 128, 128)),  # 7x7x832
    ("5b", InceptionSpec(384, 192, 384, 48, 128, 128)),  # 7x7x1024
)
INCEPTION_SPECS = {name: spec for name, spec in INCEPTION_TABLE if spec is not None}

# Total downsampling before block 4a: conv1 /2, pool1 /2, pool2 /2, pool3 /2.
_STRIDE_AT_4A = 16
# The auxiliary heads' 5x5 average pool (valid padding) needs at least 5x5 at 4a/4d.
_AUX_POOL = 5
# Without auxiliary heads nothing breaks below this, but the last stage would be 1x1 and the
# network degenerate; 32 is CIFAR's native size, the smallest anyone asks for.
_MIN_SIZE_NO_AUX = 32


def min_input_size(aux_heads: bool = True) -> int:
    """Smallest input height/width the model accepts.

    With auxiliary heads the 4a/4d feature map (input / 16, rounded up by 'same' padding) must be
    at least 5x5 for their 5x5 average pool: 65 pixels.
    """
    if aux_heads:
        return _STRIDE_AT_4A * (_AUX_POOL - 1) + 1
    return _MIN_SIZE_NO_AUX


def conv_bn_relu(x, filters, kernel, strides=1, *, name, batch_norm=True, initializer):
    """Conv -> batch norm -> ReLU, 'same' padding.

    The paper has no batch norm (it predates it) and uses LRN after the stem convs; like every
    reference implementation we use batch norm instead. The conv then needs no bias.
    """
    x = keras.layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        use_bias=not batch_norm,
        kernel_initializer=initializer,
        name=name,
    )(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(epsilon=1e-3, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def max_pool(x, name, strides=2):
    """3x3 max pool, 'same' padding (224 -> 112 -> 56 -> 28 -> 14 -> 7 as in Table 1)."""
    return keras.layers.MaxPooling2D(3, strides=strides, padding="same", name=name)(x)


def inception_block(x, spec: InceptionSpec, *, name, batch_norm=True, initializer):
    """The four parallel branches of an Inception module, concatenated on channels."""
    conv = dict(batch_norm=batch_norm, initializer=initializer)
    branch1 = conv_bn_relu(x, spec.ch1x1, 1, name=f"{name}_1x1", **conv)

    branch2 = conv_bn_relu(x, spec.ch3x3_reduce, 1, name=f"{name}_3x3_reduce", **conv)
    branch2 = conv_bn_relu(branch2, spec.ch3x3, 3, name=f"{name}_3x3", **conv)

    # A real 5x5, as in the paper (torchvision and TF-slim use 3x3 here, a weight-porting bug).
    branch3 = conv_bn_relu(x, spec.ch5x5_reduce, 1, name=f"{name}_5x5_reduce", **conv)
    branch3 = conv_bn_relu(branch3, spec.ch5x5, 5, name=f"{name}_5x5", **conv)

    branch4 = max_pool(x, f"{name}_pool", strides=1)
    branch4 = conv_bn_relu(branch4, spec.pool_proj, 1, name=f"{name}_pool_proj", **conv)

    return keras.layers.Concatenate(axis=-1, name=f"{name}_output")(
        [branch1, branch2, branch3, branch4]
    )


def aux_head(x, num_classes, *, name, dropout=0.7, batch_norm=True, initializer):
    """Auxiliary classifier (paper section 5): 14x14 -> 4x4 -> 2048 -> 1024 -> classes."""
    x = keras.layers.AveragePooling2D(5, strides=3, padding="valid", name=f"{name}_pool")(x)
    x = conv_bn_relu(x, 128, 1, name=f"{name}_conv", batch_norm=batch_norm, initializer=initializer)
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

    conv = dict(batch_norm=batch_norm, initializer=initializer)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    if mean_rgb is not None:
        std = [float(std_rgb)] * 3 if isinstance(std_rgb, (int, float)) else list(std_rgb)
        x = keras.layers.Normalization(
            mean=list(mean_rgb), variance=[s * s for s in std], name="normalize"
        )(x)

    # Stem. 224x224x3
    x = conv_bn_relu(x, 64, 7, strides=2, name="conv1_7x7_s2", **conv)  # 112x112x64
    x = max_pool(x, "pool1_3x3_s2")  # 56x56x64
    x = conv_bn_relu(x, 64, 1, name="conv2_3x3_reduce", **conv)  # 56x56x64
    x = conv_bn_relu(x, 192, 3, name="conv2_3x3", **conv)  # 56x56x192
    x = max_pool(x, "pool2_3x3_s2")  # 28x28x192

    aux_outputs = []
    for stage, spec in INCEPTION_TABLE:
        if spec is None:
            x = max_pool(x, f"{stage}_3x3_s2")
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


# ---------------------------------------------------------------------------------------------
# The layer-size table (the seed printed one to check the network against the paper).

_TABLE_TYPES = {
    "Conv2D": "conv",
    "MaxPooling2D": "max pool",
    "AveragePooling2D": "avg pool",
    "GlobalAveragePooling2D": "avg pool (global)",
    "Concatenate": "concat",
    "Dense": "linear",
    "Dropout": "dropout",
    "Flatten": "flatten",
    "Activation": "softmax",
    "Normalization": "normalize",
}


def block_of(layer_name: str) -> str:
    """The Table 1 row a layer belongs to: `stem`, `inception_3a`, ..., `aux_4a`, `head`."""
    for prefix in ("inception_", "aux_"):
        if layer_name.startswith(prefix):
            return "_".join(layer_name.split("_")[:2])
    if layer_name.startswith(("conv", "pool1", "pool2", "normalize", "image")):
        return "stem"
    if layer_name.startswith(("pool3", "pool4")):
        return layer_name.split("_")[0]
    return "head"


_BRANCH_ORDER = ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool", "pool_proj", "output")


def _paper_order(model: keras.Model) -> list:
    """The model's layers in Table 1's order: blocks top to bottom, branches left to right.

    Keras orders layers by depth, which interleaves parallel branches and heads.
    """
    blocks = list(dict.fromkeys(block_of(layer.name) for layer in model.layers))
    for stage in AUX_AFTER:  # each auxiliary head right after the block it reads
        if f"aux_{stage}" in blocks:
            blocks.remove(f"aux_{stage}")
            blocks.insert(blocks.index(f"inception_{stage}") + 1, f"aux_{stage}")

    def rank(item):
        index, layer = item
        block = block_of(layer.name)
        branch = index
        if block.startswith("inception_"):
            suffix = layer.name[len(block) + 1 :]
            for b in sorted(_BRANCH_ORDER, key=len, reverse=True):
                if suffix == b or suffix.startswith(b + "_"):
                    branch = _BRANCH_ORDER.index(b) * 10_000 + index
                    break
        return blocks.index(block), branch

    return [layer for _, layer in sorted(enumerate(model.layers), key=rank)]


def layer_table(model: keras.Model) -> list[dict]:
    """One row per conv, pool, concat, dense, dropout and softmax layer, in Table 1's order."""
    rows = []
    for layer in _paper_order(model):
        kind = _TABLE_TYPES.get(type(layer).__name__)
        if kind is None:
            continue
        config = layer.get_config()
        kernel = config.get("kernel_size") or config.get("pool_size")
        strides = config.get("strides")
        rows.append(
            {
                "name": layer.name,
                "type": kind,
                "output": "x".join(str(d) for d in layer.output.shape[1:]),
                "kernel": "x".join(map(str, kernel)) if kernel else "",
                "filters": config.get("filters") or config.get("units") or "",
                "stride": strides[0] if strides else "",
                "params": layer.count_params(),
            }
        )
    return rows


def block_params(model: keras.Model) -> dict[str, int]:
    """Parameter count per Table 1 row (batch norm included), in model order."""
    counts: dict[str, int] = {}
    for layer in _paper_order(model):
        block = block_of(layer.name)
        counts[block] = counts.get(block, 0) + layer.count_params()
    return {block: n for block, n in counts.items() if n or block.startswith("inception")}


def format_summary(model: keras.Model) -> str:
    """The layer-size table, then parameters per block and in total."""
    rows = layer_table(model)
    header = f"{'layer':<28} {'type':<18} {'output size':<14} {'kernel':<7} {'filters':>7} "
    header += f"{'stride':>6} {'params':>10}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['name']:<28} {r['type']:<18} {r['output']:<14} {r['kernel']:<7} "
            f"{r['filters']!s:>7} {r['stride']!s:>6} {r['params']:>10,}"
        )
    lines += ["", f"{'block':<28} {'params':>12}", "-" * 41]
    for block, n in block_params(model).items():
        lines.append(f"{block:<28} {n:>12,}")
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    main_only = inference_model(model).count_params()
    lines += [
        "-" * 41,
        f"{'total':<28} {model.count_params():>12,}",
        f"{'trainable':<28} {trainable:>12,}",
        f"{'inference (main head only)':<28} {main_only:>12,}",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    """`python -m keras_googlenet.model --summary [--input-size N --num-classes N]`."""
    from keras_googlenet.errors import UserError

    parser = argparse.ArgumentParser(
        prog="python -m keras_googlenet.model", description="Print GoogLeNet's layer sizes."
    )
    parser.add_argument("--summary", action="store_true", help="print the layer-size table")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=256)
    parser.add_argument("--no-aux", action="store_true", help="without the auxiliary heads")
    parser.add_argument("--no-batch-norm", action="store_true")
    args = parser.parse_args(argv)
    try:
        model = build_googlenet(
            args.num_classes,
            (args.input_size, args.input_size, 3),
            aux_heads=not args.no_aux,
            batch_norm=not args.no_batch_norm,
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    print(format_summary(model) if args.summary else model.count_params())
    return 0


if __name__ == "__main__":
    from keras_googlenet.errors import run_cli

    raise SystemExit(run_cli(main))
