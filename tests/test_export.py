"""Export: the SavedModel's endpoints, a reload in a process without the project, refusals,
and a mixed-precision run exporting a float32 graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import cli, run_isolated
from PIL import Image

# Runs in a fresh interpreter, isolated (-I: no PYTHONPATH, no current folder on sys.path),
# started outside the repository: only TensorFlow (and the Keras it ships) is importable.
FRESH = r"""
import sys
import numpy as np
import tensorflow as tf

export, data = sys.argv[1], sys.argv[2]
images = np.load(data + "/images.npy")
pixels = np.load(data + "/pixels.npy")
odd = np.load(data + "/odd.npy")
with open(data + "/files.txt") as f:
    encoded = [open(p, "rb").read() for p in f.read().split()]

loaded = tf.saved_model.load(export)
by_images = loaded.serve_images(tf.constant(images))
out = {
    "images": by_images["probabilities"].numpy(),
    "top_k_ids": by_images["top_k_ids"].numpy(),
    "top_k_labels": by_images["top_k_labels"].numpy().astype(str),
    "pixels": loaded.serve(tf.constant(pixels))["probabilities"].numpy(),
    "odd": loaded.serve_images(tf.constant(odd))["probabilities"].numpy(),
    "bytes": loaded.serve_bytes(tf.constant(encoded))["probabilities"].numpy(),
    "default": loaded.signatures["serving_default"](images=tf.constant(images))[
        "probabilities"
    ].numpy(),
}
layer = tf.keras.layers.TFSMLayer(export, call_endpoint="serve_images")
out["tfsm"] = np.asarray(layer(tf.constant(images))["probabilities"])
np.savez(data + "/out.npz", **out)
project = [m for m in sys.modules if m.startswith(("keras_googlenet", "preprocessing"))]
print("project modules:", project)
"""


def _val_images(run: Path, count: int = 6):
    """(paths, uint8 [N, 80, 80, 3] decoded with Pillow) of the run's first validation files."""
    import csv

    data = run.parent / "data"
    with open(data / "val.csv") as f:
        names = [row["image"] for row in csv.DictReader(f)][:count]
    paths = [data / "val" / n for n in names]
    return paths, np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def _keras_probabilities(run: Path, pixels: np.ndarray) -> np.ndarray:
    from keras_googlenet.training.checkpoints import float32_inference_model, load_checkpoint

    model = float32_inference_model(load_checkpoint(run / "checkpoints" / "best.keras"))
    return np.asarray(model.predict_on_batch(pixels.astype(np.float32)))


@pytest.mark.slow
def test_export_writes_every_artifact(tiny_run, tiny_export):
    files = {p.name for p in tiny_export.iterdir()}
    assert {"saved_model.pb", "variables", "model.keras", "labels.txt", "export.json"} <= files
    assert tiny_export.joinpath("labels.txt").read_text().split() == ["class0", "class1", "class2"]
    info = json.loads(tiny_export.joinpath("export.json").read_text())
    assert info["preprocessing"] == {
        "input_size": 72,
        "resize_size": 80,
        "crop_square": True,
        "resize_method": "bicubic",
        "top_k": 3,
        "num_classes": 3,
    }
    assert info["checkpoint"].endswith("best.keras")
    assert set(info["endpoints"]) == {"serve_images", "serve_bytes", "serve"}
    # No temporary folders left beside the export.
    assert [p.name for p in tiny_export.parent.iterdir()] == ["export"]


