"""Images per second of the training input pipeline (no model), and peak memory.

    .venv/bin/python bench/pipeline.py [--images 3000] [--batches 30] [--variants a,b,...]

Generates once a processed folder of 256x256 JPEGs in bench/.cache/ (photo-like content: smooth
shapes plus texture, about the size of Caltech256's processed files), then times the training
dataset at batch 128 with:
    default         the default train_augment (random_crop 224, horizontal_flip, rotate90), TF ops;
                    a window under half the image is decoded alone (decode_and_crop_jpeg), so
                    here (224 of 256) the whole JPEG is decoded and cut;
    always_window   the same, but always decoding only the crop window (what that rule avoids);
    deterministic   the default transforms with data.deterministic: true (fixed order);
    albumentations  the same augmentation done by albumentations (RandomCrop, HorizontalFlip,
                    RandomRotate90) through tf.numpy_function;
    rrc_jitter      random_resized_crop 224 + horizontal_flip + color_jitter (a heavier recipe);
    crop_only, crop_flip  random_crop 224 (+ horizontal_flip: what bench/compare.py's peer does);
    crop_flip_fail  crop_flip with data.on_bad_image: fail (what skipping bad files costs);
    cached, cached_crop_flip
                    default / crop_flip with data.cache: true, timed after one full pass
                    (decoded images come from memory; the warm-up covers the first epoch). This
                    is what `data.cache: auto`, the default, does when the decoded training
                    images fit in a quarter of the free memory; the other variants set
                    data.steps_per_epoch (an endless dataset), under which auto does not cache.
Nothing here is asserted; the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

CACHE = REPO / "bench" / ".cache"
VARIANTS = {
    "default": [],
    "always_window": [],
    "deterministic": ["data.deterministic=true"],
    "albumentations": [
        "data.train_augment=[]",
        "data.albumentations=[{RandomCrop: {height: 224, width: 224}}, "
        "{HorizontalFlip: {p: 0.5}}, {RandomRotate90: {p: 0.5}}]",
    ],
    "cached": ["data.cache=true"],
    "cached_crop_flip": [
        "data.cache=true",
        "data.train_augment=[{name: random_crop, size: 224}, {name: horizontal_flip}]",
    ],
    "crop_only": ["data.train_augment=[{name: random_crop, size: 224}]"],
    # what bench/compare.py's torch DataLoader peer does
    "crop_flip": ["data.train_augment=[{name: random_crop, size: 224}, {name: horizontal_flip}]"],
    # the same without skipping bad files (no ignore_errors between map and batch)
    "crop_flip_fail": [
        "data.train_augment=[{name: random_crop, size: 224}, {name: horizontal_flip}]",
        "data.on_bad_image=fail",
    ],
    "rrc_jitter": [
        "data.train_augment=[{name: random_resized_crop, size: 224}, {name: horizontal_flip}, "
        "{name: color_jitter, brightness: 0.4, contrast: 0.4, saturation: 0.4}]",
    ],
}


def photo_like(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Smooth colour blobs, an edge and mild noise: JPEG size and decode cost like a photo."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.zeros((size, size, 3), np.float32)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, 1, 3)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (0.02 + 0.1 * r))
        img += blob[..., None] * rng.uniform(40, 200, 3)
    img += 30 * np.sin(2 * np.pi * rng.uniform(2, 12) * (x + rng.uniform(-1, 1) * y))[..., None]
    img += rng.normal(0, 10, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_dataset(root: Path, count: int, num_classes: int = 16) -> Path:
    """Writes (once) a processed folder with `count` training JPEGs of 256x256."""
    from PIL import Image

    done = root / "train.csv"
    if done.is_file() and len(done.read_text().splitlines()) - 1 == count:
        return root
    print(f"generating {count} 256x256 JPEGs in {root} (once) ...", flush=True)
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "val").mkdir(exist_ok=True)
    rows = []
    for i in range(count):
        name = f"{i:06d}.jpg"
        Image.fromarray(photo_like(rng)).save(root / "train" / name, quality=90)
        rows.append((name, i % num_classes))
    for split, split_rows in (("val", rows[:num_classes]), ("train", rows)):
        if split == "val":
            for name, _ in split_rows:
                (root / "val" / name).write_bytes((root / "train" / name).read_bytes())
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image", "class"])
            w.writerows(split_rows)
    with open(root / "categories.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label"])
        w.writerows((c, f"class{c}") for c in range(num_classes))
    (root / "rgb_val.json").write_text(json.dumps({"R": 120.0, "G": 115.0, "B": 110.0}))
    return root


def measure(name: str, root: Path, batches: int, warmup: int, batch_size: int) -> float:
    from keras_googlenet.config import load_config
    from keras_googlenet.data import decode
    from keras_googlenet.data import pipeline as data
    from keras_googlenet.data.dataset_info import read_dataset_info

    overrides = [
        f"data.input_dir={root}",
        f"data.batch_size={batch_size}",
        "data.steps_per_epoch=1",
    ]
    cfg = load_config(None, overrides + VARIANTS[name])
    info = read_dataset_info(cfg)
    saved = decode._WINDOW_DECODE_BELOW
    if name == "always_window":
        decode._WINDOW_DECODE_BELOW = 2.0
    try:
        if name.startswith("cached"):  # fill the cache: one whole pass first
            warmup += info.train_size // batch_size + 1
        steps = data.steps_per_pass(cfg, info)
        ds = data.make_train_dataset(
            cfg, info, passes=data.passes_for(0, warmup + batches, steps) + 1
        )
        it = iter(ds)
        for _ in range(warmup):
            next(it)
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        for _ in range(batches):
            x, _ = next(it)
        x.numpy()
        elapsed, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    finally:
        decode._WINDOW_DECODE_BELOW = saved
    images = batches * batch_size
    return images / elapsed, images / cpu


def baselines(root: Path, batches: int, warmup: int, batch_size: int) -> None:
    """Prints the images/s of two minimal tf.data loops over the same files: what decoding
    alone, and decoding plus tf.image's own crop and flip, leave as the ceiling."""
    import tensorflow as tf

    files = sorted(str(p) for p in (root / "train").glob("*.jpg"))

    def decode(path):
        return tf.io.decode_jpeg(tf.io.read_file(path), channels=3)

    def crop_flip(path):
        image = tf.image.random_crop(decode(path), [224, 224, 3])
        return tf.image.random_flip_left_right(image)

    options = tf.data.Options()
    options.deterministic = False
    loops = (("baseline: decode only", decode), ("baseline: tf.image crop+flip", crop_flip))
    for name, fn in loops:
        ds = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files)).repeat()
        ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
        it = iter(ds.prefetch(tf.data.AUTOTUNE).with_options(options))
        for _ in range(warmup):
            next(it)
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        for _ in range(batches):
            next(it)
        elapsed, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
        images = batches * batch_size
        print(f"{name:<28} {images / elapsed:9.0f} {images / cpu:13.0f}", flush=True)


