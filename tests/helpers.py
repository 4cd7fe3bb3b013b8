"""Tiny datasets on disk for the tests: real JPEG files in the processed-folder format.

`write_processed_dataset` writes what the preprocessor writes (train/, val/, train.csv, val.csv,
categories.csv, rgb_val.json); the class is a drawn pattern, so a few steps of training can learn
something, and the files are real JPEGs decoded by the real pipeline.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image


def class_image(class_id: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A size x size RGB uint8 image whose pattern (stripes of varying direction) is the class."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = np.pi * class_id / 4 + rng.uniform(-0.2, 0.2)
    wave = np.sin(2 * np.pi * 4 * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 6))
    base = rng.uniform(60, 200, size=3)
    img = base[None, None, :] + 50 * wave[..., None] + rng.normal(0, 8, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_processed_dataset(
    root: str | Path,
    num_classes: int = 3,
    train_per_class: int = 8,
    val_per_class: int = 4,
    size: int = 80,
    seed: int = 0,
    mean_name: str = "rgb_val.json",
) -> Path:
    """Writes a processed dataset folder and returns its path."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    labels = [f"class{c}" for c in range(num_classes)]
    pixel_sum, pixel_count = np.zeros(3), 0
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        (root / split).mkdir(parents=True, exist_ok=True)
        rows = []
        for c in range(num_classes):
            for i in range(per_class):
                img = class_image(c, size, rng)
                name = f"{split}_{c}_{i:04d}.jpg"
                Image.fromarray(img).save(root / split / name, quality=95)
                rows.append((name, c))
                if split == "train":
                    pixel_sum += img.reshape(-1, 3).sum(0)
                    pixel_count += size * size
        rng.shuffle(rows)
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image", "class"])
            w.writerows(rows)
    with open(root / "categories.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label"])
        w.writerows(enumerate(labels))
    mean = pixel_sum / pixel_count
    (root / mean_name).write_text(json.dumps(dict(zip("RGB", map(float, mean), strict=True))))
    return root
