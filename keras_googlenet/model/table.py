"""Table 1 of the paper as data: the Inception specs, the output heads, the smallest input.

No Keras here: the config checks and the data pipeline read these facts without building or
importing the network.
"""

from __future__ import annotations

from typing import NamedTuple

OUTPUT_NAMES = ("main", "aux_4a", "aux_4d")
AUX_AFTER = ("4a", "4d")
# The epoch metrics `training.compile.compile_model` defines (history.csv columns); validation
# adds the `val_` prefix.
TRAIN_METRICS = (
    "loss",
    "main_loss",
    "aux_4a_loss",
    "aux_4d_loss",
    "main_top1",
    "main_top5",
    "aux_4a_accuracy",
    "aux_4d_accuracy",
)
METRIC_NAMES = TRAIN_METRICS + tuple(f"val_{name}" for name in TRAIN_METRICS)


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


# Points `training.freeze_until` accepts: the stem's two conv stages, then every Inception block.
# Freezing "up to inception_4e" freezes every layer from the input through that block.
FREEZE_POINTS = ("conv1", "conv2", *(f"inception_{stage}" for stage in INCEPTION_SPECS))

# `model.input_scaling`: what the first layer does to the 0-255 pixels it receives.
#   dataset_mean:  (x - the training set's mean) / data.std_rgb (the project's own runs)
#   minus_one_one: x / 127.5 - 1, the [-1, 1] range both torchvision's GoogLeNet (its
#                  transform_input) and TF-slim's Inception v1 were trained on.
INPUT_SCALINGS = ("dataset_mean", "minus_one_one")
# The paper's model: what `model.padding`, `model.pool4_size` and `model.input_scaling` mean when
# left null and no imported weights file says otherwise.
PAPER_CONVENTION = {"padding": "same", "pool4_size": 3, "input_scaling": "dataset_mean"}
MINUS_ONE_ONE = (127.5, 127.5)  # (mean, std) on the 0-255 scale


def min_input_size(aux_heads: bool = True) -> int:
    """Smallest input height/width the model accepts.

    With auxiliary heads the 4a/4d feature map (input / 16, rounded up by 'same' padding) must be
    at least 5x5 for their 5x5 average pool: 65 pixels.
    """
    if aux_heads:
        return _STRIDE_AT_4A * (_AUX_POOL - 1) + 1
    return _MIN_SIZE_NO_AUX
