"""End-to-end training on a tiny generated dataset: every artifact of the run folder, the
TensorBoard logs read back by TensorBoard itself, precision policies, and the CLI's answers to a
finished run, a changed config and a folder that is not a run folder."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
import urllib.request

import keras
import numpy as np
import pytest
from helpers import REPO, cli, tiny_config, tiny_overrides, write_processed_dataset
from PIL import Image

from keras_googlenet.cpu import cpu_flags, cpu_vendor
from keras_googlenet.errors import UserError
from keras_googlenet.training.history import read_history
from keras_googlenet.training.precision import choose_policy
from keras_googlenet.training.run_dir import RunDir, resolve_run_dir
from keras_googlenet.training.train import train

HEADS = ("main", "aux_4a", "aux_4d")
TRAIN_SCALARS = {
    "epoch_loss",
    "epoch_main_loss",
    "epoch_aux_4a_loss",
    "epoch_aux_4d_loss",
    "epoch_main_top1",
    "epoch_main_top5",
    "epoch_aux_4a_accuracy",
    "epoch_aux_4d_accuracy",
    "epoch_learning_rate",
    "epoch_images_per_second",
}
VAL_SCALARS = {t for t in TRAIN_SCALARS if "learning_rate" not in t and "images" not in t}


# Whole epochs (3 steps of 4), as users run: the default data.cache auto then caches the decoded
# images, so the finished run also covers the cached training path end to end.
FINISHED_RUN = {"training.checkpoint_interval": 1, "data.steps_per_epoch": None}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One finished 2-epoch run (shared by the tests that only read it)."""
    root = tmp_path_factory.mktemp("train")
    data = write_processed_dataset(
        root / "data", num_classes=3, train_per_class=4, val_per_class=2, size=72
    )
    cfg = tiny_config(data, **FINISHED_RUN)
    result = train(cfg, root / "run")
    return cfg, RunDir(root / "run"), result


