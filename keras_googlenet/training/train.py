"""Training: `keras-googlenet train --config NAME|FILE [--set KEY=VALUE ...] [--run-dir DIR]`.

One run of the three-output GoogLeNet in a run folder (`RunDir`) that holds the resolved
config, the log, checkpoints, the run state (backup/, see state.py), TensorBoard logs,
history.csv and PNG plots. Run the same command again after a crash or a stop and it continues
from the saved state, at the step it stopped; on a finished run it says so and exits 0;
`--restart` starts afresh in a new folder (NAME-2, ...).

`train()` reads top to bottom: the folder, the saved state, the plan (every number decided
once, plan.py), the model and its state restored, then one `fit` per segment (the rest of an
interrupted epoch, then each fine-tuning phase) with the callback list of callbacks.py.

Metric names (history.csv columns, TensorBoard tags `epoch_NAME` under train/ and validation/,
`val_` prefix for validation): `loss` (weighted sum), `main_loss`, `aux_4a_loss`, `aux_4d_loss`,
`main_top1`, `main_top5`, `aux_4a_accuracy`, `aux_4d_accuracy`, plus `learning_rate` and
`images_per_second` (training steps only) per epoch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import sys
import warnings
from functools import partial
from pathlib import Path

import keras

from keras_googlenet import CPU_KERNELS
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
from keras_googlenet.training import state as run_state
from keras_googlenet.training.compile import build_model, compile_model
from keras_googlenet.training.plan import Plan, Segment, make_plan
from keras_googlenet.training.precision import precision_policy
from keras_googlenet.training.run_dir import (
    RunDir,
    resolve_run_dir,
    restart_number,
    write_dataset_facts,
)
from keras_googlenet.training.run_dir import (
    run_state as folder_status,
)
from keras_googlenet.training.strategy import (
    is_chief,
    is_multi_worker,
    make_strategy,
    num_workers,
    stop_on_lost_worker,
    task_name,
    worker_sum,
)

log = logging.getLogger("keras_googlenet")


def train(
    cfg: Config,
    run_dir: str | Path | None = None,
    *,
    restart: bool = False,
    datasets=None,
    callbacks=None,
) -> dict:
    """Trains GoogLeNet as `cfg` says, in a run folder; resumes an interrupted run.

    Args:
        cfg: the resolved config.
        run_dir: the run folder (default: `paths.run_dir`, else `paths.runs_dir/project_name`).
        restart: start afresh in a new folder (NAME-2, ...) if the folder is already used.
        datasets: optional `(train_ds, val_ds, info)` to train on instead of `data.input_dir`
            (batched `(images, {"main": y, "aux_4a": y, "aux_4d": y})` datasets, one epoch
            each; `info` with `class_names`, `mean_rgb`, `train_size`, `val_size`).
        callbacks: more Keras callbacks for every `fit`, after the run's own.

    Returns:
        `{"run_dir", "status" ("finished" or "already_done"), "epochs", "initial_epoch",
        "epochs_run", "stopped_early", "metrics" (the last epoch's row), "best_val_main_top1",
        "precision", "strategy", "global_batch_size"}`.

    Raises:
        UserError: bad data, a folder started with another config or damaged beyond repair
            (`resume.resume_point`), a loss that became NaN, out of memory; `preemption.
            Preempted` after SIGTERM/SIGINT (exit 143/130); a lost worker of a multi-worker
            run (exit 75, `strategy.stop_on_lost_worker`).
    """
    if datasets is None:
        require(cfg, "data.input_dir")
    # Model keys left null: the imported file's values, or the paper's.
    cfg = finetune.adopt_convention(cfg)
    # The strategy first: a multi-worker strategy must be set up before other TensorFlow work.
    strategy = make_strategy(cfg.runtime)
    chief = is_chief(strategy)
    with stop_on_lost_worker(strategy):
        run, own, cfg, status = _open_run_folder(cfg, run_dir, restart, strategy, chief)
    if status == "done":
        return _already_done(run, cfg)
    with (
        run_logging(own.logfile(cfg.logging.logfile), cfg.logging.level),
        stop_on_lost_worker(strategy),
    ):
        point = resume.resume_point(run, own, chief)
        if cfg.training.seed is not None:
            keras.utils.set_random_seed(cfg.training.seed)
        data = _Data(cfg, strategy, datasets, point.state)
        plan = _plan(cfg, strategy, data)
        with precision_policy(plan.precision), _user_errors(cfg, plan, data):
            if chief:
                write_dataset_facts(run, data.info)
            phase = finetune.phase_at(cfg, point.epoch)
            new = point.state is None and not point.from_last
            model, ema = _build_compiled_model(cfg, data, strategy, phase, new=new)
            # compile_model built the metrics: a resumed epoch's accumulators go back in.
            state, metrics = _restore(model, ema, point, plan, cfg, run, own)
            _log_start(run, cfg, plan, state, point)
            if chief:
                _drop_unsaved_outputs(run, state.epoch)
                if state.epoch == 0:
                    _write_tensorboard_extras(model, run, data.sample_fn, cfg)
            stop_together = partial(worker_sum, strategy) if is_multi_worker(strategy) else None
            finished = state.epoch
            for segment in plan.segments(state.epoch, state.step):
                if segment.phase != phase:
                    with strategy.scope():
                        finetune.enter_phase(model, cfg, segment.phase)
                    phase = segment.phase
                keeper = run_state.StateKeeper(
                    own.backup,
                    state,
                    first_step=segment.first_step,
                    every=plan.backup_every,
                    ema=ema,
                    next_phase=lambda epoch: finetune.phase_at(cfg, epoch).number,
                    metrics=metrics if segment.first_step else None,
                )
                fit_callbacks = cb.run_callbacks(
                    cfg, plan, run, own, keeper, chief=chief, ema=ema, stop_together=stop_together
                )
                _fit(model, plan, data, segment, fit_callbacks + list(callbacks or []))
                finished = early_stopping.epochs_done(
                    fit_callbacks, segment.end_epoch, segment.first_epoch
                )
                if finished < segment.end_epoch:  # early stopping ended the run
                    break
        rows = _finish(run, own, cfg, chief, state, stopped_early=finished < cfg.training.epochs)
    return {
        "run_dir": str(run.root),
        "epochs": cfg.training.epochs,
        "status": "finished",
        "initial_epoch": point.epoch,
        "epochs_run": finished - point.epoch,
        "stopped_early": finished < cfg.training.epochs,
        "metrics": rows[-1] if rows else {},
        "best_val_main_top1": history.best_so_far(rows),
        "precision": plan.precision,
        "strategy": plan.strategy.split(" with ")[0],
        "global_batch_size": plan.global_batch,
    }


class _Data:
    """The run's data: what `info` says of it, the cache decision, and the datasets of each
    segment's `fit` (the training stream starts where the segment does)."""

    def __init__(self, cfg: Config, strategy, datasets, saved):
        self.cfg, self.strategy = cfg, strategy
        table = Path(cfg.paths.run_dir) / class_weights.TABLE if is_chief(strategy) else None
        if datasets is not None:
            self.given, self.val, self.info = datasets
            self.weights = class_weights.for_run(cfg, self.info, table)
            self.cached = False
            self.sample_fn = lambda: next(iter(self.given.take(1)))
            steps = int(self.given.cardinality())
            self.given_steps = steps if steps > 0 else None
            return
        from keras_googlenet.data import pipeline
        from keras_googlenet.data.batch_augment import one_hot_labels, soft_labels
        from keras_googlenet.data.dataset_info import read_dataset_info

        self.given = None
        self.info = info = read_dataset_info(cfg)
        self.weights = class_weights.for_run(cfg, info, table)
        self.cached = self._cache_decision(saved)
        soft = soft_labels(cfg.data.batch_augment)

        def val_dataset(ctx):
            ds = pipeline.make_val_dataset(cfg, info, input_context=ctx)
            return one_hot_labels(ds, len(info.class_names)) if soft else ds

        self.val = pipeline.distribute_for_fit(strategy, val_dataset)
        # One batch for TensorBoard's image grid: without the cache, which would first decode a
        # shuffle buffer's worth of images (10,000 by default) and then be thrown away.
        self.sample_fn = lambda: next(
            iter(pipeline.make_train_dataset(cfg, info, cached=False, passes=1))
        )

    def _cache_decision(self, saved) -> bool:
        from keras_googlenet.data.cache import use_cache

        cfg = self.cfg
        if saved is not None and saved.cached is not None and cfg.data.cache == "auto":
            # The order differs between the two ways: a resumed run keeps its own.
            log.info("data.cache auto: %s, as the run started", "on" if saved.cached else "off")
            return saved.cached
        cached = use_cache(cfg, self.info.train_files, num_workers(self.strategy))
        if is_multi_worker(self.strategy):
            # Cached or not, the files are sharded differently: every worker must go the same way.
            agreed = worker_sum(self.strategy, [float(not cached)])[0] == 0
            if agreed != cached:
                log.info("data.cache auto: off: another worker has too little memory for it")
            cached = agreed
        return cached

    def train(self, plan: Plan, segment: Segment):
        """The training data of `segment`'s fit: the stream from its first step."""
        if self.given is not None:
            ds = self.given.skip(segment.first_step) if segment.first_step else self.given
            return class_weights.with_class_weights(ds, self.weights)
        from keras_googlenet.data import pipeline

        start, passes = plan.stream(segment)

        def train_dataset(ctx):
            ds = pipeline.make_train_dataset(
                self.cfg,
                self.info,
                input_context=ctx,
                cached=self.cached,
                start_step=start,
                passes=passes,
            )
            return class_weights.with_class_weights(ds, self.weights)

        return pipeline.distribute_for_fit(self.strategy, train_dataset)


