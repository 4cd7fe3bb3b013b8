"""Preprocessing speed and memory: one worker against all cores, and memory against dataset size.

    python bench/preprocess.py [--images 3000] [--size 256] [--repeat 1] [--shape caltech]
    python bench/preprocess.py --parts          # the cost of one image, part by part
    python bench/preprocess.py --audit-cost --shape caltech --repeat 3   # what the audit adds
    python bench/preprocess.py --parts --input DIR   # the same on your own class folders

The first run generates the input once into bench/.cache/; later runs reuse it. Two shapes:
`photos`, JPEGs of 300-1000 px per side (phone-sized photos), and `caltech`, shaped like
Caltech256's files: 200-500 px per side, mostly 10-40 KB, quality 70-90. About 15% of either is
grayscale, like Caltech256's oddities. Each measurement runs the preprocessor
in a fresh process and reports images/s and peak resident memory of the main process and of the
largest worker (getrusage, so a worker's peak is counted even after it exits).

Measure on a quiet machine. Linux's scheduler (autogroup) shares the CPU between sessions, not
processes: while another session is busy, this one gets its share whatever the number of
workers, and the speed-up reads close to 1x. CPU ms per image does not depend on that: equal
values for one and for all workers mean the parallel version adds no work.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from preprocessing.image_dir_preprocessor import preprocess  # noqa: E402
from preprocessing.workers import default_workers  # noqa: E402

CACHE = REPO / "bench" / ".cache"
CLASSES = 30


SHAPES = {"photos": ((300, 1001), (90, 91)), "caltech": ((200, 501), (70, 91))}


def _make_image(args) -> None:
    path, seed, shape = args
    rng = np.random.default_rng(seed)
    sides, qualities = SHAPES[shape]
    height, width = (int(v) for v in rng.integers(*sides, 2))
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    # Smooth shapes plus sensor-like noise: JPEG sizes close to real photos (tens to hundreds
    # of KB), unlike flat colour (tiny files) or pure noise (huge ones).
    img = rng.uniform(60, 190, 3) + rng.uniform(-50, 50, 3) * (x / width)[..., None]
    for _ in range(3):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(30, 200)
        img += rng.uniform(-70, 70, 3) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r**2)[..., None]
    if shape == "caltech":  # texture, so that small files still weigh 10-40 KB like Caltech's
        wave = rng.uniform(5, 40) * (x / width + rng.uniform(-1, 1) * y / height)
        img += 25 * np.sin(2 * np.pi * wave)[..., None]
    img += rng.normal(0, 6, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rng.uniform() < 0.15:
        img = img[..., 0]  # grayscale, as a sixth of Caltech256's oddities are
    Image.fromarray(img).save(path, "JPEG", quality=int(rng.integers(*qualities)))


def generate(num_images: int, shape: str = "photos") -> Path:
    """The cached input folder of `num_images` JPEGs in `CLASSES` class folders."""
    suffix = "" if shape == "photos" else f"_{shape}"  # the photos folder keeps its old name
    root = CACHE / f"preprocess_raw_{num_images}{suffix}"
    done = root / ".complete"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    jobs = []
    for i in range(num_images):
        folder = root / f"{i % CLASSES + 1:03d}.class{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((folder / f"{i:05d}.jpg", i, shape))
    print(f"generating {num_images} JPEGs into {root} (once) ...", flush=True)
    with multiprocessing.Pool() as pool:
        pool.map(_make_image, jobs, chunksize=16)
    done.write_text("ok\n")
    return root


def subset(root: Path, num_images: int) -> Path:
    """A folder of symbolic links to the first `num_images` files of `root`."""
    small = CACHE / f"{root.name}_first_{num_images}"
    if not (small / ".complete").exists():
        shutil.rmtree(small, ignore_errors=True)
        files = sorted(root.glob("*/*.jpg"), key=lambda p: p.name)[:num_images]
        for f in files:
            (small / f.parent.name).mkdir(parents=True, exist_ok=True)
            (small / f.parent.name / f.name).symlink_to(f)
        (small / ".complete").write_text("ok\n")
    return small


def measure_one(input_dir: str, workers: int, size: int, audit: bool = True) -> dict:
    """Runs the preprocessor here (call in a fresh process) and returns the numbers."""
    out = CACHE / f"out_{os.getpid()}"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    summary = preprocess(input_dir, out, size=size, workers=workers, progress=False, audit=audit)
    seconds = time.perf_counter() - start
    shutil.rmtree(out)
    me = resource.getrusage(resource.RUSAGE_SELF)
    pool = resource.getrusage(resource.RUSAGE_CHILDREN)
    kib = 1024  # Linux reports ru_maxrss in KiB
    return {
        "images": summary.written,
        "seconds": seconds,
        # CPU time hardly depends on what else runs on the machine, unlike wall time.
        "cpu_seconds": me.ru_utime + me.ru_stime + pool.ru_utime + pool.ru_stime,
        "main_mib": me.ru_maxrss / kib,
        "worker_mib": pool.ru_maxrss / kib,
    }


def measure(input_dir: Path, workers: int, size: int, audit: bool = True) -> dict:
    cmd = [sys.executable, __file__, "--one", str(input_dir), "--workers", str(workers)]
    cmd += ["--size", str(size)] + ([] if audit else ["--no-audit"])
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def parts(input_dir: Path, size: int, count: int = 300) -> None:
    """Prints the CPU milliseconds of each part of one image's work (one process, no pool)."""
    import io

    import cv2

    from preprocessing import image_io
    from preprocessing.audit import fingerprint
    from preprocessing.workers import process_one

    cv2.setNumThreads(1)  # as in the workers
    files = sorted(input_dir.glob("*/*.jpg"))[:count]
    if not files:
        raise SystemExit(f"no */*.jpg files in {input_dir}")

    def decode(path):
        with Image.open(path) as im:
            im.draft("RGB", (size, size))
            im.load()
            return im.copy()

    # Each part runs over the previous part's outputs, prepared first, so only it is timed.
    decoded = [decode(f) for f in files]
    rgb = [image_io._to_rgb(image_io._upright(im)) for im in decoded]
    arrays = [np.asarray(im) for im in rgb]
    squares = [
        image_io.resize_square(a, size, image_io.square_box(*a.shape[1::-1])) for a in arrays
    ]
    out = CACHE / "parts_out.jpg"
    steps = [
        ("read the bytes", files, Path.read_bytes),
        (
            "decode_file (simplejpeg route)",
            files,
            lambda f: image_io.decode_file(f, size),
        ),
        ("  Pillow: open + decode (draft mode)", files, decode),
        ("EXIF orientation + to RGB", decoded, lambda im: image_io._to_rgb(image_io._upright(im))),
        ("to a numpy array", rgb, np.asarray),
        (
            "crop + resize (OpenCV)",
            arrays,
            lambda a: image_io.resize_square(a, size, image_io.square_box(*a.shape[1::-1])),
        ),
        (
            "  before: Pillow bicubic",
            rgb,
            lambda im: im.resize(
                (size, size), Image.Resampling.BICUBIC, box=image_io.square_box(*im.size)
            ),
        ),
        ("encode JPEG q95 (OpenCV)", squares, lambda a: cv2.imencode(".jpg", a)),
        (
            "  before: Pillow encode",
            squares,
            lambda a: Image.fromarray(a).save(io.BytesIO(), "JPEG", quality=95),
        ),
        ("audit fingerprint (shrink, hashes)", squares, lambda a: fingerprint(a, a.shape, (0, 0))),
        (
            "process_one, no audit",
            files,
            lambda f: process_one((0, f, out), size, True, audit=False),
        ),
        (
            "process_one (+ write, sums, audit)",
            files,
            lambda f: process_one((0, f, out), size, True),
        ),
        ("the seed: cv2.imread", files, lambda f: cv2.imread(str(f))),
        ("the seed's loop, whole (bench/peers)", files, lambda f: _seed_one(f, out, size)),
    ]
    print(f"CPU ms per image, {len(files)} files of {input_dir.name}:")
    for name, inputs, step in steps:
        start = time.process_time()
        for item in inputs:
            step(item)
        print(f"  {name:<38} {1000 * (time.process_time() - start) / len(inputs):6.2f}")
    out.unlink(missing_ok=True)


