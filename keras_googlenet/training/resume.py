"""Where an interrupted run resumes, checked against damage to its run folder.

The resume backup (backup/state.json + one weights file) is the normal source. A kill cannot
corrupt it (each file is replaced atomically), but a full disk, a copy cut short or a hand edit
can. Each damage ends in one line naming the file and what to do, or in a stated recovery:

- backup unreadable (state.json, weights file missing, truncated or not HDF5): resume from
  checkpoints/last.keras after the epochs history.csv lists, and say so in the log;
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
from keras_googlenet.training.callbacks import ResumableBackup
from keras_googlenet.training.history import read_history
from keras_googlenet.training.run_dir import RunDir

log = logging.getLogger("keras_googlenet")


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
    """`epoch`: finished epochs; `from_last`: rebuild the backup from last.keras first."""

    epoch: int
    from_last: bool = False


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
    state_file = own.backup / ResumableBackup.STATE
    state, problem = None, None
    if state_file.exists():
        state = _read_state(state_file)
        if state is None:
            problem = f"{state_file}: unreadable"
        else:
            weights = own.backup / str(state.get("weights", ""))
            reason = weights_file_problem(weights)
            if reason:
                problem, state = f"{weights}: {reason}", None
    if not chief:  # the chief alone holds the history and the checkpoints
        return ResumePoint(state["epoch"] if state else 0)
    listed = _finished_epochs(run.history)
    if state is not None:
        if state["epoch"] > listed:
            raise UserError(
                f"{run.history}: lists {listed} finished epoch(s) but the resume backup "
                f"{state_file} is after epoch {state['epoch']} (the history was cut or "
                "replaced); put the full history.csv back, or add --restart for a new run"
            )
        return ResumePoint(state["epoch"])
    if listed == 0:
        if problem:
            log.warning("%s; nothing finished yet, so the run starts from epoch 1", problem)
        return ResumePoint(0)
    reason = keras_file_problem(run.last)
    if reason:
        lost = problem or f"{own.backup}: missing"
        raise UserError(
            f"{run.last}: {reason}, and the resume backup is damaged ({lost}): nothing "
            f"consistent to resume the {listed} finished epoch(s) from; add --restart to "
            "start a new run (this folder is left as it is)"
        )
    log.warning(
        "%s; resuming after epoch %d from %s and %s instead",
        problem or f"{own.backup}: no resume backup",
        listed,
        run.last,
        run.history,
    )
    return ResumePoint(listed, from_last=True)


def _read_state(path: Path) -> dict | None:
    import json

    try:
        state = json.loads(path.read_text())
        int(state["epoch"]), int(state["step"]), str(state["weights"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


def rebuild_backup_from_last(model, run: RunDir, own: RunDir, epoch: int) -> None:
    """Loads checkpoints/last.keras (weights and optimizer state) into `model` and writes a
    fresh resume backup after `epoch`, which `fit` then restores as usual."""
    import shutil

    model.load_weights(run.last)
    shutil.rmtree(own.backup, ignore_errors=True)
    backup = ResumableBackup(own.backup)
    backup.set_model(model)
    backup._current_epoch = epoch
    backup._save_model()


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
