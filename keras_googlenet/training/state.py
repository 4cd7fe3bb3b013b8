"""The run state: everything a resume needs, in one file, with one owner (this module).

`backup/state.weights.h5` holds, in one atomic write (temporary file, fsync, rename, fsync of
the folder):

- the model's and the optimizer's variables, as `model.save_weights` writes them (weights,
  batch-norm statistics, momenta, the step count, the learning rate, and the loss scale of a
  `mixed_float16` run's LossScaleOptimizer);
- group `run_state`: the EMA averages (`ema/N`), the random-number states of the dropout
  layers (`seeds/N`: `save_weights` leaves them out, and without them a resumed run would draw
  other dropout masks), the epoch's metric accumulators when the save is mid-epoch
  (`metrics/N`), and the `RunState` fields below as JSON (attribute `state`).

Nothing else is read to resume. history.csv, the TensorBoard events and the checkpoints are
outputs derived from the training; `RunState.epoch` says how far they can be trusted (rows and
summaries of later epochs were written by a process that died before its next save, and are
dropped). The only other source is the recovery path of `resume.py`: when this file is lost,
checkpoints/last.keras and history.csv give the state back (`recovered_state`).

The file is written at each epoch's end (after every derived output of that epoch), every
`training.backup_every` steps, and when SIGTERM/SIGINT stops the run (`StateKeeper.save`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import keras
import numpy as np

from keras_googlenet import atomic

log = logging.getLogger("keras_googlenet")

STATE_FILE = "state.weights.h5"  # Keras's `load_weights` wants the .weights.h5 suffix
_GROUP = "run_state"


@dataclasses.dataclass
class RunState:
    """What a run has done, beyond its variables.

    Attributes:
        epoch: finished epochs (history.csv rows 0..epoch-1 are trusted).
        step: steps done into epoch `epoch` (0: the epoch has not started).
        steps_per_epoch: the steps of one epoch when the state was written (a resume with
            another batch size or data.steps_per_epoch cannot continue the same order).
        iterations: the optimizer's step count (skipped loss-scale steps are not counted).
        phase: the fine-tuning phase the next step trains in (1 or 2).
        best: the best validation top-1 of `main` so far (what best.keras holds), or None.
        plateau: ReduceLROnPlateau's counters (`wait`, `cooldown_counter`, `best`), or None.
        early_stopping: EarlyStopping's counters (`wait`, `best`), or None.
        loss_scale: the LossScaleOptimizer's scale (also among the saved variables), or None.
        cached: whether the training images came from the decoded cache (the order differs
            between the two ways, so a resume keeps the choice).
        keras: the Keras version that wrote the state.
    """

    epoch: int = 0
    step: int = 0
    steps_per_epoch: int = 0
    iterations: int = 0
    phase: int = 1
    best: float | None = None
    plateau: dict | None = None
    early_stopping: dict | None = None
    loss_scale: float | None = None
    cached: bool | None = None
    keras: str = ""

    @property
    def stream_step(self) -> int:
        """Steps of the training stream done: where the data pipeline resumes."""
        return self.epoch * self.steps_per_epoch + self.step

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunState:
        """Parses `to_json`'s output; raises ValueError on anything else."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("not a mapping")
        names = {f.name for f in dataclasses.fields(cls)}
        state = cls(**{k: v for k, v in raw.items() if k in names})
        for name in ("epoch", "step", "steps_per_epoch", "iterations", "phase"):
            if not isinstance(getattr(state, name), int) or getattr(state, name) < 0:
                raise ValueError(f"{name}: not a count")
        return state


def state_path(backup_dir: str | Path) -> Path:
    """The state file of a backup folder."""
    return Path(backup_dir) / STATE_FILE


# --------------------------------------------------------------------------------------------
# Reading.


def weights_file_problem(path: Path) -> str | None:
    """Why an `.weights.h5` file cannot be loaded (missing, truncated, not HDF5), or None."""
    import h5py

    if not path.is_file():
        return "missing"
    try:
        with h5py.File(path, "r") as f:
            # Reading every dataset finds a file cut short after its header.
            f.visititems(lambda _, item: item[()] if isinstance(item, h5py.Dataset) else None)
    except Exception as e:  # h5py raises OSError, KeyError, RuntimeError... for a bad file
        return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return None


def read_state(backup_dir: str | Path) -> RunState | None:
    """The saved `RunState` (fields only, no variables), or None when there is none or it is
    unreadable (`state_problem` says why)."""
    import h5py

    path = state_path(backup_dir)
    try:
        with h5py.File(path, "r") as f:
            return RunState.from_json(f[_GROUP].attrs["state"])
    except Exception:  # missing, not HDF5, cut short, no or bad JSON: all mean "no state"
        return None


def state_problem(backup_dir: str | Path) -> str | None:
    """Why the state file of `backup_dir` cannot be resumed from, or None (also when absent:
    check `state_path(...).exists()`)."""
    path = state_path(backup_dir)
    if not path.exists():
        return None
    reason = weights_file_problem(path)
    if reason:
        return f"{path}: {reason}"
    if read_state(backup_dir) is None:
        return f"{path}: no readable run state in it"
    return None


