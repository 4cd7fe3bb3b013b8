"""CIFAR-10 for the quick check: a local copy first, a download only where there is internet.

Accepted local copies (pass the file or a folder holding it with `--input`, or put it in
`data/cifar10/`):

- `cifar-10-python.tar.gz`, the archive from https://www.cs.toronto.edu/~kriz/cifar.html, read
  as it is (no need to extract it);
- `cifar-10-batches-py/`, the extracted archive (`data_batch_1` ... `data_batch_5`,
  `test_batch`, `batches.meta`);
- an image folder `train/<class>/*.png` and `test/<class>/*.png` (any format Pillow reads).

Keras's own download cache (`~/.keras/datasets/`) is looked at too. Images are kept as uint8
arrays (50,000 x 32 x 32 x 3 = 150 MB); resizing happens later, batch by batch, in tf.data.
"""

from __future__ import annotations

import io
import os
import pickle
import socket
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_googlenet.errors import UserError

ARCHIVE = "cifar-10-python.tar.gz"
BATCHES = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
DEFAULT_DIR = Path("data/cifar10")
ORIGIN_HOST = "www.cs.toronto.edu"
OFFLINE_ENV = "KERAS_GOOGLENET_OFFLINE"  # set to 1: never try to download
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm"}

HOW_TO_PROVIDE = (
    "CIFAR-10 not found and it cannot be downloaded here (no network). Download "
    f"https://www.cs.toronto.edu/~kriz/{ARCHIVE} on a machine with internet and put it in "
    f"{DEFAULT_DIR}/ (or pass --input DIR): the archive as it is, its extracted {BATCHES}/ "
    "folder, or an image folder with train/<class>/* and test/<class>/*"
)


@dataclass(frozen=True)
class Cifar:
    """CIFAR-10 in memory: uint8 images (N, 32, 32, 3) and int32 labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str  # where it was read from, for the log

    def subset(self, train_per_class: int, test_per_class: int, seed: int = 0) -> Cifar:
        """A class-balanced random subset (at most the given number of images per class)."""
        rng = np.random.default_rng(seed)

        def pick(y, per_class):
            keep = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
            return np.sort(np.concatenate(keep))

        tr, te = pick(self.y_train, train_per_class), pick(self.y_test, test_per_class)
        return Cifar(
            self.x_train[tr],
            self.y_train[tr],
            self.x_test[te],
            self.y_test[te],
            self.class_names,
            self.source,
        )


# ---------------------------------------------------------------------------------------------
# The pickled batches.


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches, refusing anything but numpy arrays and plain containers.

    A pickle can run arbitrary code when loaded; a downloaded file deserves this much care.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        # Protocol-2 pickles written by Python 3 rebuild bytes with codecs.encode: harmless.
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _text(key) -> str:
    return key.decode("utf-8") if isinstance(key, bytes) else str(key)


def _load_pickle(data: bytes, where: str) -> dict:
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:
        raise UserError(f"{where}: not a CIFAR-10 batch file ({e})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{where}: not a CIFAR-10 batch file (expected a dict)")
    return {_text(k): v for k, v in obj.items()}


def parse_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> images (N, 32, 32, 3) uint8 and labels (N,) int32.

    The batch holds `data`, N x 3072 uint8 rows (1024 red, 1024 green, 1024 blue values, each
    plane row-major), and `labels`, N integers.
    """
    batch = _load_pickle(data, where)
    if "data" not in batch or "labels" not in batch:
        raise UserError(f"{where}: not a CIFAR-10 batch file (no 'data' or 'labels')")
    pixels = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["labels"], dtype=np.int32)
    if pixels.ndim != 2 or pixels.shape[1] != 3072 or len(pixels) != len(labels):
        raise UserError(
            f"{where}: expected N x 3072 pixels and N labels, got {pixels.shape} and {labels.shape}"
        )
    return pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _class_names(meta: bytes | None, where: str) -> tuple[str, ...]:
    if meta is None:
        return CLASS_NAMES
    names = _load_pickle(meta, where).get("label_names")
    return tuple(_text(n) for n in names) if names else CLASS_NAMES


def _assemble(read, where: str) -> Cifar:
    """Builds a `Cifar` from `read(name) -> bytes | None` over the batch file names."""
    parts = []
    for name in TRAIN_BATCHES:
        data = read(name)
        if data is None:
            raise UserError(f"{where}: {name} is missing (a CIFAR-10 copy has {BATCHES}/{name})")
        parts.append(parse_batch(data, f"{where}: {name}"))
    test = read(TEST_BATCH)
    if test is None:
        raise UserError(f"{where}: {TEST_BATCH} is missing")
    x_test, y_test = parse_batch(test, f"{where}: {TEST_BATCH}")
    names = _class_names(read(META), f"{where}: {META}")
    return Cifar(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        x_test,
        y_test,
        names,
        where,
    )


