"""The network against Table 1 of the paper: shapes, channels, parameter counts, heads."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_googlenet.model.googlenet import build_googlenet, inference_model
from keras_googlenet.model.summary import block_params, format_summary
from keras_googlenet.model.table import INCEPTION_SPECS, INCEPTION_TABLE, min_input_size

# Table 1, written out again by hand (not derived from the code under test):
# stage -> output (height, width, channels) for a 224x224 input.
PAPER_SHAPES_224 = {
    "conv1_7x7_s2_relu": (112, 112, 64),
    "pool1_3x3_s2": (56, 56, 64),
    "conv2_3x3_reduce_relu": (56, 56, 64),
    "conv2_3x3_relu": (56, 56, 192),
    "pool2_3x3_s2": (28, 28, 192),
    "inception_3a_output": (28, 28, 256),
    "inception_3b_output": (28, 28, 480),
    "pool3_3x3_s2": (14, 14, 480),
    "inception_4a_output": (14, 14, 512),
    "inception_4b_output": (14, 14, 512),
    "inception_4c_output": (14, 14, 512),
    "inception_4d_output": (14, 14, 528),
    "inception_4e_output": (14, 14, 832),
    "pool4_3x3_s2": (7, 7, 832),
    "inception_5a_output": (7, 7, 832),
    "inception_5b_output": (7, 7, 1024),
    "avg_pool": (1024,),
    "aux_4a_pool": (4, 4, 512),
    "aux_4a_flatten": (2048,),
    "aux_4d_pool": (4, 4, 528),
    "aux_4d_flatten": (2048,),
}

# The paper's columns: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
PAPER_TABLE = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


@pytest.fixture(scope="module")
def model_224():
    return build_googlenet(256)


def conv_params(k, c_in, c_out, batch_norm=True):
    """Weights of one conv (+ its batch norm: gamma, beta, moving mean, moving variance)."""
    return k * k * c_in * c_out + (4 * c_out if batch_norm else c_out)


def inception_params(c_in, spec, batch_norm=True):
    n1, r3, n3, r5, n5, pp = spec
    return (
        conv_params(1, c_in, n1, batch_norm)
        + conv_params(1, c_in, r3, batch_norm)
        + conv_params(3, r3, n3, batch_norm)
        + conv_params(1, c_in, r5, batch_norm)
        + conv_params(5, r5, n5, batch_norm)
        + conv_params(1, c_in, pp, batch_norm)
    )


def test_table_is_the_papers():
    assert {name: tuple(spec) for name, spec in INCEPTION_SPECS.items()} == PAPER_TABLE
    order = [name for name, _ in INCEPTION_TABLE]
    assert order == ["3a", "3b", "pool3", "4a", "4b", "4c", "4d", "4e", "pool4", "5a", "5b"]


def test_shape_at_every_stage_boundary(model_224):
    for layer_name, shape in PAPER_SHAPES_224.items():
        got = tuple(model_224.get_layer(layer_name).output.shape[1:])
        assert got == shape, layer_name


def test_block_output_channels(model_224):
    for name, spec in PAPER_TABLE.items():
        channels = model_224.get_layer(f"inception_{name}_output").output.shape[-1]
        assert channels == spec[0] + spec[2] + spec[4] + spec[5]


def test_five_by_five_branch_is_a_real_5x5(model_224):
    for name in PAPER_TABLE:
        assert model_224.get_layer(f"inception_{name}_5x5").kernel.shape[:2] == (5, 5)
        assert model_224.get_layer(f"inception_{name}_pool_proj").kernel.shape[:2] == (1, 1)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_block_parameter_counts_match_the_spec(batch_norm):
    model = build_googlenet(10, (96, 96, 3), batch_norm=batch_norm)
    counts = block_params(model)
    c_in = 192
    for name, spec in PAPER_TABLE.items():
        assert counts[f"inception_{name}"] == inception_params(c_in, spec, batch_norm), name
        c_in = spec[0] + spec[2] + spec[4] + spec[5]
    stem = conv_params(7, 3, 64, batch_norm) + conv_params(1, 64, 64, batch_norm)
    stem += conv_params(3, 64, 192, batch_norm)
    assert counts["stem"] == stem
    assert counts["head"] == 1024 * 10 + 10


def test_aux_head_parameter_counts(model_224):
    counts = block_params(model_224)
    for name, c_in in (("aux_4a", 512), ("aux_4d", 528)):
        expected = conv_params(1, c_in, 128) + (2048 * 1024 + 1024) + (1024 * 256 + 256)
        assert counts[name] == expected


def test_outputs_named_and_aux_heads_optional():
    with_aux = build_googlenet(5, (80, 80, 3))
    assert sorted(with_aux.output_names) == ["aux_4a", "aux_4d", "main"]
    without = build_googlenet(5, (80, 80, 3), aux_heads=False)
    assert without.output_names == ["main"]
    assert not any(layer.name.startswith("aux_") for layer in without.layers)
    # Aux heads add parameters; the rest of the network is identical.
    assert with_aux.count_params() > without.count_params()
    assert without.count_params() == inference_model(with_aux).count_params()


def test_inference_model_shares_weights():
    model = build_googlenet(4, (72, 72, 3))
    serving = inference_model(model)
    assert serving.output_names == ["main"] or len(serving.outputs) == 1
    x = np.random.default_rng(0).uniform(0, 1, (2, 72, 72, 3)).astype("float32")
    before = serving.predict(x, verbose=0)
    kernel = model.get_layer("linear").kernel
    kernel.assign(kernel.numpy() * 0 + 0.05 * np.eye(1024, 4, dtype="float32"))
    after = serving.predict(x, verbose=0)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, model.predict(x, verbose=0)["main"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_outputs_float32_under_mixed_precision(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_googlenet(3, (72, 72, 3))
        assert model.get_layer("inception_3a_1x1").compute_dtype != "float32"
        out = model(np.zeros((1, 72, 72, 3), "float32"), training=False)
        for name in ("main", "aux_4a", "aux_4d"):
            assert out[name].dtype == "float32", name
            np.testing.assert_allclose(np.asarray(out[name]).sum(), 1.0, atol=1e-3)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_forward_pass_and_one_fit_step():
    model = build_googlenet(3, (72, 72, 3), mean_rgb=(120.0, 110.0, 100.0), std_rgb=58.0)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss={k: "sparse_categorical_crossentropy" for k in ("main", "aux_4a", "aux_4d")},
        loss_weights={"main": 1.0, "aux_4a": 0.3, "aux_4d": 0.3},
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, 72, 72, 3)).astype("float32")
    y = rng.integers(0, 3, 4)
    probs = model.predict(x, verbose=0)
    assert probs["main"].shape == (4, 3)
    np.testing.assert_allclose(probs["main"].sum(axis=1), 1.0, atol=1e-5)
    before = model.get_layer("linear").kernel.numpy().copy()
    history = model.fit(x, {"main": y, "aux_4a": y, "aux_4d": y}, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.allclose(before, model.get_layer("linear").kernel.numpy())


def test_minimum_input_size():
    assert min_input_size(True) == 65
    build_googlenet(3, (65, 65, 3))  # the smallest that works: 4a is 5x5, aux pool gives 1x1
    with pytest.raises(ValueError, match="minimum of 65x65"):
        build_googlenet(3, (64, 64, 3))
    with pytest.raises(ValueError, match="minimum of 65x65"):
        build_googlenet(3, (224, 48, 3))
    build_googlenet(3, (32, 32, 3), aux_heads=False)
    with pytest.raises(ValueError, match="minimum of 32x32"):
        build_googlenet(3, (31, 31, 3), aux_heads=False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 1}, "num_classes must be at least 2"),
        ({"num_classes": 3, "input_shape": (80, 80, 1)}, "input_shape"),
        ({"num_classes": 3, "dropout": 1.0}, "dropout"),
    ],
)
def test_bad_arguments(kwargs, message):
    num_classes = kwargs.pop("num_classes")
    with pytest.raises(ValueError, match=message):
        build_googlenet(num_classes, **{"input_shape": (80, 80, 3), **kwargs})


def test_summary_table(model_224):
    text = format_summary(model_224)
    assert "inception_3a_5x5" in text and "28x28x32" in text and "5x5" in text
    assert "7x7x1024" in text
    assert f"{model_224.count_params():,}" in text
    # Rows follow the paper: 3a's branches before 3b, aux_4a right after 4a.
    assert text.index("inception_3a_1x1 ") < text.index("inception_3a_3x3_reduce")
    assert text.index("inception_3a_output") < text.index("inception_3b_1x1 ")
    assert text.index("inception_4a_output") < text.index("aux_4a_pool") < text.index("4b_1x1")


def test_summary_cli():
    result = subprocess.run(
        [sys.executable, "-m", "keras_googlenet", "summary", "--image-size", "96"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "inception_5b_output" in result.stdout and "3x3x1024" in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "keras_googlenet", "summary", "--image-size", "40"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "minimum of 65x65" in bad.stderr and "Traceback" not in bad.stderr
