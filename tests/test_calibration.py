"""Calibration: ECE by hand, the temperature fit, --calibrate on a real run, the export's graph."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import cli
from PIL import Image

from keras_googlenet.evaluation import calibration
from keras_googlenet.serving import temperature


def test_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [1.0, 0.0]])
    labels = np.array([0, 1, 1, 0])
    # 15 bins of width 1/15: 0.9 -> bin 13 (accuracy 1/2, gap 0.4, 2 of 4 images),
    # 0.7 -> bin 10 (accuracy 1, gap 0.3, 1 of 4), 1.0 -> bin 14 (gap 0)
    assert calibration.expected_calibration_error(probs, labels) == pytest.approx(0.275)
    bins = calibration.reliability_bins(probs, labels)
    assert bins["count"].tolist() == [0] * 10 + [1, 0, 0, 2, 1]
    # One bin: accuracy 3/4 against a mean confidence of 0.875
    assert calibration.expected_calibration_error(probs, labels, bins=1) == pytest.approx(0.125)


def test_nll_from_logits():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    labels = np.array([0, 2])
    expected = -np.log(calibration.softmax(logits)[[0, 1], labels]).mean()
    assert calibration.nll(logits, labels) == pytest.approx(expected)
    assert calibration.nll(logits, labels, 2.0) == pytest.approx(
        -np.log(calibration.softmax(logits / 2)[[0, 1], labels]).mean()
    )


def test_overconfident_model_gets_temperature_above_one():
    """Labels drawn from softmax(logits) are calibrated at T = 1; logits x 5 are overconfident."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 10))
    labels = np.array([rng.choice(10, p=p) for p in calibration.softmax(logits)])
    assert calibration.fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.1)
    sharp = 5 * logits
    t = calibration.fit_temperature(sharp, labels)
    assert t == pytest.approx(5.0, rel=0.1)
    before = calibration.expected_calibration_error(calibration.softmax(sharp), labels)
    after = calibration.expected_calibration_error(calibration.softmax(sharp, t), labels)
    assert before > 0.2 and after < 0.05
    for other in (t * 1.05, t / 1.05):  # a minimum of the NLL
        assert calibration.nll(sharp, labels, t) < calibration.nll(sharp, labels, other)


def test_calibrate_refusals_write_nothing(tmp_path, capsys, shared_processed_dataset):
    from helpers import tiny_run_config

    from keras_googlenet.config import apply_overrides, save_config

    run = tmp_path / "run"
    run.mkdir()
    config = apply_overrides(
        tiny_run_config(shared_processed_dataset), {"data.valid_csv": "no.csv"}
    )
    save_config(config, run / "config.yaml")
    before = sorted(p.name for p in run.iterdir())
    assert cli("evaluate", "--run-dir", run, "--calibrate") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no.csv: --calibrate needs the run's validation set" in err
    assert cli("evaluate", "--run-dir", run, "--calibrate", "--csv", "train.csv") == 2
    assert "drop --csv" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == before


@pytest.mark.slow
def test_calibrate_then_export_applies_the_temperature(tiny_run, tmp_path, capsys):
    import tensorflow as tf

    from keras_googlenet.training.checkpoints import float32_inference_model, load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert cli("evaluate", "--run-dir", run, "--calibrate") == 0
    assert "at temperature" in capsys.readouterr().out
    saved = json.loads((run / "calibration.json").read_text())
    t = saved["temperature"]
    assert saved["checkpoint"].endswith("best.keras") and t > 0
    metrics = json.loads((run / "eval" / "best-val" / "metrics.json").read_text())
    c = metrics["calibration"]
    assert c["temperature"] == t and c["ece_bins"] == 15
    assert c["nll_calibrated"] <= c["nll"] + 1e-9  # the fit minimizes NLL; T = 1 is a candidate
    assert (run / "eval" / "best-val" / "reliability.png").stat().st_size > 1000

    out = tmp_path / "export"
    assert cli("export", "--run-dir", run, "--output", out) == 0
    assert "exported to" in capsys.readouterr().out
    assert json.loads((out / "export.json").read_text())["temperature"] == t
    model = float32_inference_model(load_checkpoint(run / "checkpoints" / "best.keras"))
    size = model.input.shape[1]
    pixels = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    logits = calibration.logits_model(model).predict_on_batch(pixels)
    loaded = tf.saved_model.load(str(out))  # held: its functions need the object alive
    served = loaded.serve(tf.constant(pixels))["probabilities"].numpy()
    np.testing.assert_allclose(served, calibration.softmax(logits, t), atol=1e-5)

    # The run folder predicts what its export predicts: the temperature is applied there too.
    image = tmp_path / "photo.jpg"
    Image.fromarray(pixels[0].astype(np.uint8)).save(image)
    predicted = {}
    for source in ("--run-dir", "--export-dir"):
        folder = run if source == "--run-dir" else out
        assert cli("predict", source, folder, image, "--json", "--top-k", "3") == 0
        top = json.loads(capsys.readouterr().out)[0]["predictions"]
        predicted[source] = {p["id"]: p["probability"] for p in top}
    assert predicted["--run-dir"] == pytest.approx(predicted["--export-dir"], abs=1e-5)

    # evaluate --export compares the calibrated export with the calibrated checkpoint.
    assert cli("evaluate", "--run-dir", run, "--export", out) == 0
    assert "export (savedmodel): same top-1 class on" in capsys.readouterr().out
    e = json.loads((run / "eval" / "best-val" / "metrics.json").read_text())["export"]
    assert e["temperature"] == t and e["same_checkpoint"] and e["images"] == 12
    assert e["max_abs_difference"] < 1e-4 and e["disagreements"] == e["disagreements_at_ties"]

    # A damaged calibration.json is one line naming it, for predict and export alike.
    good = (run / "calibration.json").read_text()
    (run / "calibration.json").write_text("{not json")
    assert cli("predict", "--run-dir", run, image) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "calibration.json: unreadable" in err

    # A later best.keras is another model: its export keeps its own softmax.
    (run / "calibration.json").write_text(good)
    assert temperature.saved_temperature(run, run / "checkpoints" / "best.keras") == t
    shutil.copy(run / "checkpoints" / "last.keras", run / "checkpoints" / "best.keras")
    assert temperature.saved_temperature(run, run / "checkpoints" / "best.keras") is None
