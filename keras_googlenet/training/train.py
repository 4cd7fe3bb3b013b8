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
import shutil
import sys
import warnings
from functools import partial
from pathlib import Path

import keras

from keras_googlenet.config import Config, apply_overrides, load_config, require, save_config
from keras_googlenet.errors import UserError
from keras_googlenet.logs import run_logging
from keras_googlenet.training import callbacks as cb
from keras_googlenet.training import (
    class_weights,
    early_stopping,
    finetune,
    history,
    resume,
    tensorboard,
)
from keras_googlenet.training.compile import build_model, compile_model
from keras_googlenet.training.precision import precision_policy
from keras_googlenet.training.run_dir import (
    RunDir,
    resolve_run_dir,
    restart_number,
    run_state,
    write_dataset_facts,
)
from keras_googlenet.training.strategy import (
    describe,
    is_chief,
    is_multi_worker,
    make_strategy,
    num_workers,
    patch_keras_for_multi_worker,
    stop_on_lost_worker,
    task_name,
    worker_sum,
)

log = logging.getLogger("keras_googlenet")


def _datasets(cfg: Config, strategy, datasets):
    """(train data, val data, info, a function giving one local training batch, validation
    steps or None) for `fit`.

    With `training.class_weight` the training batches carry per-image weights; with MixUp or
    CutMix the validation labels are one-hot, like the training ones.
    """
    from keras_googlenet.data.batch_augment import one_hot_labels, soft_labels

    table = Path(cfg.paths.run_dir) / class_weights.TABLE if is_chief(strategy) else None
    if datasets is not None:
        train_ds, val_ds, info = datasets
        weights = class_weights.for_run(cfg, info, table)
        sample_fn = lambda: next(iter(train_ds.take(1)))  # noqa: E731
        return class_weights.with_class_weights(train_ds, weights), val_ds, info, sample_fn, None
    from keras_googlenet.data import pipeline as data
    from keras_googlenet.data.cache import use_cache
    from keras_googlenet.data.dataset_info import read_dataset_info

    info = read_dataset_info(cfg)
    weights = class_weights.for_run(cfg, info, table)
    cached = use_cache(cfg, info.train_files, num_workers(strategy))
    if is_multi_worker(strategy):
        # Cached or not, the files are sharded differently: every worker must go the same way.
        agreed = worker_sum(strategy, [float(not cached)])[0] == 0
        if agreed != cached:
            log.info("data.cache auto: off: another worker has too little memory for it")
        cached = agreed

    def train_dataset(ctx):
        ds = data.make_train_dataset(cfg, info, input_context=ctx, cached=cached)
        return class_weights.with_class_weights(ds, weights)

    def val_dataset(ctx):
        ds = data.make_val_dataset(cfg, info, input_context=ctx)
        soft = soft_labels(cfg.data.batch_augment)
        return one_hot_labels(ds, len(info.class_names)) if soft else ds

    train_data = data.distribute_for_fit(strategy, train_dataset)
    val_data = data.distribute_for_fit(strategy, val_dataset)
    # Keras must be told the validation steps: see `val_layout`.
    replicas = strategy.num_replicas_in_sync
    per_replica = data.global_batch_size(cfg, replicas) // replicas
    val_steps = data.val_layout(info.val_size, replicas, per_replica).steps
    # One batch for TensorBoard's image grid: without the cache, which would first decode a
    # shuffle buffer's worth of images (10,000 by default) and then be thrown away.
    sample_fn = lambda: next(iter(data.make_train_dataset(cfg, info, cached=False)))  # noqa: E731
    return train_data, val_data, info, sample_fn, val_steps


