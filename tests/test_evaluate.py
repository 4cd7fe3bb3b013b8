"""Evaluation: the report files, checkpoint selection, other CSVs, refusals."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import cli
from PIL import Image

from keras_googlenet.errors import UserError
from keras_googlenet.evaluation.metrics import most_confused, summarize


def _direct_predictions(run: Path, checkpoint: str, csv_name: str, folder: str):
    """(probabilities, labels) without the pipeline: each file decoded on its own, one batch.

    The decode is `tf.io.decode_and_crop_jpeg` on the centre 72x72 window, the same libjpeg call
    the validation pipeline makes, so both sides see identical pixels. (Pillow, or a full decode
    cropped afterwards, differs by up to 32 levels at the window's edges, since chroma upsampling
    sees other neighbours. -log of a near-zero probability turned those into loss differences
    of over 5% on some CPUs: that made this test fail at random.)
    """
    import tensorflow as tf

    from keras_googlenet.config import load_config
    from keras_googlenet.training.checkpoints import float32_inference_model, load_checkpoint

    data = Path(load_config(run / "config.yaml").data.input_dir)
    with open(data / csv_name) as f:
        rows = list(csv.DictReader(f))
    window = [4, 4, 72, 72]  # 80x80 files, 72x72 centre crop
    images = np.stack(
        [
            tf.io.decode_and_crop_jpeg((data / folder / r["image"]).read_bytes(), window, 3).numpy()
            for r in rows
        ]
    )
    model = float32_inference_model(load_checkpoint(run / "checkpoints" / checkpoint))
    probs = model.predict_on_batch(images.astype(np.float32))
    return np.asarray(probs), np.array([int(r["class"]) for r in rows])


def _assert_matches_direct_path(run, checkpoint, csv_name, folder, metrics, confusion):
    """The report agrees with predictions made without the pipeline, on identical pixels.

    Only batching differs (oneDNN may sum in another order for another batch size), so the loss
    agrees to 1e-4 relative, and each image's class wherever the top two probabilities are not
    within 1e-4 of each other.
    """
    probs, labels = _direct_predictions(run, checkpoint, csv_name, folder)
    p_true = np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)  # Keras' clip, as reported
    assert metrics["loss"] == pytest.approx(float(-np.log(p_true).mean()), rel=1e-4)
    top2 = np.sort(probs, axis=1)[:, -2:]
    close = int((top2[:, 1] - top2[:, 0] < 1e-4).sum())
    independent = np.zeros_like(confusion)
    np.add.at(independent, (labels, probs.argmax(1)), 1)
    assert np.abs(independent - confusion).sum() <= 2 * close


@pytest.mark.slow
def test_evaluate_writes_report(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert cli("evaluate", *["--run-dir", str(run)]) == 0
    stdout = capsys.readouterr().out
    assert "top-1" in stdout and "top-3" in stdout  # top-5 is top-3 with 3 classes

    out = run / "eval" / "best-val"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["checkpoint"].endswith("best.keras")
    assert metrics["csv"].endswith("val.csv")
    assert metrics["num_images"] == metrics["csv_rows"] == 12
    assert metrics["top5"] == 1.0  # 3 classes: the true one is always among the top 3
    assert metrics["loss"] > 0

    with open(out / "per_class.csv") as f:
        per_class = list(csv.DictReader(f))
    assert [r["label"] for r in per_class] == ["class0", "class1", "class2"]
    assert [int(r["count"]) for r in per_class] == [4, 4, 4]
    correct = sum(int(r["correct"]) for r in per_class)
    assert metrics["top1"] == pytest.approx(correct / 12)

    confusion = np.loadtxt(out / "confusion.csv", delimiter=",", skiprows=1, dtype=int)[:, 1:]
    assert confusion.shape == (3, 3) and confusion.sum() == 12
    assert np.trace(confusion) == correct
    assert confusion.sum(axis=1).tolist() == [4, 4, 4]
    _assert_matches_direct_path(run, "best.keras", "val.csv", "val", metrics, confusion)
    png = Image.open(out / "confusion.png")
    assert png.format == "PNG" and png.size[0] > 600

    # The run was killed mid-epoch 2 and resumed; best.keras is the checkpoint of the epoch with
    # the best validation top-1 in history.csv, and evaluation reproduces that top-1.
    from keras_googlenet.training.history import read_history

    rows = read_history(run / "history.csv")
    assert [r["epoch"] for r in rows] == [0, 1]
    best_top1 = max(r["val_main_top1"] for r in rows)
    assert metrics["top1"] == pytest.approx(best_top1, abs=1e-6)
    # (Not the loss: Keras 3.15 logs per-output losses of a multi-output model that are not the
    # per-image mean, e.g. half of it for a single validation batch.)

    with open(out / "predictions.csv") as f:
        predictions = list(csv.DictReader(f))
    with open(Path(metrics["csv"])) as f:
        listed = [(r["image"], r["class"]) for r in csv.DictReader(f)]
    assert [(r["image"], r["class"]) for r in predictions] == listed  # CSV order, aligned
    assert sum(r["predicted"] == r["class"] for r in predictions) == correct

    # The page of it all: every image it shows is beside it (gallery included), and the
    # gallery is in TensorBoard too.
    from test_report import parse_report

    page = parse_report(out / "report.html")
    assert {"worst.png", "confused_pairs.png", "curves.png", "reliability.png"} <= set(page.images)
    assert any((out / "tensorboard").iterdir())
    assert f"report: {out / 'report.html'}" in stdout


@pytest.mark.slow
def test_evaluate_last_checkpoint_on_train_csv(tiny_run, tmp_path):
    """Any CSV of the same format; its images are found in the folder named like it."""
    out = tmp_path / "report"
    args = ["--run-dir", str(tiny_run), "--checkpoint", "last", "--csv", "train.csv"]
    assert cli("evaluate", *[*args, "--output", str(out), "--batch-size", "5"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["checkpoint"].endswith("last.keras")
    assert metrics["images_dir"].endswith("train")
    assert metrics["num_images"] == 24
    confusion = np.loadtxt(out / "confusion.csv", delimiter=",", skiprows=1, dtype=int)[:, 1:]
    assert confusion.sum(axis=1).tolist() == [8, 8, 8]
    # last.keras is the resumed epoch 2's model: the same validation numbers as its history row.
    assert (
        cli(
            "evaluate",
            *[
                "--run-dir",
                str(tiny_run),
                "--checkpoint",
                "last",
                "--output",
                str(tmp_path / "val"),
            ],
        )
        == 0
    )
    on_val = json.loads((tmp_path / "val" / "metrics.json").read_text())
    from keras_googlenet.training.history import read_history

    last = read_history(tiny_run / "history.csv")[-1]
    assert on_val["top1"] == pytest.approx(last["val_main_top1"], abs=1e-6)
    _assert_matches_direct_path(tiny_run, "last.keras", "train.csv", "train", metrics, confusion)
    assert not (tiny_run / "eval").exists()


def test_pick_checkpoint_order(tmp_path):
    from keras_googlenet.training.checkpoints import open_run, pick_checkpoint

    root = tmp_path / "run"
    (root / "checkpoints").mkdir(parents=True)
    (root / "config.yaml").write_text("{}\n")
    run = open_run(root)
    with pytest.raises(UserError, match="no checkpoint yet"):
        pick_checkpoint(run, "best")
    for name in ("epoch_002.keras", "epoch_010.keras", "epoch_009.keras"):
        (run.checkpoints / name).write_bytes(b"x")
    assert pick_checkpoint(run, "best").name == "epoch_010.keras"  # newest, not last in order
    run.last.write_bytes(b"x")
    assert pick_checkpoint(run, "best") == run.last
    run.best.write_bytes(b"x")
    assert pick_checkpoint(run, "best") == run.best
    assert pick_checkpoint(run, "last") == run.last
    assert pick_checkpoint(run, "checkpoints/epoch_002.keras").name == "epoch_002.keras"
    assert pick_checkpoint(run, "epoch_009.keras").name == "epoch_009.keras"
    with pytest.raises(UserError, match="epoch_099.keras: checkpoint file not found"):
        pick_checkpoint(run, "epoch_099.keras")


def test_missing_run_or_checkpoint_is_one_line(tmp_path, capsys):
    assert cli("evaluate", *["--run-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope: run folder not found" in err

    (tmp_path / "empty").mkdir()
    assert cli("evaluate", *["--run-dir", str(tmp_path / "empty")]) == 2
    assert "not a training run (no config.yaml)" in capsys.readouterr().err


def test_broken_checkpoint_is_one_line(tmp_path, capsys, shared_processed_dataset):
    from helpers import tiny_run_config as tiny_config

    from keras_googlenet.config import save_config

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    save_config(tiny_config(shared_processed_dataset), run / "config.yaml")
    (run / "checkpoints" / "best.keras").write_bytes(b"PK\x03\x04 not really a zip")
    assert cli("evaluate", *["--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "best.keras: cannot load checkpoint" in err


def test_summarize_counts_and_pairs():
    probs = np.array(
        [
            [0.7, 0.2, 0.1],  # 0 -> 0
            [0.1, 0.6, 0.3],  # 0 -> 1
            [0.2, 0.5, 0.3],  # 0 -> 1
            [0.1, 0.8, 0.1],  # 1 -> 1
            [0.5, 0.1, 0.4],  # 2 -> 0
        ]
    )
    labels = np.array([0, 0, 0, 1, 2])
    result = summarize(probs, labels, ["a", "b", "c"])
    assert result["top1"] == pytest.approx(2 / 5)
    assert result["top5"] == 1.0 and result["top_k"] == 3
    assert result["loss"] == pytest.approx(-np.log([0.7, 0.1, 0.2, 0.8, 0.4]).mean())
    assert result["mean_per_class_accuracy"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    np.testing.assert_array_equal(result["confusion"], [[1, 2, 0], [0, 1, 0], [1, 0, 0]])
    assert [(p["true"], p["predicted"], p["count"]) for p in result["most_confused"]] == [
        ("a", "b", 2),
        ("c", "a", 1),
    ]
    assert result["per_class"][2] | {} == {
        "id": 2,
        "label": "c",
        "count": 1,
        "correct": 0,
        "accuracy": 0.0,
        "top5_accuracy": 1.0,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
    }
    assert [r["precision"] for r in result["per_class"]] == [0.5, 0.333333, 0.0]
    assert most_confused(np.eye(3, dtype=int), ["a", "b", "c"], 5) == []


def test_confusion_png_for_256_classes():
    from keras_googlenet.evaluation.confusion_plot import plot_confusion

    rng = np.random.default_rng(0)
    confusion = rng.poisson(0.2, (256, 256)) + np.diag(rng.integers(5, 30, 256))
    names = [f"{i:03d}.category-name-{i}" for i in range(256)]
    pairs = most_confused(confusion, names, 40)
    png = plot_confusion(confusion, names, pairs, "256 classes")
    import io

    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.size[0] >= 2200 and image.size[1] >= 1700  # ~7 px per class, plus the panel


def test_precision_recall_f1_of_a_fixed_confusion():
    from keras_googlenet.evaluation.metrics import averaged, precision_recall_f1

    # rows true, columns predicted; class 3 has no image and is predicted once
    confusion = np.array([[1, 2, 0, 0], [0, 1, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0]])
    scores = precision_recall_f1(confusion)
    np.testing.assert_allclose(scores["precision"], [1 / 2, 1 / 3, 0, 0])
    np.testing.assert_allclose(scores["recall"], [1 / 3, 1, 0, 0])
    np.testing.assert_allclose(scores["f1"], [0.4, 0.5, 0, 0])
    avg = averaged(scores, confusion.sum(axis=1))
    assert avg["macro"] == pytest.approx({"precision": 5 / 18, "recall": 4 / 9, "f1": 0.3})
    # supports 3, 1, 2 (class 3 has none and is left out)
    weighted = {"precision": 11 / 36, "recall": 1 / 3, "f1": 1.7 / 6}
    assert avg["weighted"] == pytest.approx(weighted)
