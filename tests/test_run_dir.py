"""The run folder across a crash, a preemption or damage (training/run_dir.py, callbacks.py,
history.py, tensorboard.py, resume.py, preemption.py): kill -9 at several points, SIGTERM,
damaged files; the same command finishes every epoch once, or one line names the file and what
to do."""

from __future__ import annotations

import logging
import math

import keras
import numpy as np
import pytest
from faults import KILL_DURING_ENV, KILL_ENV
from helpers import (
    REPO,
    Crash,
    cli,
    crash_at_step,
    run_train_cli,
    scalar_steps,
    tiny_overrides,
    write_processed_dataset,
)

from keras_googlenet.errors import UserError
from keras_googlenet.training import state as run_state_file
from keras_googlenet.training.checkpoints import load_checkpoint
from keras_googlenet.training.history import read_history, truncate_history
from keras_googlenet.training.resume import (
    drop_damaged_best,
    keras_file_problem,
    resume_point,
    weights_file_problem,
)
from keras_googlenet.training.run_dir import (
    RunDir,
    config_differences,
    resolve_run_dir,
    restart_number,
    run_state,
)
from keras_googlenet.training.tensorboard import purge_events

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
    assert run_state_file.read_state(run.backup).epoch == 1
    assert not run.done.exists()

    # 2nd crash: resumed at step 2, epoch 2 finishes (steps 3-4), killed in epoch 3 (step 5).
    second = run_train_cli(args, {KILL_ENV: str(2 * STEPS + 1)})
    assert second.returncode == -9, second.stderr[-2000:]
    assert "resuming after epoch 1 of 3" in second.stderr
    assert [r["epoch"] for r in read_history(run.history)] == [0, 1]
    assert run_state_file.read_state(run.backup).stream_step == 2 * STEPS

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
    # Exactly epochs x steps optimizer steps, whatever the kills cost.
    assert int(keras.models.load_model(run.last).optimizer.iterations) == EPOCHS * STEPS

    # Started again: finished, says so, exit 0, nothing rewritten.
    before = run.history.read_text()
    again = run_train_cli(args)
    assert again.returncode == 0
    assert "already finished" in again.stderr
    assert run.history.read_text() == before


def _tiny_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    return model


def test_backup_every_n_steps_restores_weights_and_optimizer(tmp_path):
    x, y = np.ones((10, 3), "float32"), np.zeros((10, 2), "float32")
    backup = tmp_path / "backup"
    model = _tiny_model()
    state = run_state_file.RunState(steps_per_epoch=5)
    keeper = run_state_file.StateKeeper(backup, state, every=2)
    saved = {}
    probe = keras.callbacks.LambdaCallback(  # the weights each mid-epoch save wrote
        on_train_batch_begin=lambda batch, logs: saved.update(
            {state.stream_step: [w.copy() for w in model.get_weights()]}
        )
    )
    with pytest.raises(Crash):
        model.fit(
            x, y, batch_size=2, epochs=3, verbose=0, callbacks=[keeper, probe, crash_at_step(7)]
        )
    # Epoch 1 (5 steps) finished and was saved; epoch 2 was saved when its 2nd step began
    # (stream step 6, before the crash at the end of step 7).
    got = run_state_file.read_state(backup)
    assert (got.epoch, got.step, got.iterations, got.stream_step) == (1, 1, 6, 6)
    assert [p.name for p in backup.iterdir()] == ["state.weights.h5"]

    fresh = _tiny_model()
    fresh.optimizer.build(fresh.trainable_variables)
    restored, metrics = run_state_file.restore(fresh, backup)
    assert int(fresh.optimizer.iterations) == 6 and metrics is not None
    for a, b in zip(fresh.get_weights(), saved[6], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # The rest of epoch 2 (4 steps, from its 2nd batch), then epoch 3: 15 steps in all.
    seen = []
    probe = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(epoch))
    rest = run_state_file.StateKeeper(backup, restored, first_step=1, metrics=metrics)
    fresh.fit(
        x[2:], y[2:], batch_size=2, initial_epoch=1, epochs=2, verbose=0, callbacks=[rest, probe]
    )
    after = run_state_file.StateKeeper(backup, restored)
    fresh.fit(x, y, batch_size=2, initial_epoch=2, epochs=3, verbose=0, callbacks=[after, probe])
    assert seen == [1, 2]
    assert run_state_file.read_state(backup).epoch == 3
    assert int(fresh.optimizer.iterations) == 15