def _plan(cfg: Config, strategy, data: _Data) -> Plan:
    """The plan, with the precision policy chosen (and logged) once."""
    from keras_googlenet.training.precision import choose_policy

    policy, why = choose_policy(cfg.runtime.precision)
    plan = make_plan(
        cfg,
        strategy,
        data.info,
        precision=policy,
        cached=data.cached,
        given_datasets=data.given is not None,
        given_steps=getattr(data, "given_steps", None),
    )
    for line in plan.describe():
        log.info("%s", line)
    log.info("precision: %s (%s)", policy, why)
    log.info("CPU kernels: %s", CPU_KERNELS)
    return plan


def _build_compiled_model(cfg: Config, data: _Data, strategy, phase, *, new: bool):
    """(the compiled training model, its EMA or None), built in the strategy's scope with the
    optimizer's state; imported weights loaded (a new run) and layers frozen as `phase` says."""
    from keras_googlenet.training.ema import ExponentialMovingAverage
    from keras_googlenet.training.keras_compat import patch_keras_for_multi_worker

    info = data.info
    log.info(
        "data: %d classes, %d training and %d validation images",
        len(info.class_names),
        info.train_size,
        info.val_size,
    )
    phases = finetune.phases(cfg)
    with strategy.scope():
        model = build_model(cfg, info)
        if cfg.training.init_weights and new:  # a resume restores its own
            finetune.load_init_weights(model, cfg)
        # Frozen as the last phase trains before compiling: the optimizer is built there, in
        # the scope (so the state can restore it), over every variable the last phase trains,
        # so it keeps one layout across phases.
        finetune.freeze(model, phases[-1].freeze_until)
        model = compile_model(model, cfg)
        ema = None
        if cfg.optimizer.ema:  # in the scope: mirrored like the weights; over the same set
            ema = ExponentialMovingAverage(model, cfg.optimizer.ema_momentum)
        if len(phases) > 1:  # freeze for the phase to train first, recompile
            finetune.enter_phase(model, cfg, phase)
    if is_multi_worker(strategy):
        patch_keras_for_multi_worker(model, data.sample_fn())
    log.info("model: %s, %s parameters", model.name, f"{model.count_params():,}")
    if log.isEnabledFor(logging.DEBUG):
        from keras_googlenet.model.summary import format_summary

        log.debug("layer output sizes:\n%s", format_summary(model))
    return model, ema


