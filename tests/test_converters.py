"""Imported ImageNet weights: the Keras forward pass equals the source's, bad files are refused.

torchvision: its own googlenet, run by tests/torch_reference.py in a child process. torch and
torchvision are optional (5 GB with torch's CUDA libraries): `make test` skips these two tests
without them and says why; `make test-torch` (what CI runs) installs them and fails here if
they are still missing.
TF-slim: the `tf-slim` package does not build under TensorFlow 2.21 (its batch norm needs
`tf_keras.legacy_tf_layers`, which tf-keras 2.21 no longer has), so `slim_forward` below
re-states slim's `nets/inception_v1.py` graph in plain TensorFlow ops, from slim's own scope
names and channel numbers, independently of the importer.

Each test writes its own random checkpoint in the source's on-disk format; nothing downloads.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from helpers import cli

from keras_googlenet.model.converters import build, slim, torchvision

SIZE = 224
# Looked up, not imported: torchvision imported after TensorFlow crashes the interpreter.
TORCH_MISSING = [m for m in ("torch", "torchvision") if importlib.util.find_spec(m) is None]


def _images(n=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


def _keras_outputs(weights_file, x):
    """(main softmax, logits) of the imported file, built from its JSON as predict does."""
    from keras_googlenet.model.import_weights import read_sidecar

    model = build(read_sidecar(weights_file)["model"], SIZE)
    model.load_weights(weights_file)
    logits = keras.Model(model.input, model.get_layer("linear").output)(x, training=False)
    return np.asarray(model(x, training=False)["main"]), np.asarray(logits)


# --------------------------------------------------------------------------------------------
# torchvision


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory):
    """The folder tests/torch_reference.py wrote: googlenet.pth, reference.npz, bad files."""
    if TORCH_MISSING:
        why = f"{' and '.join(TORCH_MISSING)} not installed"
        if os.environ.get("KERAS_GOOGLENET_REQUIRE_TORCH") == "1":  # make test-torch, CI
            pytest.fail(f"{why}, but make test-torch requires them")
        pytest.skip(f"{why}: the torchvision exactness test runs under make test-torch (CI)")
    out = tmp_path_factory.mktemp("torch")
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("torch_reference.py")), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_torchvision_import_matches_torchvision(torch_files, tmp_path):
    pth, ref = torch_files / "googlenet.pth", np.load(torch_files / "reference.npz")
    assert len(ref["state_keys"]) == 364  # what the real googlenet-1378be20.pth holds
    assert cli("import-weights", "--from", "torchvision", pth, "--output", tmp_path) == 0
    main, logits = _keras_outputs(tmp_path / "imagenet.weights.h5", ref["x"])
    assert np.abs(main - ref["softmax"]).max() < 1e-4
    assert ref["softmax"].max() > 0.01  # not a flat softmax: the comparison means something
    assert np.abs(logits - ref["logits"]).max() < 1e-4 * np.abs(ref["logits"]).max()


def _refused(tmp_path, source, path):
    out = tmp_path / "out"
    assert cli("import-weights", "--from", source, path, "--output", out) == 2
    assert not out.exists()  # nothing written


def test_torchvision_bad_files_are_refused(torch_files, tmp_path, capsys):
    data = (torch_files / "googlenet.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(tmp_path / "evil.pth", "w") as z:  # unpickling would run `echo`
        z.writestr("evil/data.pkl", b"cos\nsystem\n(S'echo pwned'\ntR.")
    for name in ("other", "missing", "extra"):
        (tmp_path / f"{name}.pth").write_bytes((torch_files / f"{name}.pth").read_bytes())
    expected = {
        "other": "not torchvision's googlenet: missing key",
        "missing": "missing key inception4c.branch3.1.conv.weight",
        "extra": "unexpected key fc2.weight",
        "truncated": "truncated",
        "evil": "imports os.system",
    }
    for name, words in expected.items():
        _refused(tmp_path, "torchvision", tmp_path / f"{name}.pth")
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"{name}.pth" in err and words in err, err


# --------------------------------------------------------------------------------------------
# TF-slim, re-stated: nets/inception_v1.py with its scope names and channel numbers.

# Mixed_X: (Branch_0 1x1, Branch_1 1x1, Branch_1 3x3, Branch_2 1x1, Branch_2 3x3, Branch_3 1x1)
SLIM_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "MaxPool_4a_3x3": None,
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "MaxPool_5a_2x2": None,
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


class SlimNet:
    """Slim's Inception v1 forward pass (is_training=False) over a dict of named arrays.

    With `variables=None` it draws them at random (keyed by slim's names) while running once.
    """

    def __init__(self, variables=None, seed=0):
        self.v = variables if variables is not None else {}
        self.draw = variables is None
        self.rng = np.random.default_rng(seed)

    def _get(self, name, shape, make):
        if self.draw and name not in self.v:
            self.v[name] = make(shape).astype(np.float32)
        return self.v[name]

    def conv(self, net, scope, out, k, stride=1):
        """slim.conv2d, SAME, no bias, then batch_norm(scale=False, epsilon=0.001), ReLU."""
        fan_in = k * k * net.shape[-1]
        w = self._get(
            f"{scope}/weights",
            (k, k, net.shape[-1], out),
            lambda s: self.rng.normal(0, np.sqrt(2 / fan_in), s),
        )
        y = tf.nn.conv2d(net, w, stride, "SAME")
        beta = self._get(f"{scope}/BatchNorm/beta", (out,), lambda s: self.rng.normal(0, 0.2, s))
        mean = self._get(
            f"{scope}/BatchNorm/moving_mean", (out,), lambda s: self.rng.normal(0, 0.2, s)
        )
        var = self._get(
            f"{scope}/BatchNorm/moving_variance", (out,), lambda s: self.rng.uniform(0.5, 2, s)
        )
        return tf.nn.relu((y - mean) / tf.sqrt(var + 0.001) + beta)

    def __call__(self, images):
        """Softmax over 1001 classes of images scaled to [-1, 1]."""
        s = "InceptionV1"
        net = self.conv(images, f"{s}/Conv2d_1a_7x7", 64, 7, 2)
        net = tf.nn.max_pool2d(net, 3, 2, "SAME")  # MaxPool_2a_3x3
        net = self.conv(net, f"{s}/Conv2d_2b_1x1", 64, 1)
        net = self.conv(net, f"{s}/Conv2d_2c_3x3", 192, 3)
        net = tf.nn.max_pool2d(net, 3, 2, "SAME")  # MaxPool_3a_3x3
        for name, c in SLIM_MIXED.items():
            if c is None:
                size = 2 if name == "MaxPool_5a_2x2" else 3
                net = tf.nn.max_pool2d(net, size, 2, "SAME")
                continue
            m = f"{s}/{name}"
            b2_name = "Conv2d_0a_3x3" if name == "Mixed_5b" else "Conv2d_0b_3x3"
            b0 = self.conv(net, f"{m}/Branch_0/Conv2d_0a_1x1", c[0], 1)
            b1 = self.conv(net, f"{m}/Branch_1/Conv2d_0a_1x1", c[1], 1)
            b1 = self.conv(b1, f"{m}/Branch_1/Conv2d_0b_3x3", c[2], 3)
            b2 = self.conv(net, f"{m}/Branch_2/Conv2d_0a_1x1", c[3], 1)
            b2 = self.conv(b2, f"{m}/Branch_2/{b2_name}", c[4], 3)
            b3 = tf.nn.max_pool2d(net, 3, 1, "SAME")  # Branch_3/MaxPool_0a_3x3
            b3 = self.conv(b3, f"{m}/Branch_3/Conv2d_0b_1x1", c[5], 1)
            net = tf.concat([b0, b1, b2, b3], 3)
        net = tf.nn.avg_pool2d(net, 7, 1, "VALID")  # Logits/AvgPool_0a_7x7
        logits_scope = f"{s}/Logits/Conv2d_0c_1x1"
        w = self._get(
            f"{logits_scope}/weights", (1, 1, 1024, 1001), lambda t: self.rng.normal(0, 0.1, t)
        )
        b = self._get(f"{logits_scope}/biases", (1001,), lambda t: self.rng.normal(0, 0.3, t))
        logits = tf.squeeze(tf.nn.conv2d(net, w, 1, "VALID") + b, [1, 2])
        return tf.nn.softmax(logits).numpy()


def _save_slim_checkpoint(variables: dict, prefix) -> None:
    """A TF1-style checkpoint under slim's variable names (what slim's Saver wrote)."""
    tf_vars = {name: tf.Variable(value) for name, value in variables.items()}
    tf_vars["global_step"] = tf.Variable(np.int64(0))
    tf.compat.v1.train.Saver(var_list=tf_vars).save(None, str(prefix))


def test_slim_import_matches_slims_graph(tmp_path):
    x = _images()
    scaled = tf.constant(x / 127.5 - 1.0, tf.float32)  # slim's inception preprocessing
    reference = SlimNet()
    expected = reference(scaled)
    prefix = tmp_path / "ckpt" / "inception_v1.ckpt"
    _save_slim_checkpoint(reference.v, prefix)
    assert cli("import-weights", "--from", "slim", prefix, "--output", tmp_path / "out") == 0
    main, _ = _keras_outputs(tmp_path / "out" / "imagenet.weights.h5", x)
    assert main.shape == (2, 1001)
    assert np.abs(main - expected).max() < 1e-4
    assert expected.max() > 0.01


def test_slim_bad_checkpoints_are_refused(tmp_path, capsys):
    prefix = tmp_path / "v3" / "model.ckpt"
    _save_slim_checkpoint({"InceptionV3/Conv2d_1a_3x3/weights": np.zeros((3, 3, 3, 32))}, prefix)
    _refused(tmp_path, "slim", prefix)
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not TF-slim's Inception v1: missing variable" in err, err
    _refused(tmp_path, "slim", tmp_path / "nothing.ckpt")
    err = capsys.readouterr().err.strip()
    assert "nothing.ckpt: not a readable TensorFlow checkpoint" in err, err


def test_expected_names_cover_every_conv():
    # 57 convs (3 stem + 9 blocks x 6), each with weight and 5 batch-norm entries, plus fc.
    assert len(torchvision.expected_keys()) == 57 * 6 + 2
    assert len(slim.expected_variables()) == 57 * 4 + 2


# --------------------------------------------------------------------------------------------
# Fine-tuning from an imported file.


def test_two_phase_finetune_from_imported_weights_resumes_at_the_switch_and_exports(
    tmp_path, capsys
):
    """Fine-tuning a random slim import on 3 classes: phase 1 (epoch 1) trains the layers above
    inception_4e, phase 2 (epoch 2) everything at lr x 0.1, with EMA; stopped (SIGTERM) inside
    phase 1, then killed (SIGKILL) at phase 2's first step, so the resumed run starts exactly
    at the switch. (tests/test_finetune.py checks the
    resumed model's phase at the build, without training.)"""
    from faults import KILL_ENV
    from helpers import REPO, run_train_cli, tiny_config, tiny_overrides, write_processed_dataset

    from keras_googlenet.training.checkpoints import load_checkpoint
    from keras_googlenet.training.history import read_history

    load_checkpoint_with_optimizer = tf.keras.models.load_model
    from keras_googlenet.training.run_dir import RunDir
    from keras_googlenet.training.train import train

    # A random slim checkpoint (1001 classes), imported; the dataset has 3 classes.
    source = SlimNet()
    source(tf.zeros((1, SIZE, SIZE, 3)))
    _save_slim_checkpoint(source.v, tmp_path / "ckpt" / "inception_v1.ckpt")
    weights = tmp_path / "imagenet" / "imagenet.weights.h5"
    assert (
        cli(
            "import-weights",
            "--from",
            "slim",
            tmp_path / "ckpt" / "inception_v1.ckpt",
            "--output",
            weights.parent,
        )
        == 0
    )
    data = write_processed_dataset(tmp_path / "data", num_classes=3, size=80)
    # No model.padding / pool4_size / input_scaling: the file's JSON gives them.
    keys = {
        "training.init_weights": str(weights),
        "training.freeze_until": "inception_4e",
        "training.finetune.head_epochs": 1,
        "training.finetune.lr_factor": 0.1,
        "training.checkpoint_interval": 1,
        "data.validation_steps": 1,
        "optimizer.ema": True,
    }

    # A key set against the file's convention: refused, one line, nothing trained.
    wrong = tiny_overrides(data, **{**keys, "model.input_scaling": "dataset_mean"})
    args = ["--config", REPO / "configs" / "smoke.yaml", "--run-dir", tmp_path / "wrong"]
    assert cli("train", *args, *[a for kv in wrong for a in ("--set", kv)]) == 2
    assert "needs model.input_scaling: minus_one_one" in capsys.readouterr().err

    # With EMA (averages beside the model, over phase 2's variables too). SIGTERM in phase 1
    # after step 1; resumed there, epoch 1 (phase 1, steps 1-2) finishes and is saved; killed
    # at step 3, in phase 2.
    run = RunDir(tmp_path / "run")
    args = ["--config", REPO / "configs" / "smoke.yaml", "--run-dir", run.root]
    args += [a for kv in tiny_overrides(data, **keys) for a in ("--set", kv)]
    term = run_train_cli(args, {KILL_ENV: "1:SIGTERM"})
    assert term.returncode == 143, term.stderr[-3000:]
    first_log = (run.root / "output.log").read_text()
    assert "loaded 114 layers" in first_log  # 57 convs and their batch norms; the classifier:
    assert "linear (shape" in first_log and "aux_4a_fc (auxiliary head: fresh)" in first_log
    killed = run_train_cli(args, {KILL_ENV: "3"})
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert "1 of 2 steps into epoch 1" in killed.stderr
    saved = yaml.safe_load(run.config.read_text())["model"]
    adopted = (saved["padding"], saved["pool4_size"], saved["input_scaling"])
    assert adopted == ("same", 2, "minus_one_one")  # slim's, from imagenet.json
    log = (run.root / "output.log").read_text()[len(first_log) :]
    assert "init weights" not in log  # a resume restores its own
    phases = [line.split(" phase ", 1)[1] for line in log.splitlines() if " phase " in line]
    assert [line.split(";")[0] for line in phases] == [
        "1 of 2: epochs 1-1, frozen through inception_4e",
        "2 of 2: epochs 2-2, everything trains",
    ]
    trainable = [int(line.split("; ")[1].split()[0]) for line in phases]
    assert trainable[0] < trainable[1]

    # Resumed at the switch: built straight into phase 2 (same trainable set), at lr x 0.1.
    result = train(tiny_config(data, **keys), run.root)
    assert result["status"] == "finished" and result["initial_epoch"] == 1
    log = (run.root / "output.log").read_text()[len(first_log) :]
    assert log.count(phases[1]) == 2
    rates = [float(row["learning_rate"]) for row in read_history(run.history)]
    np.testing.assert_allclose(rates, [0.01, 0.001], rtol=1e-6)  # smoke.yaml: lr 0.01
    assert int(load_checkpoint_with_optimizer(run.last).optimizer.iterations) == 2 * 2

    imported = build(slim.MODEL_KEYS, 65)
    imported.load_weights(weights)
    after = {n: load_checkpoint(run.checkpoints / f"epoch_{n:03d}.keras") for n in (1, 2)}
    for name in ("conv1_7x7_s2", "conv1_7x7_s2_bn", "inception_4e_5x5"):
        theirs = [np.asarray(w) for w in imported.get_layer(name).weights]
        for ours, their in zip(after[1].get_layer(name).weights, theirs, strict=True):
            np.testing.assert_array_equal(np.asarray(ours), their, err_msg=f"{name}, phase 1")
        mine = [np.asarray(w) for w in after[2].get_layer(name).weights]
        assert not all(np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True)), name
    trained = np.asarray(after[1].get_layer("inception_5b_1x1").kernel)
    assert not np.array_equal(trained, np.asarray(imported.get_layer("inception_5b_1x1").kernel))

    export = tmp_path / "export"
    assert cli("export", "--run-dir", run.root, "--output", export) == 0
    loaded = tf.saved_model.load(str(export))  # held: its functions reference it weakly
    probs = loaded.serve_images(tf.zeros((1, 80, 80, 3), tf.uint8))
    assert probs["probabilities"].shape == (1, 3)
