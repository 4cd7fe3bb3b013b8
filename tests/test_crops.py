"""Test-time crops: the boxes of 10 and 144, the crops cut, the originals, the CLI."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from helpers import cli

from keras_googlenet.errors import UserError
from keras_googlenet.evaluation.crops import (
    View,
    crop_batch,
    original_photos,
    paper_144_views,
    paper_scales,
    ten_crop_views,
)


def test_ten_crop_boxes():
    plain = [View(0, 0, 0, 224, False), View(0, 0, 32, 224, False), View(0, 32, 0, 224, False)]
    plain += [View(0, 32, 32, 224, False), View(0, 16, 16, 224, False)]
    assert ten_crop_views(256, 256, 224) == plain + [v._replace(flip=True) for v in plain]
    with pytest.raises(UserError, match="smaller than the 224 crop"):
        ten_crop_views(200, 256, 224)


def test_paper_144_boxes():
    assert paper_scales(224) == (256, 288, 320, 352)
    assert paper_scales(72) == (82, 93, 103, 113)
    views = paper_144_views(300, 400, 224)  # landscape: squares left, centre, right
    assert len(views) == len(set(views)) == 144
    # scale 256: 256x341; squares at left 0, 42, 85; the first square's 6 views, then mirrored
    first = [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)]
    square = [View(256, t, x, 224, False) for t, x in first] + [View(256, 0, 0, 256, False)]
    assert views[:12] == square + [v._replace(flip=True) for v in square]
    assert [v.left for v in views[12:36:12]] == [42, 85]
    assert views[24 + 5] == View(256, 0, 85, 256, False)
    assert {v.scale for v in views} == {256, 288, 320, 352}
    assert sum(v.side != 224 for v in views) == 4 * 3 * 2  # the whole squares
    portrait = paper_144_views(400, 300, 224)  # squares top, centre, bottom
    assert [v.top for v in portrait[5:36:12]] == [0, 42, 85]
    assert all(v.left + v.side <= 256 for v in portrait if v.scale == 256)


def test_crop_batch_cuts_and_mirrors():
    image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    views = [View(0, 1, 2, 3, False), View(0, 1, 2, 3, True), View(0, 0, 0, 6, False)]
    batch = crop_batch(image, views, 3)
    assert batch.shape == (3, 3, 3, 3) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[0], image[1:4, 2:5])
    np.testing.assert_array_equal(batch[1], image[1:4, 2:5][:, ::-1])
    flat = np.full((6, 8, 3), 7, np.uint8)  # the whole 6x6 square resized to 3x3: still 7
    np.testing.assert_array_equal(crop_batch(flat, views[2:], 3)[0], np.full((3, 3, 3), 7))


def test_original_photos_refusals(tmp_path):
    files = [str(tmp_path / "val" / "a.jpg"), str(tmp_path / "val" / "b.jpg")]
    with pytest.raises(UserError, match="sources.csv: not found; --crops 144 needs"):
        original_photos(tmp_path, files, "photos")
    with open(tmp_path / "sources.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "split", "class", "source"])
        w.writerows([["a.jpg", "val", 0, "001.x/1.jpg"], ["b.jpg", "val", 1, "002.y/2.jpg"]])
    with pytest.raises(UserError, match="does not set \\(give --originals DIR\\)"):
        original_photos(tmp_path, files, None)
    photos = tmp_path / "photos"
    (photos / "001.x").mkdir(parents=True)
    (photos / "001.x" / "1.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="1 of 2 original photos are gone \\(e.g. 002.y/2.jpg\\)"):
        original_photos(tmp_path, files, str(photos))
    (photos / "002.y").mkdir()
    (photos / "002.y" / "2.jpg").write_bytes(b"x")
    assert original_photos(tmp_path, files, str(photos))[1] == photos / "002.y" / "2.jpg"


def test_bad_crops_is_one_line(tmp_path, capsys):
    assert cli("evaluate", "--run-dir", tmp_path, "--crops", "7") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 7" in err


@pytest.mark.slow
def test_evaluate_10_and_144_crops(tiny_run, tmp_path):
    """144 from 'original photos' (here: 100x120 photos written for each processed file)."""
    from PIL import Image

    from keras_googlenet.config import apply_overrides, load_config, save_config

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval"))
    config = load_config(run / "config.yaml")
    data = tmp_path / "data"
    shutil.copytree(config.data.input_dir, data)
    photos = tmp_path / "photos"
    with open(data / "val.csv") as f:
        val = list(csv.DictReader(f))
    with open(data / "sources.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "split", "class", "source"])
        for r in val:
            src = Image.open(data / "val" / r["image"]).resize((120, 100))
            (photos / r["class"]).mkdir(parents=True, exist_ok=True)
            src.save(photos / r["class"] / r["image"])
            w.writerow([r["image"], "val", r["class"], f"{r['class']}/{r['image']}"])
    save_config(apply_overrides(config, {"data.input_dir": str(data)}), run / "config.yaml")

    assert cli("evaluate", "--run-dir", run, "--crops", "10") == 0
    ten = json.loads((run / "eval" / "best-val-10crop" / "metrics.json").read_text())
    assert ten["crops"] == 10 and ten["protocol"].startswith("10 crops")
    assert ten["num_images"] == 12 and 0 <= ten["top1"] <= 1
    assert "10 crops" in (run / "eval" / "best-val-10crop" / "report.html").read_text()

    assert cli("evaluate", "--run-dir", run, "--crops", "144") == 2  # no source_dir in config
    assert cli("evaluate", "--run-dir", run, "--crops", "144", "--originals", photos) == 0
    paper = json.loads((run / "eval" / "best-val-144crop" / "metrics.json").read_text())
    assert paper["crops"] == 144 and "82, 93, 103, 113" in paper["protocol"]  # 72-pixel model
    assert paper["num_images"] == 12