def _grid_images(sample_fn):
    import numpy as np

    images = np.asarray(sample_fn()[0])
    if images.dtype != np.uint8 and images.size and images.max() <= 1.0:
        images = images * 255.0  # a pipeline that ships [0, 1] pixels
    return images


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
        "epochs_run", "stopped_early", "metrics" (the last epoch's row), "best_val_main_top1",
        "precision", "strategy", "global_batch_size"}`.

    Raises:
        UserError: bad data, a folder started with another config or damaged beyond repair
            (`resume.resume_point`), a loss that became NaN; `preemption.Preempted` after
            SIGTERM/SIGINT (exit 143/130); a lost worker of a multi-worker run (exit 75,
            `strategy.stop_on_lost_worker`).
    """
    if datasets is None:
        require(cfg, "data.input_dir")
    # Model keys left null: the imported file's values, or the paper's.
    cfg = finetune.adopt_convention(cfg)
    # The strategy first: a multi-worker strategy must be set up before other TensorFlow work.
    strategy = make_strategy(cfg.runtime)
    chief = is_chief(strategy)
    with stop_on_lost_worker(strategy):
        run, own, cfg, state = _open_run_folder(cfg, run_dir, restart, strategy, chief)
    if state == "done":
        return _already_done(run, cfg)
    with (
        run_logging(own.logfile(cfg.logging.logfile), cfg.logging.level),
        stop_on_lost_worker(strategy),
    ):
        point = _resume_point(own, run, cfg, chief)
        initial_epoch = point.epoch
        global_batch, policy = _setup_numbers(cfg, strategy)
        with precision_policy(policy):
            train_data, val_data, info, sample_fn, val_steps = _datasets(cfg, strategy, datasets)
            if chief:
                write_dataset_facts(run, info)
            model = _build_compiled_model(cfg, info, strategy, sample_fn, initial_epoch)
            if point.from_last:  # a damaged backup: the one fit restores is rebuilt first
                resume.rebuild_backup_from_last(model, run, own, initial_epoch)
            best = _drop_interrupted_epoch(run, initial_epoch) if chief else None
            if chief and initial_epoch == 0:
                _write_tensorboard_extras(model, run, sample_fn, cfg)
            stop_together = partial(worker_sum, strategy) if is_multi_worker(strategy) else None
            phases = _phases_to_train(model, cfg, run, strategy, chief, initial_epoch, best)
            finished = cfg.training.epochs
            for start, end, best_so_far in phases:
                callbacks = cb.run_callbacks(
                    cfg,
                    run,
                    own,
                    chief=chief,
                    initial_epoch=start,
                    best=best_so_far,
                    global_batch=global_batch,
                    stop_together=stop_together,
                )
                _fit(model, cfg, train_data, (val_data, val_steps), callbacks, start, end)
                finished = early_stopping.epochs_done(callbacks, end, start)
                if finished < end:  # early stopping ended the run, whatever phase is left
                    break
        rows = _finish(run, own, cfg, chief, stopped_early=finished < cfg.training.epochs)
    return {
        "run_dir": str(run.root),
        "epochs": cfg.training.epochs,
        "status": "finished",
        "initial_epoch": initial_epoch,
        "epochs_run": finished - initial_epoch,
        "stopped_early": finished < cfg.training.epochs,
        "metrics": rows[-1] if rows else {},
        "best_val_main_top1": history.best_so_far(rows),
        "precision": policy,
        "strategy": describe(strategy).split(" with ")[0],
        "global_batch_size": global_batch,
    }


def _open_run_folder(cfg: Config, run_dir, restart: bool, strategy, chief: bool):
    """(run folder, this worker's own folder, cfg with paths.run_dir, `new`/`resume`/`done`).

    The chief checks the folder against the config and saves the config in a new run; other
    workers (multi-worker only) keep their backup and log apart, under `workers/`.
    """
    number = None
    if restart and is_multi_worker(strategy):
        # The chief picks the new folder; the others learn its number (an all-reduce of it).
        mine = restart_number(resolve_run_dir(cfg, run_dir)) if chief else 0
        number = round(worker_sum(strategy, [mine])[0])
    run = RunDir(resolve_run_dir(cfg, run_dir, restart=restart, number=number))
    cfg = apply_overrides(cfg, {"paths.run_dir": str(run.root)})
    state = run_state(run, cfg) if chief else ("done" if run.done.exists() else "resume")
    if state == "done":
        return run, run, cfg, state
    own = run if chief else RunDir(run.root / "workers" / task_name(strategy))
    own.root.mkdir(parents=True, exist_ok=True)
    if chief and state == "new":
        save_config(cfg, run.config)
    return run, own, cfg, state


def _already_done(run: RunDir, cfg: Config) -> dict:
    epochs = cfg.training.epochs
    print(
        f"{run.root}: this run already finished its {epochs} epochs (DONE is there); "
        "nothing to do. Add --restart to train again in a new folder.",
        file=sys.stderr,
    )
    rows = history.read_history(run.history)
    return {
        "run_dir": str(run.root),
        "epochs": epochs,
        "status": "already_done",
        "metrics": rows[-1] if rows else {},
    }


def _resume_point(own: RunDir, run: RunDir, cfg: Config, chief: bool) -> resume.ResumePoint:
    """Where to start: the backup's epoch, else after the epochs history.csv lists (from
    last.keras), else 0; a damaged run folder is checked here (`resume.resume_point`)."""
    point = resume.resume_point(run, own, chief)
    saved = cb.read_backup_state(own.backup) or {}
    if saved or point.from_last:
        where = f" (step {saved['step']})" if saved else f" from {run.last}"
        state = f"resuming after epoch {point.epoch} of {cfg.training.epochs}{where}"
    else:
        state = "new run"
    log.info("run folder %s: %s", run.root, state)
    return point


def _setup_numbers(cfg: Config, strategy) -> tuple[int, str]:
    """(global batch size, precision policy), both logged; seeds the run."""
    from keras_googlenet.data.pipeline import global_batch_size
    from keras_googlenet.training.precision import choose_policy

    replicas = strategy.num_replicas_in_sync
    global_batch = global_batch_size(cfg, replicas)
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
    return global_batch, policy


def _build_compiled_model(cfg: Config, info, strategy, sample_fn, initial_epoch: int):
    """The compiled training model, built in the strategy's scope with its optimizer state;
    imported weights loaded (a new run) and layers frozen as the phase of `initial_epoch`
    says."""
    import tensorflow as tf

    log.info(
        "data: %d classes, %d training and %d validation images",
        len(info.class_names),
        info.train_size,
        info.val_size,
    )
    with strategy.scope():
        model = build_model(cfg, info)
        if cfg.training.init_weights and not initial_epoch:  # a resume restores its own
            finetune.load_init_weights(model, cfg)
        # The optimizer is built now, in the scope, so the backup can restore its state, over
        # every variable the last phase trains, so it keeps one layout across phases.
        finetune.freeze(model, finetune.phases(cfg)[-1].freeze_until)
        model = compile_model(model, cfg)
        model.optimizer.build(model.trainable_variables)
        if len(finetune.phases(cfg)) > 1:  # freeze for the phase of initial_epoch, recompile
            finetune.enter_phase(model, cfg, finetune.phase_at(cfg, initial_epoch))
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        patch_keras_for_multi_worker(model, sample_fn())
    log.info("model: %s, %s parameters", model.name, f"{model.count_params():,}")
    if log.isEnabledFor(logging.DEBUG):
        from keras_googlenet.model.summary import format_summary

        log.debug("layer output sizes:\n%s", format_summary(model))
    return model


def _drop_interrupted_epoch(run: RunDir, initial_epoch: int) -> float | None:
    """Removes what an epoch cut short wrote (history rows, TensorBoard summaries), so a resumed
    run has no repeated steps; returns the best validation top-1 so far."""
    resume.drop_damaged_best(run)
    dropped = history.truncate_history(run.history, initial_epoch)
    purged = tensorboard.purge_events(run.tensorboard, initial_epoch)
    if dropped or (purged and initial_epoch):
        log.info(
            "dropped what the interrupted epoch %d had written: %d history row(s), "
            "%d TensorBoard summaries",
            initial_epoch + 1,
            dropped,
            purged,
        )
    return history.best_so_far(history.read_history(run.history))


def _phases_to_train(model, cfg: Config, run: RunDir, strategy, chief, initial_epoch, best):
    """Yields (first epoch, end epoch, best top-1 so far) of each fine-tuning phase still to
    train (one `fit` each), switching `model` to the phase before yielding it: a later phase
    starts as a run resumed at its first epoch would. One phase without training.finetune."""
    first = finetune.phase_at(cfg, initial_epoch)
    for phase in finetune.phases(cfg)[first.number - 1 :]:
        if phase != first:
            with strategy.scope():
                finetune.enter_phase(model, cfg, phase)
            if chief:
                best = history.best_so_far(history.read_history(run.history))
        yield max(initial_epoch, phase.start), phase.end, best


def _fit(
    model, cfg: Config, train_data, validation, callbacks, initial_epoch: int, epochs: int
) -> None:
    """`model.fit` from `initial_epoch` to `epochs`; `validation`: (dataset, steps or None)."""
    if initial_epoch >= epochs:
        return
    val_data, val_steps = validation
    # The validation set is one finite pass of unknown length (bad files are skipped); Keras
    # warns each time it ends. So is the training set without data.steps_per_epoch.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    model.fit(
        train_data,
        epochs=epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=cfg.data.steps_per_epoch,
        validation_data=val_data,
        validation_steps=cfg.data.validation_steps or val_steps,
        callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles
        verbose=1 if sys.stdout.isatty() else 0,
    )


def _finish(
    run: RunDir, own: RunDir, cfg: Config, chief: bool, stopped_early: bool = False
) -> list[dict]:
    """Checks every epoch ran (unless early stopping ended the run), then plots, marks the run
    DONE and drops the resume backup.

    Returns:
        The history rows (chief), else [].

    Raises:
        UserError: training stopped early (TerminateOnNaN).
    """
    epochs = cfg.training.epochs
    finished = (cb.read_backup_state(own.backup) or {}).get("epoch", 0)
    if finished < epochs and not stopped_early:
        raise UserError(
            f"training stopped after epoch {finished} of {epochs}: the loss became NaN or "
            "infinite (lower optimizer.lr, or check the data)",
            exit_code=1,
        )
    if not chief:
        shutil.rmtree(own.backup, ignore_errors=True)
        return []
    from keras_googlenet.training.plots import plot_history

    plot_history(run.history, run.plots)
    run.done.write_text(
        f"{finished} epochs (stopped early)\n" if stopped_early else f"{epochs} epochs\n"
    )
    # The backup is only for resuming; DONE now answers a restart, and last.keras holds the
    # same weights.
    shutil.rmtree(run.backup, ignore_errors=True)
    log.info("finished %d epochs; run folder %s", finished, run.root)
    return history.read_history(run.history)


def _write_tensorboard_extras(model, run: RunDir, sample_fn, cfg: Config) -> None:
    """The model graph, one grid of augmented training images and the HParams entry, once per
    run."""
    try:
        tensorboard.write_model_graph(model, run.tensorboard)
    except Exception as e:  # the graph is a nicety; never stop a run for it
        log.warning("could not write the model graph to TensorBoard: %s", e)
    try:
        tensorboard.write_image_grid(_grid_images(sample_fn), run.tensorboard)
    except Exception as e:
        log.warning("could not write the training image grid to TensorBoard: %s", e)
    if cfg.logging.hparams:
        from keras_googlenet.training.hparams import write_hparams

        try:
            write_hparams(cfg, run.tensorboard, run.root.name)
        except Exception as e:
            log.warning("could not write the hyper-parameters to TensorBoard: %s", e)


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