@pytest.mark.slow
def test_run_writes_every_artifact(finished_run):
    cfg, run, result = finished_run
    assert result["status"] == "finished" and result["epochs_run"] == 2
    assert result["precision"] == "float32" and result["global_batch_size"] == 4
    for path in (run.config, run.history, run.best, run.last, run.done, run.logfile("output.log")):
        assert path.is_file(), path
    assert [p.name for p in run.epoch_checkpoints()] == ["epoch_001.keras", "epoch_002.keras"]
    assert not run.backup.exists()  # removed once DONE is written

    rows = read_history(run.history)
    assert [r["epoch"] for r in rows] == [0, 1]
    for key in ("loss", "val_main_top1", "val_main_top5", "aux_4a_accuracy", "val_aux_4d_loss"):
        assert all(math.isfinite(r[key]) for r in rows), key
    assert all(r["images_per_second"] > 0 for r in rows)
    assert result["best_val_main_top1"] == max(r["val_main_top1"] for r in rows)

    log = run.logfile("output.log").read_text()
    assert "precision: float32" in log and "batch size 4 global, 4 per replica" in log
    assert "CPU kernels: " in log  # chosen before TensorFlow loaded (keras_googlenet/cpu.py)
    assert log.count("epoch 1/2: loss") == 1 and "val_main_top5" in log and "images/s" in log
    # decided once, for the training pipeline (TensorBoard's sample batch does not cache)
    assert log.count("data.cache auto: on") == 1 and log.count("data.cache auto") == 1

    for name in ("loss.png", "accuracy.png", "learning_rate.png"):
        with Image.open(run.plots / name) as image:
            assert image.format == "PNG" and image.size[0] > 200

    # Checkpoints: the whole three-output model, loadable without project code.
    model = keras.models.load_model(run.best, compile=False)
    assert sorted(model.output_names) == sorted(HEADS)
    out = model(np.zeros((1, 65, 65, 3), "float32"))
    assert out["main"].shape == (1, 3)
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.slow
def test_tensorboard_logs_read_back(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run, _ = finished_run
    train_acc = EventAccumulator(str(run.tensorboard / "train"), size_guidance={"tensors": 0})
    train_acc.Reload()
    assert set(train_acc.PluginTagToContent("scalars")) >= TRAIN_SCALARS
    assert "augmented_train_images" in train_acc.PluginTagToContent("images")
    assert train_acc.Tags()["graph"]
    assert [e.step for e in train_acc.Tensors("epoch_loss")] == [0, 1]
    grid = train_acc.Tensors("augmented_train_images")[0].tensor_proto
    assert grid.string_val[:2] == [b"260", b"65"]  # width, height: 4 images of 65 px in a row

    val_acc = EventAccumulator(str(run.tensorboard / "validation"), size_guidance={"tensors": 0})
    val_acc.Reload()
    assert set(val_acc.PluginTagToContent("scalars")) >= VAL_SCALARS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_tensorboard_serves_the_run(finished_run):
    _, run, _ = finished_run
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(run.tensorboard)]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        tags, deadline = {}, time.monotonic() + 90
        url = f"http://127.0.0.1:{port}/data/plugin/scalars/tags"
        while time.monotonic() < deadline and not (tags.get("train") and tags.get("validation")):
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    tags = json.load(response)
            except OSError:
                pass
            time.sleep(1)
        assert set(tags["train"]) >= TRAIN_SCALARS, tags
        assert set(tags["validation"]) >= VAL_SCALARS, tags
        query = "run=validation&tag=epoch_main_top1"
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?{query}", timeout=10
        ) as response:
            points = json.load(response)
        assert [p[1] for p in points] == [0, 1]  # (wall time, step, value)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_cli_on_finished_changed_and_foreign_folders(finished_run, tmp_path, capsys):
    cfg, run, _ = finished_run
    args = ["--config", str(REPO / "configs" / "smoke.yaml"), "--run-dir", str(run.root)]
    for value in tiny_overrides(cfg.data.input_dir, **FINISHED_RUN):
        args += ["--set", value]
    history = run.history.read_text()

    assert cli("train", *args) == 0
    assert "already finished" in capsys.readouterr().err
    assert run.history.read_text() == history

    assert cli("train", *[*args, "--set", "optimizer.lr=0.5", "--set", "data.batch_size=2"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "optimizer.lr" in err and "data.batch_size" in err
    assert err.count("\n") == 1  # one line, no traceback

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert cli("train", *[*args[:2], "--run-dir", str(foreign), *args[4:]]) == 2
    assert "no config.yaml" in capsys.readouterr().err

    assert resolve_run_dir(cfg, run.root) == run.root
    assert resolve_run_dir(cfg, run.root, restart=True) == run.root.with_name(f"{run.root.name}-2")


def test_missing_input_dir_is_one_line(tmp_path, capsys):
    code = cli(
        "train",
        *["--config", str(REPO / "configs" / "smoke.yaml"), "--run-dir", str(tmp_path / "r")],
    )
    assert code == 2
    assert "data.input_dir" in capsys.readouterr().err


def test_failed_start_does_not_lock_the_folder(tmp_path, capsys):
    """A start refused for a wrong data path leaves config.yaml; the fixed command may reuse it."""
    from keras_googlenet.config import apply_overrides, load_config
    from keras_googlenet.training.run_dir import run_state

    run = RunDir(tmp_path / "r")
    args = ["--config", str(REPO / "configs" / "smoke.yaml"), "--run-dir", str(run.root)]
    assert cli("train", *[*args, "--set", f"data.input_dir={tmp_path / 'typo'}"]) == 2
    assert "typo" in capsys.readouterr().err and run.config.is_file()

    fixed = load_config(REPO / "configs" / "smoke.yaml", [f"data.input_dir={tmp_path}"])
    fixed = apply_overrides(fixed, {"paths.run_dir": str(run.root)})
    assert run_state(run, fixed) == "new"  # nothing was trained: the folder is taken over
    run.history.write_text("epoch,loss\n0,1.5\n")
    with pytest.raises(UserError, match="different config"):
        run_state(run, fixed)  # once an epoch is recorded, a changed config is refused


def test_auto_precision_follows_the_hardware():
    def on_cpu(flags, vendor):
        return choose_policy("auto", flags=flags, capabilities=[], vendor=vendor)[0]

    # AVX512_BF16 alone: fast on AMD's EPYC (1.7x float32), slower than float32 on Intel's Xeon.
    assert on_cpu({"avx512f", "avx512_bf16"}, "AuthenticAMD") == "mixed_bfloat16"
    assert on_cpu({"avx512f", "avx512_bf16"}, "GenuineIntel") == "float32"
    assert on_cpu({"avx512_bf16", "amx_bf16", "amx_tile"}, "GenuineIntel") == "mixed_bfloat16"
    assert on_cpu({"amx_tile"}, "GenuineIntel") == "mixed_bfloat16"
    assert on_cpu({"avx512f"}, "AuthenticAMD") == "float32"
    # AVX2 only (laptops, Zen 3 EPYC): bfloat16 is emulated there, 0.6 images/s against 4.9.
    assert on_cpu({"avx", "avx2", "fma"}, "AuthenticAMD") == "float32"
    assert on_cpu({"avx", "avx2", "fma"}, "GenuineIntel") == "float32"
    flags, amd = cpu_flags(), cpu_vendor() == "AuthenticAMD"
    fast = {"amx_bf16", "amx_tile"} & flags or ("avx512_bf16" in flags and amd)
    here = "mixed_bfloat16" if fast else "float32"
    assert choose_policy("auto", capabilities=[])[0] == here  # GPUs: tests/test_precision.py
    assert choose_policy("mixed_float16")[0] == "mixed_float16"


@pytest.mark.slow
def test_mixed_float16_step_has_finite_loss(tmp_path):
    """One training step under mixed_float16 (loss-scaled); mixed_bfloat16 runs the whole
    training path in test_strategy.py (with two replicas)."""
    import tensorflow as tf

    from keras_googlenet.training.compile import build_model, compile_model
    from keras_googlenet.training.precision import precision_policy

    cfg = tiny_config(tmp_path, **{"runtime.precision": "mixed_float16"})

    class Info:
        class_names = ("a", "b")
        mean_rgb = (127.0, 127.0, 127.0)

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 65, 65, 3), dtype=np.uint8)
    y = rng.integers(0, 2, 4).astype("int32")
    ds = tf.data.Dataset.from_tensors((x, {h: y for h in HEADS}))
    with precision_policy("mixed_float16"):
        model = compile_model(build_model(cfg, Info()), cfg)
        history = model.fit(ds, epochs=1, verbose=0, shuffle=False)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.get_layer("conv1_7x7_s2").compute_dtype == "float16"
    assert model.get_layer("main").compute_dtype == "float32"
    assert all(math.isfinite(v[0]) for v in history.history.values())
    # Dynamic loss scaling: a step whose scaled gradients overflow float16 is skipped and the
    # scale halved, so the step count may stay 0; the scale never grows after one step.
    assert float(model.optimizer.dynamic_scale) <= 2.0**15
    assert keras.config.dtype_policy().name == "float32"  # put back after the block


