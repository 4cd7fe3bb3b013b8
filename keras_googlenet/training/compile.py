"""The training model: GoogLeNet for a config, its optimizer, per-head losses and metrics."""

from __future__ import annotations

import keras

from keras_googlenet.config import Config
from keras_googlenet.errors import ConfigError, UserError
from keras_googlenet.model.googlenet import build_googlenet
from keras_googlenet.model.table import MINUS_ONE_ONE, OUTPUT_NAMES, PAPER_CONVENTION
from keras_googlenet.training.loss_scale import with_loss_scaling

# Batch norm scales/offsets and biases are not decayed (decay would only shrink them).
NO_DECAY = ["gamma", "beta", "bias"]


@keras.saving.register_keras_serializable(package="keras_googlenet")
class SparseCategoricalCrossentropyWithSmoothing(keras.losses.Loss):
    """Cross-entropy on integer labels with label smoothing (Keras's sparse loss has none)."""

    def __init__(self, label_smoothing: float = 0.0, name="sparse_ce_smoothed", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        num_classes = keras.ops.shape(y_pred)[-1]
        labels = keras.ops.one_hot(
            keras.ops.cast(keras.ops.reshape(y_true, [-1]), "int32"), num_classes
        )
        return keras.losses.categorical_crossentropy(
            labels, y_pred, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def build_model(cfg: Config, info) -> keras.Model:
    """GoogLeNet for `cfg.model`, taking raw 0-255 pixels normalized by `info.mean_rgb`.

    Args:
        cfg: the config (`model.*`, `data.std_rgb`).
        info: a `DatasetInfo` (or anything with `num_classes`/`class_names` and `mean_rgb`).

    Returns:
        The training model (outputs `main`, `aux_4a`, `aux_4d`), not compiled.
    """
    num_classes = getattr(info, "num_classes", None) or len(info.class_names)
    if cfg.model.num_classes is not None and cfg.model.num_classes != num_classes:
        raise UserError(
            f"model.num_classes is {cfg.model.num_classes} but the dataset has {num_classes} "
            "classes (set model.num_classes to null to take it from the dataset)"
        )
    m = cfg.model
    # A null key (no imported file adopted into the config) means the paper's model.
    padding, pool4_size = (model_key(m, key) for key in ("padding", "pool4_size"))
    mean_rgb, std_rgb = input_normalization(cfg, info.mean_rgb)
    return build_googlenet(
        num_classes,
        (m.input_size, m.input_size, 3),
        batch_norm=m.batch_norm,
        aux_heads=m.aux_heads,
        dropout=m.dropout,
        aux_dropout=m.aux_dropout,
        initializer=m.initializer,
        mean_rgb=mean_rgb,
        std_rgb=std_rgb,
        padding=padding,
        pool4_size=pool4_size,
        sync_batch_norm=cfg.runtime.sync_batch_norm,
    )


def model_key(m, key: str):
    """`model.<key>` (padding, pool4_size, input_scaling); null means the paper's model."""
    value = getattr(m, key)
    return PAPER_CONVENTION[key] if value is None else value


def input_normalization(cfg: Config, dataset_mean_rgb) -> tuple[tuple, float]:
    """(mean_rgb, std_rgb) that the model's first layer applies: `(x - mean_rgb) / std_rgb`."""
    if model_key(cfg.model, "input_scaling") == "minus_one_one":  # what ImageNet weights expect
        mean, std = MINUS_ONE_ONE
        return (mean,) * 3, std
    return tuple(dataset_mean_rgb), cfg.data.std_rgb


def make_optimizer(o) -> keras.optimizers.Optimizer:
    """The optimizer of an `OptimizerConfig`, with a float learning rate (see schedules.py)."""
    # optimizer.ema is not the optimizer's use_ema: the average is kept beside the model
    # (training/ema.py), so it outlives the phases' changes of the trainable set.
    common = dict(learning_rate=o.lr, clipnorm=o.clipnorm)
    decay = o.weight_decay or None
    if o.name == "sgd":
        # Keras applies weight decay decoupled from the gradient: w -= lr * weight_decay * w.
        opt = keras.optimizers.SGD(
            momentum=o.momentum, nesterov=o.nesterov, weight_decay=decay, **common
        )
    elif o.name == "adam":
        opt = keras.optimizers.Adam(
            beta_1=o.beta_1, beta_2=o.beta_2, epsilon=o.epsilon, weight_decay=decay, **common
        )
    elif o.name == "adamw":
        opt = keras.optimizers.AdamW(
            beta_1=o.beta_1,
            beta_2=o.beta_2,
            epsilon=o.epsilon,
            weight_decay=o.weight_decay,
            **common,
        )
    else:
        raise UserError(f"optimizer.name: unknown optimizer {o.name!r}")
    if decay:
        opt.exclude_from_weight_decay(var_names=NO_DECAY)
    return opt


# `runtime.steps_per_execution: auto` on GPUs: a GoogLeNet step at 224 px takes tens of
# milliseconds there, against about a millisecond of per-call overhead; 16 steps per call
# leave it under 1% while batch-level callbacks still act several times a second.
GPU_STEPS_PER_EXECUTION = 16


def steps_per_execution(value, gpus: int | None = None) -> int:
    """`runtime.steps_per_execution` resolved: `auto` is GPU_STEPS_PER_EXECUTION when GPUs are
    visible (`gpus`: their count, default asked of TensorFlow), else 1 (CPU steps take 50 ms to
    seconds: nothing to save)."""
    if value != "auto":
        return value
    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_logical_devices("GPU"))
    return GPU_STEPS_PER_EXECUTION if gpus else 1


def check_resolved_runtime(cfg: Config) -> None:
    """Refuses (ConfigError, one line) what `config.checks.runtime_refusal` refuses, for the
    policy and strategy this run resolved (`precision: auto`, `strategy: auto`)."""
    import tensorflow as tf

    from keras_googlenet.config.checks import runtime_refusal

    strategy = tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        kind = "multi_worker"
    elif isinstance(strategy, tf.distribute.MirroredStrategy):
        kind = "mirrored"
    else:
        kind = "default"
    devices = strategy.extended.worker_devices if kind != "default" else ()
    kinds = [tf.DeviceSpec.from_string(d).device_type for d in devices]
    policy = keras.config.dtype_policy().name
    why = runtime_refusal(policy, cfg.runtime.jit_compile, kind, kinds)
    if why:
        raise ConfigError(f"this run ({policy}, {len(devices)} {kind} replica(s)): {why}")


def compile_model(model: keras.Model, cfg: Config, optimizer=None) -> keras.Model:
    """Compiles `model` for training: optimizer, per-head losses, weights and metrics.

    Call inside the strategy's scope, after the precision policy is set (a `mixed_float16`
    model gets a loss-scale optimizer, `training/loss_scale.py`).

    Metrics: `top1`/`top5` on `main`, `accuracy` on each auxiliary head; Keras prefixes them
    with the output name (`main_top1`, `aux_4a_accuracy`). With MixUp or CutMix in
    `data.batch_augment` the labels are one-hot rows, mixed (`data/batch_augment.py`), so the
    losses and metrics are the categorical ones.

    Args:
        model: the training model.
        cfg: the config (`optimizer.*`, `training.*`, `runtime.jit_compile`).
        optimizer: an optimizer to keep (a recompile after (un)freezing layers keeps its
            state); None: a new one from `cfg.optimizer`, built over the variables trainable
            now (freeze layers first: a later build cannot add variables).

    Returns:
        `model`, compiled.
    """
    from keras_googlenet.data.batch_augment import soft_labels

    check_resolved_runtime(cfg)
    heads = [name for name in OUTPUT_NAMES if name in model.output_names]
    smoothing = cfg.training.label_smoothing
    soft = soft_labels(cfg.data.batch_augment)
    m = keras.metrics

    def loss():
        if soft:
            return keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
        if smoothing:
            return SparseCategoricalCrossentropyWithSmoothing(smoothing)
        return keras.losses.SparseCategoricalCrossentropy()

    num_classes = model.get_layer("main").output.shape[-1]
    accuracy = m.CategoricalAccuracy if soft else m.SparseCategoricalAccuracy
    top_k = m.TopKCategoricalAccuracy if soft else m.SparseTopKCategoricalAccuracy
    metrics = {
        "main": [
            accuracy(name="top1"),
            # With fewer than 5 classes top-5 is trivially 1; k is capped to stay valid.
            top_k(k=min(5, num_classes), name="top5"),
        ]
    }
    for head in heads[1:]:
        metrics[head] = [accuracy(name="accuracy")]
    model.compile(
        # Under mixed_float16: loss scaling whose skipped steps every replica agrees on.
        optimizer=with_loss_scaling(optimizer or make_optimizer(cfg.optimizer)),
        loss={head: loss() for head in heads},
        loss_weights={head: float(cfg.training.loss_weights.get(head, 0.0)) for head in heads},
        metrics=metrics,
        jit_compile=cfg.runtime.jit_compile,
        steps_per_execution=steps_per_execution(cfg.runtime.steps_per_execution),
    )
    _build_metrics(model, num_classes, soft)
    if optimizer is None:
        # Its slot variables now, over the variables trainable at this compile, for the same
        # reason as the metrics': created inside the first step's trace they make TensorFlow
        # trace the step twice, each variable behind an initializing `cond` (about 7 s more
        # for the first step of the gpu_check's one-device cells; bench/README.md).
        model.optimizer.build(model.trainable_variables)
    return model


def _build_metrics(model: keras.Model, num_classes: int, soft: bool) -> None:
    """Creates the compiled losses' and metrics' variables now, from one blank image.

    Without a distribution strategy Keras creates them inside the first training step's
    trace, and TensorFlow traces a function that created variables a second time: that second
    trace of the whole step was about 3 of the 10.5 seconds of the demo's first step (a 2-core
    AMX Xeon), paid by every start and every resume. Built here, once per compile (a phase
    switch recompiles), the step is traced once, and a resumed epoch's accumulators can be put
    back before its first step. The accumulators are reset after; `fit` resets them again.

    Args:
        model: the compiled model (in the strategy's scope, under the run's precision policy).
        num_classes: the heads' classes.
        soft: one-hot (soft) labels, else integer labels.
    """
    import numpy as np

    spec = model.inputs[0]
    images = np.zeros((1, *spec.shape[1:]), spec.dtype)
    label = np.zeros((1, num_classes), "float32") if soft else np.zeros((1,), "int32")
    labels = {name: label for name in model.output_names}
    outputs = model(images, training=False)
    model.compute_loss(images, labels, outputs)  # the per-head loss trackers
    model.compute_metrics(images, labels, outputs, sample_weight=None)
    model.reset_metrics()
