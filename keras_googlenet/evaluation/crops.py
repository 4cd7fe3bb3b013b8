"""The paper's test-time crops (Szegedy et al. 2014, section 7, Table 3): 1, 10 or 144 crops
per image, softmax averaged.

- 1: the validation pipeline's centre crop (`evaluate` without `--crops`).
- 10: the four corners and the centre at the model's input size, from the processed image
  (256x256 for a 224 model), and their mirror images.
- 144: from the original photo: 4 scales (shorter side 256, 288, 320, 352 for a 224 model;
  scaled by input_size / 224 for another size) x 3 squares of that side (left, centre, right;
  top, centre, bottom for a portrait) x 6 views (4 corners and the centre at input size, and
  the whole square resized to it) x 2 mirrors. The originals are found through the processed
  folder's `sources.csv` and `preprocess.source_dir` (or `--originals`).

A view is `(scale, top, left, side, flip)`: resize the image so that its shorter side is
`scale` (0: as it is), crop the `side` x `side` square at (top, left), resize it to the
model's input size if `side` is larger, mirror it if `flip`. All crops of one image go through
the model as one batch.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

import numpy as np

from keras_googlenet.errors import UserError

CROPS = (1, 10, 144)
PAPER_SCALES = (256, 288, 320, 352)  # shorter sides for a 224 input (section 7)
PAPER_INPUT = 224


class View(NamedTuple):
    scale: int  # shorter side after the resize; 0: the image as it is
    top: int
    left: int
    side: int  # the square cut out, resized to the input size when larger
    flip: bool


def _five(height: int, width: int, size: int, top0: int = 0, left0: int = 0) -> list[tuple]:
    """(top, left) of the 4 corners and the centre of a size x size crop inside a box."""
    bottom, right = top0 + height - size, left0 + width - size
    centre = (top0 + (height - size) // 2, left0 + (width - size) // 2)
    return [(top0, left0), (top0, right), (bottom, left0), (bottom, right), centre]


def ten_crop_views(height: int, width: int, size: int) -> list[View]:
    """The 10 views: corners and centre of `size` in a height x width image, then mirrored."""
    if min(height, width) < size:
        raise UserError(f"a {height}x{width} image is smaller than the {size} crop")
    plain = [View(0, t, left, size, False) for t, left in _five(height, width, size)]
    return plain + [v._replace(flip=True) for v in plain]


def paper_scales(input_size: int) -> tuple[int, ...]:
    """The 4 shorter sides of the 144-crop protocol for this input size."""
    return tuple(round(s * input_size / PAPER_INPUT) for s in PAPER_SCALES)


def resized_shape(height: int, width: int, shorter: int) -> tuple[int, int]:
    """(height, width) after resizing so that the shorter side is `shorter`."""
    if height <= width:
        return shorter, max(shorter, round(width * shorter / height))
    return max(shorter, round(height * shorter / width)), shorter


def paper_144_views(height: int, width: int, input_size: int) -> list[View]:
    """The 144 views of a height x width photo (coordinates in each resized image)."""
    views = []
    for scale in paper_scales(input_size):
        h, w = resized_shape(height, width, scale)
        long, landscape = max(h, w), w >= h
        for offset in (0, (long - scale) // 2, long - scale):
            top0, left0 = (0, offset) if landscape else (offset, 0)
            squares = [
                View(scale, t, left, input_size, False)
                for t, left in _five(scale, scale, input_size, top0, left0)
            ]
            squares.append(View(scale, top0, left0, scale, False))  # the whole square
            views += squares + [v._replace(flip=True) for v in squares]
    return views


def protocol(crops: int, input_size: int, resize_size: int) -> str:
    """One line saying how the images were cropped, for metrics.json and the report."""
    if crops == 1:
        return f"1 crop: the centre {input_size}x{input_size} of the {resize_size} image"
    if crops == 10:
        return (
            f"10 crops: 4 corners and the centre at {input_size}x{input_size} of the "
            f"{resize_size} image, and their mirrors; softmax averaged"
        )
    sides = ", ".join(map(str, paper_scales(input_size)))
    return (
        f"144 crops (the paper's): the original photo at shorter side {sides} x 3 squares x "
        f"(4 corners + centre at {input_size}, the whole square resized) x 2 mirrors; softmax "
        "averaged"
    )


def crop_batch(image: np.ndarray, views: list[View], input_size: int) -> np.ndarray:
    """float32 [len(views), input, input, 3] of an HxWx3 uint8 image (0-255 pixels)."""
    import tensorflow as tf

    resized = {}
    out = []
    for v in views:
        if v.scale not in resized:
            if v.scale == 0:
                resized[v.scale] = tf.cast(image, tf.float32)
            else:
                shape = resized_shape(image.shape[0], image.shape[1], v.scale)
                r = tf.image.resize(tf.cast(image, tf.float32), shape, "bicubic", antialias=True)
                resized[v.scale] = tf.clip_by_value(tf.round(r), 0.0, 255.0)  # 8-bit, as stored
        crop = resized[v.scale][v.top : v.top + v.side, v.left : v.left + v.side]
        if v.side != input_size:
            crop = tf.image.resize(crop, (input_size, input_size), "bicubic", antialias=True)
            crop = tf.clip_by_value(tf.round(crop), 0.0, 255.0)
        out.append(tf.image.flip_left_right(crop) if v.flip else crop)
    return tf.stack(out).numpy()


def original_photos(processed_dir: Path, val_files, source_dir: str | None) -> list[Path]:
    """The original photo of each processed validation file, through sources.csv.

    Raises:
        UserError: sources.csv or the source folder is missing, or an original is gone.
    """
    table = Path(processed_dir) / "sources.csv"
    if not table.is_file():
        raise UserError(
            f"{table}: not found; --crops 144 needs the original photos, which this processed "
            "folder does not record (preprocess it again, or use --crops 10)"
        )
    if not source_dir:
        raise UserError(
            f"--crops 144 needs the original photos: {table} lists them relative to "
            "preprocess.source_dir, which the run's config does not set (give --originals DIR)"
        )
    root = Path(source_dir).expanduser()
    with open(table, newline="", encoding="utf-8") as f:
        source_of = {r["image"]: r["source"] for r in csv.DictReader(f)}
    paths, missing = [], []
    for file in val_files:
        source = source_of.get(Path(file).name)
        path = root / source if source else None
        if path is None or not path.is_file():
            missing.append(source or Path(file).name)
        paths.append(path)
    if missing:
        raise UserError(
            f"{root}: {len(missing)} of {len(paths)} original photos are gone (e.g. "
            f"{missing[0]}); --crops 144 needs them all (or use --crops 10)"
        )
    return paths


def _upright_rgb(path: Path) -> np.ndarray:
    """The photo as the preprocessor saw it: EXIF orientation applied, RGB."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def predict_crops(model, files, crops: int, input_size: int, originals=None) -> np.ndarray:
    """Softmax averaged over the crops of each image: float64 [N, C].

    Args:
        model: the float32 inference model (probabilities out).
        files: the processed validation files (10 crops).
        crops: 10 or 144.
        input_size: the model's input side.
        originals: for 144, the original photo of each file (`original_photos`).
    """
    from tqdm import tqdm

    from keras_googlenet.data.decode import decode_rgb

    sources = originals if crops == 144 else files
    averaged = []
    for path in tqdm(sources, desc=f"evaluate {crops} crops", unit="image"):
        if crops == 144:
            image = _upright_rgb(Path(path))
            views = paper_144_views(image.shape[0], image.shape[1], input_size)
        else:
            image = decode_rgb(Path(path).read_bytes()).numpy()
            views = ten_crop_views(image.shape[0], image.shape[1], input_size)
        batch = crop_batch(image, views, input_size)
        probabilities = np.asarray(model.predict_on_batch(batch), dtype=np.float64)
        averaged.append(probabilities.mean(axis=0))
    return np.stack(averaged)