def _restore(model, ema, point, plan: Plan, cfg: Config, run: RunDir, own: RunDir):
    """(the run state to go on from, the epoch's metric accumulators or None), with `model`
    and `ema` restored: from the state file, from last.keras (a lost state), or new."""
    metrics = None
    if point.state is not None:
        state, metrics = run_state.restore(model, own.backup, ema)
        if state.step and state.steps_per_epoch != plan.steps_per_epoch:
            log.warning(
                "the run state was %d steps into epoch %d of %d steps, but an epoch now has "
                "%s steps (the dataset changed?): epoch %d starts again from its first step",
                state.step,
                state.epoch + 1,
                state.steps_per_epoch,
                plan.steps_per_epoch,
                state.epoch + 1,
            )
            state.step, metrics = 0, None
    elif point.from_last:
        model.load_weights(run.last)  # its weights (the averages, with EMA) and optimizer state
        if ema is not None:
            ema.set_averages(None)
        phase = finetune.phase_at(cfg, point.epoch).number
        state = resume.recovered_state(cfg, run, point.epoch, phase)
    else:
        state = run_state.RunState(cached=plan.cached)
    state.steps_per_epoch = plan.steps_per_epoch or 0
    state.cached = plan.cached
    if point.from_last:  # the next start finds a state file again
        run_state.save(model, own.backup, state, ema)
    return state, metrics


def _log_start(run: RunDir, cfg: Config, plan: Plan, state, point) -> None:
    if point.state is None and not point.from_last:
        log.info("run folder %s: new run", run.root)
        return
    where = f" from {run.last}" if point.from_last else ""
    if state.step:
        where += f", {state.step} of {plan.steps_per_epoch} steps into epoch {state.epoch + 1}"
    log.info(
        "run folder %s: resuming after epoch %d of %d (step %d)%s",
        run.root,
        state.epoch,
        cfg.training.epochs,
        state.stream_step,
        where,
    )


