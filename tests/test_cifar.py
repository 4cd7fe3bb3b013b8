"""Local CIFAR-10 copies: the real pickled format, the extracted folder, an image folder."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_googlenet.data import cifar
from keras_googlenet.errors import UserError

NAMES = [n.encode() for n in cifar.CLASS_NAMES]


def cifar_images(n: int, rng: np.random.Generator, num_classes: int = 2):
    """n 32x32 RGB images whose class is a bright square's position (left/right ...)."""
    labels = np.arange(n) % num_classes
    images = rng.integers(0, 80, size=(n, 32, 32, 3), dtype=np.uint8)
    for img, label in zip(images, labels, strict=True):
        x = 4 + 14 * (label % 2)
        y = 4 + 14 * ((label // 2) % 2)
        img[y : y + 12, x : x + 12] = 230
    return images, labels


def _batch(images, labels, name: str) -> bytes:
    # The official layout: N x 3072 uint8, the red plane, then green, then blue, each row-major;
    # bytes keys, as the Python 2 pickles of the real archive load with encoding="bytes".
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    batch = {
        b"batch_label": name.encode(),
        b"labels": [int(x) for x in labels],
        b"data": rows,
        b"filenames": [f"{name}_{i}.png".encode() for i in range(len(images))],
    }
    return pickle.dumps(batch, protocol=2)


def write_cifar_batches(
    folder: Path, per_batch: int = 4, test_size: int = 8, num_classes: int = 2, seed: int = 0
):
    """Writes cifar-10-batches-py/ in the real format; returns (folder, train x, y, test x, y)."""
    rng = np.random.default_rng(seed)
    folder = Path(folder) / cifar.BATCHES
    folder.mkdir(parents=True)
    xs, ys = [], []
    for name in cifar.TRAIN_BATCHES:
        x, y = cifar_images(per_batch, rng, num_classes)
        (folder / name).write_bytes(_batch(x, y, name))
        xs.append(x)
        ys.append(y)
    x_test, y_test = cifar_images(test_size, rng, num_classes)
    (folder / cifar.TEST_BATCH).write_bytes(_batch(x_test, y_test, cifar.TEST_BATCH))
    meta = {b"label_names": NAMES, b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    (folder / cifar.META).write_bytes(pickle.dumps(meta, protocol=2))
    return folder, np.concatenate(xs), np.concatenate(ys), x_test, y_test


def write_cifar_archive(root: Path, **kwargs) -> Path:
    """cifar-10-python.tar.gz (a cifar-10-batches-py/ folder inside), as distributed."""
    build = Path(root) / "build"
    folder = write_cifar_batches(build, **kwargs)[0]
    archive = Path(root) / cifar.ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=cifar.BATCHES)
    return archive


def write_cifar_image_folder(root: Path, per_class: int = 6, test_per_class: int = 3) -> Path:
    """train/<class>/*.png and test/<class>/*.png, 32x32 like CIFAR's image-folder copies."""
    rng = np.random.default_rng(1)
    for split, n in (("train", per_class), ("test", test_per_class)):
        images, labels = cifar_images(2 * n, rng)
        for i, (img, label) in enumerate(zip(images, labels, strict=True)):
            folder = Path(root) / split / cifar.CLASS_NAMES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / f"{i:04d}.png")
    return Path(root)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    # Never the network, never the developer's own Keras cache or data/cifar10.
    monkeypatch.setenv(cifar.OFFLINE_ENV, "1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.chdir(tmp_path)


def test_batches_folder_reads_pixels_in_the_official_layout(tmp_path):
    folder, x, y, x_test, y_test = write_cifar_batches(tmp_path / "copy")
    data = cifar.find_local(folder)
    assert data.x_train.shape == (20, 32, 32, 3) and data.x_train.dtype == np.uint8
    np.testing.assert_array_equal(data.x_train, x)
    np.testing.assert_array_equal(data.y_train, y)
    np.testing.assert_array_equal(data.x_test, x_test)
    np.testing.assert_array_equal(data.y_test, y_test)
    assert data.class_names == cifar.CLASS_NAMES


def test_a_known_pixel_lands_where_the_format_says(tmp_path):
    # Red plane first: byte 0 is R of pixel (0, 0), byte 1024 its G, byte 2048 its B; byte 33 is
    # R of pixel (row 1, column 1).
    row = np.zeros((1, 3072), np.uint8)
    row[0, 0], row[0, 1024], row[0, 2048], row[0, 33] = 10, 20, 30, 99
    images, labels = cifar.parse_batch(
        pickle.dumps({b"data": row, b"labels": [7]}, protocol=2), "batch"
    )
    assert images[0, 0, 0].tolist() == [10, 20, 30]
    assert images[0, 1, 1, 0] == 99
    assert labels.tolist() == [7]


def test_archive_is_read_without_extracting(tmp_path):
    archive = write_cifar_archive(tmp_path / "dl")
    for given in (archive, archive.parent):  # the file itself, or the folder holding it
        data = cifar.find_local(given)
        assert len(data.y_train) == 20 and len(data.y_test) == 8
    assert not (tmp_path / "dl" / cifar.BATCHES).exists()


def test_default_folder_is_found_without_data_dir(tmp_path):
    write_cifar_archive(tmp_path / "data" / "cifar10")  # cwd is tmp_path
    assert cifar.load_cifar10().source.endswith(cifar.ARCHIVE)


def test_image_folder_copy(tmp_path):
    root = write_cifar_image_folder(tmp_path / "images")
    (root / "train" / "airplane" / "broken.png").write_bytes(b"not a png")
    data = cifar.find_local(root)
    assert data.class_names == ("airplane", "automobile")
    assert data.x_train.shape == (12, 32, 32, 3) and data.x_test.shape == (6, 32, 32, 3)
    assert sorted(np.bincount(data.y_train).tolist()) == [6, 6]


def test_subset_is_class_balanced(tmp_path):
    folder = write_cifar_batches(tmp_path / "copy", per_batch=10, num_classes=4)[0]
    data = cifar.find_local(folder).subset(3, 1)
    assert np.bincount(data.y_train).tolist() == [3, 3, 3, 3]
    assert np.bincount(data.y_test).tolist() == [1, 1, 1, 1]


def test_no_copy_and_no_network_says_how_to_provide_one():
    with pytest.raises(UserError) as err:
        cifar.load_cifar10()
    message = str(err.value)
    assert cifar.ARCHIVE in message and "data/cifar10" in message and "--input" in message
    assert "train/<class>" in message


def test_damaged_copies_are_named(tmp_path):
    folder = write_cifar_batches(tmp_path / "copy")[0]
    (folder / "data_batch_3").unlink()
    with pytest.raises(UserError, match="data_batch_3 is missing"):
        cifar.find_local(folder)
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(UserError, match="data_batch_3: not a CIFAR-10 batch file"):
        cifar.find_local(folder)
    bad = tmp_path / cifar.ARCHIVE
    bad.write_bytes(b"\x1f\x8b truncated")
    with pytest.raises(UserError, match="cannot read the archive"):
        cifar.find_local(bad)
    with pytest.raises(UserError, match="no CIFAR-10 copy there"):
        cifar.find_local(tmp_path / "empty")


def test_pickles_that_would_run_code_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(UserError, match="refusing to load builtins.print"):
        cifar.parse_batch(pickle.dumps({b"data": Evil(), b"labels": []}), "evil")