def _cpu_seconds() -> float:
    """CPU time of this process (all threads): a contended machine slows the wall clock, but
    images per CPU-second tells what the pipeline costs."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=3000, help="JPEGs to generate (once)")
    parser.add_argument("--batches", type=int, default=30, help="timed batches per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches first")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--variants", default="default,albumentations", help=",".join(VARIANTS))
    parser.add_argument(
        "--baselines", action="store_true", help="also time minimal tf.data loops (the ceiling)"
    )
    args = parser.parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")

    root = make_dataset(CACHE / f"pipeline_{args.images}", args.images)
    import tensorflow as tf

    print(
        f"cpus: {os.cpu_count()}  load average: {os.getloadavg()[0]:.1f}  tf {tf.__version__}  "
        f"batch {args.batch_size}, {args.batches} timed batches after {args.warmup}"
    )
    print(f"{'variant':<28} {'images/s':>9} {'images/CPU-s':>13}")
    for name in names:
        rate, per_cpu = measure(name, root, args.batches, args.warmup, args.batch_size)
        print(f"{name:<28} {rate:9.0f} {per_cpu:13.0f}", flush=True)
    if args.baselines:
        baselines(root, args.batches, args.warmup, args.batch_size)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (RSS): {peak:.0f} MiB   load average now: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
