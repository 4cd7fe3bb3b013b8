"""The demo's generated dataset: layout, balance, variety, broken files, no color shortcut."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from keras_googlenet.data import shapes
from keras_googlenet.errors import UserError, run_cli


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return shapes.write_shapes_dataset(
        root / "data",
        per_class=40,
        heldout_dir=root / "heldout",
        min_size=24,
        max_size=64,
        grayscale_fraction=0.2,
        seed=3,
    )


def test_caltech256_layout_and_balanced_classes(dataset):
    folders = sorted(p.name for p in dataset.root.iterdir())
    assert len(folders) >= 8
    assert folders[:2] == ["001.circle", "002.square"]
    for index, folder in enumerate(folders, start=1):
        number, label = folder.split(".", 1)
        assert number == f"{index:03d}" and label in shapes.CLASSES
        good = [p for p in (dataset.root / folder).iterdir() if p not in dataset.broken]
        assert len(good) == 40
        assert all(p.name.startswith(f"{number}_") and p.suffix == ".jpg" for p in good)


def test_sizes_vary_and_some_images_are_grayscale(dataset):
    sizes, modes = set(), []
    for paths in dataset.images.values():
        for path in paths:
            with Image.open(path) as img:
                sizes.add(img.size)
                modes.append(img.mode)
    sides = {side for size in sizes for side in size}
    assert len(sizes) > 100 and min(sides) >= 24 and max(sides) <= 64
    assert any(w != h for w, h in sizes) and any(w == h for w, h in sizes)
    assert 0.1 < modes.count("L") / len(modes) < 0.3 and "RGB" in modes


def test_broken_files_do_not_decode(dataset):
    assert len(dataset.broken) == 3
    sizes = sorted(p.stat().st_size for p in dataset.broken)
    assert sizes[0] == 0
    for path in dataset.broken:
        assert path.suffix == ".jpg"
        with pytest.raises(OSError), Image.open(path) as img:
            img.load()


def test_color_does_not_give_the_class_away(dataset):
    # Per-image mean colors: class means are all close to the overall mean, and a
    # nearest-class-mean classifier on them stays near chance (1/8) on images it did not see.
    features, labels = [], []
    for label, paths in enumerate(dataset.images.values()):
        for path in paths:
            with Image.open(path) as img:
                features.append(np.asarray(img.convert("RGB"), np.float32).mean((0, 1)))
            labels.append(label)
    x, y = np.array(features), np.array(labels)
    overall = x.mean(0)
    class_means = np.array([x[y == c].mean(0) for c in range(len(dataset.classes))])
    assert np.abs(class_means - overall).max() < 25  # per-image means spread ~ +-60
    train = np.arange(len(y)) % 2 == 0
    centroids = np.array([x[train & (y == c)].mean(0) for c in range(len(dataset.classes))])
    dists = ((x[~train, None, :] - centroids[None]) ** 2).sum(-1)
    accuracy = (dists.argmin(1) == y[~train]).mean()
    assert accuracy < 0.3


def test_heldout_images_are_outside_the_dataset(dataset):
    assert len(dataset.heldout) == len(dataset.classes)
    for path, label in dataset.heldout:
        assert not path.is_relative_to(dataset.root) and path.name.startswith(label)
        with Image.open(path) as img:
            assert img.mode == "RGB"


def test_same_seed_same_files(tmp_path):
    a = shapes.write_shapes_dataset(tmp_path / "a", per_class=3, classes=("star", "ring"), seed=1)
    # Drawn by two processes: each image has its own random stream, so the files are the same.
    b = shapes.write_shapes_dataset(
        tmp_path / "b", per_class=3, classes=("star", "ring"), seed=1, workers=2
    )
    c = shapes.write_shapes_dataset(tmp_path / "c", per_class=3, classes=("star", "ring"), seed=2)
    files = sorted(p.relative_to(a.root) for p in a.root.rglob("*.jpg"))
    assert files == sorted(p.relative_to(b.root) for p in b.root.rglob("*.jpg"))
    assert all((a.root / f).read_bytes() == (b.root / f).read_bytes() for f in files)
    assert any((a.root / f).read_bytes() != (c.root / f).read_bytes() for f in files)


def test_shape_is_drawn_inside_the_central_square(monkeypatch):
    # The preprocessor's center crop keeps the middle square of a wide or tall image, so the
    # shape must lie there. Black background and white shape: the white pixels are the shape.
    monkeypatch.setattr(shapes, "_background", lambda rng, w, h: np.zeros((h, w, 3), np.float32))
    monkeypatch.setattr(shapes, "_contrasting_color", lambda rng, bg: np.full(3, 255.0))
    rng = np.random.default_rng(0)
    for name in shapes.CLASSES:
        for width, height in ((200, 100), (90, 160)):
            mask = shapes.draw_shape(name, width, height, rng).max(-1) > 128
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            assert mask.sum() > 0.02 * side * side, name  # visible, not a speck
            assert cols.min() >= left - 1 and cols.max() <= left + side, name
            assert rows.min() >= top - 1 and rows.max() <= top + side, name


def test_cli_and_bad_arguments(tmp_path, capsys):
    args = ["--output", str(tmp_path / "cli"), "--per-class", "2"]
    assert run_cli(shapes.main, args) == 0
    assert "wrote 16 images in 8 classes" in capsys.readouterr().out
    assert run_cli(shapes.main, args) == 2  # the folder already holds class folders
    assert "already holds folders" in capsys.readouterr().err
    with pytest.raises(UserError, match="unknown shape class 'blob'"):
        shapes.write_shapes_dataset(tmp_path / "x", classes=("blob",))
