"""Fine-tuning from imported ImageNet weights: the two-phase schedule across kill -9 and resume,
the imported file's convention adopted into the config, and predict / export on the imported
file itself (no run folder).

The imported file is a random TF-slim checkpoint (tests/test_converters.py's re-statement of
slim's graph), imported with the real CLI once for the module.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO, cli, tiny_config
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


def test_model_keys_left_null_take_the_imported_files_values(slim_weights):
    from keras_googlenet.training.finetune import adopt_convention

    def convention(**overrides):
        cfg = adopt_convention(load_config(REPO / "configs" / "smoke.yaml", overrides))
        return cfg.model.padding, cfg.model.pool4_size, cfg.model.input_scaling

    assert convention() == ("same", 3, "dataset_mean")  # the paper's
    weights = {"training.init_weights": str(slim_weights)}
    assert convention(**weights) == ("same", 2, "minus_one_one")  # slim's imagenet.json
    assert convention(**weights, **{"model.pool4_size": 2}) == ("same", 2, "minus_one_one")
    with pytest.raises(ConfigError) as e:  # set against the file: refused, one line
        convention(**weights, **{"model.padding": "torchvision"})
    message = str(e.value)
    assert "needs model.padding: same" in message and str(slim_weights) in message, message
    assert "\n" not in message


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

    import types

    strategy = tf.distribute.get_strategy()
    data = types.SimpleNamespace(info=Info, sample_fn=None)

    def build(config, epoch):
        phase = finetune.phase_at(config, epoch)
        return _build_compiled_model(config, data, strategy, phase, new=False)[0]

    models = {e: build(cfg, e) for e in (1, 2)}
    trainable = {e: {v.path for v in m.trainable_variables} for e, m in models.items()}
    assert not any(p.startswith(("conv1", "inception_4e")) for p in trainable[1])
    assert any(p.startswith("inception_5a") for p in trainable[1])
    assert any(p.startswith("conv1") for p in trainable[2]) and trainable[1] < trainable[2]
    # One phase (head_epochs 0): frozen through freeze_until at every epoch, as in phase 1.
    one = finetune.adopt_convention(
        tiny_config(tmp_path, **{**keys, "training.finetune.head_epochs": 0})
    )
    single = build(one, 2)
    assert {v.path for v in single.trainable_variables} == trainable[1]
    for a, b in ((1, 2), (2, 1)):  # a phase-1 backup restores into a phase-2 model and back
        models[a].optimizer.iterations.assign(7)
        models[a].save_weights(tmp_path / f"{a}.weights.h5")
        models[b].load_weights(tmp_path / f"{a}.weights.h5")
        assert int(models[b].optimizer.iterations) == 7
        models[a].optimizer.iterations.assign(0)


def _phase_lines(log: str) -> list[str]:
    return [line.split(" phase ", 1)[1] for line in log.splitlines() if " phase " in line]


# --------------------------------------------------------------------------------------------
# predict and export on the imported file itself.


def test_predict_and_export_from_imported_weights(slim_weights, tmp_path, capsys):
    info = json.loads(slim_weights.with_name("imagenet.json").read_text())
    rng = np.random.default_rng(0)
    image = tmp_path / "wide.jpg"  # not square: slim's preprocessing stretches, not crops
    Image.fromarray(rng.integers(0, 256, (120, 200, 3), np.uint8)).save(image)

    assert cli("predict", "--weights", slim_weights, image, "--top-k", "3") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(image) and len(out) == 4
    # "  12.34%  great white shark (id 3)": each name is the JSON's for that output
    printed = [re.fullmatch(r"\s+[\d.]+%\s+(.+) \(id (\d+)\)", line).groups() for line in out[1:]]
    assert [label for label, _ in printed] == [info["class_names"][int(i)] for _, i in printed]
    assert info["class_names"][0] == "background" and len(info["class_names"]) == 1001
    top_id, top_label = int(printed[0][1]), printed[0][0]

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
    assert done.stdout.split(maxsplit=1) == [str(top_id), top_label + "\n"]


def test_each_source_keeps_its_own_evaluation_preprocessing():
    import tensorflow as tf

    from keras_googlenet.serving.graph import ServingSpec, preprocess_images

    names = {"class_names": ["a", "b"]}
    torch = ServingSpec.from_imported({"source": "torchvision", **names})
    slim = ServingSpec.from_imported({"source": "slim", **names})
    assert (torch.resize_size, torch.input_size, torch.resize_method) == (256, 224, "bilinear")
    assert torch.crop_square and not slim.crop_square  # Resize+CenterCrop vs central_crop
    # A 2:1 frame whose left quarter is bright: torchvision's centred square leaves it out,
    # slim's stretched frame keeps it (as the first 48 of 224 columns after the 256 -> 224 crop).
    frame = np.zeros((1, 128, 256, 3), np.uint8)
    frame[:, :, :64] = 200
    torch_pixels = preprocess_images(tf.constant(frame), torch).numpy()
    slim_pixels = preprocess_images(tf.constant(frame), slim).numpy()
    assert torch_pixels.shape == slim_pixels.shape == (1, 224, 224, 3)
    assert torch_pixels.max() == 0
    assert slim_pixels[0, :, :46].min() == 200 and slim_pixels[0, :, 50:].max() == 0