def _seed_one(path: Path, out: Path, size: int) -> None:
    """One image through the seed's steps (bench/peers/seed_preprocess.py), for `parts`."""
    import cv2

    img = cv2.imread(str(path))
    side = min(img.shape[:2])
    top, left = (img.shape[0] - side) // 2, (img.shape[1] - side) // 2
    img = cv2.resize(img[top : top + side, left : left + side], (size, size), cv2.INTER_AREA)
    cv2.imwrite(str(out), img)


def audit_cost(root: Path, workers: int, size: int, repeat: int) -> None:
    """Prints the preprocessing time with and without the audit: median and spread of runs."""
    runs = {True: [], False: []}
    for _ in range(repeat):  # interleaved, so load from other jobs hits both alike
        for audit in (False, True):
            runs[audit].append(measure(root, workers, size, audit))
    for key, unit in (("seconds", "wall s"), ("cpu_seconds", "CPU s")):
        for audit in (False, True):
            t = [r[key] for r in runs[audit]]
            print(
                f"  {'with audit' if audit else 'no audit':<11} {unit:<6} median "
                f"{np.median(t):6.2f}, spread {min(t):.2f}-{max(t):.2f} over {len(t)} runs"
            )
        with_audit = np.median([r[key] for r in runs[True]])
        added = with_audit / np.median([r[key] for r in runs[False]]) - 1
        print(f"  audit adds {100 * added:+.1f}% {unit} (median against median)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=1, help="runs per setting; best is kept")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="photos")
    parser.add_argument(
        "--input", type=Path, help="--parts / --audit-cost on your class folders, not generated"
    )
    parser.add_argument("--parts", action="store_true", help="time one image's parts and stop")
    parser.add_argument("--audit-cost", action="store_true", help="time with and without audit")
    parser.add_argument("--no-audit", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.workers, args.size, not args.no_audit)))
        return

    if args.input and not (args.parts or args.audit_cost):
        parser.error(
            "--input goes with --parts or --audit-cost (compare.py preprocess --input DIR)"
        )
    cores = default_workers()
    root = args.input or generate(args.images, args.shape)
    if args.parts:
        parts(root, args.size)
        return
    if args.audit_cost:
        print(
            f"audit cost: {root.name}, {cores} workers, load average "
            f"before: {os.getloadavg()[0]:.2f}"
        )
        audit_cost(root, cores, args.size, args.repeat)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        return
    small = subset(root, max(1, args.images // 5))
    print(
        f"preprocess bench: {args.images} JPEGs ({args.shape}), ~15% grayscale, {CLASSES} classes "
        f"-> {args.size}x{args.size}; {cores} cores; best of {args.repeat}; load average "
        f"before: {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'images':>7} {'workers':>7} {'seconds':>8} {'images/s':>9} {'CPU ms/img':>10} "
        f"{'main MiB':>9} {'worker MiB':>10}"
    )
    settings = (
        (root, args.images, 1),
        (root, args.images, cores),
        (small, args.images // 5, cores),
    )
    # Interleaved repeats, best kept: load from other jobs then hits every setting alike.
    runs = {(count, workers): [] for _, count, workers in settings}
    for _ in range(args.repeat):
        for folder, count, workers in settings:
            runs[(count, workers)].append(measure(folder, workers, args.size))
    rows = {key: min(results, key=lambda run: run["seconds"]) for key, results in runs.items()}
    for _, count, workers in settings:
        r = rows[(count, workers)]
        rate = r["images"] / r["seconds"]
        cpu_ms = 1000 * r["cpu_seconds"] / r["images"]
        worker = f"{r['worker_mib']:.0f}" if workers > 1 else "-"
        print(
            f"{count:>7} {workers:>7} {r['seconds']:>8.1f} {rate:>9.1f} {cpu_ms:>10.1f} "
            f"{r['main_mib']:>9.0f} {worker:>10}",
            flush=True,
        )
    one, many = rows[(args.images, 1)], rows[(args.images, cores)]
    print(f"speed-up, {cores} workers vs 1: {one['seconds'] / many['seconds']:.2f}x")
    print(
        f"load average after: {os.getloadavg()[0]:.2f} (if above {cores}, other sessions shared "
        "the cores and the speed-up is understated; see the docstring)"
    )


if __name__ == "__main__":
    main()
