"""Distribution: MirroredStrategy over two logical CPUs matches one device, also with mixed
precision, and synchronized batch norm sees the global batch; MultiWorkerMirroredStrategy with
two local worker processes finishes a run.

Each runs in a fresh process: logical devices and a multi-worker cluster must be set up before
TensorFlow initializes.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap

import pytest
from faults import KILL_ENV
from helpers import FAULTS, REPO, tiny_overrides, write_processed_dataset

from keras_googlenet.training.history import read_history
from keras_googlenet.training.run_dir import RunDir
from keras_googlenet.training.state import read_state
from keras_googlenet.training.strategy import WORKER_LOST

MIRRORED_SCRIPT = textwrap.dedent(
    """
    import contextlib, json, sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    sys.path.insert(0, "tests")
    from helpers import tiny_config
    from keras_googlenet.training.compile import build_model, compile_model
    from keras_googlenet.training.train import train

    data_dir, run_dir, part = sys.argv[1], sys.argv[2], sys.argv[3]
    out = {}
    if part == "train":
        # The whole training path over the two devices, with bfloat16 mixed precision. (In its
        # own process: two MirroredStrategy objects in one process can mix up their collective
        # all-reduce keys.)
        result = train(
            tiny_config(data_dir, **{
                "runtime.strategy": "mirrored", "runtime.devices": "['/cpu:0', '/cpu:1']",
                "runtime.precision": "mixed_bfloat16", "training.epochs": 1,
                "optimizer.ema": True}),
            run_dir,
        )
        out = {k: result[k] for k in ("strategy", "precision", "global_batch_size")}
        out["loss"] = result["metrics"]["loss"]
        print("RESULT " + json.dumps(out))
        sys.exit(0)

    # No batch norm and no dropout: with them each replica would normalize its half-batch on
    # its own statistics (and draw its own masks), so the two could not match exactly.
    cfg = tiny_config(data_dir, **{"model.batch_norm": False, "model.dropout": 0.0,
                                   "model.aux_dropout": 0.0, "data.batch_size": 8,
                                   "optimizer.lr": 0.1})

    class Info:
        class_names = ("a", "b", "c")
        mean_rgb = (120.0, 110.0, 100.0)

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 65, 65, 3)).astype("uint8")
    y = rng.integers(0, 3, 8).astype("int32")
    labels = {"main": y, "aux_4a": y, "aux_4d": y}
    batch = tf.data.Dataset.from_tensor_slices((x, labels)).batch(8)

    keras.utils.set_random_seed(1)
    single = compile_model(build_model(cfg, Info()), cfg)
    mirrored_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with mirrored_strategy.scope():
        mirrored = compile_model(build_model(cfg, Info()), cfg)
    mirrored.set_weights(single.get_weights())

    for name, model in (("single", single), ("mirrored", mirrored)):
        # One step on the global batch; its loss is computed before the update.
        before = model.fit(batch, epochs=1, verbose=0, shuffle=False).history["loss"][0]
        after = model.evaluate(batch, verbose=0, return_dict=True)
        out[name] = {"before": before, "after": after["loss"], "main": after["main_loss"]}
    pairs = zip(single.get_weights(), mirrored.get_weights())
    diffs = [float(np.max(np.abs(a - b))) for a, b in pairs]
    out["max_weight_diff"] = max(diffs)
    out["replicas"] = mirrored_strategy.num_replicas_in_sync

    # runtime.sync_batch_norm: batch-norm statistics of one conv block on one device and over
    # the two replicas, synchronized or not. The two halves of the global batch differ, so
    # per-replica statistics would differ from the whole batch's.
    from keras_googlenet.model.googlenet import conv_bn_relu

    def bn_model(sync):
        inputs = keras.Input((8, 8, 3))
        x = conv_bn_relu(inputs, 4, 3, name="c", initializer="ones", sync_batch_norm=sync)
        x = keras.layers.GlobalAveragePooling2D()(x)
        m = keras.Model(inputs, keras.layers.Dense(2, kernel_initializer="ones")(x))
        m.compile(keras.optimizers.SGD(0.0), "mse")  # lr 0: only the BN statistics move
        return m

    halves = np.concatenate([rng.normal(0, 1, (4, 8, 8, 3)), rng.normal(3, 2, (4, 8, 8, 3))])
    bn_data = tf.data.Dataset.from_tensors((halves.astype("float32"), np.zeros((8, 2), "float32")))
    single_bn = bn_model(False)
    single_bn.fit(bn_data, epochs=1, verbose=0)
    reference = single_bn.get_layer("c_bn").moving_variance.numpy()
    for sync in (True, False):
        with mirrored_strategy.scope():  # the same strategy: see the "train" part's note
            m = bn_model(sync)
        m.fit(bn_data, epochs=1, verbose=0)
        got = m.get_layer("c_bn").moving_variance.numpy()
        out[f"sync_bn_{sync}"] = float(np.max(np.abs(got - reference)))
        out[f"sync_bn_{sync}_config"] = m.get_layer("c_bn").get_config()["synchronized"]

    # The EMA averages (mirrored variables, updated from the cross-replica context) follow the
    # weights as on one device.
    from keras_googlenet.training.ema import ExponentialMovingAverage

    ema_data = tf.data.Dataset.from_tensor_slices(
        (rng.normal(size=(8, 3)).astype("float32"), np.ones((8, 2), "float32"))
    ).batch(4)
    averages = []
    for scope in (contextlib.nullcontext(), mirrored_strategy.scope()):
        with scope:
            keras.utils.set_random_seed(0)
            m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
            m.compile(keras.optimizers.SGD(0.1), "mse")
            ema = ExponentialMovingAverage(m, 0.5)
        m.fit(ema_data, epochs=2, verbose=0, callbacks=[ema])
        averages.append(np.concatenate([a.ravel() for a in ema.averages()]))
    out["ema_difference"] = float(np.max(np.abs(averages[0] - averages[1])))
    out["ema_moved"] = float(np.max(np.abs(averages[0] - np.concatenate(
        [w.numpy().ravel() for w in m.trainable_variables]))))

    print("RESULT " + json.dumps(out))
    """
)


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}


def _run_script(script: str, *args) -> dict:
    """Runs `script` in a fresh process (its own logical CPUs); returns its RESULT JSON."""
    proc = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("RESULT ", 1)[1])


@pytest.mark.slow
def test_mirrored_two_cpus_matches_one_device(tmp_path):
    # 9 validation images, global batch 4: a remainder of 1, which used to leave one replica
    # an empty last batch that batch norm rejected (see val_layout).
    data = write_processed_dataset(
        tmp_path / "data", num_classes=3, train_per_class=4, val_per_class=3, size=72
    )

    def run(part):
        return _run_script(MIRRORED_SCRIPT, data, tmp_path / "run", part)

    out = run("compare")
    assert out["replicas"] == 2
    single, mirrored = out["single"], out["mirrored"]
    assert mirrored["before"] == pytest.approx(single["before"], rel=1e-5)
    # One step changed the loss by the same amount: the gradients were averaged over the
    # global batch, not summed or halved (keras-team/keras#19891).
    change = single["before"] - single["after"]
    assert abs(change) > 1e-3
    assert mirrored["before"] - mirrored["after"] == pytest.approx(change, rel=1e-2)
    assert mirrored["after"] == pytest.approx(single["after"], abs=1e-5)
    assert mirrored["main"] == pytest.approx(single["main"], abs=1e-5)
    assert out["ema_difference"] < 1e-6 and out["ema_moved"] > 1e-4
    assert out["max_weight_diff"] < 1e-4
    # runtime.sync_batch_norm: synchronized, the two replicas' statistics are the whole
    # batch's, as on one device; not synchronized, each replica normalizes its own half (the
    # difference the option fixes).
    assert out["sync_bn_True"] < 1e-5 and out["sync_bn_True_config"] is True
    assert out["sync_bn_False"] > 1e-3 and out["sync_bn_False_config"] is False

    trained = run("train")
    assert trained["strategy"] == "MirroredStrategy"
    assert trained["precision"] == "mixed_bfloat16"
    assert trained["global_batch_size"] == 4
    assert math.isfinite(trained["loss"])
    log = (tmp_path / "run" / "output.log").read_text()
    assert "MirroredStrategy with 2 replica(s)" in log and "4 global, 2 per replica" in log


EXACT_EVAL_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    sys.path.insert(0, "tests")
    from helpers import tiny_config
    from keras_googlenet.config import apply_overrides
    from keras_googlenet.data import pipeline as data
    from keras_googlenet.data.dataset_info import read_dataset_info
    from keras_googlenet.training.precision import precision_policy
    from keras_googlenet.training.compile import build_model, compile_model

    data_dir, sizes = sys.argv[1], json.loads(sys.argv[2])
    cfg = tiny_config(data_dir, **{"data.batch_size": 8})  # 4 per replica
    info = read_dataset_info(cfg)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {}
    for policy in ("float32", "mixed_bfloat16", "mixed_float16"):
        with precision_policy(policy):
            single = compile_model(build_model(cfg, info), cfg)
            with strategy.scope():
                mirrored = compile_model(build_model(cfg, info), cfg)
            # A fresh GoogLeNet's three probabilities lie within 1e-5 of one another, so the
            # order of float sums on another device could flip a near-tie; larger classifier
            # weights make each prediction clear-cut, which the comparison needs.
            for layer in single.layers:
                if layer.name == "linear" or layer.name.endswith("_classifier"):
                    kernel, bias = layer.get_weights()
                    layer.set_weights([kernel * 30, bias])
            mirrored.set_weights(single.get_weights())
            for n in sizes:
                csv = f"{data_dir}/val{n}.csv"
                layout = data.val_layout(n, 2, 4)
                # The one device gets batches of the replicas' size: float16 kernels on this
                # CPU round differently for other batch shapes (1e-5 in the loss), which says
                # nothing about how the images are distributed.
                alone = apply_overrides(cfg, {"data.batch_size": layout.batch})
                one = data.make_val_dataset(alone, info, csv_path=csv)
                two = data.distribute_for_fit(
                    strategy, lambda ctx: data.make_val_dataset(cfg, info, csv_path=csv,
                                                                input_context=ctx))
                out[f"{policy}/{n}"] = [
                    single.evaluate(one, verbose=0, return_dict=True),
                    mirrored.evaluate(two, verbose=0, return_dict=True, steps=layout.steps),
                ]
    print("RESULT " + json.dumps(out))
    """
)