def load_archive(path: str | Path) -> Cifar:
    """Reads `cifar-10-python.tar.gz` without extracting it."""
    path = Path(path)
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}

            def read(name):
                member = members.get(name)
                return None if member is None else tar.extractfile(member).read()

            return _assemble(read, str(path))
    except (tarfile.TarError, EOFError, OSError) as e:
        raise UserError(f"{path}: cannot read the archive ({e})") from None


def load_batches_dir(folder: str | Path) -> Cifar:
    """Reads the extracted `cifar-10-batches-py/` folder."""
    folder = Path(folder)

    def read(name):
        file = folder / name
        return file.read_bytes() if file.is_file() else None

    return _assemble(read, str(folder))


# ---------------------------------------------------------------------------------------------
# An image folder.


def _read_split(folder: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image

    images, labels, bad = [], [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for file in files:
            try:
                with Image.open(file) as img:
                    img = img.convert("RGB")
                    if img.size != (32, 32):
                        img = img.resize((32, 32), Image.BILINEAR)
                    images.append(np.asarray(img, dtype=np.uint8))
            except Exception as e:
                bad.append(f"{file} ({type(e).__name__})")
                continue
            labels.append(label)
    if not images:
        raise UserError(f"{folder}: no readable images in its class folders")
    return np.stack(images), np.asarray(labels, dtype=np.int32), bad


def load_image_folder(root: str | Path) -> Cifar:
    """Reads `root/train/<class>/*` and `root/test/<class>/*` (resized to 32x32 if needed).

    Unreadable files are skipped and counted (a warning names the first few).
    """
    root = Path(root)
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    test_classes = sorted(p.name for p in (root / "test").iterdir() if p.is_dir())
    if len(classes) < 2:
        raise UserError(f"{root / 'train'}: needs at least 2 class folders, found {len(classes)}")
    if test_classes != classes:
        raise UserError(
            f"{root}: train/ and test/ have different class folders "
            f"({len(classes)} vs {len(test_classes)})"
        )
    x_train, y_train, bad_train = _read_split(root / "train", classes)
    x_test, y_test, bad_test = _read_split(root / "test", classes)
    bad = bad_train + bad_test
    if bad:
        print(f"warning: skipped {len(bad)} unreadable image(s): {', '.join(bad[:3])}")
    return Cifar(x_train, y_train, x_test, y_test, tuple(classes), str(root))


# ---------------------------------------------------------------------------------------------
# Finding a copy.


def _keras_cache() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets"


def _is_image_folder(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "test").is_dir()


def find_local(data_dir: str | Path | None = None) -> Cifar | None:
    """The first local copy found, or None.

    `data_dir` may be the archive itself, the batches folder, an image folder, or a folder that
    holds one of them. Without it: `data/cifar10/`, then Keras's download cache.

    Raises:
        UserError: `data_dir` was given but holds no copy, or a copy is damaged.
    """
    if data_dir is not None:
        candidates = [Path(data_dir)]
    else:
        cache = _keras_cache()
        candidates = [
            DEFAULT_DIR,
            cache / "cifar-10-batches-py-target_extracted",
            cache / "cifar-10-batches-py-target",
            cache,
        ]
    for place in candidates:
        if place.is_file():
            return load_archive(place)
        if not place.is_dir():
            continue
        if (place / TRAIN_BATCHES[0]).is_file():
            return load_batches_dir(place)
        if (place / BATCHES / TRAIN_BATCHES[0]).is_file():
            return load_batches_dir(place / BATCHES)
        if (place / ARCHIVE).is_file():
            return load_archive(place / ARCHIVE)
        if _is_image_folder(place):
            return load_image_folder(place)
    if data_dir is not None:
        raise UserError(
            f"{data_dir}: no CIFAR-10 copy there (expected {ARCHIVE}, a {BATCHES}/ folder, "
            "or train/<class>/* and test/<class>/*)"
        )
    return None


def _online(timeout: float = 3.0) -> bool:
    """Whether the CIFAR host answers, within `timeout` seconds (so offline fails fast)."""
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        return False
    try:
        with socket.create_connection((ORIGIN_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_cifar10(data_dir: str | Path | None = None, *, download: bool = True) -> Cifar:
    """CIFAR-10 from a local copy, else downloaded by `keras.datasets.cifar10`.

    Args:
        data_dir: a local copy (see the module docstring); None: look in the usual places.
        download: allow the download when no local copy is found.

    Returns:
        A `Cifar`.

    Raises:
        UserError: no local copy and no network (the message says how to provide a copy).
    """
    found = find_local(data_dir)
    if found is not None:
        return found
    if not download or not _online():
        raise UserError(HOW_TO_PROVIDE)
    import keras

    print("downloading CIFAR-10 (170 MB) with keras.datasets.cifar10 ...", flush=True)
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as e:  # a dropped connection mid-download
        raise UserError(f"CIFAR-10 download failed ({e}). {HOW_TO_PROVIDE}") from None
    return Cifar(
        x_train,
        y_train.reshape(-1).astype(np.int32),
        x_test,
        y_test.reshape(-1).astype(np.int32),
        CLASS_NAMES,
        "keras.datasets.cifar10",
    )
