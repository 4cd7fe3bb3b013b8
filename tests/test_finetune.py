"""Fine-tuning from imported ImageNet weights: the two-phase schedule across kill -9 and resume,
the imported file's convention adopted into the config, and predict / export on the imported
file itself (no run folder).

The imported file is a random TF-slim checkpoint (tests/test_converters.py's re-statement of
slim's graph), imported with the real CLI once for the module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from helpers import REPO, cli, run_train_cli, tiny_config, tiny_overrides, write_processed_dataset
from PIL import Image

from keras_googlenet.config import load_config
from keras_googlenet.errors import ConfigError
from keras_googlenet.training.schedules import phase_lr


@pytest.fixture(scope="module")
def slim_weights(tmp_path_factory):
    """imagenet.weights.h5 (and its JSON) imported from a random slim checkpoint."""
    import tensorflow as tf
    from test_converters import SlimNet, _save_slim_checkpoint

    root = tmp_path_factory.mktemp("slim")
    source = SlimNet(seed=1)
    source(tf.zeros((1, 224, 224, 3)))  # draws the variables
    _save_slim_checkpoint(source.v, root / "ckpt" / "inception_v1.ckpt")
    out = root / "imagenet"
    assert (
        cli(
            "import-weights", "--from", "slim", root / "ckpt" / "inception_v1.ckpt", "--output", out
        )
        == 0
    )
    return out / "imagenet.weights.h5"


# --------------------------------------------------------------------------------------------
# The schedule and its keys.


def test_phase_lr_lowers_the_rate_from_the_switch():
    from keras_googlenet.config.schema import ScheduleConfig

    constant = ScheduleConfig(name="constant")
    rates = [phase_lr(constant, 0.01, 4, e, 0.01, head_epochs=2, lr_factor=0.1) for e in range(4)]
    np.testing.assert_allclose(rates, [0.01, 0.01, 0.001, 0.001])
    # plateau: the rate it has at the switch (maybe reduced already) x factor, once; then its own
    plateau = ScheduleConfig(name="plateau")
    assert phase_lr(plateau, 0.01, 4, 1, 0.005, 2, 0.1) == 0.005
    assert phase_lr(plateau, 0.01, 4, 2, 0.005, 2, 0.1) == pytest.approx(0.0005)
    assert phase_lr(plateau, 0.01, 4, 3, 0.0005, 2, 0.1) == 0.0005
    cosine = ScheduleConfig(name="cosine", min_lr=0.0)
    assert phase_lr(cosine, 0.01, 3, 2, 0.0, 1, 0.1) == pytest.approx(0.0)  # its last epoch
    assert phase_lr(cosine, 0.01, 3, 1, 0.0, 1, 0.1) == pytest.approx(0.0005)  # 0.001 x half


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"training.finetune.head_epoch": 1}, "did you mean 'training.finetune.head_epochs'?"),
        ({"training.finetune.head_epochs": 1}, "head_epochs' needs training.freeze_until"),
        (
            {"training.finetune.head_epochs": 2, "training.freeze_until": "inception_4e"},
            "must be below training.epochs (2)",
        ),
        ({"training.finetune.lr_factor": 0}, "'training.finetune.lr_factor' must be in (0, 1]"),
    ],
)
def test_finetune_keys_are_refused_in_one_line(overrides, words):
    with pytest.raises(ConfigError) as e:
        load_config(REPO / "configs" / "smoke.yaml", overrides)
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


# --------------------------------------------------------------------------------------------
# Two phases across kill -9 and resume.

TWO_PHASES = {
    "training.freeze_until": "inception_4e",
    "training.finetune.head_epochs": 1,
    "training.finetune.lr_factor": 0.1,
    "training.epochs": 2,
    "training.checkpoint_interval": 1,
    "data.steps_per_epoch": 1,  # epoch N ends at optimizer step N
    "data.validation_steps": 1,
}


def test_a_resumed_run_is_built_in_the_phase_of_its_next_epoch(slim_weights, tmp_path):
    """A 3-epoch run with 2 head epochs: resumed after epoch 1 (phase 1) the blocks through
    freeze_until are frozen; resumed after epoch 2 (the switch) nothing is; and the backups of
    both phases have one layout (the optimizer is built over phase 2's variables)."""
    import tensorflow as tf

    from keras_googlenet.training import finetune
    from keras_googlenet.training.train import _build_compiled_model

    keys = {
        **TWO_PHASES,
        "training.init_weights": str(slim_weights),
        "training.epochs": 3,
        "training.finetune.head_epochs": 2,
    }
    cfg = finetune.adopt_convention(tiny_config(tmp_path, **keys))

    class Info:
        class_names, mean_rgb, train_size, val_size = ("a", "b", "c"), (0, 0, 0), 1, 1

    strategy = tf.distribute.get_strategy()
    models = {e: _build_compiled_model(cfg, Info, strategy, None, e) for e in (1, 2)}
    trainable = {e: {v.path for v in m.trainable_variables} for e, m in models.items()}
    assert not any(p.startswith(("conv1", "inception_4e")) for p in trainable[1])
    assert any(p.startswith("inception_5a") for p in trainable[1])
    assert any(p.startswith("conv1") for p in trainable[2]) and trainable[1] < trainable[2]
    for a, b in ((1, 2), (2, 1)):  # a phase-1 backup restores into a phase-2 model and back
        models[a].optimizer.iterations.assign(7)
        models[a].save_weights(tmp_path / f"{a}.weights.h5")
        models[b].load_weights(tmp_path / f"{a}.weights.h5")
        assert int(models[b].optimizer.iterations) == 7
        models[a].optimizer.iterations.assign(0)


def test_two_phases_killed_in_phase_2_resume_at_the_switch(slim_weights, tmp_path):
    from keras_googlenet.model.import_weights import load_imported
    from keras_googlenet.training.callbacks import KILL_ENV
    from keras_googlenet.training.checkpoints import load_checkpoint
    from keras_googlenet.training.history import read_history
    from keras_googlenet.training.run_dir import RunDir
    from keras_googlenet.training.train import train

    data = write_processed_dataset(tmp_path / "data", num_classes=3, size=80)
    # No model.padding / pool4_size / input_scaling: the file's JSON gives them.
    keys = {**TWO_PHASES, "training.init_weights": str(slim_weights)}
    run = RunDir(tmp_path / "run")
    args = ["--config", REPO / "configs" / "smoke.yaml", "--run-dir", run.root]
    args += [a for kv in tiny_overrides(data, **keys) for a in ("--set", kv)]

    # Epoch 1 (phase 1) finishes and is backed up; killed in epoch 2, phase 2's first step.
    killed = run_train_cli(args, {KILL_ENV: "2"})
    assert killed.returncode == -9, killed.stderr[-3000:]
    saved = yaml.safe_load(run.config.read_text())["model"]
    adopted = (saved["padding"], saved["pool4_size"], saved["input_scaling"])
    assert adopted == ("same", 2, "minus_one_one")  # slim's, from imagenet.json
    lines = _phase_lines((run.root / "output.log").read_text())
    assert [line.split(";")[0] for line in lines] == [
        "1 of 2: epochs 1-1, frozen through inception_4e",
        "2 of 2: epochs 2-2, everything trains",
    ]

    # Resumed at the switch: built straight into phase 2, with phase 2's trainable set and rate.
    result = train(tiny_config(data, **keys), run.root)
    assert result["status"] == "finished" and result["initial_epoch"] == 1
    assert _phase_lines((run.root / "output.log").read_text())[2:] == lines[1:]
    counts = [int(line.split("; ")[1].split()[0]) for line in lines]
    assert counts[0] < counts[1]
    rates = [float(row["learning_rate"]) for row in read_history(run.history)]
    np.testing.assert_allclose(rates, [0.01, 0.001], rtol=1e-6)  # smoke.yaml: lr 0.01

    imported, _ = load_imported(slim_weights)
    after = {n: load_checkpoint(run.checkpoints / f"epoch_{n:03d}.keras") for n in (1, 2)}
    for name in ("conv1_7x7_s2", "conv1_7x7_s2_bn", "inception_4e_1x1"):
        theirs = [np.asarray(w) for w in imported.get_layer(name).weights]
        for a, b in zip(after[1].get_layer(name).weights, theirs, strict=True):
            np.testing.assert_array_equal(np.asarray(a), b, err_msg=f"{name} moved in phase 1")
        mine = [np.asarray(w) for w in after[2].get_layer(name).weights]
        assert not all(np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True)), name


