"""Resume after a crash: kill -9 at two points mid-epoch, then the same command finishes."""

from __future__ import annotations

import json
import math

import pytest
from helpers import write_processed_dataset
from train_helpers import REPO, run_train_cli, scalar_steps, tiny_overrides

from keras_googlenet.callbacks import read_history
from keras_googlenet.run_dir import RunDir
from keras_googlenet.train import KILL_ENV

EPOCHS, STEPS, PATIENCE, FACTOR = 3, 2, 2, 0.5


def replay_plateau(rows, base_lr):
    """The learning rate each epoch should have had under ReduceLROnPlateau, from the history."""
    lr, best, wait, expected = base_lr, -math.inf, 0, []
    for row in rows:
        expected.append(lr)
        if row["val_main_top1"] > best + 1e-4:
            best, wait = row["val_main_top1"], 0
        else:
            wait += 1
            if wait >= PATIENCE:
                lr, wait = max(lr * FACTOR, 1e-5), 0
    return expected


@pytest.mark.slow
def test_kill_twice_mid_epoch_then_resume(tmp_path):
    data = write_processed_dataset(
        tmp_path / "data", num_classes=2, train_per_class=6, val_per_class=2, size=72
    )
    run = RunDir(tmp_path / "run")
    args = ["--config", REPO / "configs" / "smoke.yaml", "--run-dir", run.root]
    for value in tiny_overrides(
        data,
        **{
            "training.epochs": EPOCHS,
            "data.steps_per_epoch": STEPS,
            "training.checkpoint_interval": 2,
            "schedule.name": "plateau",
            "schedule.patience": PATIENCE,
            "schedule.factor": FACTOR,
            "optimizer.lr": 0.05,
        },
    ):
        args += ["--set", value]

    # 1st crash: step 3 = the middle of epoch 2 (epoch 1 finished and backed up).
    first = run_train_cli(args, {KILL_ENV: "3"})
    assert first.returncode == -9, first.stderr[-2000:]
    assert [r["epoch"] for r in read_history(run.history)] == [0]
    assert json.loads((run.backup / "state.json").read_text())["epoch"] == 1
    assert not run.done.exists()

    # 2nd crash: resumed at step 2, epoch 2 finishes (steps 3-4), killed in epoch 3 (step 5).
    second = run_train_cli(args, {KILL_ENV: str(2 * STEPS + 1)})
    assert second.returncode == -9, second.stderr[-2000:]
    assert "resuming after epoch 1 of 3" in second.stderr
    assert [r["epoch"] for r in read_history(run.history)] == [0, 1]
    assert json.loads((run.backup / "state.json").read_text())["step"] == 2 * STEPS

    third = run_train_cli(args)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "resuming after epoch 2 of 3" in third.stderr
    assert run.done.exists()

    # Exactly EPOCHS epochs, each once, in order.
    rows = read_history(run.history)
    assert [r["epoch"] for r in rows] == list(range(EPOCHS))
    assert all(math.isfinite(r["loss"]) for r in rows)
    # The plateau counters and the learning rate carried across both crashes.
    assert [r["learning_rate"] for r in rows] == pytest.approx(replay_plateau(rows, 0.05), rel=1e-5)

    # TensorBoard: every scalar once per epoch, steps 0, 1, 2 in order.
    steps = scalar_steps(run.tensorboard)
    for tag in ("train/epoch_loss", "train/epoch_learning_rate", "validation/epoch_main_top1"):
        assert steps[tag] == list(range(EPOCHS)), (tag, steps[tag])
    assert all(s == sorted(set(s)) for s in steps.values()), steps

    # The best checkpoint is the best epoch's, kept across restarts; periodic ones every 2.
    assert run.best.exists() and run.last.exists()
    assert [p.name for p in run.epoch_checkpoints()] == ["epoch_002.keras"]
    log = run.logfile("output.log").read_text()
    assert log.count("epoch 1/3:") == 1 and log.count("epoch 3/3:") == 1

    # Started again: finished, says so, exit 0, nothing rewritten.
    before = run.history.read_text()
    again = run_train_cli(args)
    assert again.returncode == 0
    assert "already finished" in again.stderr
    assert run.history.read_text() == before
