"""The training model's compile options that change how a step runs, not what it computes."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_googlenet.config import ConfigError, load_config
from keras_googlenet.training.callbacks import EpochStats
from keras_googlenet.training.compile import (
    GPU_STEPS_PER_EXECUTION,
    build_model,
    compile_model,
    steps_per_execution,
)

HEADS = ("main",)


class Info:
    class_names = ("a", "b", "c", "d")
    mean_rgb = (120.0, 110.0, 100.0)


def _model(*overrides):
    # Dropout off: runs compared here must see the same network, not the same random stream.
    # No aux heads: a smaller graph compiles faster, and they change nothing tested here.
    cfg = load_config(
        None,
        ["model.input_size=72", "model.dropout=0", "model.aux_heads=false", *overrides],
    )
    keras.utils.set_random_seed(0)
    return compile_model(build_model(cfg, Info()), cfg)


def _batch(count=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (count, 72, 72, 3)).astype("float32")
    y = rng.integers(0, 4, count)
    return x, {head: y for head in HEADS}


def test_xla_step_gives_the_same_loss():
    """runtime.jit_compile: XLA fuses and reorders ops; one step's loss agrees within 1e-4."""
    x, y = _batch()
    plain, xla = _model(), _model("runtime.jit_compile=true")
    assert xla.jit_compile and not plain.jit_compile
    first = [model.train_on_batch(x, y, return_dict=True) for model in (plain, xla)]
    assert first[1]["loss"] == pytest.approx(first[0]["loss"], rel=1e-4)
    # The step changed the weights alike.
    kernels = [model.get_layer("linear").kernel.numpy() for model in (plain, xla)]
    np.testing.assert_allclose(kernels[1], kernels[0], rtol=1e-4, atol=1e-6)


def test_steps_per_execution_trains_the_same_steps_and_counts_them():
    """runtime.steps_per_execution=2: the same 4 steps, weights alike, images/s over 4 steps."""
    x, y = _batch(16)
    results = []
    for spe in (1, 2):
        model = _model(f"runtime.steps_per_execution={spe}")
        stats = EpochStats(global_batch_size=4)
        model.fit(x, y, batch_size=4, shuffle=False, epochs=1, verbose=0, callbacks=[stats])
        assert stats.steps == 4
        assert int(model.optimizer.iterations.numpy()) == 4
        results.append(model.get_layer("linear").kernel.numpy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-4, atol=1e-5)


def test_steps_per_execution_must_be_positive():
    with pytest.raises(ConfigError, match="'runtime.steps_per_execution' must be 'auto' or at le"):
        load_config(None, ["runtime.steps_per_execution=0"])


def test_steps_per_execution_auto_is_1_on_cpus_and_more_on_gpus():
    assert steps_per_execution(3) == 3
    assert steps_per_execution("auto", gpus=0) == 1
    assert steps_per_execution("auto", gpus=2) == GPU_STEPS_PER_EXECUTION > 1
    cfg = load_config(None, ["runtime.steps_per_execution=auto"])
    assert cfg.runtime.steps_per_execution == "auto"
    model = compile_model(build_model(cfg, Info()), cfg)
    assert model.steps_per_execution == 1  # this machine has no GPU


@pytest.mark.parametrize(
    "overrides, keys",
    [
        (
            ["runtime.strategy=mirrored", "runtime.devices=['/cpu:0', '/cpu:1']"],
            "'runtime.jit_compile' true with 'runtime.strategy' mirrored over CPU devices",
        ),
        (
            ["runtime.strategy=multi_worker", "runtime.precision=mixed_float16"],
            "'runtime.jit_compile' true with 'runtime.precision' mixed_float16 under "
            "'runtime.strategy' multi_worker",
        ),
    ],
)
def test_matrix_cells_that_cannot_run_are_refused(overrides, keys):
    """The cells of bench/gpu_check.py's matrix that fail in Keras/TensorFlow stop at the config
    (one line naming the keys), before any step; the matrix test shows they fail if forced."""
    with pytest.raises(ConfigError, match="^defaults --set: " + keys) as e:
        load_config(None, ["runtime.jit_compile=true", *overrides])
    assert "\n" not in str(e.value) and "set runtime.jit_compile: false" in str(e.value)
    load_config(None, overrides)  # the same without XLA is fine
    # Resolved later (auto), it can run: bfloat16 and float32 with XLA on GPUs.
    load_config(None, ["runtime.jit_compile=true", "runtime.strategy=mirrored"])


def test_a_resolved_refused_cell_stops_before_compiling():
    """`precision: auto` / `strategy: auto` are checked once resolved, in compile_model."""
    import tensorflow as tf

    cfg = load_config(None, ["model.input_size=72", "model.aux_heads=false"])
    cfg_xla = load_config(
        None, ["model.input_size=72", "model.aux_heads=false", "runtime.jit_compile=true"]
    )
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = build_model(cfg, Info())
        with pytest.raises(ConfigError, match=r"this run \(float32, 1 mirrored replica\(s\)\): "):
            compile_model(model, cfg_xla)
        assert not model.compiled
        compile_model(model, cfg)
