"""The demo's dataset: drawn shapes in Caltech256 layout, generated on disk in seconds.

`write_shapes_dataset` writes `ROOT/001.circle/001_0001.jpg`, `ROOT/002.square/...`, one folder
per shape. The class is the shape's outline and nothing else: its color, size, position and
rotation and the background (flat, gradient or noise) are drawn independently of the class, so a
model has to look at the geometry (a test checks that the mean color per class is the same for
all classes). Like a real folder the images have varied sizes and aspect ratios, some are
grayscale, and a few files are broken (zero bytes, a truncated JPEG, text named `.jpg`) so the
preprocessor's skip path runs. A few more images, outside the dataset, are kept for prediction.

    python -m keras_googlenet.data.shapes --output data/shapes --per-class 300
"""

from __future__ import annotations

import argparse
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from keras_googlenet.errors import UserError, run_cli

CLASSES = ("circle", "square", "triangle", "star", "cross", "ring", "crescent", "arrow")

# Broken files, one kind per class folder (the first three), as Caltech256 has them.
BROKEN_KINDS = ("zero_byte", "truncated_jpeg", "text_as_jpg")


@dataclass
class ShapesDataset:
    """What `write_shapes_dataset` wrote."""

    root: Path
    classes: tuple[str, ...]
    images: dict[str, list[Path]] = field(default_factory=dict)  # good images per class
    broken: list[Path] = field(default_factory=list)
    heldout: list[tuple[Path, str]] = field(default_factory=list)  # (image, true class)

    @property
    def num_images(self) -> int:
        return sum(len(v) for v in self.images.values())


# ---------------------------------------------------------------------------------------------
# Outlines: each returns polygons (lists of (x, y) on the unit scale, centred on 0) to fill, and
# an optional list of polygons to cut back out in the background color.


def _regular(n: int, radius: float = 1.0, phase: float = -math.pi / 2) -> list:
    return [
        (
            radius * math.cos(phase + 2 * math.pi * k / n),
            radius * math.sin(phase + 2 * math.pi * k / n),
        )
        for k in range(n)
    ]


def _outline(name: str) -> tuple[list, list]:
    if name == "circle":
        return [_regular(48)], []
    if name == "square":
        return [[(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]], []
    if name == "triangle":
        return [_regular(3, 1.0)], []
    if name == "star":
        outer, inner = _regular(5, 1.0), _regular(5, 0.42, -math.pi / 2 + math.pi / 5)
        return [[p for pair in zip(outer, inner, strict=True) for p in pair]], []
    if name == "cross":
        a, b = 0.28, 0.95
        return [[(-a, -b), (a, -b), (a, b), (-a, b)], [(-b, -a), (b, -a), (b, a), (-b, a)]], []
    if name == "ring":
        return [_regular(48)], [_regular(48, 0.55)]
    if name == "crescent":
        return [_regular(48)], [[(x + 0.45, y - 0.15) for x, y in _regular(48, 0.85)]]
    if name == "arrow":
        return [[(-0.95, -0.22), (0.2, -0.22), (0.2, -0.6), (0.95, 0.0), (0.2, 0.6), (0.2, 0.22),
                 (-0.95, 0.22)]], []  # fmt: skip
    raise ValueError(f"unknown shape {name!r}")


def _transform(poly, cx, cy, radius, angle):
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + radius * (x * c - y * s), cy + radius * (x * s + y * c)) for x, y in poly]


# ---------------------------------------------------------------------------------------------
# Drawing.


