"""Classify image files with an exported SavedModel, a run's checkpoint or imported weights.

    keras-googlenet predict --export-dir DIR | --run-dir RUN | --weights FILE.weights.h5
        IMAGE [IMAGE ...] [--top-k 5]

Each image is read the way the preprocessor reads the dataset (any format Pillow opens, EXIF
orientation applied, grayscale/CMYK/alpha made RGB, center square resized to `preprocess.size`)
and goes through the model's `serve_images` endpoint, which center-crops it like validation.
Imported ImageNet weights (`--weights`, written by import-weights) need no run folder: the
network is built from the file's JSON, images are read with its source's evaluation
preprocessing (import_weights.PREPROCESSING) and named by its class names (TF-slim's output 0 is
its "background" class, so slim's ids are ImageNet's plus one).
A missing or unreadable image is reported on stderr by name and the others are still
predicted; the exit code is then 1.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_googlenet.errors import UserError

log = logging.getLogger(__name__)

BATCH = 16  # images per call: bounded memory for long file lists


@dataclass
class Predictor:
    """`serve_images` of an export or of a run's checkpoint, with what reading images needs."""

    serve_images: object  # uint8 [B, H, W, 3] -> {"probabilities": [B, C], ...}
    class_names: tuple[str, ...]
    resize_size: int
    crop_square: bool
    source: str
    resize_method: str = "bicubic"
    # The loaded SavedModel: its functions hold only weak references to its variables.
    keep_alive: object = None

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """float32 [B, C] for a uint8 [B, H, W, 3] batch."""
        import tensorflow as tf

        out = self.serve_images(tf.constant(images, dtype=tf.uint8))
        return out["probabilities"].numpy()


def load_export(path: Path) -> Predictor:
    """A predictor on an export folder written by `keras_googlenet.serving.export`."""
    from keras_googlenet.serving import formats

    info_file = path / "export.json"
    if not info_file.is_file():
        raise UserError(f"{path}: SavedModel without export.json (not a keras_googlenet export)")
    try:
        info = json.loads(info_file.read_text())
        prep = info["preprocessing"]
        class_names = tuple(info["class_names"])
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{info_file}: unreadable export description ({e})") from None
    loaded = formats.load_saved_model(path)
    # The restored function references the variables weakly: the closure keeps `loaded` (and so
    # the variables) alive as long as the predictor.
    return Predictor(
        serve_images=lambda images: loaded.serve_images(images),
        class_names=class_names,
        resize_size=int(prep["resize_size"]),
        crop_square=bool(prep["crop_square"]),
        source=str(path),
        resize_method=str(prep.get("resize_method", "bicubic")),  # older exports: bicubic
        keep_alive=loaded,
    )


def load_run(path: Path, checkpoint: str) -> Predictor:
    """A predictor on a run folder's checkpoint (same graph as the export, built in memory).

    A temperature fitted on this checkpoint (`evaluate --calibrate`) is applied as `export`
    applies it, so the run folder and its export give the same probabilities.
    """
    from keras_googlenet.serving.graph import ServingSpec, compiled_serving_functions
    from keras_googlenet.serving.temperature import calibrated
    from keras_googlenet.training.checkpoints import (
        float32_inference_model,
        load_checkpoint,
        open_run,
        pick_checkpoint,
        run_config,
        run_dataset_facts,
    )

    run = open_run(path)
    config = run_config(run)
    ckpt = pick_checkpoint(run, checkpoint)
    model = float32_inference_model(load_checkpoint(ckpt))
    model, _ = calibrated(model, run.root, ckpt)
    class_names, _ = run_dataset_facts(run, config)
    spec = ServingSpec.from_config(config, class_names)
    return Predictor(
        serve_images=compiled_serving_functions(model, spec)["serve_images"],
        class_names=tuple(class_names),
        resize_size=spec.resize_size,
        crop_square=spec.crop_square,
        source=str(ckpt),
    )


def load_imported_weights(weights: str | Path) -> Predictor:
    """A predictor on a weights file of import-weights (built from its JSON, no run folder)."""
    from keras_googlenet.model.import_weights import load_imported
    from keras_googlenet.serving.graph import ServingSpec, compiled_serving_functions
    from keras_googlenet.training.checkpoints import float32_inference_model

    model, info = load_imported(weights)
    spec = ServingSpec.from_imported(info)
    return Predictor(
        serve_images=compiled_serving_functions(float32_inference_model(model), spec)[
            "serve_images"
        ],
        class_names=spec.class_names,
        resize_size=spec.resize_size,
        crop_square=spec.crop_square,
        source=str(weights),
        resize_method=spec.resize_method,
    )


def load_predictor(model: str, checkpoint: str = "best") -> Predictor:
    """An export folder (has saved_model.pb) or a run folder (has config.yaml)."""
    path = Path(model)
    if not path.is_dir():
        raise UserError(f"{model}: model folder not found (expected an export or a run folder)")
    if (path / "saved_model.pb").is_file():
        return load_export(path)
    if (path / "config.yaml").is_file():
        return load_run(path, checkpoint)
    raise UserError(f"{model}: neither an export (saved_model.pb) nor a run folder (config.yaml)")


def read_image(path: str, predictor: Predictor) -> np.ndarray:
    """uint8 [S, S, 3] the way the preprocessor makes dataset images.

    Raises:
        UserError: the file is missing or is not a readable image.
    """
    from preprocessing.image_io import BadImage, load_rgb

    file = Path(path)
    if not file.exists():
        raise UserError(f"{path}: file not found")
    if file.is_dir():
        raise UserError(f"{path}: is a folder, not an image")
    try:
        return load_rgb(file, predictor.resize_size, predictor.crop_square, predictor.resize_method)
    except BadImage as e:
        raise UserError(f"{path}: not a readable image ({e})") from None


def predict_files(predictor: Predictor, paths, top_k: int = 5) -> list[dict]:
    """One result per path, in order: `{"image", "predictions": [{id, label, probability}]}`
    for a readable image, `{"image", "error"}` for a missing or broken one."""
    k = max(1, min(top_k, len(predictor.class_names)))
    results: list[dict] = [{"image": p} for p in paths]
    pending: list[tuple[int, np.ndarray]] = []

    def flush():
        if not pending:
            return
        probs = predictor.probabilities(np.stack([img for _, img in pending]))
        for (i, _), p in zip(pending, probs, strict=True):
            order = np.argsort(-p, kind="stable")[:k]
            results[i]["predictions"] = [
                {"id": int(c), "label": predictor.class_names[c], "probability": float(p[c])}
                for c in order
            ]
        pending.clear()

    for i, path in enumerate(paths):
        try:
            pending.append((i, read_image(path, predictor)))
        except UserError as e:
            results[i]["error"] = str(e)
        if len(pending) >= BATCH:
            flush()
    flush()
    return results


def format_text(results: list[dict]) -> str:
    lines = []
    for r in results:
        if "predictions" not in r:
            continue
        lines.append(r["image"])
        for p in r["predictions"]:
            lines.append(f"  {p['probability']:7.2%}  {p['label']} (id {p['id']})")
    return "\n".join(lines)


def run(args) -> int:
    """Runs `keras-googlenet predict`: exit 1 if any image failed."""
    if args.weights:
        predictor = load_imported_weights(args.weights)
    else:
        predictor = load_predictor(args.export_dir or args.run_dir, args.checkpoint)
    results = predict_files(predictor, args.images, args.top_k)
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"error: {r['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        text = format_text(results)
        if text:
            print(text)
    if failed:
        print(f"{len(failed)} of {len(results)} image(s) failed", file=sys.stderr)
        return 1
    return 0
