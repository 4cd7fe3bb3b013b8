"""`keras-googlenet import-weights --from torchvision FILE.pth | --from slim CKPT --output DIR`.

Writes two files into DIR (nothing at all when the source is refused):

    DIR/imagenet.weights.h5   Keras weights of GoogLeNet without auxiliary heads
    DIR/imagenet.json         what belongs with them: the model keys that reproduce the source's
                              forward pass, the input convention, the class names, the
                              preprocessing, the source file and its sha256

`training.init_weights: DIR/imagenet.weights.h5` starts a fine-tune from them (model keys left
null take the JSON's values); `predict --weights DIR/imagenet.weights.h5 IMAGE` names ImageNet
classes and `export --weights ... --output DIR` writes a SavedModel, both with the source's own
evaluation preprocessing (`PREPROCESSING`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from keras_googlenet.atomic import atomic_write_text
from keras_googlenet.errors import UserError

log = logging.getLogger(__name__)

WEIGHTS_NAME = "imagenet.weights.h5"
SOURCES = ("torchvision", "slim")
FORMAT = "keras_googlenet imported weights v1"
# Each source's evaluation preprocessing, as the serving graph (ServingSpec) states it.
#   torchvision: Resize(256) (shorter side, PIL bilinear), CenterCrop(224): the same pixels as the
#                centred square resized to 256, then the 224 centre crop.
#   slim: central_crop(0.875) of the whole frame, then a bilinear resize to 224x224 (the aspect
#         ratio is not kept): the same as the frame stretched to 256x256, then the 224 centre
#         crop (224 / 256 = 0.875). Slim resizes without antialiasing; here it is antialiased.
# Both then scale to [-1, 1], which the model's first layer does (input_scaling).
PREPROCESSING = {
    "torchvision": {
        "input_size": 224,
        "resize_size": 256,
        "crop_square": True,
        "resize_method": "bilinear",
    },
    "slim": {
        "input_size": 224,
        "resize_size": 256,
        "crop_square": False,
        "resize_method": "bilinear",
    },
}
CAVEATS = {
    "torchvision": "auxiliary heads not imported (torchvision's are untrained); the 3x3 kernels "
    "of the '5x5' branch sit in the centre of zero 5x5 kernels",
    "slim": "output 0 is slim's 'background' class (1001 outputs); the 3x3 kernels of the "
    "'5x5' branch sit in the centre of zero 5x5 kernels; slim has no auxiliary heads",
}


def sidecar(weights: str | Path) -> Path:
    """The JSON that describes an imported weights file: `X.weights.h5` -> `X.json`."""
    weights = Path(weights)
    return weights.with_name(weights.name.removesuffix(".weights.h5") + ".json")


def read_sidecar(weights: str | Path) -> dict:
    """The description of an imported weights file.

    Raises:
        UserError: the file or its JSON is missing, or the JSON is not an import description.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise UserError(f"{weights}: weights file not found")
    info_file = sidecar(weights)
    try:
        info = json.loads(info_file.read_text())
        if info.get("format") != FORMAT or "model" not in info or "class_names" not in info:
            raise ValueError("not written by import-weights")
    except FileNotFoundError:
        raise UserError(
            f"{weights}: no {info_file.name} beside it (write both with import-weights)"
        ) from None
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{info_file}: unreadable import description ({e})") from None
    return info


def load_imported(weights: str | Path):
    """(the inference network of an imported weights file, built from its JSON; the JSON).

    The network has no auxiliary heads and takes 224x224 0-255 pixels; it outputs `{"main":
    softmax}` over the JSON's `class_names`.

    Raises:
        UserError: the file or its JSON is missing or unreadable, or the weights do not load.
    """
    from keras_googlenet.model import converters

    info = read_sidecar(weights)
    if info.get("source") not in SOURCES:
        raise UserError(f"{sidecar(weights)}: unknown source {info.get('source')!r}")
    model = converters.build(info["model"], PREPROCESSING[info["source"]]["input_size"])
    try:
        model.load_weights(weights)
    except (ValueError, OSError, KeyError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{weights}: cannot load the weights ({first:.200})") from None
    return model, info


def sha256(path: Path) -> str:
    """Hex sha256 of a file, or of a checkpoint's files (index and shards) in name order."""
    files = [path] if path.is_file() else sorted(path.parent.glob(path.name + ".*"))
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def import_weights(source: str, path: str | Path, output: str | Path, overwrite=False) -> Path:
    """Reads `path` (a torchvision .pth or a slim checkpoint prefix), writes DIR's two files.

    Returns:
        The path of the weights file.

    Raises:
        UserError: the source is refused (another network, damaged, unsafe pickle), or the
            output exists and `overwrite` is False.
    """
    from keras_googlenet.model import converters
    from keras_googlenet.model.converters import slim, torchvision

    path, output = Path(path), Path(output)
    weights = output / WEIGHTS_NAME
    if weights.exists() and not overwrite:
        raise UserError(f"{weights}: exists (pass --overwrite to replace it)")
    if output.is_file():
        raise UserError(f"{output}: is a file, expected a folder")
    start = time.perf_counter()
    imported = (torchvision if source == "torchvision" else slim).read(path)
    model = converters.build(imported.model_keys)
    converters.assign(model, imported)
    info = {
        "format": FORMAT,
        "source": source,
        "source_file": str(path.resolve()),
        "sha256": sha256(path),
        "weights_file": WEIGHTS_NAME,
        "model": {**imported.model_keys, "aux_heads": False, "batch_norm": True},
        "input_convention": "raw 0-255 RGB pixels; the model's first layer computes x/127.5 - 1",
        "preprocessing": PREPROCESSING[source],
        "caveats": CAVEATS[source],
        "class_names": imported.class_names,
    }
    output.mkdir(parents=True, exist_ok=True)
    tmp = output / f".{WEIGHTS_NAME}.tmp.weights.h5"
    model.save_weights(str(tmp))
    atomic_write_text(sidecar(weights), json.dumps(info, indent=1) + "\n")
    tmp.replace(weights)
    log.info("imported %s in %.1f s", path, time.perf_counter() - start)
    return weights


def run(args) -> int:
    """Runs `keras-googlenet import-weights`."""
    start = time.perf_counter()
    weights = import_weights(args.source, args.path, args.output, args.overwrite)
    size = weights.stat().st_size / 2**20
    print(
        f"wrote {weights} ({size:.1f} MiB) and {sidecar(weights).name} from {args.source} "
        f"{args.path} in {time.perf_counter() - start:.1f} s"
    )
    return 0