def test_truncate_history_and_purge_events(tmp_path):
    import tensorflow as tf

    history = tmp_path / "history.csv"
    history.write_text("epoch,loss\n0,1.5\n1,1.2\n2,1.1\n3,1.")  # row 3 cut short by a kill
    assert truncate_history(history, 2) == 2
    assert history.read_text() == "epoch,loss\n0,1.5\n1,1.2\n"

    writer = tf.summary.create_file_writer(str(tmp_path / "tb" / "train"))
    with writer.as_default():
        for step in range(4):
            tf.summary.scalar("epoch_loss", 1.0 / (step + 1), step=step)
    writer.close()
    assert purge_events(tmp_path / "tb", 2) == 2
    assert scalar_steps(tmp_path / "tb") == {"train/epoch_loss": [0, 1]}
    assert purge_events(tmp_path / "tb", 0) == 1  # from scratch: the files go
    assert scalar_steps(tmp_path / "tb") == {}


def _imbalanced_dataset(root, keep_class2: int = 2):
    """3 classes with 6, 6 and `keep_class2` training images (rows dropped from train.csv)."""
    import csv

    data = write_processed_dataset(root, num_classes=3, train_per_class=6, val_per_class=2, size=72)
    with open(data / "train.csv") as f:
        rows = list(csv.DictReader(f))
    kept = [r for r in rows if r["class"] != "2"] + [r for r in rows if r["class"] == "2"][
        :keep_class2
    ]
    with open(data / "train.csv", "w", newline="") as f:
        out = csv.DictWriter(f, ["image", "class"])
        out.writeheader()
        out.writerows(kept)
    return data


