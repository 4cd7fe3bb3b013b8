"""Export a trained run: a self-contained SavedModel, or an ONNX or LiteRT file.

    keras-googlenet export --run-dir runs/NAME --output exports/NAME [--version N]
        [--format savedmodel|onnx|litert]
    keras-googlenet export --weights weights/torchvision/imagenet.weights.h5 --output DIR

`--format savedmodel` (the default) writes a SavedModel that needs TensorFlow only, no project
code:

    DIR/saved_model.pb, DIR/variables/   endpoints serve_images (default), serve_bytes, serve
    DIR/model.keras                      the float32 inference model (main head, 0-255 input)

Reload with `tf.saved_model.load(DIR).serve_images(uint8_images)` or
`keras.layers.TFSMLayer(DIR, call_endpoint="serve_images")`; see `serving/graph.py` for the
preprocessing done inside the graph. `--format onnx` writes `DIR/model.onnx`, `--format litert`
`DIR/model.tflite`: the `serve` endpoint's model alone (see `serving/formats.py`). Every format
also writes

    DIR/labels.txt                       one category name per line, in class-id order
    DIR/export.json                      the input contract (size, crop, mean, std), classes,
                                         source checkpoint, softmax temperature, versions

A run whose `RUN/calibration.json` (`evaluate --calibrate`) was fitted on the exported
checkpoint is exported with that temperature inside the graph: every format's probabilities are
softmax(logits / T).

Mixed-precision runs export a float32 graph.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from keras_googlenet.errors import UserError
from keras_googlenet.training.checkpoints import (
    float32_inference_model,
    load_checkpoint,
    open_run,
    pick_checkpoint,
    run_config,
    run_dataset_facts,
)

log = logging.getLogger(__name__)
# ONNX and LiteRT outputs must equal Keras's this closely (probabilities).
MAX_DIFFERENCE = 1e-4


def check_output(output: Path, overwrite: bool) -> None:
    """Refuses a file, or a non-empty folder unless `overwrite`."""
    if output.is_file():
        raise UserError(f"{output}: is a file, expected a folder for the export")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise UserError(
            f"{output}: folder exists and is not empty (pass --overwrite to replace it)"
        )


def _swap_in(tmp: Path, output: Path) -> None:
    """Renames the finished `tmp` folder to `output`, replacing an existing one last."""
    if not output.exists():
        os.replace(tmp, output)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
    os.replace(output, old / output.name)
    try:
        os.replace(tmp, output)
    except OSError:
        os.replace(old / output.name, output)  # put the previous export back
        raise
    shutil.rmtree(old, ignore_errors=True)


def input_contract(spec, mean_rgb=None, std_rgb=None) -> dict:
    """What a caller must feed the exported model: written to every format's export.json.

    The SavedModel's `serve_images`/`serve_bytes` do the resize and crop themselves; an ONNX or
    LiteRT file (and the SavedModel's `serve`) takes the pixels after them.
    """
    size = spec.input_size
    return {
        "input": f"float32 [batch, {size}, {size}, 3], RGB, 0-255 (not normalized)",
        "steps": [
            "center crop to a square (trim the longer side equally)"
            if spec.crop_square
            else "no square crop (stretch the whole image)",
            f"resize to {spec.resize_size}x{spec.resize_size} (bicubic), round to 0-255 integers",
            f"center crop {size}x{size}",
        ],
        "normalization": "inside the model: (pixels - mean_rgb) / std_rgb",
        "mean_rgb": None if mean_rgb is None else [float(v) for v in mean_rgb],
        "std_rgb": std_rgb,
        "output": f"float32 [batch, {len(spec.class_names)}] class probabilities (softmax)",
    }


def export_model(
    model,
    spec,
    output,
    *,
    fmt: str = "savedmodel",
    overwrite: bool = False,
    metadata: dict | None = None,
):
    """Writes the model in format `fmt`, `labels.txt` and `export.json` to `output`.

    Everything is written to a temporary folder beside `output` and renamed at the end, so an
    interrupted export leaves no half-written folder.

    Args:
        model: a float32 inference model (see `checkpoints.float32_inference_model`).
        spec: the `serving.ServingSpec` (preprocessing and class names).
        output: the export folder.
        fmt: `savedmodel` (SavedModel + model.keras), `onnx` or `litert` (see formats.py).
        overwrite: replace an existing non-empty folder.
        metadata: extra entries for export.json (source run, checkpoint, input contract).

    Returns:
        The export folder as a `Path`.

    Raises:
        UserError: the folder is taken, or the format's converter or runtime is not installed.
    """
    import keras
    import tensorflow as tf

    from keras_googlenet.serving import formats

    if fmt not in formats.FORMATS:
        raise UserError(f"--format must be one of {', '.join(formats.FORMATS)}, got {fmt!r}")
    formats.require(fmt)
    output = Path(output)
    check_output(output, overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        if fmt == "savedmodel":
            info = _write_saved_model(model, spec, tmp)
        else:
            name = formats.FILE_NAMES[fmt]
            with _quiet_tensorflow():
                formats.convert(model, fmt, tmp / name)
            difference = formats.check(model, tmp / name, fmt)
            log.info("%s: largest difference from Keras %.3g", name, difference)
            if difference > MAX_DIFFERENCE:  # a converter bug, not the user's mistake
                raise RuntimeError(f"{fmt} export differs from Keras by {difference:.3g}")
            info = {
                "format": f"keras_googlenet {fmt}",
                "file": name,
                "max_abs_difference_from_keras": difference,
            }
        (tmp / "labels.txt").write_text("".join(f"{n}\n" for n in spec.class_names))
        info.update(
            {
                "preprocessing": spec.to_dict(),
                "class_names": list(spec.class_names),
                "dtype": "float32",
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                **(metadata or {}),
            }
        )
        info.setdefault("input_contract", input_contract(spec))
        (tmp / "export.json").write_text(json.dumps(info, indent=2) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; an export is meant to be shared
        _swap_in(tmp, output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return output


@contextlib.contextmanager
def _quiet_tensorflow():
    """TensorFlow logs (through absl) lines about renamed resource inputs, assets and the
    converters' passes: noise to a user."""
    import tensorflow as tf
    from absl import logging as absl_logging

    verbosity, tf_level = absl_logging.get_verbosity(), tf.get_logger().level
    absl_logging.set_verbosity(absl_logging.ERROR)
    tf.get_logger().setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(verbosity)
        tf.get_logger().setLevel(tf_level)


def _write_saved_model(model, spec, folder: Path) -> dict:
    """The SavedModel with its three endpoints and model.keras; returns export.json entries."""
    import keras

    from keras_googlenet.serving.graph import OUTPUT_KEYS, make_serving_functions

    archive = keras.export.ExportArchive()
    # No archive.track(model): it would store every weight twice (keras-team/keras#23553);
    # the endpoints capture the variables they use.
    endpoints = make_serving_functions(model, spec)
    for name, (fn, signature) in endpoints.items():
        archive.add_endpoint(name, fn, input_signature=signature)
    with _quiet_tensorflow():
        archive.write_out(str(folder), verbose=False)
    model.save(folder / "model.keras")
    return {
        "format": "keras_googlenet SavedModel",
        "endpoints": {
            name: {"input": repr(signature[0]), "outputs": list(OUTPUT_KEYS)}
            for name, (_, signature) in endpoints.items()
        },
        "default_endpoint": next(iter(endpoints)),
    }


def export_run(
    run,
    output,
    *,
    checkpoint: str = "best",
    overwrite: bool = False,
    top_k: int = 5,
    fmt: str = "savedmodel",
):
    """Exports a checkpoint of a training run.

    Args:
        run: the run folder.
        output: the export folder.
        checkpoint: `best`, `last` or a `.keras` path (see `keras_googlenet.training.checkpoints`).
        overwrite: replace an existing non-empty export folder.
        top_k: how many classes the top-k outputs hold (SavedModel).
        fmt: `savedmodel`, `onnx` or `litert`.

    Returns:
        The export folder as a `Path`.
    """
    from keras_googlenet.model.import_weights import sha256
    from keras_googlenet.serving import formats
    from keras_googlenet.serving.graph import ServingSpec
    from keras_googlenet.serving.temperature import calibrated
    from keras_googlenet.training.compile import input_normalization

    output = Path(output)
    formats.require(fmt)  # before the slow part
    check_output(output, overwrite)
    run = open_run(run)
    config = run_config(run)
    path = pick_checkpoint(run, checkpoint)
    log.info("exporting %s", path)
    model = float32_inference_model(load_checkpoint(path))
    model, temperature = calibrated(model, run.root, path)
    class_names, mean_rgb = run_dataset_facts(run, config)
    if model.output.shape[-1] != len(class_names):
        raise UserError(
            f"{path}: the model has {model.output.shape[-1]} classes but the run's "
            f"class list has {len(class_names)}"
        )
    spec = ServingSpec.from_config(config, class_names, top_k=top_k)
    metadata = {
        "run": str(run.root.resolve()),
        "checkpoint": str(path.resolve()),
        "checkpoint_sha256": sha256(path),  # evaluate --export: is this that checkpoint?
        # None: the checkpoint's own softmax (no calibration.json fitted on this checkpoint)
        "temperature": temperature,
        "input_contract": input_contract(spec, *input_normalization(config, mean_rgb)),
    }
    return export_model(model, spec, output, fmt=fmt, overwrite=overwrite, metadata=metadata)


def export_imported(
    weights, output, *, overwrite: bool = False, top_k: int = 5, fmt: str = "savedmodel"
):
    """Exports a weights file of import-weights (ImageNet classes, its source's preprocessing).

    Returns:
        The export folder as a `Path`.
    """
    from keras_googlenet.model.import_weights import load_imported
    from keras_googlenet.model.table import MINUS_ONE_ONE
    from keras_googlenet.serving import formats
    from keras_googlenet.serving.graph import ServingSpec

    output = Path(output)
    formats.require(fmt)  # before the slow part
    check_output(output, overwrite)
    model, info = load_imported(weights)
    spec = ServingSpec.from_imported(info, top_k=top_k)
    mean, std = MINUS_ONE_ONE  # imported ImageNet weights take x / 127.5 - 1
    metadata = {
        "weights": str(Path(weights).resolve()),
        "source": info["source"],
        "source_sha256": info.get("sha256"),
        "input_contract": input_contract(spec, (mean,) * 3, std),
    }
    return export_model(
        float32_inference_model(model),
        spec,
        output,
        fmt=fmt,
        overwrite=overwrite,
        metadata=metadata,
    )


def folder_size(path: Path) -> int:
    """Bytes in all files under `path`."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def run(args) -> int:
    """Runs `keras-googlenet export`."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    output = Path(args.output)
    if args.version is not None:
        if args.version < 1:
            raise UserError(f"--version must be at least 1, got {args.version}")
        # TensorFlow Serving loads MODEL_DIR/<version>/ and serves the highest version.
        output = output / str(args.version)
    if args.weights:
        out = export_imported(
            args.weights, output, overwrite=args.overwrite, top_k=args.top_k, fmt=args.format
        )
    else:
        out = export_run(
            args.run_dir,
            output,
            checkpoint=args.checkpoint,
            overwrite=args.overwrite,
            top_k=args.top_k,
            fmt=args.format,
        )
    size = folder_size(out)
    what = "default signature: serve_images" if args.format == "savedmodel" else args.format
    print(f"exported to {out} ({size / 2**20:.1f} MiB); {what}")
    return 0
