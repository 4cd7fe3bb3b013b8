"""The plan of a run: every number training derives from the config and the strategy, decided
once in `train()` and handed down (the datasets, the callbacks and the fits read it, not `cfg`).

`segments` cuts the epochs still to train into `fit` calls: one per fine-tuning phase, and
first the rest of an epoch a stopped run was inside of (that `fit` runs only the epoch's
remaining steps, from the very batch the stopped process would have trained next).
"""

from __future__ import annotations

import dataclasses
import logging

from keras_googlenet.config import Config

log = logging.getLogger("keras_googlenet")


@dataclasses.dataclass(frozen=True)
class Segment:
    """One `fit`: epochs [first_epoch, end_epoch) in `phase`, starting `first_step` steps
    into `first_epoch` (0: at its start); `fit_steps`: the steps of its epochs for Keras."""

    phase: object  # finetune.Phase
    first_epoch: int
    end_epoch: int
    first_step: int
    fit_steps: int | None


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a run trains with.

    Attributes:
        strategy: the strategy in words (for the log and the result).
        replicas: replicas in sync, over all workers; `workers`: worker processes.
        global_batch, per_replica_batch: images per step, over all replicas and on one.
        steps_per_epoch: training steps of an epoch (None: a given dataset of unknown length).
        steps_per_pass: training steps of one pass over the files (None: a given dataset).
        validation_steps: validation steps (None: the given dataset's own length).
        input_size: the crop the model takes.
        heads: the model's outputs that get a loss; `soft_labels`: MixUp/CutMix one-hot labels.
        phases: the fine-tuning phases (`finetune.phases`).
        precision: the Keras dtype policy.
        cached: whether the training pipeline reads decoded images from memory.
        epochs: `training.epochs`.
        backup_every: save the run state every N steps too (None: at epoch ends only).
        agree_every: several workers agree on a stop signal every N steps (an all-reduce).
        given_datasets: `train()` was handed its datasets (the order is theirs).
    """

    strategy: str
    replicas: int
    workers: int
    global_batch: int
    per_replica_batch: int
    steps_per_epoch: int | None
    steps_per_pass: int | None
    validation_steps: int | None
    input_size: int
    heads: tuple[str, ...]
    soft_labels: bool
    phases: tuple
    precision: str
    cached: bool
    epochs: int
    backup_every: int | None
    agree_every: int
    given_datasets: bool = False

    def stream(self, segment: Segment) -> tuple[int, int]:
        """(the stream step `segment` starts at, the passes over the files it needs)."""
        from keras_googlenet.data.pipeline import passes_for

        start = segment.first_epoch * self.steps_per_epoch + segment.first_step
        steps = (segment.end_epoch - segment.first_epoch) * self.steps_per_epoch
        return start, passes_for(start, steps - segment.first_step, self.steps_per_pass)

    def segments(self, epoch: int, step: int) -> list[Segment]:
        """The fits that train from `step` steps into `epoch` to the last epoch."""
        out = []
        for phase in self.phases:
            first = max(epoch, phase.start)
            if first >= phase.end:
                continue
            first_step = step if first == epoch else 0
            if first_step:
                rest = None if self.given_datasets else self.steps_per_epoch - first_step
                out.append(Segment(phase, first, first + 1, first_step, rest))
                first += 1
            if first < phase.end:
                steps = None if self.given_datasets else self.steps_per_epoch
                out.append(Segment(phase, first, phase.end, 0, steps))
        return out

    def describe(self) -> list[str]:
        """The plan's log lines."""
        steps = "unknown" if self.steps_per_epoch is None else str(self.steps_per_epoch)
        return [
            f"strategy: {self.strategy}; batch size {self.global_batch} global, "
            f"{self.per_replica_batch} per replica",
            f"plan: {self.epochs} epochs of {steps} steps, {len(self.phases)} phase(s), "
            f"heads {', '.join(self.heads)}, {self.input_size} px crops"
            + (", soft labels" if self.soft_labels else "")
            + (", decoded images cached" if self.cached else ""),
        ]


def make_plan(
    cfg: Config,
    strategy,
    info,
    *,
    precision: str,
    cached: bool,
    given_datasets: bool = False,
    given_steps: int | None = None,
) -> Plan:
    """The plan of `cfg` under `strategy` for the data `info` describes.

    Args:
        precision: the policy `precision.choose_policy` chose.
        cached: the decoded-image cache decision (a resumed run keeps its own).
        given_datasets: `train()` was handed its datasets (`given_steps`: their batches per
            epoch, None when unknown).

    Raises:
        ConfigError: a batch the replicas cannot share, or larger than the training set.
    """
    import tensorflow as tf

    from keras_googlenet.data import pipeline as data
    from keras_googlenet.data.batch_augment import soft_labels
    from keras_googlenet.model.table import OUTPUT_NAMES
    from keras_googlenet.training import finetune
    from keras_googlenet.training.strategy import describe, num_workers

    replicas = strategy.num_replicas_in_sync
    workers = num_workers(strategy)
    global_batch = data.global_batch_size(cfg, replicas)
    per_replica = global_batch // replicas
    if given_datasets:
        steps, val_steps = cfg.data.steps_per_epoch or given_steps, cfg.data.validation_steps
        pass_steps = None
    else:
        ctx = None
        if replicas > 1:
            ctx = tf.distribute.InputContext(
                num_input_pipelines=workers, input_pipeline_id=0, num_replicas_in_sync=replicas
            )
        pass_steps = data.steps_per_pass(cfg, info, ctx, replicas)
        steps = cfg.data.steps_per_epoch or pass_steps
        # Keras must be told the validation steps: see `val_layout`.
        val_steps = cfg.data.validation_steps or (
            data.val_layout(info.val_size, replicas, per_replica).steps
        )
    backup = cfg.training.backup_every
    gpus = bool(tf.config.list_logical_devices("GPU"))
    return Plan(
        strategy=describe(strategy),
        replicas=replicas,
        workers=workers,
        global_batch=global_batch,
        per_replica_batch=per_replica,
        steps_per_epoch=steps,
        steps_per_pass=pass_steps,
        validation_steps=val_steps,
        input_size=cfg.model.input_size,
        heads=OUTPUT_NAMES if cfg.model.aux_heads else OUTPUT_NAMES[:1],
        soft_labels=soft_labels(cfg.data.batch_augment),
        phases=tuple(finetune.phases(cfg)),
        precision=precision,
        cached=bool(cached),
        epochs=cfg.training.epochs,
        backup_every=None if backup == "epoch" else int(backup),
        # An all-reduce and a wait for the device: every step is free on a CPU, not on GPUs.
        agree_every=10 if gpus else 1,
        given_datasets=given_datasets,
    )
