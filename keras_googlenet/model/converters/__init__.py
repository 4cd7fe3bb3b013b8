"""ImageNet weights from other frameworks, mapped into the paper-exact Keras GoogLeNet.

Each converter (`torchvision`, `slim`) reads its source's file without running the source's
code and returns an `Imported`: arrays keyed by Keras layer name, plus the model keys that make
the Keras forward pass equal the source's. Both sources use a 3x3 kernel in the "5x5" branch;
`centre_in_5x5` places it in the middle of a zero 5x5 kernel, which with 'same' padding gives
the same output, so one architecture holds every weight set.

No Keras import here: `build` and `assign` import it when called.
"""

from __future__ import annotations

import dataclasses
from importlib import resources

import numpy as np

from keras_googlenet.model.table import INCEPTION_SPECS

# (Keras layer name suffix) of each Inception block's convs, in the paper's column order.
BRANCH_CONVS = ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj")
STEM_CONVS = ("conv1_7x7_s2", "conv2_3x3_reduce", "conv2_3x3")
CLASSIFIER = "linear"


@dataclasses.dataclass
class Imported:
    """Weights read from a source file, ready for `assign`.

    Attributes:
        source: "torchvision" or "slim".
        model_keys: the `model.*` config values that reproduce the source's forward pass.
        convs: Keras conv layer name -> HWIO kernel (5x5 for the paper's 5x5 layers).
        batch_norms: Keras conv layer name -> (gamma, beta, moving_mean, moving_variance).
        classifier: (kernel [1024, classes], bias [classes]).
        class_names: one label per output, in output order.
    """

    source: str
    model_keys: dict
    convs: dict
    batch_norms: dict
    classifier: tuple
    class_names: list


def conv_layer_names() -> list[str]:
    """Every conv layer of the network (no auxiliary heads), stem first, in Table 1 order."""
    names = list(STEM_CONVS)
    for stage in INCEPTION_SPECS:
        names += [f"inception_{stage}_{branch}" for branch in BRANCH_CONVS]
    return names


def centre_in_5x5(kernel: np.ndarray) -> np.ndarray:
    """A 3x3 HWIO kernel in the centre of a zero 5x5 one (same output with 'same' padding)."""
    out = np.zeros((5, 5, *kernel.shape[2:]), kernel.dtype)
    out[1:4, 1:4] = kernel
    return out


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in the usual (sorted WordNet id) order.

    Shipped in the package; taken from torchvision's `models/_meta.py` (BSD-3-Clause), whose
    order both torchvision and TF-slim (after its background class) use.
    """
    text = resources.files(__package__).joinpath("imagenet_classes.txt").read_text("utf-8")
    names = [line for line in text.splitlines() if line]
    assert len(names) == 1000, "imagenet_classes.txt is damaged"
    return names


def build(model_keys: dict, input_size: int = 224):
    """The Keras inference network (no auxiliary heads) an `Imported` fits into."""
    from keras_googlenet.model.googlenet import build_googlenet
    from keras_googlenet.model.table import MINUS_ONE_ONE

    mean, std = MINUS_ONE_ONE
    return build_googlenet(
        model_keys["num_classes"],
        (input_size, input_size, 3),
        aux_heads=False,
        mean_rgb=(mean,) * 3 if model_keys["input_scaling"] == "minus_one_one" else None,
        std_rgb=std,
        padding=model_keys["padding"],
        pool4_size=model_keys["pool4_size"],
    )


def assign(model, imported: Imported) -> None:
    """Sets every conv, batch norm and the classifier of `model` from `imported`."""
    for name, kernel in imported.convs.items():
        layer = model.get_layer(name)
        if tuple(layer.kernel.shape) != kernel.shape:  # a converter bug, not a user mistake
            raise AssertionError(f"{name}: kernel {kernel.shape} for {tuple(layer.kernel.shape)}")
        layer.kernel.assign(kernel)
    for name, (gamma, beta, mean, var) in imported.batch_norms.items():
        bn = model.get_layer(f"{name}_bn")
        for variable, value in zip(
            (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance),
            (gamma, beta, mean, var),
            strict=True,
        ):
            variable.assign(value)
    kernel, bias = imported.classifier
    dense = model.get_layer(CLASSIFIER)
    dense.kernel.assign(kernel)
    dense.bias.assign(bias)