@pytest.mark.slow
def test_mirrored_evaluation_sees_every_image_once(tmp_path):
    # Global batch 8 on 2 replicas: 16, 17 and 15 images leave remainders 0, 1 (= replicas - 1)
    # and 7. Before, 17 gave one replica an empty last batch and batch norm failed on it.
    data = write_processed_dataset(
        tmp_path / "data", num_classes=3, train_per_class=2, val_per_class=6, size=72
    )
    rows = (data / "val.csv").read_text().splitlines()
    sizes = [16, 17, 15]
    for n in sizes:
        body = [rows[1 + i % (len(rows) - 1)] for i in range(n)]  # repeats are still images
        (data / f"val{n}.csv").write_text("\n".join([rows[0], *body]) + "\n")
    out = _run_script(EXACT_EVAL_SCRIPT, data, json.dumps(sizes))
    assert len(out) == 9
    for case, (single, mirrored) in out.items():
        assert set(single) == set(mirrored), case
        for key, value in single.items():
            assert mirrored[key] == pytest.approx(value, rel=1e-6, abs=1e-6), (case, key)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(args, env_extra=({}, {})):
    """Two local workers of one MultiWorkerMirroredStrategy run (TF_CONFIG on free ports)."""
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**_env(), "TF_CONFIG": json.dumps(tf_config), **env_extra[index]}
        procs.append(
            subprocess.Popen(
                args,
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def _wait(procs, timeout=600):
    """(return code, stderr) of each worker; the timeout bounds a hang, it is no speed test."""
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [(p.returncode, err) for p, (_, err) in zip(procs, outputs, strict=True)]


def _error_line(err: str) -> str:
    """A stopped worker's one "error:" line, with no traceback. TensorFlow's C++ runtime may
    still log after it (the coordination service's heartbeat, once the other worker is gone),
    so it need not be the last line."""
    assert "Traceback" not in err, err[-3000:]
    ours = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(ours) == 1, err[-3000:]
    return ours[0]


@pytest.mark.slow
def test_multi_worker_restart_preemption_lost_worker_and_resume(tmp_path):
    """Two local workers: `--restart` in the folder the chief picks, SIGTERM to one worker
    (both stop at the same step), kill -9 of one worker (the other stops with one line), then
    the same command finishes every epoch once."""
    data = write_processed_dataset(
        tmp_path / "data", num_classes=2, train_per_class=4, val_per_class=2, size=72
    )
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("an older run's folder\n")
    run = RunDir(tmp_path / "run-2")  # --restart leaves run/ alone
    args = [
        sys.executable,
        str(FAULTS),
        "train",
        "--config",
        str(REPO / "configs" / "smoke.yaml"),
    ]
    for value in tiny_overrides(data, **{"runtime.strategy": "multi_worker", "training.epochs": 2}):
        args += ["--set", value]
    worker_dir = run.root / "workers" / "worker_1"

    # 1. --restart: the chief picks run-2 and worker 1 uses it too. SIGTERM reaches worker 1
    # alone at step 1 (of 2 in epoch 1): both stop after step 1, each with its backup.
    term = {KILL_ENV: "1:SIGTERM"}
    results = _wait(
        _start_workers([*args, "--run-dir", str(tmp_path / "run"), "--restart"], ({}, term))
    )
    for code, err in results:
        assert code == 143, err[-3000:]
        assert _error_line(err).startswith("error: stopped by SIGTERM"), err[-3000:]
    assert "SIGTERM on another worker after step 1 (in epoch 1)" in results[0][1]
    assert "SIGTERM after step 1 (in epoch 1)" in results[1][1]
    assert read_state(run.backup).stream_step == 1
    assert read_state(worker_dir / "backup").stream_step == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["notes.txt"]
    assert read_history(run.history) == []

    # 2. Worker 1 is killed (-9) at step 2: worker 0 stops with one line instead of waiting.
    args += ["--run-dir", str(run.root)]
    results = _wait(_start_workers(args, ({}, {KILL_ENV: "2"})))
    assert results[1][0] == -9, results[1][1][-3000:]
    code, err = results[0]
    assert code == WORKER_LOST, err[-3000:]
    last = _error_line(err)
    assert last.startswith("error: lost contact with /job:worker/replica:0/task:1"), last
    assert "start every worker again with the same command" in last

    # 3. The same command on both workers: resumes from the backups of step 1 and finishes.
    for code, err in _wait(_start_workers(args)):
        assert code == 0, err[-3000:]
    assert run.done.exists() and run.best.exists()
    rows = read_history(run.history)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert all(math.isfinite(r["loss"]) for r in rows)
    # Exactly 2 epochs x 2 steps: epoch 1 went on from the preemption's step 1.
    import keras

    assert int(keras.models.load_model(run.last).optimizer.iterations) == 4
    chief_log = run.logfile("output.log").read_text()
    assert "MultiWorkerMirroredStrategy with 2 replica(s)" in chief_log
    assert "4 global, 2 per replica" in chief_log
    assert "resuming after epoch 0 of 2 (step 1)" in chief_log
    worker_log = (worker_dir / "output.log").read_text()
    assert worker_log.count("epoch 1/2:") == 1 and worker_log.count("epoch 2/2:") == 1
