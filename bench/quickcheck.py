"""Wall time and peak memory of the CIFAR-10 quick check, on a full-size CIFAR-format archive.

    python bench/quickcheck.py [--fast] [--steps N] [-- extra quickcheck args]

Without a real CIFAR-10 copy here (no network), the first run writes a synthetic archive in the
real format (50,000 + 10,000 images, 10 classes; the class is where a bright patch sits on a
noisy background) to bench/.cache/ and reuses it afterwards. It measures what does not depend on
the pictures: loading, memory, and time per epoch. Pass `--data-dir` in the extra arguments to
measure a real copy instead (then the accuracy means something too).

Each measurement runs the quick check in a fresh process and reports its wall time and its peak
resident memory (getrusage of the child).
"""

from __future__ import annotations

import argparse
import io
import pickle
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / ".cache"
ARCHIVE = CACHE / "synthetic-cifar" / "cifar-10-python.tar.gz"


def synthetic_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 160, size=(n, 32, 32, 3), dtype=np.uint8)
    for c in range(10):
        top, left = 2 + 9 * (c // 4), 2 + 9 * (c % 4)
        images[labels == c, top : top + 8, left : left + 8] = 235
    return images, labels


def _member(tar: tarfile.TarFile, name: str, obj) -> None:
    data = pickle.dumps(obj, protocol=2)
    info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_archive(path: Path) -> None:
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    with tarfile.open(tmp, "w:gz") as tar:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for name in names:
            x, y = synthetic_images(10_000, rng)
            rows = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)
            _member(tar, name, {b"data": rows, b"labels": y.tolist()})
        labels = [f"class{c}".encode() for c in range(10)]
        _member(tar, "batches.meta", {b"label_names": labels})
    tmp.rename(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="measure --fast")
    parser.add_argument("--steps", type=int, help="data.steps_per_epoch (a short full run)")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    if "--data-dir" not in extra:
        if not ARCHIVE.is_file():
            print(f"writing a synthetic CIFAR-format archive to {ARCHIVE} ...", flush=True)
            write_archive(ARCHIVE)
        extra += ["--data-dir", str(ARCHIVE)]
    scratch = None
    if "--run-dir" not in extra:  # a fresh run each time, thrown away afterwards
        scratch = tempfile.mkdtemp(prefix="quickcheck-run-")
        extra += ["--run-dir", scratch]
    command = [sys.executable, "-m", "keras_googlenet.quickcheck", "--offline", *extra]
    if args.fast:
        command.append("--fast")
    if args.steps:
        command += ["--set", f"data.steps_per_epoch={args.steps}"]
        command += ["--set", f"data.validation_steps={args.steps}"]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO)
    wall = time.perf_counter() - start
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(f"command: {' '.join(command[1:])}")
    print(f"exit code {proc.returncode}; wall time {wall:.0f} s; peak memory {peak:.2f} GB")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