def test_label_smoothing_loss_matches_keras_on_one_hot():
    from keras_googlenet.training.compile import SparseCategoricalCrossentropyWithSmoothing

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=6).astype("float32")
    labels = rng.integers(0, 4, 6)
    ours = SparseCategoricalCrossentropyWithSmoothing(0.1)(labels, probs)
    reference = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(
        np.eye(4, dtype="float32")[labels], probs
    )
    plain = keras.losses.SparseCategoricalCrossentropy()(labels, probs)
    assert float(ours) == pytest.approx(float(reference), rel=1e-5)
    assert float(ours) != pytest.approx(float(plain), rel=1e-3)


def test_weight_decay_skips_batch_norm_and_biases():
    from keras_googlenet.config import OptimizerConfig
    from keras_googlenet.training.compile import make_optimizer

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, x)
    opt = make_optimizer(OptimizerConfig(name="sgd", weight_decay=2e-4))
    opt.build(model.trainable_variables)
    decayed = sorted(v.name for v in model.trainable_variables if opt._use_weight_decay(v))
    assert decayed == ["kernel", "kernel"]  # conv and dense kernels; not gamma, beta, bias
    assert opt.nesterov and opt.momentum == pytest.approx(0.9)
    assert isinstance(make_optimizer(OptimizerConfig(name="adam", lr=1e-3)), keras.optimizers.Adam)


def test_sync_batch_norm_reaches_every_batch_norm(shared_processed_dataset):
    from keras_googlenet.training.compile import build_model

    class Info:
        class_names = ("a", "b", "c")
        mean_rgb = (120.0, 110.0, 100.0)

    cfg = tiny_config(shared_processed_dataset, **{"runtime.sync_batch_norm": True})
    norms = [
        layer
        for layer in build_model(cfg, Info()).layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert norms and all(layer.synchronized for layer in norms)


def test_undecodable_image_under_on_bad_image_fail_is_one_line_naming_it(tmp_path, capsys):
    """A JPEG whose header passes the probe but whose data does not decode, with
    `data.on_bad_image: fail`: one line naming the file (no TensorFlow traceback), exit 1."""
    data = write_processed_dataset(
        tmp_path / "data", num_classes=2, train_per_class=4, val_per_class=2, size=72
    )
    bad = sorted((data / "train").iterdir())[0]
    raw = bad.read_bytes()
    bad.write_bytes(raw[:200] + bytes(range(256)) * 4 + b"\xff\xd9")
    args = ["--config", REPO / "configs" / "smoke.yaml", "--run-dir", tmp_path / "run"]
    extra = {"data.on_bad_image": "fail", "training.epochs": 1, "data.cache": False}
    for value in tiny_overrides(data, **extra):
        args += ["--set", value]
    assert cli("train", *args) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert str(bad) in last and "data.on_bad_image" in last, last
    assert "Traceback" not in err