@pytest.mark.slow
def test_fresh_process_reload_matches_keras(tiny_run, tiny_export, tmp_path):
    import keras
    import tensorflow as tf

    from keras_googlenet.serving.graph import ServingSpec, compiled_serving_functions
    from keras_googlenet.training.checkpoints import float32_inference_model, load_checkpoint

    paths, images = _val_images(tiny_run)
    pixels = images[:, 4:76, 4:76, :].astype(np.float32)  # validation's 72 center crop of 80
    rng = np.random.default_rng(1)
    odd = rng.integers(0, 256, (1, 97, 130, 3), dtype=np.uint8)  # neither square nor 80
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "images.npy", images)
    np.save(data / "pixels.npy", pixels)
    np.save(data / "odd.npy", odd)
    (data / "files.txt").write_text("\n".join(str(p) for p in paths))

    done = run_isolated(FRESH, tiny_export, data, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "project modules: []" in done.stdout
    out = np.load(data / "out.npz")

    expected = _keras_probabilities(tiny_run, pixels)
    assert expected.shape == (6, 3)
    for key in ("images", "pixels", "default", "tfsm"):
        assert out[key].dtype == np.float32, key
        np.testing.assert_allclose(out[key], expected, atol=1e-5, err_msg=key)
    # serve_bytes decodes with TensorFlow, whose JPEG decoder rounds unlike Pillow's.
    decoded = np.stack([tf.io.decode_image(p.read_bytes(), channels=3).numpy() for p in paths])
    by_tf = _keras_probabilities(tiny_run, decoded[:, 4:76, 4:76, :])
    np.testing.assert_allclose(out["bytes"], by_tf, atol=1e-5)
    np.testing.assert_allclose(out["images"].sum(axis=1), 1.0, atol=1e-5)
    order = np.argsort(-expected, axis=1, kind="stable")
    np.testing.assert_array_equal(out["top_k_ids"], order)
    names = np.array(["class0", "class1", "class2"])
    np.testing.assert_array_equal(out["top_k_labels"], names[order])

    # Any image size: the reloaded graph equals the in-memory one on a 97x130 image.
    model = float32_inference_model(load_checkpoint(tiny_run / "checkpoints" / "best.keras"))
    spec = ServingSpec(72, 80, True, tuple(names))
    in_memory = compiled_serving_functions(model, spec)["serve_images"](odd)["probabilities"]
    np.testing.assert_allclose(out["odd"], np.asarray(in_memory), atol=1e-5)

    # The exported .keras inference model gives the same probabilities.
    reloaded = keras.models.load_model(tiny_export / "model.keras", compile=False)
    np.testing.assert_allclose(reloaded.predict_on_batch(pixels), expected, atol=1e-5)


def test_serving_preprocessing_matches_validation_pipeline(shared_processed_dataset):
    """Served bytes become the pixels evaluation sees: same decoder, same center crop.

    The validation pipeline decodes only the crop window of a JPEG (faster); libjpeg's chroma
    upsampling then differs by a few levels at the window's edge, so this is near, not exact.
    """
    import tensorflow as tf
    from helpers import tiny_run_config as tiny_config

    from keras_googlenet.data.dataset_info import read_dataset_info
    from keras_googlenet.data.decode import decode_rgb
    from keras_googlenet.data.pipeline import make_val_dataset
    from keras_googlenet.serving.graph import ServingSpec, preprocess_images

    config = tiny_config(shared_processed_dataset)
    info = read_dataset_info(config)
    images, _, _ = next(iter(make_val_dataset(config, info)))
    spec = ServingSpec.from_config(config, info.class_names)
    served = np.stack(
        [
            preprocess_images(decode_rgb(tf.io.read_file(p))[None], spec)[0].numpy()
            for p in info.val_files[: len(images)]
        ]
    )
    diff = np.abs(served - images.numpy().astype(np.float32))
    assert served.shape == (6, 72, 72, 3)  # 12 images: two equal batches (val_layout)
    assert diff.mean() < 0.5 and diff.max() <= 16, (diff.mean(), diff.max())


def test_preprocess_images_crops_square_then_resizes():
    import tensorflow as tf

    from keras_googlenet.serving.graph import ServingSpec, preprocess_images

    spec = ServingSpec(input_size=4, resize_size=6, crop_square=True, class_names=("a", "b"))
    # A 6x10 image whose columns 2..7 (the center square) are 100, the trimmed sides 0.
    image = np.zeros((1, 6, 10, 3), np.uint8)
    image[:, :, 2:8] = 100
    out = preprocess_images(tf.constant(image), spec).numpy()
    assert out.shape == (1, 4, 4, 3)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, 100.0)  # no trimmed border leaked in
    # At the resize size it is only a center crop (odd margin: one more pixel below/right).
    ramp = np.arange(36, dtype=np.uint8).reshape(1, 6, 6, 1).repeat(3, axis=-1)
    np.testing.assert_array_equal(
        preprocess_images(tf.constant(ramp), spec).numpy(), ramp[:, 1:5, 1:5].astype(np.float32)
    )
    # Without crop_square the whole frame is squeezed into the square.
    squeeze = ServingSpec(4, 6, False, ("a", "b"))
    assert preprocess_images(tf.constant(image), squeeze).numpy().min() < 100


