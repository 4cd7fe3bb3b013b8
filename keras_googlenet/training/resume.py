"""Where an interrupted run resumes, checked against damage to its run folder.

The run state (backup/state.weights.h5, see state.py) is the normal source. A kill cannot
corrupt it (it is replaced atomically), but a full disk, a copy cut short or a hand edit can.
Each damage ends in one line naming the file and what to do, or in a stated recovery:

- state unreadable (missing, truncated, not HDF5, no run state in it): resume from
  checkpoints/last.keras after the epochs history.csv lists, with the plateau and
  early-stopping counters and the best score recomputed from history.csv's rows
  (`recovered_state`), and say so in the log;
- no backup at all, but history rows and last.keras: the same (never start again from epoch 0
  over a history, which would throw it away);
- backup after more epochs than history.csv lists (a cut or replaced history): exit 2;
- last.keras needed but damaged or missing: exit 2 (`--restart` starts a new run);
- best.keras damaged: removed with a warning; the next better epoch writes it again.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

from keras_googlenet.errors import UserError
from keras_googlenet.training import state as run_state
from keras_googlenet.training.history import best_so_far, read_history
from keras_googlenet.training.run_dir import RunDir
from keras_googlenet.training.state import RunState, weights_file_problem  # noqa: F401

log = logging.getLogger("keras_googlenet")


def keras_file_problem(path: Path) -> str | None:
    """Why a `.keras` checkpoint is unusable (missing, not a zip, a damaged member), or None."""
    if not path.is_file():
        return "missing"
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            names = set(z.namelist())
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        return f"not a readable .keras file ({e})"
    if bad is not None:
        return f"damaged member {bad}"
    if not {"config.json", "model.weights.h5"} <= names:
        return "not a Keras model file (no config.json or model.weights.h5)"
    return None


@dataclass(frozen=True)
class ResumePoint:
    """`epoch`: finished epochs; `state`: the saved run state to restore (None: a new run, or
    `from_last`: rebuild the state from last.keras and history.csv first)."""

    epoch: int
    from_last: bool = False
    state: RunState | None = None


def _finished_epochs(history: Path) -> int:
    """Epochs 0..k-1 listed in order by history.csv (rows cut short are not counted)."""
    epochs = [row["epoch"] for row in read_history(history)]
    k = 0
    while k in epochs:
        k += 1
    return k


def resume_point(run: RunDir, own: RunDir, chief: bool) -> ResumePoint:
    """Where this task resumes; see the module docstring for each damage.

    Raises:
        UserError: a damage that leaves no consistent state to resume from.
    """
    state_file = run_state.state_path(own.backup)
    problem = run_state.state_problem(own.backup)
    state = None if problem else run_state.read_state(own.backup)
    if not chief:  # the chief alone holds the history and the checkpoints
        return ResumePoint(state.epoch if state else 0, state=state)
    listed = _finished_epochs(run.history)
    if state is not None:
        if state.epoch > listed:
            raise UserError(
                f"{run.history}: lists {listed} finished epoch(s) but the run state "
                f"{state_file} is after epoch {state.epoch} (the history was cut or "
                "replaced); put the full history.csv back, or add --restart for a new run"
            )
        return ResumePoint(state.epoch, state=state)
    if listed == 0:
        if problem:
            log.warning("%s; nothing finished yet, so the run starts from epoch 1", problem)
        return ResumePoint(0)
    reason = keras_file_problem(run.last)
    if reason:
        lost = problem or f"{state_file}: missing"
        raise UserError(
            f"{run.last}: {reason}, and the run state is damaged ({lost}): nothing "
            f"consistent to resume the {listed} finished epoch(s) from; add --restart to "
            "start a new run (this folder is left as it is)"
        )
    log.warning(
        "%s; resuming after epoch %d from %s and %s instead",
        problem or f"{state_file}: no run state",
        listed,
        run.last,
        run.history,
    )
    return ResumePoint(listed, from_last=True)


def recovered_state(cfg, run: RunDir, epochs: int, phase: int) -> RunState:
    """The run state after `epochs` epochs, rebuilt from history.csv (without the state file).

    The best score is the history's; the plateau and early-stopping counters are replayed
    from its rows through the same callbacks, so they come out as the lost state had them.
    """
    import types

    import keras

    from keras_googlenet.training import early_stopping, schedules

    rows = [r for r in read_history(run.history) if r["epoch"] < epochs]
    state = RunState(epoch=epochs, phase=phase, best=best_so_far(rows))
    stub = types.SimpleNamespace(
        optimizer=types.SimpleNamespace(learning_rate=keras.Variable(cfg.optimizer.lr)),
        stop_training=False,
    )
    replay = {}
    s, e = cfg.schedule, cfg.training.early_stopping
    if s.name == "plateau":
        replay["plateau"] = schedules.PersistentReduceLROnPlateau(
            warmup_epochs=s.warmup_epochs, factor=s.factor, patience=s.patience, min_lr=s.min_lr
        )
    if e.patience is not None:
        replay["early_stopping"] = early_stopping.for_run(e)
    for name, callback in replay.items():
        callback.set_model(stub)
        callback.on_train_begin()
        for row in rows:
            callback.on_epoch_end(row["epoch"], dict(row))
        setattr(state, name, callback.counters())
    return state


def drop_damaged_best(run: RunDir) -> bool:
    """Removes a damaged best.keras (warning); True if it did."""
    if not run.best.exists():
        return False
    reason = keras_file_problem(run.best)
    if reason is None:
        return False
    run.best.unlink()
    log.warning(
        "%s: %s; removed, the next epoch better than the history's best writes it again",
        run.best,
        reason,
    )
    return True
