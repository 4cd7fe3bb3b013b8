"""Decoding many images at once: one image per task, in worker processes, with a progress bar.

Each worker writes its JPEG itself and returns only the pixel sums and the audit's fingerprint
(about 800 bytes, taken from the pixels it decoded anyway), so memory stays flat whatever the
number of images.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import sys

import cv2
from tqdm import tqdm

from preprocessing.audit import fingerprint
from preprocessing.image_io import BadImage, decode_file, square_rgb

# A side larger than any image: JPEG draft mode never shrinks the decode of a processed image.
NO_DRAFT = 1 << 16
JPEG_QUALITY = 95  # the training crops come from these files: keep them close to lossless


def _init_worker() -> None:
    # Ctrl-C reaches the whole process group; only the parent should react (it stops the pool),
    # or every worker prints its own traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The pool is the parallelism: OpenCV's own threads would only compete with the workers.
    cv2.setNumThreads(1)


def process_one(task: tuple[int, str, str], size: int, center_crop: bool, audit: bool = True):
    """Decodes `src`, writes the square JPEG to `dst`; returns its pixel sums or the reason.

    Returns:
        (index, None, "", [R sum, G sum, B sum], fingerprint or None without `audit`), or
        (index, reason, detail, None, None).
    """
    index, src, dst = task
    try:
        decoded, stored = decode_file(src, size)
        pixels = square_rgb(decoded, size, center_crop)
        size_of = (stored, os.path.getsize(src))
        prints = fingerprint(pixels, decoded.shape, size_of) if audit else None
    except BadImage as e:
        return index, e.reason, e.detail, None, None
    # OpenCV's encoder: the same libjpeg-turbo as Pillow's at about half the cost (it takes BGR).
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:  # cannot happen for a uint8 RGB array; refuse loudly rather than write nothing
        raise RuntimeError(f"JPEG encoding failed for {src}")
    with open(dst, "wb") as f:
        f.write(jpeg.tobytes())
    # OpenCV's per-channel sum: exact (doubles hold integers up to 2**53), 10x faster than
    # numpy's two-step reduction.
    sums = [int(v) for v in cv2.sumElems(pixels)[:3]]
    return index, None, "", sums, prints


def fingerprint_one(task: tuple[int, str]):
    """Decodes an already processed image and returns its audit fingerprint or the reason.

    Returns:
        (index, None, "", fingerprint) or (index, reason, detail, None).
    """
    index, path = task
    try:
        decoded, stored = decode_file(path, NO_DRAFT)
        size_of = (stored, os.path.getsize(path))
        return index, None, "", fingerprint(decoded, decoded.shape, size_of)
    except (BadImage, OSError) as e:
        return index, getattr(e, "reason", "unreadable"), str(e), None


def _start_method() -> str:
    # fork is fastest, but forking a process that already runs TensorFlow's threads (the demo
    # calls us in-process) can deadlock; spawn starts clean workers then.
    methods = multiprocessing.get_all_start_methods()
    return "fork" if "fork" in methods and "tensorflow" not in sys.modules else "spawn"


def run_tasks(tasks, size, center_crop, workers, progress, audit=True):
    """Yields `process_one` results, in parallel when `workers` > 1."""
    work = functools.partial(process_one, size=size, center_crop=center_crop, audit=audit)
    yield from map_tasks(work, tasks, workers, progress, "preprocess")


def map_tasks(work, tasks, workers, progress, desc):
    """Yields `work(task)` for every task, in any order, in `workers` processes when > 1."""

    def bar():
        return tqdm(total=len(tasks), unit="img", desc=desc, disable=not progress)

    if workers == 1:
        with bar() as shown:
            for task in tasks:
                yield work(task)
                shown.update()
        return
    ctx = multiprocessing.get_context(_start_method())
    # Chunks amortise the inter-process traffic; small enough to keep the bar moving.
    chunksize = max(1, min(64, len(tasks) // (workers * 16)))
    # The pool first: forking before tqdm starts its monitor thread forks a single thread.
    with ctx.Pool(workers, initializer=_init_worker) as pool, bar() as shown:
        for result in pool.imap_unordered(work, tasks, chunksize=chunksize):
            yield result
            shown.update()


def default_workers() -> int:
    """The cores this process may use (respects CPU affinity in containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
