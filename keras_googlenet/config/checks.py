"""Value checks: settings of the right type that still cannot work, named by dotted key."""

from __future__ import annotations

import difflib

from keras_googlenet.config.schema import Config
from keras_googlenet.errors import ConfigError
from keras_googlenet.model.table import FREEZE_POINTS, METRIC_NAMES, OUTPUT_NAMES, min_input_size


def validate(config: Config, source: str) -> Config:
    """Checks values that have the right type but cannot work; returns `config`."""

    def bad(key, why):
        raise ConfigError(f"{source}: '{key}' {why}")

    m, p, d, o, s, t = (
        config.model,
        config.preprocess,
        config.data,
        config.optimizer,
        config.schedule,
        config.training,
    )
    if m.num_classes is not None and m.num_classes < 2:
        bad("model.num_classes", f"must be at least 2, got {m.num_classes}")
    smallest = min_input_size(m.aux_heads)
    if m.input_size < smallest:
        why = " with aux_heads on" if m.aux_heads else ""
        bad("model.input_size", f"must be at least {smallest}{why}, got {m.input_size}")
    if m.pool4_size not in (None, 2, 3):
        bad(
            "model.pool4_size",
            f"must be 3 (the paper) or 2 (torchvision, TF-slim), got {m.pool4_size}",
        )
    for key, rate in (("model.dropout", m.dropout), ("model.aux_dropout", m.aux_dropout)):
        if not 0 <= rate < 1:
            bad(key, f"must be in [0, 1), got {rate}")
    if not 0 < p.val_split < 1:
        bad("preprocess.val_split", f"must be between 0 and 1 (exclusive), got {p.val_split}")
    if p.size < 1:
        bad("preprocess.size", f"must be positive, got {p.size}")
    if p.workers is not None and p.workers < 1:
        bad("preprocess.workers", f"must be at least 1, got {p.workers}")
    if d.batch_size < 1:
        bad("data.batch_size", f"must be at least 1, got {d.batch_size}")
    if d.std_rgb <= 0:
        bad("data.std_rgb", f"must be positive, got {d.std_rgb}")
    for key in ("steps_per_epoch", "validation_steps"):
        value = getattr(d, key)
        if value is not None and value < 1:
            bad(f"data.{key}", f"must be at least 1 or null, got {value}")
    # The transform registry imports TensorFlow, so only here, when values are checked.
    from keras_googlenet.data.augment import check_data_config

    check_data_config(d, source)  # unknown transforms or parameters, named by list index
    from keras_googlenet.data.batch_augment import check_batch_augment

    check_batch_augment(d.batch_augment, source)
    if o.lr <= 0:
        bad("optimizer.lr", f"must be positive, got {o.lr}")
    if o.weight_decay < 0:
        bad("optimizer.weight_decay", f"must not be negative, got {o.weight_decay}")
    if not 0 <= o.momentum < 1:
        bad("optimizer.momentum", f"must be in [0, 1), got {o.momentum}")
    if not 0 < o.ema_momentum < 1:
        bad("optimizer.ema_momentum", f"must be between 0 and 1 (exclusive), got {o.ema_momentum}")
    if not 0 < s.factor < 1:
        bad("schedule.factor", f"must be between 0 and 1, got {s.factor}")
    for key in ("warmup_epochs", "patience"):
        if getattr(s, key) < 0:
            bad(f"schedule.{key}", f"must not be negative, got {getattr(s, key)}")
    if s.decay_every < 1:
        bad("schedule.decay_every", f"must be at least 1, got {s.decay_every}")
    if t.epochs < 1:
        bad("training.epochs", f"must be at least 1, got {t.epochs}")
    if t.checkpoint_interval < 1:
        bad("training.checkpoint_interval", f"must be at least 1, got {t.checkpoint_interval}")
    if isinstance(t.backup_every, int) and t.backup_every < 1:
        bad("training.backup_every", f"must be 'epoch' or at least 1, got {t.backup_every}")
    if not 0 <= t.label_smoothing < 1:
        bad("training.label_smoothing", f"must be in [0, 1), got {t.label_smoothing}")
    if t.freeze_until is not None and t.freeze_until not in FREEZE_POINTS:
        close = difflib.get_close_matches(str(t.freeze_until), FREEZE_POINTS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        bad("training.freeze_until", f"must be one of {', '.join(FREEZE_POINTS)}{hint}")
    if t.init_weights is not None and not t.init_weights.endswith(".weights.h5"):
        bad(
            "training.init_weights",
            f"must be a .weights.h5 file of import-weights, got {t.init_weights}",
        )
    f = t.finetune
    if f.head_epochs < 0:
        bad("training.finetune.head_epochs", f"must not be negative, got {f.head_epochs}")
    if f.head_epochs and t.freeze_until is None:
        bad("training.finetune.head_epochs", "needs training.freeze_until (what phase 1 freezes)")
    if f.head_epochs and f.head_epochs >= t.epochs:
        bad(
            "training.finetune.head_epochs",
            f"must be below training.epochs ({t.epochs}) to leave epochs for phase 2, "
            f"got {f.head_epochs}",
        )
    if not 0 < f.lr_factor <= 1:
        bad("training.finetune.lr_factor", f"must be in (0, 1], got {f.lr_factor}")
    spe = config.runtime.steps_per_execution
    if isinstance(spe, int) and spe < 1:
        bad(
            "runtime.steps_per_execution",
            f"must be 'auto' or at least 1, got {spe}",
        )
    for head, weight in t.loss_weights.items():
        if head not in OUTPUT_NAMES:
            close = difflib.get_close_matches(str(head), OUTPUT_NAMES, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            bad(f"training.loss_weights.{head}", f"is not an output of the model{hint}")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
            bad(f"training.loss_weights.{head}", f"must be a non-negative number, got {weight!r}")
    _check_training_control(t, config.logging, bad)
    r = config.runtime
    # What is known from the config alone: `auto` precision and strategy are resolved at the
    # start of a run, which checks the resolved values again (training/compile.py).
    kinds = [d.strip("/").split(":")[0].upper() for d in r.devices]
    why = runtime_refusal(r.precision, r.jit_compile, r.strategy, kinds)
    if why:
        raise ConfigError(f"{source}: {why}")
    return config


def runtime_refusal(policy: str, jit_compile: bool, strategy: str, device_kinds) -> str | None:
    """Why Keras/TensorFlow cannot train with this combination, naming the keys; None if it can.

    Args:
        policy: the precision policy (`auto` is not refused: it is checked once resolved).
        jit_compile: `runtime.jit_compile`.
        strategy: `runtime.strategy` (`mirrored`, `multi_worker`, ...).
        device_kinds: the strategy's device types (`CPU`, `GPU`), empty when unknown.

    Each refusal is a cell of bench/gpu_check.py's matrix, which runs it anyway and says
    whether it still fails.
    """
    if not jit_compile or strategy not in ("mirrored", "multi_worker"):
        return None
    if strategy == "mirrored" and "CPU" in device_kinds:
        # Measured: XLA's compiled step cannot use the mirrored variables of the other
        # (logical) CPU devices (InvalidArgumentError, every precision).
        return (
            "'runtime.jit_compile' true with 'runtime.strategy' mirrored over CPU devices "
            "('runtime.devices') fails in TensorFlow (XLA cannot use variables on another "
            "device); set runtime.jit_compile: false"
        )
    if policy == "mixed_float16":
        return (
            f"'runtime.jit_compile' true with 'runtime.precision' mixed_float16 under "
            f"'runtime.strategy' {strategy} fails in Keras's loss-scale optimizer (merge_call, "
            "keras-team/keras#18666, #21366); set runtime.jit_compile: false, or "
            "runtime.precision: mixed_bfloat16 (compute capability 8.0 and up)"
        )
    return None


def _check_training_control(t, logging, bad) -> None:
    """class_weight, early_stopping and the profiler's batch range."""
    cw = t.class_weight
    if isinstance(cw, str) and not cw.strip():
        bad("training.class_weight", "must be 'balanced', a mapping or a file, got ''")
    if isinstance(cw, dict):
        for key, weight in cw.items():
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
                bad(
                    f"training.class_weight.{key}", f"must be a non-negative number, got {weight!r}"
                )
    e = t.early_stopping
    if e.patience is not None and e.patience < 1:
        bad("training.early_stopping.patience", f"must be at least 1 or null, got {e.patience}")
    if e.monitor not in METRIC_NAMES:
        close = difflib.get_close_matches(e.monitor, METRIC_NAMES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        bad("training.early_stopping.monitor", f"is not a logged metric{hint}")
    if e.min_delta < 0:
        bad("training.early_stopping.min_delta", f"must not be negative, got {e.min_delta}")
    pb = logging.profile_batches
    if pb is not None:
        ok = len(pb) == 2 and all(isinstance(b, int) and not isinstance(b, bool) for b in pb)
        if not ok or not 1 <= pb[0] <= pb[1]:
            bad(
                "logging.profile_batches",
                f"must be [first, last] with 1 <= first <= last, got {pb}",
            )