def test_export_refuses_missing_run(tmp_path, capsys):
    code = cli("export", *["--run-dir", str(tmp_path / "nope"), "--output", str(tmp_path / "e")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope" in err and "not found" in err
    assert not (tmp_path / "e").exists()


@pytest.mark.slow
def test_export_refuses_non_empty_folder_unless_overwrite(tiny_run, tmp_path, capsys):
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code = cli("export", *["--run-dir", str(tiny_run), "--output", str(out)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--overwrite" in err and str(out) in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    code = cli(
        "export",
        *["--run-dir", str(tiny_run), "--output", str(out), "--overwrite", "--checkpoint", "last"],
    )
    assert code == 0
    assert not (out / "keep.txt").exists()
    assert json.loads((out / "export.json").read_text())["checkpoint"].endswith("last.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


@pytest.mark.slow
def test_mixed_bfloat16_run_exports_float32_graph(tiny_run, tmp_path):
    """A checkpoint built under mixed_bfloat16 exports a float32 graph with the same weights."""
    import keras
    import tensorflow as tf

    from keras_googlenet.config import load_config, save_config
    from keras_googlenet.data.dataset_info import read_dataset_info
    from keras_googlenet.model.googlenet import build_googlenet
    from keras_googlenet.training.checkpoints import float32_inference_model, load_checkpoint

    trained = load_checkpoint(tiny_run / "checkpoints" / "best.keras")
    config = load_config(tiny_run / "config.yaml", {"runtime.precision": "mixed_bfloat16"})
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = build_googlenet(
            3,
            (72, 72, 3),
            mean_rgb=read_dataset_info(config).mean_rgb,
            std_rgb=config.data.std_rgb,
        )
    finally:
        keras.config.set_dtype_policy(previous)
    mixed.set_weights(trained.get_weights())
    run = tmp_path / "mixed_run"
    (run / "checkpoints").mkdir(parents=True)
    save_config(config, run / "config.yaml")
    mixed.save(run / "checkpoints" / "last.keras")
    out = tmp_path / "export"
    assert cli("export", *["--run-dir", str(run), "--output", str(out)]) == 0

    _, images = _val_images(tiny_run)
    loaded = tf.saved_model.load(str(out))
    probs = loaded.serve_images(tf.constant(images))["probabilities"]
    assert probs.dtype == tf.float32
    sig = loaded.signatures["serve_images"].structured_outputs["probabilities"]
    assert sig.dtype == tf.float32
    reloaded = keras.models.load_model(out / "model.keras", compile=False)
    assert {layer.dtype_policy.name for layer in reloaded.layers} == {"float32"}
    pixels = images[:, 4:76, 4:76, :].astype(np.float32)
    expected = float32_inference_model(trained).predict_on_batch(pixels)
    np.testing.assert_allclose(probs.numpy(), expected, atol=1e-5)
    # The bfloat16 model itself computes something else: the export did not just run it.
    bf16 = np.asarray(mixed.predict_on_batch(pixels)["main"])
    assert np.abs(bf16 - expected).max() > 1e-5


@pytest.mark.slow
def test_run_is_self_contained_after_the_dataset_is_deleted(tmp_path, capsys):
    """Train, delete the dataset folder: export (versioned for TF Serving), predict and
    evaluate a CSV kept elsewhere still work, from what the run folder holds."""
    import shutil

    import tensorflow as tf
    from helpers import tiny_config, write_processed_dataset

    from keras_googlenet.training.train import train

    data = write_processed_dataset(tmp_path / "data", num_classes=2, size=72)
    kept = tmp_path / "kept"
    shutil.copytree(data / "val", kept / "val")
    shutil.copy(data / "val.csv", kept / "val.csv")
    run = tmp_path / "run"
    train(tiny_config(data, **{"training.epochs": 1}), run)
    facts = json.loads((run / "dataset.json").read_text())
    assert facts["class_names"] == ["class0", "class1"] and len(facts["mean_rgb"]) == 3
    shutil.rmtree(data)

    models = tmp_path / "models"
    assert cli("export", "--run-dir", run, "--output", models, "--version", "3") == 0
    loaded = tf.saved_model.load(str(models / "3"))  # the layout TensorFlow Serving loads
    image = np.asarray(Image.open(next((kept / "val").iterdir())))
    out = loaded.serve_images(tf.constant(image[None]))
    assert out["probabilities"].shape == (1, 2)
    assert out["top_k_labels"].numpy()[0, 0].decode() in ("class0", "class1")

    capsys.readouterr()
    one = next((kept / "val").iterdir())
    assert cli("predict", "--run-dir", run, one, "--json") == 0
    assert json.loads(capsys.readouterr().out)[0]["predictions"][0]["label"].startswith("class")

    report = tmp_path / "report"
    assert cli("evaluate", "--run-dir", run, "--csv", kept / "val.csv", "--output", report) == 0
    assert json.loads((report / "metrics.json").read_text())["num_images"] == 8
    # The default CSV lived in the deleted folder: one line naming it.
    capsys.readouterr()
    assert cli("evaluate", "--run-dir", run, "--checkpoint", "last") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "val.csv" in err