def _random_color(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A flat, gradient or noisy background, float32 HxWx3."""
    # float32 throughout and broadcasting rather than full coordinate grids: drawing was most
    # of the demo's dataset step (12 s for 3,200 images on a 2-core EPYC).
    kind = rng.integers(3)
    base = _random_color(rng)
    if kind == 0:
        return np.broadcast_to(base, (height, width, 3)).copy()
    if kind == 1:
        other = _random_color(rng)
        angle = rng.uniform(0, 2 * math.pi)
        x = np.arange(width, dtype=np.float32)[None, :] * np.float32(math.cos(angle))
        y = np.arange(height, dtype=np.float32)[:, None] * np.float32(math.sin(angle))
        # t = x cos + y sin is linear, so its extremes lie at the corners.
        low = x.min() + y.min()
        span = max(float(x.max() + y.max() - low), 1.0)
        t = (x + y - low) / np.float32(span)
        return base + t[..., None] * (other - base)
    sigma = np.float32(rng.uniform(10, 40))
    img = rng.standard_normal((height, width, 3), dtype=np.float32)
    img *= sigma
    img += base
    return img


def _contrasting_color(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random color far enough from the background's mean that the shape is visible."""
    mean = background[::4, ::4].mean(axis=(0, 1))  # every 16th pixel: enough for a mean
    for _ in range(50):
        color = _random_color(rng)
        if np.abs(color - mean).sum() > 150:
            return color
    return 255.0 - mean


def draw_shape(name: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """One RGB uint8 image (height x width x 3) of shape `name` on a random background.

    The shape lies inside the central square of the image (what the preprocessor's center crop
    keeps), at a random position, size (25-45% of the short side as radius) and rotation.
    """
    img = _background(rng, width, height)
    color = _contrasting_color(rng, img)
    side = min(width, height)
    radius = side * rng.uniform(0.25, 0.45)
    margin = side / 2 - radius
    cx = width / 2 + rng.uniform(-margin, margin)
    cy = height / 2 + rng.uniform(-margin, margin)
    angle = rng.uniform(0, 2 * math.pi)

    # Draw a mask, then blend: the cut-out of a ring or a crescent shows the background.
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    fill, cut = _outline(name)
    for poly in fill:
        draw.polygon(_transform(poly, cx, cy, radius, angle), fill=255)
    for poly in cut:
        draw.polygon(_transform(poly, cx, cy, radius, angle), fill=0)
    box = mask.getbbox()  # blend only where the shape is: elsewhere alpha is 0
    if box is not None:
        left, top, right, bottom = box
        alpha = np.asarray(mask.crop(box), dtype=np.float32)[..., None] / np.float32(255)
        region = img[top:bottom, left:right]
        region *= 1 - alpha
        region += color * alpha
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


def _write_broken(path: Path, kind: str, rng: np.random.Generator) -> None:
    if kind == "zero_byte":
        path.write_bytes(b"")
    elif kind == "truncated_jpeg":
        buffer = io.BytesIO()
        Image.fromarray(draw_shape("circle", 120, 90, rng)).save(buffer, "JPEG", quality=90)
        data = buffer.getvalue()
        path.write_bytes(data[: len(data) // 3])  # the header survives, the scan data does not
    else:
        path.write_text("not an image: a stray text file saved with a .jpg name\n")


def _random_size(rng: np.random.Generator, min_size: int, max_size: int) -> tuple[int, int]:
    width = int(rng.integers(min_size, max_size + 1))
    # Aspect ratios between 3:4 and 4:3 most of the time, sometimes square.
    aspect = 1.0 if rng.random() < 0.2 else rng.uniform(0.75, 1.33)
    height = int(np.clip(round(width / aspect), min_size, max_size))
    return width, height


def _save(img: np.ndarray, path: Path, grayscale: bool, quality: int) -> None:
    pil = Image.fromarray(img)
    if grayscale:
        pil = pil.convert("L")  # a 1-channel JPEG, as Caltech256 has
    pil.save(path, quality=quality)


# Below this many images one process draws them all: starting worker processes would cost
# more than it saves.
PARALLEL_FROM = 256


def _draw_one(task: tuple[str, int, int, str, int, int, float, int]) -> None:
    """Draws and writes one dataset image, from its own random stream (`write_shapes_dataset`)."""
    name, index, number, path, min_size, max_size, grayscale_fraction, seed = task
    rng = np.random.default_rng([seed, index, number])
    width, height = _random_size(rng, min_size, max_size)
    gray = rng.random() < grayscale_fraction
    _save(draw_shape(name, width, height, rng), Path(path), gray, int(rng.integers(70, 96)))


def write_shapes_dataset(
    root: str | Path,
    *,
    per_class: int = 300,
    classes: tuple[str, ...] = CLASSES,
    heldout_dir: str | Path | None = None,
    heldout_per_class: int = 1,
    min_size: int = 60,
    max_size: int = 400,
    grayscale_fraction: float = 0.1,
    broken: bool = True,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = False,
) -> ShapesDataset:
    """Writes the shapes dataset in Caltech256 layout (`001.circle/001_0001.jpg`, ...).

    Args:
        root: dataset folder to create (must not hold class folders already).
        per_class: good images per class (the classes are balanced).
        classes: shape names, a subset of `CLASSES`, in folder order.
        heldout_dir: where to write the held-out images (`circle_1.jpg`, ...); None: none.
        heldout_per_class: held-out images per class.
        min_size, max_size: range of image width and height in pixels.
        grayscale_fraction: share of images saved as 1-channel JPEGs.
        broken: add one broken file to each of the first three class folders.
        seed: everything is drawn from this seed; the same seed writes the same files, whatever
            `workers` is (each image has its own stream, from the seed, its class and number).
        workers: processes drawing the images (default: one per usable core, one for fewer
            than PARALLEL_FROM images).
        progress: show a progress bar.

    Returns:
        A `ShapesDataset` listing what was written.
    """
    from preprocessing.workers import default_workers, map_tasks

    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise UserError(f"unknown shape class {unknown[0]!r}; known: {', '.join(CLASSES)}")
    if per_class < 1:
        raise UserError(f"--per-class must be at least 1, got {per_class}")
    if not 8 <= min_size <= max_size:
        raise UserError(f"image sizes must satisfy 8 <= min <= max, got {min_size}, {max_size}")
    root = Path(root)
    if root.exists() and any(p.is_dir() for p in root.iterdir()):
        raise UserError(f"{root}: already holds folders; choose an empty or new folder")
    out = ShapesDataset(root=root, classes=tuple(classes))
    tasks = []
    for index, name in enumerate(classes, start=1):
        folder = root / f"{index:03d}.{name}"
        folder.mkdir(parents=True, exist_ok=True)
        out.images[name] = [folder / f"{index:03d}_{i:04d}.jpg" for i in range(1, per_class + 1)]
        tasks += [
            (name, index, i, str(path), min_size, max_size, grayscale_fraction, seed)
            for i, path in enumerate(out.images[name], start=1)
        ]
        if broken and index <= len(BROKEN_KINDS):
            # Its own stream, numbered like an image's. Not [seed, index, 0]: numpy's seeds
            # ignore trailing zeros, so that is the held-out images' [seed, 1].
            number = per_class + 1
            rng = np.random.default_rng([seed, index, number])
            path = folder / f"{index:03d}_{number:04d}.jpg"
            _write_broken(path, BROKEN_KINDS[index - 1], rng)
            out.broken.append(path)
    if workers is None:
        workers = default_workers() if len(tasks) >= PARALLEL_FROM else 1
    for _ in map_tasks(_draw_one, tasks, workers, progress, "generate"):
        pass
    if heldout_dir is not None:
        heldout_dir = Path(heldout_dir)
        heldout_dir.mkdir(parents=True, exist_ok=True)
        # Drawn from their own stream so they never repeat a training image.
        held_rng = np.random.default_rng([seed, 1])
        for name in classes:
            for i in range(1, heldout_per_class + 1):
                width, height = _random_size(held_rng, min_size, max_size)
                path = heldout_dir / f"{name}_{i}.jpg"
                _save(draw_shape(name, width, height, held_rng), path, False, 90)
                out.heldout.append((path, name))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m keras_googlenet.data.shapes", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--output", required=True, help="dataset folder to create")
    parser.add_argument("--per-class", type=int, default=300, help="images per class")
    parser.add_argument("--heldout", help="folder for a few held-out images (default: none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ds = write_shapes_dataset(
        args.output,
        per_class=args.per_class,
        heldout_dir=args.heldout,
        seed=args.seed,
        progress=True,
    )
    print(
        f"wrote {ds.num_images} images in {len(ds.classes)} classes to {ds.root} "
        f"(+{len(ds.broken)} broken files, {len(ds.heldout)} held-out images)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
