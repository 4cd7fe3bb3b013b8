"""Predict: top-k per image from an export or a run, bad images reported by name."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import cli
from PIL import Image

NAMES = ["class0", "class1", "class2"]


@pytest.fixture
def images(tiny_run, tmp_path):
    """A good JPEG (a validation file), a good 120x90 PNG, a missing file, a broken one."""
    data = tiny_run.parent / "data"
    good = tmp_path / "good.jpg"
    shutil.copy(sorted((data / "val").iterdir())[0], good)
    png = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), np.uint8)).save(png)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.read_bytes()[:300])  # a JPEG cut short
    return {"good": good, "png": png, "missing": tmp_path / "missing.jpg", "broken": broken}


def _expected(tiny_export, path) -> np.ndarray:
    """Probabilities through the export's own endpoint, on the image as the CLI reads it."""
    import tensorflow as tf

    from preprocessing.image_io import load_rgb

    image = load_rgb(path, 80, center_crop=True)
    loaded = tf.saved_model.load(str(tiny_export))  # kept: its functions need its variables
    return loaded.serve_images(image[None])["probabilities"][0].numpy()


@pytest.mark.slow
def test_predict_export_reports_bad_images_and_predicts_the_rest(tiny_export, images, capsys):
    args = ["--export-dir", str(tiny_export), "--json", "--top-k", "2"]
    files = [images["good"], images["missing"], images["broken"], images["png"]]
    code = cli("predict", *[*args, *map(str, files)])
    assert code == 1
    out, err = capsys.readouterr()
    results = json.loads(out)
    assert [r["image"] for r in results] == [str(f) for f in files]
    assert "missing.jpg: file not found" in results[1]["error"]
    assert "broken.jpg: not a readable image" in results[2]["error"]
    assert "error: " + results[1]["error"] in err and "error: " + results[2]["error"] in err
    assert "2 of 4 image(s) failed" in err
    for result, path in ((results[0], images["good"]), (results[3], images["png"])):
        predictions = result["predictions"]
        assert len(predictions) == 2
        expected = np.asarray(_expected(tiny_export, path))
        best = np.argsort(-expected, kind="stable")[:2]
        assert [p["id"] for p in predictions] == best.tolist()
        assert [p["label"] for p in predictions] == [NAMES[i] for i in best]
        np.testing.assert_allclose(
            [p["probability"] for p in predictions], expected[best], atol=1e-6
        )


@pytest.mark.slow
def test_predict_from_run_folder_matches_export(tiny_run, tiny_export, images, capsys):
    good = str(images["good"])
    assert cli("predict", *["--export-dir", str(tiny_export), good, "--json"]) == 0
    from_export = json.loads(capsys.readouterr().out)[0]["predictions"]
    assert cli("predict", *["--run-dir", str(tiny_run), good]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == good
    assert len(text) == 4  # the image, then top-3 (there are 3 classes; asked for 5)
    top = from_export[0]
    assert text[1].split() == [f"{top['probability']:.2%}", top["label"], "(id", f"{top['id']})"]


def test_predict_refuses_unknown_model_folder(tmp_path, capsys):
    assert cli("predict", *["--run-dir", str(tmp_path / "nope"), "x.jpg"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope: model folder not found" in err
    assert cli("predict", *["--run-dir", str(tmp_path), "x.jpg"]) == 2
    assert "neither an export" in capsys.readouterr().err


def test_read_image_on_fuzzed_files_returns_pixels_or_one_line(tmp_path):
    """predict's reader on 320 mutated files: an S x S x 3 image or a UserError naming the
    file; nothing else escapes."""
    from helpers import fuzzed_image_files

    from keras_googlenet.errors import UserError
    from keras_googlenet.serving.predict import Predictor, read_image

    predictor = Predictor(
        serve_images=None, class_names=("a", "b"), resize_size=20, crop_square=True, source=""
    )
    read, refused = 0, 0
    for path in fuzzed_image_files(tmp_path, count=320):
        try:
            image = read_image(str(path), predictor)
        except UserError as e:
            assert str(e).startswith(f"{path}: not a readable image ("), e
            assert "\n" not in str(e)
            refused += 1
            continue
        assert image.shape == (20, 20, 3) and image.dtype == np.uint8
        read += 1
    assert read + refused == 320 and read > 0 and refused > 0