def restore(model, backup_dir: str | Path, ema=None) -> tuple[RunState, list | None]:
    """Loads the state file into `model` (and its optimizer, which must be built) and `ema`.

    Returns:
        (the state, the epoch's metric accumulators of a mid-epoch save or None).
    """
    import h5py

    path = state_path(backup_dir)
    model.load_weights(path)
    with h5py.File(path, "r") as f:
        group = f[_GROUP]
        state = RunState.from_json(group.attrs["state"])
        averages = _arrays(group, "ema")
        seeds = _arrays(group, "seeds")
        metrics = _arrays(group, "metrics") if "metrics" in group else None
    states = seed_states(model)
    if len(seeds) == len(states):
        for variable, value in zip(states, seeds, strict=True):
            variable.assign(value)
    if ema is not None:
        ema.set_averages(averages or None)
    return state, metrics


def _arrays(group, name: str) -> list[np.ndarray]:
    if name not in group:
        return []
    sub = group[name]
    return [np.asarray(sub[str(i)]) for i in range(len(sub))]


# --------------------------------------------------------------------------------------------
# Writing.


def save(model, backup_dir: str | Path, state: RunState, ema=None, metrics=None) -> Path:
    """Writes the state file atomically: the variables of `model` and its optimizer, `ema`'s
    averages, `metrics` (arrays, a mid-epoch save) and `state`."""
    import h5py

    backup_dir = Path(backup_dir)
    backup_dir.mkdir(parents=True, exist_ok=True)
    target = state_path(backup_dir)
    tmp = backup_dir / f".tmp.{os.getpid()}.{STATE_FILE}"
    try:
        model.save_weights(tmp, overwrite=True)
        with h5py.File(tmp, "a") as f:
            group = f.create_group(_GROUP)
            group.attrs["state"] = state.to_json()
            seeds = [keras.ops.convert_to_numpy(v) for v in seed_states(model)]
            parts = (("ema", ema.averages() if ema else []), ("seeds", seeds), ("metrics", metrics))
            for name, arrays in parts:
                if arrays is None:
                    continue
                sub = group.create_group(name)
                for i, array in enumerate(arrays):
                    sub.create_dataset(str(i), data=np.asarray(array))
        atomic.commit(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def seed_states(model) -> list:
    """The model's variables that are not weights: the seed generators' states (dropout)."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def loss_scale(optimizer) -> float | None:
    """The dynamic loss scale of a LossScaleOptimizer, else None."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return float(keras.ops.convert_to_numpy(optimizer.dynamic_scale))
    return None


def metric_values(model) -> list[np.ndarray]:
    """The model's metric accumulators (totals and counts) now."""
    return [keras.ops.convert_to_numpy(v) for v in model.metrics_variables]


def set_metric_values(model, values) -> None:
    """Puts saved metric accumulators back (a resumed epoch goes on averaging where it was)."""
    variables = model.metrics_variables
    if len(variables) != len(values):
        log.warning("the saved metric accumulators do not fit this model; the epoch restarts them")
        return
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


class StateKeeper(keras.callbacks.Callback):
    """Saves the run state at each epoch's end, every `every` steps, and when asked (`save`).

    Place it after every callback whose output the state vouches for (checkpoints, history,
    TensorBoard, the plateau and early-stopping counters): an epoch is claimed only after all
    of them are written. Acts at the start of a step, never at its end, so Keras keeps
    dispatching the batch-end callbacks without waiting for each step.

    Args:
        backup_dir: where the state file goes.
        state: the `RunState` so far (updated in place).
        first_step: the steps of epoch `state.epoch` already done before this `fit` (a resumed
            epoch's fit runs only the rest).
        every: save every N steps too (`training.backup_every`); None: at epoch ends only.
        ema: the run's `ExponentialMovingAverage`, or None.
        counters: `{"plateau": callback, "early_stopping": callback}` whose `counters()` are
            saved; `best`: a function giving the best validation top-1 so far.
        next_phase: a function of the epoch count giving the phase it trains in.
        metrics: the metric accumulators of a mid-epoch save, put back when the resumed
            epoch begins (so its history row averages over all of its steps).
    """

    def __init__(
        self,
        backup_dir,
        state: RunState,
        *,
        first_step: int = 0,
        every: int | None = None,
        ema=None,
        counters=None,
        best=None,
        next_phase=None,
        metrics=None,
    ):
        super().__init__()
        self.dir = Path(backup_dir)
        self.state = state
        self.first_step = first_step
        self.every = every
        self.ema = ema
        self.counters = counters or {}
        self.best = best
        self.next_phase = next_phase
        self.metrics = metrics
        self._offset = first_step

    def on_epoch_begin(self, epoch, logs=None):
        resumed = epoch == self.state.epoch and self.first_step
        self._offset = self.first_step if resumed else 0
        self.state.epoch, self.state.step = epoch, self._offset
        if resumed and self.metrics is not None:  # Keras has just reset them
            set_metric_values(self.model, self.metrics)

    def on_train_batch_begin(self, batch, logs=None):
        self.state.step = self._offset + batch
        done = self.state.stream_step
        if self.every and batch and done % self.every == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.state.epoch, self.state.step = epoch + 1, 0
        self.save(mid_epoch=False)

    def save(self, mid_epoch: bool = True) -> Path:
        """Writes the state now: mid-epoch (`state.step` steps into `state.epoch`, with the
        epoch's metric accumulators), or right after an epoch's end."""
        s = self.state
        opt = self.model.optimizer
        s.iterations = int(keras.ops.convert_to_numpy(opt.iterations))
        s.loss_scale = loss_scale(opt)
        for name, callback in self.counters.items():
            setattr(s, name, callback.counters())
        if self.best is not None:
            s.best = self.best()
        if self.next_phase is not None:
            s.phase = self.next_phase(s.epoch)
        metrics = metric_values(self.model) if mid_epoch and s.step else None
        s.keras = keras.__version__
        return save(self.model, self.dir, s, self.ema, metrics)
