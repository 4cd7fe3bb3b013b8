"""The run state (training/state.py) under stops at random moments: a seeded run stopped again
and again (a crash between steps, SIGTERM, a crash inside a write), restarted each time with the
same call, ends exactly as the same run trained without a stop."""

from __future__ import annotations

import os
import signal

import keras
import numpy as np
import pytest
from helpers import Crash, scalar_steps, tiny_config, write_processed_dataset

from keras_googlenet import atomic
from keras_googlenet.training import state as run_state
from keras_googlenet.training.history import read_history
from keras_googlenet.training.preemption import Preempted
from keras_googlenet.training.run_dir import RunDir
from keras_googlenet.training.train import train

EPOCHS, STEPS = 3, 3
KEYS = {
    "training.epochs": EPOCHS,
    "data.steps_per_epoch": STEPS,
    "training.backup_every": 2,
    "training.seed": 0,
    "data.deterministic": True,
    "schedule.name": "plateau",
    "optimizer.ema": True,
    "data.validation_steps": 1,
}


class _StopAt(keras.callbacks.Callback):
    """Stops the run once the optimizer has run `step` steps: `Crash` (like kill -9 between
    two steps) or SIGTERM to this process (a preemption)."""

    def __init__(self, step: int, how: str):
        super().__init__()
        self.step, self.how, self.done = step, how, False

    def on_train_batch_end(self, batch, logs=None):
        if not self.done and int(self.model.optimizer.iterations) >= self.step:
            self.done = True
            if self.how == "crash":
                raise Crash
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow
def test_random_stops_end_as_the_uninterrupted_run(tmp_path, monkeypatch):
    data = write_processed_dataset(tmp_path / "data", num_classes=2, train_per_class=6, size=72)
    cfg = tiny_config(data, **KEYS)
    clean = RunDir(tmp_path / "clean")
    assert train(cfg, clean.root)["status"] == "finished"

    run = RunDir(tmp_path / "run")
    rng = np.random.default_rng(7)
    stops = []
    real_commit = atomic.commit
    for _ in range(3):
        how = str(rng.choice(["crash", "sigterm", "write"]))
        stops.append(how)
        callbacks = []
        if how == "write":  # a crash inside the n-th state or checkpoint write
            nth = [int(rng.integers(1, 4))]

            def commit(tmp, path, nth=nth):
                nth[0] -= 1
                if nth[0] == 0:
                    raise Crash
                real_commit(tmp, path)

            monkeypatch.setattr(atomic, "commit", commit)
        else:
            done = run_state.read_state(run.backup)
            at = (done.iterations if done else 0) + int(rng.integers(1, 4))
            callbacks.append(_StopAt(min(at, EPOCHS * STEPS - 1), how))
        with pytest.raises((Crash, Preempted)):
            train(cfg, run.root, callbacks=callbacks)
        monkeypatch.setattr(atomic, "commit", real_commit)
    assert train(cfg, run.root)["status"] == "finished", stops

    # Exactly EPOCHS rows, each once; one TensorBoard value per epoch and tag; EPOCHS x STEPS
    # optimizer steps; and the same numbers as without a stop.
    rows, expected = read_history(run.history), read_history(clean.history)
    assert [r["epoch"] for r in rows] == list(range(EPOCHS)), stops
    for row, want in zip(rows, expected, strict=True):
        for key in ("loss", "main_top1", "val_loss", "learning_rate"):
            assert row[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (key, stops)
    for tag, steps in scalar_steps(run.tensorboard).items():
        assert steps == list(range(EPOCHS)), (tag, steps, stops)
    model, reference = (keras.models.load_model(r.last) for r in (run, clean))
    assert int(model.optimizer.iterations) == EPOCHS * STEPS
    for a, b in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
