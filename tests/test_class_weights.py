"""Class weights: balanced on imbalanced labels, by name, id or file; an unknown class is one
line naming the key; the weight reaches the loss of every head."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import cli, tiny_overrides

from keras_googlenet.errors import ConfigError
from keras_googlenet.training.class_weights import resolve_class_weights, with_class_weights

NAMES = ("cat", "dog", "owl")


def test_balanced_weights_follow_the_counts():
    labels = [0] * 6 + [1] * 3 + [2] * 1
    weights = resolve_class_weights("balanced", NAMES, labels)
    assert weights == pytest.approx([10 / 18, 10 / 9, 10 / 3])
    # Each class then weighs the same in total.
    totals = [w * labels.count(c) for c, w in enumerate(weights)]
    assert totals == pytest.approx([10 / 3] * 3)


def test_mapping_by_name_or_id_and_files(tmp_path):
    assert resolve_class_weights({"owl": 3, 0: 0.5}, NAMES, []) == [0.5, 1.0, 3.0]
    (tmp_path / "w.csv").write_text("class,weight\ndog,2\n0,0.25\n")
    assert resolve_class_weights(str(tmp_path / "w.csv"), NAMES, []) == [0.25, 2.0, 1.0]
    (tmp_path / "w.yaml").write_text("owl: 4\n")
    assert resolve_class_weights(str(tmp_path / "w.yaml"), NAMES, []) == [1.0, 1.0, 4.0]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"eagle": 2}, "'training.class_weight.eagle': no such class"),
        ({7: 2}, "'training.class_weight.7': no such class"),
        ("missing.yaml", "'training.class_weight': cannot read missing.yaml"),
    ],
)
def test_bad_class_weights_name_the_key(spec, message):
    with pytest.raises(ConfigError) as info:
        resolve_class_weights(spec, NAMES, [])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_weights_reach_every_head():
    import tensorflow as tf

    inputs = keras.Input((2,))
    outputs = {
        "main": keras.layers.Dense(3, activation="softmax", name="main")(inputs),
        "aux_4a": keras.layers.Dense(3, activation="softmax", name="aux_4a")(inputs),
    }
    model = keras.Model(inputs, outputs)
    loss = keras.losses.SparseCategoricalCrossentropy
    model.compile(loss={"main": loss(), "aux_4a": loss()}, loss_weights={"main": 1, "aux_4a": 1})
    x = np.random.default_rng(0).normal(size=(4, 2)).astype("float32")
    y = np.array([0, 1, 2, 2], "int32")
    plain = tf.data.Dataset.from_tensors((x, {"main": y, "aux_4a": y}))
    weighted = with_class_weights(plain, [1.0, 1.0, 0.0])  # class 2 counts for nothing
    only_01 = tf.data.Dataset.from_tensors((x[:2], {"main": y[:2], "aux_4a": y[:2]}))
    got = model.evaluate(weighted, return_dict=True, verbose=0)
    want = model.evaluate(only_01, return_dict=True, verbose=0)
    for head in ("main_loss", "aux_4a_loss"):
        # Keras divides by the batch size, not the weight sum: 2 of 4 images count.
        assert got[head] == pytest.approx(want[head] / 2, rel=1e-5), head


def test_unknown_class_in_train_is_one_line_exit_2(shared_processed_dataset, tmp_path, capsys):
    overrides = tiny_overrides(shared_processed_dataset, **{"training.class_weight": "{zebra: 2}"})
    args = ["--config", "smoke", "--run-dir", tmp_path / "run"]
    for value in overrides:
        args += ["--set", value]
    assert cli("train", *args) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "'training.class_weight.zebra': no such class" in errors[0]