@contextlib.contextmanager
def _user_errors(cfg: Config, plan: Plan, data: _Data):
    """Turns what a user's data or batch size makes TensorFlow raise into one line."""
    import tensorflow as tf

    try:
        yield
    except (tf.errors.ResourceExhaustedError, MemoryError) as e:
        first = (getattr(e, "message", None) or str(e) or type(e).__name__).splitlines()[0]
        raise UserError(
            f"out of memory at data.batch_size {cfg.data.batch_size} ({plan.per_replica_batch} "
            f"images per replica, {plan.input_size} px): lower data.batch_size "
            f"({first[:160]})",
            exit_code=1,
        ) from None
    except tf.errors.InvalidArgumentError as e:
        if cfg.data.on_bad_image != "fail" or data.given is not None:
            raise
        bad = _first_undecodable(data.info.train_files + data.info.val_files)
        which = f"{bad}: cannot be decoded" if bad else "an image could not be decoded"
        raise UserError(
            f"{which} ({e.message.splitlines()[0][:160]}); data.on_bad_image is fail: fix or "
            "remove the file, or set data.on_bad_image: skip",
            exit_code=1,
        ) from None


def _first_undecodable(paths) -> str | None:
    """The first of `paths` TensorFlow's decoder refuses (the error names no file)."""
    import tensorflow as tf

    from keras_googlenet.data.decode import decode_rgb

    log.info("looking for the image that failed to decode among %d files", len(paths))
    for path in paths:
        try:
            decode_rgb(tf.io.read_file(path))
        except tf.errors.InvalidArgumentError:
            return path
    return None


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
    state = folder_status(run, cfg) if chief else ("done" if run.done.exists() else "resume")
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


def _drop_unsaved_outputs(run: RunDir, epochs: int) -> None:
    """Removes what a process that died after its last saved state wrote (history rows and
    TensorBoard summaries of epochs >= `epochs`, a damaged best.keras), so every epoch appears
    once."""
    resume.drop_damaged_best(run)
    dropped = history.truncate_history(run.history, epochs)
    purged = tensorboard.purge_events(run.tensorboard, epochs)
    if dropped or (purged and epochs):
        log.info(
            "dropped what was written after the saved state (epoch %d on): %d history row(s), "
            "%d TensorBoard summaries",
            epochs + 1,
            dropped,
            purged,
        )


def _fit(model, plan: Plan, data: _Data, segment: Segment, callbacks) -> None:
    """One `model.fit` over `segment`."""
    # The validation set is one finite pass; Keras warns each time it ends (and at the end
    # of a handed-over training set of unknown length).
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    model.fit(
        data.train(plan, segment),
        epochs=segment.end_epoch,
        initial_epoch=segment.first_epoch,
        steps_per_epoch=segment.fit_steps,
        validation_data=data.val,
        validation_steps=plan.validation_steps,
        callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles
        verbose=1 if sys.stdout.isatty() else 0,
    )


def _finish(
    run: RunDir, own: RunDir, cfg: Config, chief: bool, state, stopped_early: bool = False
) -> list[dict]:
    """Checks every epoch ran (unless early stopping ended the run), then plots, marks the run
    DONE and drops the run state.

    Returns:
        The history rows (chief), else [].

    Raises:
        UserError: training ended before its last epoch for no known reason.
    """
    epochs, finished = cfg.training.epochs, state.epoch
    if finished < epochs and not stopped_early:
        raise UserError(f"training stopped after epoch {finished} of {epochs}", exit_code=1)
    if not chief:
        shutil.rmtree(own.backup, ignore_errors=True)
        return []
    from keras_googlenet.training.plots import plot_history

    try:
        plot_history(run.history, run.plots)
    except Exception as e:  # pictures are a nicety: a run that trained must still finish
        log.warning("could not draw the training curves in %s: %s", run.plots, e)
    run.done.write_text(
        f"{finished} epochs (stopped early)\n" if stopped_early else f"{epochs} epochs\n"
    )
    # The state is only for resuming; DONE now answers a restart, and last.keras holds the
    # same weights.
    shutil.rmtree(run.backup, ignore_errors=True)
    log.info("finished %d epochs; run folder %s", finished, run.root)
    return history.read_history(run.history)


def _grid_images(sample_fn):
    import numpy as np

    images = np.asarray(sample_fn()[0])
    if images.dtype != np.uint8 and images.size and images.max() <= 1.0:
        images = images * 255.0  # a pipeline that ships [0, 1] pixels
    return images


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
