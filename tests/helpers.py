"""The tests' one helper module: tiny datasets, tiny configs, the command line, a tiny run.

- `write_processed_dataset` writes what the preprocessor writes (train/, val/, train.csv,
  val.csv, categories.csv, rgb_val.json); the class is a drawn pattern, so a few steps of
  training can learn something, and the files are real JPEGs decoded by the real pipeline.
- `tiny_config` / `tiny_overrides`: configs/smoke.yaml cut to a few 65-pixel steps.
- `cli(JOB, ...)`: the `keras-googlenet` command in this process; `run_train_cli` in a new one.
- `get_tiny_run` / `get_tiny_export`: one real run (killed mid-epoch and resumed) and its
  export, built once per session for the evaluate, export and predict tests.
- `crash_at_step`: a callback that stops `fit` mid-epoch in this process; `run_isolated`: a
  fresh interpreter that sees installed packages only.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import defaultdict
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


def photo_like(rng: np.random.Generator, height: int, width: int, palette=None) -> np.ndarray:
    """A photo-like RGB uint8 picture: a smooth gradient, random shapes and sensor noise.

    `palette` (a few RGB colours) makes distinct pictures that share their colours, the
    look-alikes a duplicate finder must keep apart; None draws the colours too.
    """
    import cv2

    colours = np.asarray(palette if palette is not None else rng.uniform(0, 255, (4, 3)))
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1)) / (width + height) + 0.5
    img = colours[0] * (1 - t[..., None]) + colours[1] * t[..., None]
    for _ in range(int(rng.integers(4, 8))):
        colour = [float(v) for v in colours[int(rng.integers(len(colours)))]]
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        axes = (
            int(rng.integers(width // 10, width // 3)),
            int(rng.integers(height // 10, height // 3)),
        )
        if rng.uniform() < 0.5:
            cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        else:
            corner = (centre[0] + axes[0], centre[1] + axes[1])
            cv2.rectangle(img, centre, corner, colour, -1)
    img = cv2.GaussianBlur(img, (0, 0), 2) + rng.normal(0, 5, img.shape)
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


# --------------------------------------------------------------------------------------------
# Configs and the command line.

REPO = Path(__file__).resolve().parents[1]
FAULTS = Path(__file__).resolve().parent / "faults.py"  # `keras-googlenet`, with test faults
SIZE = 65  # the smallest input the aux heads accept: the fastest GoogLeNet there is


def in_order(dataset):
    """`dataset` yielding in its own order, as with `data.deterministic`. Without it (the
    default) the parallel map and batch may swap neighbours across a pass's end, as a loaded
    CI machine did (7/8/9 of a class in one epoch): tests of what each pass holds read it so."""
    import tensorflow as tf

    ordered = tf.data.Options()
    ordered.deterministic = True
    return dataset.with_options(ordered)


def tiny_overrides(data_dir, **extra) -> list[str]:
    """`--set` values for a few-step run of configs/smoke.yaml on a tiny dataset."""
    values = {
        "data.input_dir": str(data_dir),
        "model.input_size": SIZE,
        "data.train_augment": f"[{{name: random_crop, size: {SIZE}}}, {{name: horizontal_flip}}]",
        "data.val_augment": f"[{{name: center_crop, size: {SIZE}}}]",
        "data.batch_size": 4,
        "data.steps_per_epoch": 2,
        "data.validation_steps": None,
        "training.epochs": 2,
        **extra,
    }
    return [f"{k}={'null' if v is None else v}" for k, v in values.items()]


def tiny_config(data_dir, **extra):
    from keras_googlenet.config import load_config

    return load_config(REPO / "configs" / "smoke.yaml", tiny_overrides(data_dir, **extra))


def run_train_cli(args, env_extra=None, timeout=300) -> subprocess.CompletedProcess:
    """Runs `keras-googlenet train ARGS` in a fresh process, with the faults `env_extra` asks
    for (tests/faults.py)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, str(FAULTS), "train", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def scalar_steps(log_dir) -> dict[str, list[int]]:
    """`{"train/epoch_loss": [0, 1, ...], ...}`: every scalar's steps, in the order on disk.

    Read raw (not through TensorBoard's reader, which hides repeated steps by purging them).
    """
    import tensorflow as tf

    steps = defaultdict(list)
    for path in sorted(Path(log_dir).rglob("events.out.tfevents.*"), key=os.path.getmtime):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    steps[f"{path.parent.name}/{value.tag}"].append(event.step)
    return dict(steps)