def _phase_lines(log: str) -> list[str]:
    return [line.split(" phase ", 1)[1] for line in log.splitlines() if " phase " in line]


# --------------------------------------------------------------------------------------------
# predict and export on the imported file itself.


def test_predict_and_export_from_imported_weights(slim_weights, tmp_path, capsys):
    info = json.loads(slim_weights.with_name("imagenet.json").read_text())
    rng = np.random.default_rng(0)
    image = tmp_path / "wide.jpg"  # not square: slim's preprocessing stretches, not crops
    Image.fromarray(rng.integers(0, 256, (120, 200, 3), np.uint8)).save(image)

    assert cli("predict", "--weights", slim_weights, image, "--json", "--top-k", "3") == 0
    predictions = json.loads(capsys.readouterr().out)[0]["predictions"]
    assert [p["label"] for p in predictions] == [info["class_names"][p["id"]] for p in predictions]
    assert info["class_names"][0] == "background" and len(info["class_names"]) == 1001
    assert cli("predict", "--weights", slim_weights, image) == 0
    top = predictions[0]
    assert capsys.readouterr().out.splitlines()[1].split()[1:] == [
        *top["label"].split(),
        "(id",
        f"{top['id']})",
    ]

    export = tmp_path / "export"
    assert cli("export", "--weights", slim_weights, "--output", export) == 0
    exported = json.loads((export / "export.json").read_text())
    assert exported["source"] == "slim" and exported["preprocessing"]["crop_square"] is False
    # A fresh process, TensorFlow only: the SavedModel's top-1 on the same image.
    code = (
        "import sys, numpy as np, tensorflow as tf\n"
        "from preprocessing.image_io import load_rgb\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "x = load_rgb(sys.argv[2], 256, center_crop=False, resample='bilinear')[None]\n"
        "out = m.serve_images(tf.constant(x))\n"
        "print(int(out['top_k_ids'][0, 0]), out['top_k_labels'][0, 0].numpy().decode())\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(export), str(image)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split(maxsplit=1) == [str(top["id"]), top["label"] + "\n"]
