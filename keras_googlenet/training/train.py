"""Training: `keras-googlenet train --config NAME|FILE [--set KEY=VALUE ...] [--run-dir DIR]`.

One `model.fit` over the three-output GoogLeNet, in a run folder (`RunDir`) that holds the
resolved config, the log, checkpoints, the resume backup, TensorBoard logs, history.csv and PNG
plots. Run the same command again after a crash and it continues from the last backup; on a
finished run it says so and exits 0; `--restart` starts afresh in a new folder (NAME-2, ...).

Metric names (history.csv columns, TensorBoard tags `epoch_NAME` under train/ and validation/,
`val_` prefix for validation): `loss` (weighted sum), `main_loss`, `aux_4a_loss`, `aux_4d_loss`,
`main_top1`, `main_top5`, `aux_4a_accuracy`, `aux_4d_accuracy`, plus `learning_rate` and
`images_per_second` (training steps only) per epoch.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import warnings
from pathlib import Path

import keras
import yaml

from keras_googlenet.config import Config, apply_overrides, load_config, require, save_config
from keras_googlenet.errors import UserError
from keras_googlenet.model.googlenet import build_googlenet
from keras_googlenet.model.table import MINUS_ONE_ONE, OUTPUT_NAMES
from keras_googlenet.training import callbacks as cb
from keras_googlenet.training import finetune
from keras_googlenet.training.run_dir import RunDir, write_dataset_facts

log = logging.getLogger("keras_googlenet")

KILL_ENV = "KERAS_GOOGLENET_TEST_KILL_AT_STEP"  # test hook, see callbacks.KillAtStep
# Batch norm scales/offsets and biases are not decayed (decay would only shrink them).
NO_DECAY = ["gamma", "beta", "bias"]


# --------------------------------------------------------------------------------------------
# Model, loss, optimizer.


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
    mean_rgb, std_rgb = info.mean_rgb, cfg.data.std_rgb
    if m.input_scaling == "minus_one_one":  # what ImageNet weights were trained on
        mean, std_rgb = MINUS_ONE_ONE
        mean_rgb = (mean,) * 3
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
        padding=m.padding,
        pool4_size=m.pool4_size,
    )


def make_optimizer(o) -> keras.optimizers.Optimizer:
    """The optimizer of an `OptimizerConfig`, with a float learning rate (see schedules.py)."""
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


def compile_model(model: keras.Model, cfg: Config) -> keras.Model:
    """Compiles `model` for training: optimizer, per-head losses, weights and metrics.

    Call inside the strategy's scope, after the precision policy is set (a `mixed_float16`
    model gets Keras's LossScaleOptimizer from `compile`).

    Metrics: `top1`/`top5` on `main`, `accuracy` on each auxiliary head; Keras prefixes them
    with the output name (`main_top1`, `aux_4a_accuracy`).

    Returns:
        `model`, compiled.
    """
    heads = [name for name in OUTPUT_NAMES if name in model.output_names]
    smoothing = cfg.training.label_smoothing

    def loss():
        if smoothing:
            return SparseCategoricalCrossentropyWithSmoothing(smoothing)
        return keras.losses.SparseCategoricalCrossentropy()

    num_classes = model.get_layer("main").output.shape[-1]
    metrics = {
        "main": [
            keras.metrics.SparseCategoricalAccuracy(name="top1"),
            # With fewer than 5 classes top-5 is trivially 1; k is capped to stay valid.
            keras.metrics.SparseTopKCategoricalAccuracy(k=min(5, num_classes), name="top5"),
        ]
    }
    for head in heads[1:]:
        metrics[head] = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model.compile(
        optimizer=make_optimizer(cfg.optimizer),
        loss={head: loss() for head in heads},
        loss_weights={head: float(cfg.training.loss_weights.get(head, 0.0)) for head in heads},
        metrics=metrics,
        jit_compile=cfg.runtime.jit_compile,
    )
    return model


# --------------------------------------------------------------------------------------------
# The run folder.


def resolve_run_dir(cfg: Config, run_dir=None, restart: bool = False) -> Path:
    """The run folder: `run_dir`, else `paths.run_dir`, else `paths.runs_dir/project_name`.

    With `restart`, an existing non-empty folder is left alone and the first free NAME-2,
    NAME-3, ... is used instead.
    """
    base = Path(run_dir or cfg.paths.run_dir or Path(cfg.paths.runs_dir) / cfg.project_name)
    if not restart or not _occupied(base):
        return base
    n = 2
    while _occupied(base.with_name(f"{base.name}-{n}")):
        n += 1
    return base.with_name(f"{base.name}-{n}")


def _occupied(path: Path) -> bool:
    # `workers/` alone is what multi-worker tasks other than the chief create.
    if not path.is_dir():
        return path.exists()
    return any(p.name != "workers" for p in path.iterdir())


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key not in ("loss_weights",):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(saved: dict, current: dict) -> list[str]:
    """Dotted keys whose values differ between two config dicts (`paths.*` ignored)."""
    a, b = _flatten(saved), _flatten(current)
    keys = sorted(set(a) | set(b))
    return [
        k
        for k in keys
        if not k.startswith("paths.") and a.get(k, "<absent>") != b.get(k, "<absent>")
    ]


def _trained(run: RunDir) -> bool:
    """Whether anything was trained in `run`: a history row, a backup or a checkpoint."""
    has_rows = run.history.is_file() and len(run.history.read_text().splitlines()) > 1
    has_backup = run.backup.is_dir() and any(run.backup.iterdir())
    return has_rows or has_backup or any(run.checkpoints.glob("*.keras"))


def run_state(run: RunDir, cfg: Config) -> str:
    """`new`, `resume` or `done` for run folder `run` and config `cfg`.

    Raises:
        UserError: the folder is not a run folder, or was started with a different config.
    """
    if not _occupied(run.root):
        return "new"
    if not run.config.is_file():
        raise UserError(
            f"{run.root}: not empty and has no config.yaml, so it is not a run folder; "
            "choose another --run-dir"
        )
    try:
        saved = yaml.safe_load(run.config.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"{run.config}: cannot read the run's config ({e})") from None
    differing = config_differences(saved, cfg.to_dict())
    if differing and not _trained(run):
        # A start that failed before its first epoch (a wrong data path, say) left only
        # config.yaml and a log: the corrected command takes the folder over.
        return "new"
    if differing:
        shown = ", ".join(differing[:8]) + (" ..." if len(differing) > 8 else "")
        raise UserError(
            f"{run.root} was started with a different config (differs in: {shown}); "
            "run with the same config to resume it, or add --restart to start a new run"
        )
    return "done" if run.done.exists() else "resume"


# --------------------------------------------------------------------------------------------
# Training.


def _datasets(cfg: Config, strategy, datasets):
    """(train data, val data, info, a function giving one local training batch) for `fit`."""
    if datasets is not None:
        train_ds, val_ds, info = datasets
        return train_ds, val_ds, info, (lambda: next(iter(train_ds.take(1))))
    from keras_googlenet.data import pipeline as data
    from keras_googlenet.data.dataset_info import read_dataset_info

    info = read_dataset_info(cfg)
    train_data = data.distribute_for_fit(
        strategy, lambda ctx: data.make_train_dataset(cfg, info, input_context=ctx)
    )
    val_data = data.distribute_for_fit(
        strategy, lambda ctx: data.make_val_dataset(cfg, info, input_context=ctx)
    )
    return train_data, val_data, info, (lambda: next(iter(data.make_train_dataset(cfg, info))))


def _grid_images(sample_fn):
    import numpy as np

    images = np.asarray(sample_fn()[0])
    if images.dtype != np.uint8 and images.size and images.max() <= 1.0:
        images = images * 255.0  # a pipeline that ships [0, 1] pixels
    return images


def _callbacks(cfg, run: RunDir, own: RunDir, *, chief, initial_epoch, best, global_batch):
    s, t = cfg.schedule, cfg.training
    from keras_googlenet.training import schedules

    callbacks = [
        schedules.lr_scheduler(s, cfg.optimizer.lr, t.epochs),
        cb.EpochStats(global_batch),
        keras.callbacks.TerminateOnNaN(),
    ]
    if chief:
        monitor = dict(monitor=schedules.MONITOR, mode="max")
        callbacks += [
            cb.AtomicModelCheckpoint(run.last),  # first: the two below link to it
            cb.AtomicModelCheckpoint(
                run.best,
                source=run.last,
                save_best_only=True,
                initial_value_threshold=best,
                **monitor,
            ),
            cb.AtomicModelCheckpoint(
                run.checkpoints / "epoch_{epoch:03d}.keras",
                source=run.last,
                every=t.checkpoint_interval,
            ),
            keras.callbacks.CSVLogger(str(run.history), append=True),
            cb.RunTensorBoard(run.tensorboard),
        ]
    callbacks.append(cb.EpochLogLine(t.epochs))
    if s.name == "plateau":
        plateau = schedules.PersistentReduceLROnPlateau(
            own.backup / "plateau.json",
            warmup_epochs=s.warmup_epochs,
            factor=s.factor,
            patience=s.patience,
            min_lr=s.min_lr,
        )
        if initial_epoch:
            plateau.restore(initial_epoch)
        callbacks.append(plateau)
    callbacks.append(cb.ResumableBackup(own.backup, save_freq=t.backup_every))
    if os.environ.get(KILL_ENV):
        callbacks.append(cb.KillAtStep(int(os.environ[KILL_ENV])))
    return callbacks


def train(
    cfg: Config, run_dir: str | Path | None = None, *, restart: bool = False, datasets=None
) -> dict:
    """Trains GoogLeNet as `cfg` says, in a run folder; resumes an interrupted run.

    Args:
        cfg: the resolved config.
        run_dir: the run folder (default: `paths.run_dir`, else `paths.runs_dir/project_name`).
        restart: start afresh in a new folder (NAME-2, ...) if the folder is already used.
        datasets: optional `(train_ds, val_ds, info)` to train on instead of `data.input_dir`
            (batched `(images, {"main": y, "aux_4a": y, "aux_4d": y})` datasets; `info` with
            `class_names`, `mean_rgb`, `train_size`, `val_size`).

    Returns:
        `{"run_dir", "status" ("finished" or "already_done"), "epochs", "initial_epoch",
        "epochs_run", "metrics" (the last epoch's row), "best_val_main_top1", "precision",
        "strategy", "global_batch_size"}`.

    Raises:
        UserError: bad data, a folder started with another config, a loss that became NaN.
    """
    import tensorflow as tf

    from keras_googlenet.data import pipeline as data
    from keras_googlenet.logs import run_logging
    from keras_googlenet.training.precision import choose_policy, precision_policy
    from keras_googlenet.training.strategy import (
        describe,
        is_chief,
        make_strategy,
        patch_keras_for_multi_worker,
        task_name,
    )

    if datasets is None:
        require(cfg, "data.input_dir")
    # The strategy first: a multi-worker strategy must be set up before other TensorFlow work.
    strategy = make_strategy(cfg.runtime)
    chief = is_chief(strategy)
    run = RunDir(resolve_run_dir(cfg, run_dir, restart=restart and chief))
    cfg = apply_overrides(cfg, {"paths.run_dir": str(run.root)})
    state = run_state(run, cfg) if chief else ("done" if run.done.exists() else "resume")
    epochs = cfg.training.epochs
    result = {"run_dir": str(run.root), "epochs": epochs}
    if state == "done":
        print(
            f"{run.root}: this run already finished its {epochs} epochs (DONE is there); "
            "nothing to do. Add --restart to train again in a new folder.",
            file=sys.stderr,
        )
        rows = cb.read_history(run.history)
        return {**result, "status": "already_done", "metrics": rows[-1] if rows else {}}
    # Workers other than the chief keep their backup and log apart (multi-worker only).
    own = run if chief else RunDir(run.root / "workers" / task_name(strategy))
    own.root.mkdir(parents=True, exist_ok=True)
    if chief and state == "new":
        save_config(cfg, run.config)

    with run_logging(own.logfile(cfg.logging.logfile), cfg.logging.level):
        backup = cb.read_backup_state(own.backup)
        initial_epoch = backup["epoch"] if backup else 0
        log.info(
            "run folder %s: %s",
            run.root,
            f"resuming after epoch {initial_epoch} of {epochs}" if backup else "new run",
        )
        replicas = strategy.num_replicas_in_sync
        global_batch = data.global_batch_size(cfg, replicas)
        log.info(
            "strategy: %s; batch size %d global, %d per replica",
            describe(strategy),
            global_batch,
            global_batch // replicas,
        )
        policy, why = choose_policy(cfg.runtime.precision)
        log.info("precision: %s (%s)", policy, why)
        if cfg.training.seed is not None:
            keras.utils.set_random_seed(cfg.training.seed)

        with precision_policy(policy):
            train_data, val_data, info, sample_fn = _datasets(cfg, strategy, datasets)
            log.info(
                "data: %d classes, %d training and %d validation images",
                len(info.class_names),
                info.train_size,
                info.val_size,
            )
            if chief:
                write_dataset_facts(run, info)
            with strategy.scope():
                model = build_model(cfg, info)
                if cfg.training.init_weights and not backup:  # a resume restores its own
                    finetune.load_init_weights(model, cfg)
                finetune.freeze(model, cfg.training.freeze_until)  # again on resume, before
                model = compile_model(model, cfg)  # compile fixes the trainable variables
                # Built now, in the scope, so the backup can restore the optimizer's state.
                model.optimizer.build(model.trainable_variables)
            if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
                patch_keras_for_multi_worker(model, sample_fn())
            log.info("model: %s, %s parameters", model.name, f"{model.count_params():,}")
            if log.isEnabledFor(logging.DEBUG):
                from keras_googlenet.model.googlenet import format_summary

                log.debug("layer output sizes:\n%s", format_summary(model))

            best = None
            if chief:
                dropped = cb.truncate_history(run.history, initial_epoch)
                purged = cb.purge_events(run.tensorboard, initial_epoch)
                if dropped or (purged and initial_epoch):
                    log.info(
                        "dropped what the interrupted epoch %d had written: %d history row(s), "
                        "%d TensorBoard summaries",
                        initial_epoch + 1,
                        dropped,
                        purged,
                    )
                best = cb.best_so_far(cb.read_history(run.history))
                if initial_epoch == 0:
                    _write_tensorboard_extras(model, run, sample_fn)

            callbacks = _callbacks(
                cfg,
                run,
                own,
                chief=chief,
                initial_epoch=initial_epoch,
                best=best,
                global_batch=global_batch,
            )
            if initial_epoch < epochs:
                # The validation set is one finite pass of unknown length (bad files are
                # skipped); Keras warns each time it ends. So is the training set without
                # data.steps_per_epoch.
                warnings.filterwarnings("ignore", message="Your input ran out of data")
                model.fit(
                    train_data,
                    epochs=epochs,
                    steps_per_epoch=cfg.data.steps_per_epoch,
                    validation_data=val_data,
                    validation_steps=cfg.data.validation_steps,
                    callbacks=callbacks,
                    shuffle=False,  # the pipeline shuffles
                    verbose=1 if sys.stdout.isatty() else 0,
                )
        finished = (cb.read_backup_state(own.backup) or {}).get("epoch", 0)
        if finished < epochs:
            raise UserError(
                f"training stopped after epoch {finished} of {epochs}: the loss became NaN or "
                "infinite (lower optimizer.lr, or check the data)",
                exit_code=1,
            )
        rows = cb.read_history(run.history) if chief else []
        if not chief:
            shutil.rmtree(own.backup, ignore_errors=True)
        if chief:
            from keras_googlenet.training.plots import plot_history

            plot_history(run.history, run.plots)
            run.done.write_text(f"{epochs} epochs\n")
            # The backup is only for resuming; DONE now answers a restart, and last.keras
            # holds the same weights.
            shutil.rmtree(run.backup, ignore_errors=True)
            log.info("finished %d epochs; run folder %s", epochs, run.root)
    return {
        **result,
        "status": "finished",
        "initial_epoch": initial_epoch,
        "epochs_run": epochs - initial_epoch,
        "metrics": rows[-1] if rows else {},
        "best_val_main_top1": cb.best_so_far(rows),
        "precision": policy,
        "strategy": describe(strategy).split(" with ")[0],
        "global_batch_size": global_batch,
    }


def _write_tensorboard_extras(model, run: RunDir, sample_fn) -> None:
    """The model graph and one grid of augmented training images, once per run."""
    try:
        cb.write_model_graph(model, run.tensorboard)
    except Exception as e:  # the graph is a nicety; never stop a run for it
        log.warning("could not write the model graph to TensorBoard: %s", e)
    try:
        cb.write_image_grid(_grid_images(sample_fn), run.tensorboard)
    except Exception as e:
        log.warning("could not write the training image grid to TensorBoard: %s", e)


def run(args) -> int:
    """Runs `keras-googlenet train`: train or resume, then print the final numbers."""
    cfg = load_config(args.config, args.overrides)
    result = train(cfg, args.run_dir, restart=args.restart)
    metrics = result.get("metrics") or {}
    if result["status"] == "finished" and "val_main_top1" in metrics:
        print(
            f"done: {result['run_dir']}  val_main_top1 {metrics['val_main_top1']:.4f}  "
            f"val_main_top5 {metrics.get('val_main_top5', math.nan):.4f}"
        )
    return 0