def cli(job: str, *args) -> int:
    """`keras-googlenet JOB ARGS` in this process; returns the exit code (errors as one line)."""
    from keras_googlenet.cli import main

    return main([job, *map(str, args)])


# --------------------------------------------------------------------------------------------
# The tiny run shared by the evaluate, export and predict tests.

_CACHE: dict[str, Path] = {}


TINY_RUN_OVERRIDES = {
    "data.batch_size": 8,
    "data.steps_per_epoch": 2,
    "data.validation_steps": None,  # the whole validation CSV: 12 images
    "training.epochs": 2,
    "training.checkpoint_interval": 1,
    "training.seed": 0,
    "data.deterministic": True,  # the same run every time: tests compare against it
}
TINY_RUN_KILL_AT_STEP = 3  # the middle of epoch 2: epoch 1 is finished and backed up


def tiny_run_config(dataset: Path, **overrides):
    """The tiny run's config: configs/smoke.yaml on `dataset`, 72x72 input from 80x80 images,
    batch 8, 2x2 steps."""
    from keras_googlenet.config import load_config

    values = {"data.input_dir": str(dataset), **TINY_RUN_OVERRIDES, **overrides}
    return load_config(REPO / "configs" / "smoke.yaml", values)


def _build_run(root: Path) -> Path:
    """Trains with the real CLI, kills it mid-epoch 2 (SIGKILL, like a power cut), then resumes
    it in this process with `train()`: every test of evaluate/export/predict runs on a resumed
    run."""
    from faults import KILL_ENV

    from keras_googlenet.training.run_dir import RunDir
    from keras_googlenet.training.train import train

    dataset = write_processed_dataset(root / "data", num_classes=3, size=80)
    run = RunDir(root / "run")
    args = ["--config", str(REPO / "configs" / "smoke.yaml"), "--run-dir", str(run.root)]
    for key, value in {"data.input_dir": str(dataset), **TINY_RUN_OVERRIDES}.items():
        args += ["--set", f"{key}={'null' if value is None else value}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), KILL_ENV: str(TINY_RUN_KILL_AT_STEP)}
    killed = subprocess.run(
        [sys.executable, str(FAULTS), "train", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not run.done.exists() and run.best.exists()
    result = train(tiny_run_config(dataset), run.root)
    assert result["status"] == "finished" and result["initial_epoch"] == 1, result
    return run.root


def get_tiny_run(tmp_path_factory) -> Path:
    """The run folder (read-only for tests: copy it before changing anything).

    Test modules wrap this in a session fixture; the cache makes it one run per session.
    """
    if "run" not in _CACHE:
        _CACHE["run"] = _build_run(tmp_path_factory.mktemp("tiny_run"))
    return _CACHE["run"]


def get_tiny_export(tmp_path_factory) -> Path:
    """The tiny run exported with the CLI (read-only for tests)."""
    if "export" not in _CACHE:
        run = get_tiny_run(tmp_path_factory)
        out = tmp_path_factory.mktemp("tiny_export") / "export"
        code = cli("export", "--run-dir", run, "--output", out)
        assert code == 0
        _CACHE["export"] = out
    return _CACHE["export"]


# --------------------------------------------------------------------------------------------
# Fuzzed image files, for every reader of images (preprocessor, training probe, predict).


def _png_with_size(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR declares another size, with a valid CRC (so only the size is wrong)."""
    import struct
    import zlib

    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes of fields
    ihdr[4:12] = struct.pack(">II", width, height)
    return data[:12] + bytes(ihdr) + struct.pack(">I", zlib.crc32(bytes(ihdr))) + data[33:]


def fuzzed_image_files(root, count: int = 320, seed: int = 0) -> list[Path]:
    """Writes `count` mutated image files (and a few intact ones) under `root`, seeded.

    Kinds: random bytes, empty, intact/truncated/bit-flipped JPEG, PNG, GIF and WebP, wrong
    magic numbers, huge declared sizes (PNG IHDR, GIF screen, JPEG SOF), and CMYK, 16-bit,
    palette, palette+transparency, RGBA, LA and 1-bit variants.
    """
    import io

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rgb = class_image(1, 48, rng)[:40]  # 48x40: not square
    base = Image.fromarray(rgb)
    variants = {
        "rgb.jpg": (base, "JPEG"),
        "cmyk.jpg": (base.convert("CMYK"), "JPEG"),
        "gray.jpg": (base.convert("L"), "JPEG"),
        "rgb.png": (base, "PNG"),
        "16bit.png": (Image.fromarray(rgb[..., 0].astype(np.uint16) * 257), "PNG"),
        "palette.png": (base.convert("P"), "PNG"),
        "rgba.png": (base.convert("RGBA"), "PNG"),
        "la.png": (base.convert("LA"), "PNG"),
        "onebit.png": (base.convert("1"), "PNG"),
        "rgb.gif": (base.convert("P"), "GIF"),
        "rgb.webp": (base, "WEBP"),
        "rgb.bmp": (base, "BMP"),
    }
    encoded = {}
    for name, (image, fmt) in variants.items():
        buffer = io.BytesIO()
        extra = {"transparency": 0} if name == "palette.png" else {}
        image.save(buffer, fmt, **extra)
        encoded[name] = buffer.getvalue()
    jpeg = bytearray(encoded["rgb.jpg"])
    sof = jpeg.find(b"\xff\xc0")
    huge_jpeg = bytes(jpeg[: sof + 5] + b"\xfd\xe8\xfd\xe8" + jpeg[sof + 9 :])  # 65000 x 65000
    gif = bytearray(encoded["rgb.gif"])
    gif[6:10] = b"\xff\xff\xff\xff"  # logical screen 65535 x 65535
    fixed = {
        "empty.jpg": b"",
        "huge.png": _png_with_size(encoded["rgb.png"], 100_000, 100_000),
        "wide.png": _png_with_size(encoded["rgb.png"], 2**31 - 1, 1),
        "huge.jpg": huge_jpeg,
        "huge.gif": bytes(gif),
        "text.jpg": b"<html>not an image</html>",
    }
    paths = []
    for name, data in {**{f"ok_{k}": v for k, v in encoded.items()}, **fixed}.items():
        paths.append(root / name)
        paths[-1].write_bytes(data)
    sources = list(encoded.items())
    magics = [b"\xff\xd8\xff\xe0", b"\x89PNG", b"GIF8", b"RIFF", b"BM", b"\x00\x00\x00\x00"]
    for i in range(count - len(paths)):
        name, data = sources[i % len(sources)]
        data = bytearray(data)
        kind = ("random", "truncate", "flip", "magic")[(i // len(sources)) % 4]
        if kind == "random":
            data = bytearray(rng.bytes(int(rng.integers(1, 4000))))
        elif kind == "truncate":
            data = data[: int(rng.integers(1, len(data)))]
        elif kind == "flip":
            for at in rng.integers(0, len(data), int(rng.integers(1, 12))):
                data[at] ^= 1 << int(rng.integers(0, 8))
        else:
            magic = magics[int(rng.integers(len(magics)))]
            data[: len(magic)] = magic
        paths.append(root / f"{i:04d}_{kind}_{name}")
        paths[-1].write_bytes(bytes(data))
    return paths


# --------------------------------------------------------------------------------------------
# Crashes and fresh interpreters.


class Crash(Exception):
    """What `crash_at_step` raises: a training process dying mid-epoch, without a process."""


def crash_at_step(step: int):
    """A Keras callback that raises `Crash` once the optimizer has run `step` steps."""
    import keras

    class CrashAtStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations) >= step:
                raise Crash

    return CrashAtStep()


def run_isolated(code: str, *args, cwd) -> subprocess.CompletedProcess:
    """`python -I -c CODE ARGS` in `cwd` without PYTHONPATH: only what is installed is seen
    (the project through its own install), as on a user's machine."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-I", "-c", code, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
