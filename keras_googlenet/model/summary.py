"""The layer-size table in Table 1 order, per-block parameter counts, and the `summary` job.

The seed printed the layer output sizes to check the network against the paper; this does the
same, grouped by the paper's rows.
"""

from __future__ import annotations

import math

import keras

from keras_googlenet.errors import UserError
from keras_googlenet.model.googlenet import build_googlenet, inference_model
from keras_googlenet.model.table import AUX_AFTER

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


def run(args) -> int:
    """Runs `keras-googlenet summary`."""
    try:
        model = build_googlenet(
            args.num_classes,
            (args.image_size, args.image_size, 3),
            aux_heads=not args.no_aux,
            batch_norm=not args.no_batch_norm,
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    print(format_summary(model))
    return 0
