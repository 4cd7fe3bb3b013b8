"""A Caltech-101-like folder cut from a few real photos, for `compare.py preprocess --input`.

    python bench/photo_crops.py SOURCE_DIR OUT_DIR [--images 9145] [--classes 101]

Generated test images are smooth or periodic, and decode unlike photos; real collections are
not on every machine. This cuts random crops (4-30% of a source's area, rotated up to 15
degrees, half of them mirrored) from every photo in SOURCE_DIR (any format Pillow reads) and
saves them as Caltech-101's files are: the longer side 300 px for most (200-300 for the rest),
JPEG quality 75-95, about 4% grayscale and 1% PNG under their own names, spread over `classes`
folders. Small crops of different places of a photo rarely look alike, so the audit finds about
as many near copies as in a real web collection (130 groups in 9,145 files from 18 photos).

bench/README.md ("Preprocessing real photos") names the photos used for its figures: the
sample photos shipped inside the scikit-image, scikit-learn and matplotlib wheels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def make(source: Path, out: Path, images: int, classes: int, seed: int = 0) -> float:
    """Writes the folder; returns the mean file size in KB."""
    photos = []
    for path in sorted(p for p in source.iterdir() if p.is_file()):
        try:
            with Image.open(path) as im:
                photos.append(im.convert("RGB"))
        except OSError:
            continue  # not an image: skipped, like the preprocessor would
    if not photos:
        raise SystemExit(f"photo_crops: no image files in {source}")
    rng = np.random.default_rng(seed)
    total = 0
    for i in range(images):
        photo = photos[int(rng.integers(len(photos)))]
        full_w, full_h = photo.size
        area, aspect = rng.uniform(0.04, 0.3), rng.uniform(0.6, 1.6)
        w = int(min(full_w, np.sqrt(area * full_w * full_h * aspect)))
        h = int(min(full_h, w / aspect))
        x, y = int(rng.integers(0, full_w - w + 1)), int(rng.integers(0, full_h - h + 1))
        crop = photo.crop((x, y, x + w, y + h))
        if rng.uniform() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop = crop.rotate(float(rng.uniform(-15, 15)), Image.Resampling.BILINEAR)
        longer = 300 if rng.uniform() < 0.7 else int(rng.integers(200, 301))
        scale = longer / max(w, h)
        crop = crop.resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC
        )
        folder = out / f"{i % classes + 1:03d}.class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        kind = rng.uniform()
        if kind < 0.04:
            crop = crop.convert("L")
        if kind > 0.99:
            path = folder / f"{i:05d}.png"
            crop.save(path)
        else:
            path = folder / f"{i:05d}.jpg"
            crop.save(path, "JPEG", quality=int(rng.integers(75, 96)))
        total += path.stat().st_size
    return total / images / 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a folder of real photos")
    parser.add_argument("out", type=Path, help="the new folder of class folders")
    parser.add_argument("--images", type=int, default=9145, help="Caltech-101 has 9,145")
    parser.add_argument("--classes", type=int, default=101)
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        print(f"photo_crops: {args.out} is not empty", file=sys.stderr)
        return 2
    mean_kb = make(args.source, args.out, args.images, args.classes)
    where = f"{args.classes} class folders under {args.out}"
    print(f"{args.images} files in {where}, {mean_kb:.1f} KB mean")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