@pytest.mark.slow
# The validation pass has no known length; Keras warns at its end (train() filters it too).
@pytest.mark.filterwarnings("ignore:Your input ran out of data")
def test_kill_resume_keeps_ema_and_early_stopping(tmp_path):
    """One real run with EMA, early stopping, balanced class weights on an imbalanced dataset,
    MixUp (soft labels on every head), the profiler and HParams: killed (-9) mid-epoch 2, then
    resumed in this process."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import plugin_data_pb2

    from keras_googlenet.config import load_config
    from keras_googlenet.training.checkpoints import load_checkpoint
    from keras_googlenet.training.compile import compile_model
    from keras_googlenet.training.train import train

    data = _imbalanced_dataset(tmp_path / "data")
    run = RunDir(tmp_path / "run")
    extra = {
        "training.epochs": 3,
        "optimizer.ema": True,
        "optimizer.ema_momentum": 0.5,
        # Nothing improves by 1 (accuracies are <= 1): the first epoch sets `best`, then each
        # epoch waits one more; patience 1 stops after epoch 2, if the wait count and `best`
        # survive the crash (reset, epoch 2 would set `best` again and all 3 would run).
        "training.early_stopping.patience": 1,
        "training.early_stopping.min_delta": 1.0,
        "training.class_weight": "balanced",
        "data.batch_augment": "[{name: mixup, alpha: 0.4}]",
        "training.label_smoothing": 0.1,
        "logging.profile_batches": "[1, 1]",
        "training.seed": 0,
    }
    overrides = tiny_overrides(data, **extra)
    args = ["--config", REPO / "configs" / "smoke.yaml", "--run-dir", run.root]
    for value in overrides:
        args += ["--set", value]
    killed = run_train_cli(args, {KILL_ENV: "3"})  # step 3: the middle of epoch 2
    assert killed.returncode == -9, killed.stderr[-2000:]
    state = run_state_file.read_state(run.backup)
    assert state.epoch == 1
    assert state.early_stopping["wait"] == 0

    # EMA: last.keras (epoch 1) holds the averages as its weights; the run state holds the
    # raw weights and the same averages.
    from keras_googlenet.training.ema import ExponentialMovingAverage

    cfg = load_config(REPO / "configs" / "smoke.yaml", overrides)
    restored = load_checkpoint(run.last)
    model = compile_model(keras.models.clone_model(restored), cfg)
    model.optimizer.build(model.trainable_variables)
    averages = ExponentialMovingAverage(model, 0.5)
    run_state_file.restore(model, run.backup, averages)
    ema = averages.averages()
    raw = [v.numpy() for v in model.trainable_variables]
    saved = [v.numpy() for v in restored.trainable_variables]
    for a, s in zip(ema, saved, strict=True):
        np.testing.assert_array_equal(a, s)
    assert any(not np.array_equal(a, r) for a, r in zip(ema, raw, strict=True))

    result = train(load_config(REPO / "configs" / "smoke.yaml", overrides), run.root)
    assert result["initial_epoch"] == 1 and result["stopped_early"], result
    assert result["epochs_run"] == 1
    rows = read_history(run.history)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert "stopped early" in run.done.read_text()
    # Soft labels (MixUp) on all three heads, one-hot validation labels: finite losses,
    # accuracies in range.
    for row in rows:
        assert all(math.isfinite(row[k]) for k in ("loss", "val_loss", "aux_4a_loss"))
        assert 0.0 <= row["val_main_top1"] <= 1.0 and 0.0 <= row["main_top1"] <= 1.0

    # Balanced weights (n / (classes * count)) written and applied: 14 images, counts 6, 6, 2.
    weights = (run.root / "class_weights.csv").read_text().splitlines()
    assert [float(line.split(",")[2]) for line in weights[1:]] == pytest.approx(
        [14 / 18, 14 / 18, 14 / 6]
    )
    # The profiler's trace, and the run's hyper-parameters on the HParams tab.
    assert list(run.tensorboard.glob("train/plugins/profile/*/*.xplane.pb"))
    hparams = {}
    for path in run.tensorboard.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    content = plugin_data_pb2.HParamsPluginData.FromString(
                        value.metadata.plugin_data.content
                    )
                    if content.HasField("session_start_info"):
                        hparams = dict(content.session_start_info.hparams)
    assert hparams["optimizer.ema"].bool_value is True
    assert hparams["training.epochs"].number_value == 3


def test_keys_added_to_the_schema_later_do_not_block_a_resume():
    from keras_googlenet.config import Config

    current = Config().to_dict()
    saved = {k: dict(v) if isinstance(v, dict) else v for k, v in current.items()}
    del saved["optimizer"]["ema"]  # a run started before optimizer.ema existed
    saved["training"] = {k: v for k, v in saved["training"].items() if k != "early_stopping"}
    assert config_differences(saved, current) == []
    saved["optimizer"]["lr"] = 0.5
    assert config_differences(saved, current) == ["optimizer.lr"]


def test_a_run_made_before_cache_auto_resumes_and_finishes(tmp_path):
    """Runs started before `data.cache: auto` became the default recorded `cache: false`."""
    import yaml

    from keras_googlenet.config import Config, save_config

    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    save_config(Config(), run.config)
    saved = yaml.safe_load(run.config.read_text())
    saved["data"]["cache"] = False
    run.config.write_text(yaml.safe_dump(saved))
    run.history.write_text("epoch,loss\n0,1.0\n")
    assert Config().data.cache == "auto"
    assert run_state(run, Config()) == "resume"
    run.done.write_text("finished\n")
    assert run_state(run, Config()) == "done"


@pytest.mark.slow
def test_sigterm_then_kills_during_each_write_then_resume(tmp_path):
    """SIGTERM mid-epoch, then kill -9 inside the checkpoint write, the history append and
    the backup write, then a damaged backup: the same command ends with every epoch once."""
    epochs, steps = 2, 3
    data = write_processed_dataset(
        tmp_path / "data", num_classes=2, train_per_class=6, val_per_class=2, size=72
    )
    run = RunDir(tmp_path / "run")
    args = ["--config", REPO / "configs" / "smoke.yaml", "--run-dir", run.root]
    for value in tiny_overrides(data, **{"training.epochs": epochs, "data.steps_per_epoch": steps}):
        args += ["--set", value]

    # Preempted at step 4 (the first of epoch 2): a backup of that step, exit 143, one line.
    term = run_train_cli(args, {KILL_ENV: "4:SIGTERM"})
    assert term.returncode == 143, term.stderr[-2000:]
    last_line = term.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: stopped by SIGTERM after step 4 (in epoch 2)")
    state = run_state_file.read_state(run.backup)
    assert (state.epoch, state.step, state.stream_step) == (1, 1, 4)
    assert [r["epoch"] for r in read_history(run.history)] == [0]

    # Killed while last.keras of epoch 2 is being written (the temporary file only).
    ckpt = run_train_cli(args, {KILL_DURING_ENV: "checkpoint:1"})
    assert ckpt.returncode == -9, ckpt.stderr[-2000:]
    assert "resuming after epoch 1 of 2 (step 4)" in ckpt.stderr

    # Killed with half of epoch 2's history row written.
    half = run_train_cli(args, {KILL_DURING_ENV: "history:1"})
    assert half.returncode == -9, half.stderr[-2000:]
    assert "resuming after epoch 1 of 2 (step 4)" in half.stderr
    assert run.history.read_text().endswith("9,0.12")

    # Killed inside the backup write at the end of epoch 2: history row and last.keras are
    # there, the backup still says epoch 1 ...
    back = run_train_cli(args, {KILL_DURING_ENV: "backup:1"})
    assert back.returncode == -9, back.stderr[-2000:]
    # the half line of the killed run
    assert "written after the saved state (epoch 2 on): 1 history row(s)" in back.stderr
    assert run_state_file.read_state(run.backup).epoch == 1
    # ... and then the state file is cut short (a full disk, a bad copy): the run falls back
    # to last.keras and history.csv, says so, and finishes.
    weights = run_state_file.state_path(run.backup)
    weights.write_bytes(weights.read_bytes()[:100])
    final = run_train_cli(args)
    assert final.returncode == 0, final.stderr[-3000:]
    assert f"{weights}: " in final.stderr and "resuming after epoch 2 from" in final.stderr
    assert run.done.exists()

    rows = read_history(run.history)
    assert [r["epoch"] for r in rows] == list(range(epochs))
    assert run.history.read_text().count("\n") == epochs + 1  # no half line left
    steps_seen = scalar_steps(run.tensorboard)
    for tag in ("train/epoch_loss", "validation/epoch_main_top1"):
        assert steps_seen[tag] == list(range(epochs)), (tag, steps_seen[tag])
    # Exactly epochs x steps optimizer steps: epoch 2 went on from its step 2 each time.
    model = keras.models.load_model(run.last)
    assert int(model.optimizer.iterations) == epochs * steps


# Damaged run folders, checked without training.

HEADER = "epoch,loss,val_main_top1\n"


def _model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(np.ones((4, 3)), np.zeros((4, 2)), verbose=0)
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A good weights file and a good .keras file to copy into run folders."""
    root = tmp_path_factory.mktemp("files")
    model = _model()
    model.save_weights(root / "good.weights.h5")
    model.save(root / "good.keras")
    for epoch in (1, 2):
        run_state_file.save(model, root / f"state_{epoch}", run_state_file.RunState(epoch=epoch))
    return root


def _run(tmp_path, files, *, rows=2, backup_epoch=2, weights="good", last="good"):
    run = RunDir(tmp_path / "run")
    run.checkpoints.mkdir(parents=True)
    run.config.write_text("project_name: x\n")
    run.history.write_text(HEADER + "".join(f"{e},1.0,0.5\n" for e in range(rows)))
    if backup_epoch is not None:
        run.backup.mkdir()
        data = run_state_file.state_path(files / f"state_{backup_epoch}").read_bytes()
        target = run_state_file.state_path(run.backup)
        target.write_bytes(data if weights == "good" else data[: len(data) // 3])
    if last is not None:
        data = (files / "good.keras").read_bytes()
        run.last.write_bytes(data if last == "good" else data[:200])
    return run


def test_intact_backup_resumes_from_it(tmp_path, files):
    run = _run(tmp_path, files)
    assert resume_point(run, run, chief=True).epoch == 2
    # a half row (a kill during the append) does not count, and is not a damage
    with open(run.history, "a") as f:
        f.write("2,0.9")
    assert resume_point(run, run, chief=True).epoch == 2


def test_truncated_backup_falls_back_to_last_and_history(tmp_path, files, caplog):
    run = _run(tmp_path, files, weights="truncated")
    with caplog.at_level(logging.WARNING, logger="keras_googlenet"):
        point = resume_point(run, run, chief=True)
    assert point.epoch == 2 and point.from_last
    assert "state.weights.h5" in caplog.text and "last.keras" in caplog.text


def test_unreadable_state_or_no_backup_falls_back(tmp_path, files):
    run = _run(tmp_path, files)
    run_state_file.state_path(run.backup).write_text('{"epoch": 2, "st')
    assert resume_point(run, run, chief=True) == resume_point(run, run, chief=True)
    assert resume_point(run, run, chief=True).from_last
    run2 = _run(tmp_path / "b", files, backup_epoch=None)
    point = resume_point(run2, run2, chief=True)
    assert point.epoch == 2 and point.from_last  # not epoch 0 over a history of 2 epochs


def test_damaged_backup_and_last_is_one_line_with_what_to_do(tmp_path, files):
    run = _run(tmp_path, files, weights="truncated", last="truncated")
    with pytest.raises(UserError, match=r"last\.keras: not a readable .*add --restart"):
        resume_point(run, run, chief=True)
    run.last.unlink()
    with pytest.raises(UserError, match=r"last\.keras: missing, and the run state"):
        resume_point(run, run, chief=True)


def test_backup_newer_than_history(tmp_path, files):
    run = _run(tmp_path, files, rows=1, backup_epoch=2)
    with pytest.raises(UserError, match=r"history\.csv: lists 1 finished epoch.*--restart"):
        resume_point(run, run, chief=True)
    run.history.write_text("epo")  # a header cut short: no epoch listed
    with pytest.raises(UserError, match=r"history\.csv: lists 0 finished"):
        resume_point(run, run, chief=True)


def test_nothing_finished_starts_at_epoch_0(tmp_path, files):
    run = _run(tmp_path, files, rows=0, backup_epoch=None, last=None)
    assert resume_point(run, run, chief=True).epoch == 0


def test_damaged_best_is_removed_with_a_warning(tmp_path, files, caplog):
    run = _run(tmp_path, files)
    run.best.write_bytes(b"PK\x03\x04 cut")
    with caplog.at_level(logging.WARNING, logger="keras_googlenet"):
        assert drop_damaged_best(run)
    assert not run.best.exists() and "best.keras" in caplog.text
    assert not drop_damaged_best(run)


def test_file_checks(tmp_path, files):
    assert weights_file_problem(files / "good.weights.h5") is None
    assert keras_file_problem(files / "good.keras") is None
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes((files / "good.weights.h5").read_bytes()[:100])
    assert weights_file_problem(bad)
    assert weights_file_problem(tmp_path / "none.h5") == "missing"
    flipped = bytearray((files / "good.keras").read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    (tmp_path / "flipped.keras").write_bytes(bytes(flipped))
    assert keras_file_problem(tmp_path / "flipped.keras")


def test_corrupt_checkpoint_for_evaluate_is_one_line(tmp_path, files):
    cut = tmp_path / "last.keras"
    cut.write_bytes((files / "good.keras").read_bytes()[:300])
    with pytest.raises(UserError, match=r"last\.keras: cannot load checkpoint .*--checkpoint"):
        load_checkpoint(cut)


def test_missing_or_broken_config_yaml_is_one_line(
    tmp_path, files, shared_processed_dataset, capsys
):
    run = _run(tmp_path, files)
    run.config.unlink()
    args = ["--config", REPO / "configs" / "smoke.yaml", "--run-dir", run.root]
    args += ["--set", f"data.input_dir={shared_processed_dataset}"]
    assert cli("train", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.yaml: missing from a run folder" in err[0]
    run.config.write_text("model: [unclosed\n")
    assert cli("train", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.yaml: cannot read the run's config" in err[0]


def test_restart_number_is_the_first_free_folder(tmp_path):
    base = tmp_path / "run"
    assert restart_number(base) == 1
    (base / "workers" / "worker_1").mkdir(parents=True)  # all a non-chief worker writes
    assert restart_number(base) == 1
    (base / "config.yaml").write_text("x")
    (tmp_path / "run-2").mkdir()
    (tmp_path / "run-2" / "history.csv").write_text("")
    assert restart_number(base) == 3
    assert resolve_run_dir(None, base, restart=True) == tmp_path / "run-3"
    # A multi-worker run's other workers take the number the chief chose.
    assert resolve_run_dir(None, base, number=2) == tmp_path / "run-2"
    assert resolve_run_dir(None, base, restart=True, number=1) == base
