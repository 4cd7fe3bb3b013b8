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
from helpers import REPO, tiny_overrides, write_processed_dataset

from keras_googlenet.training.history import read_history
from keras_googlenet.training.run_dir import RunDir

MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
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
                "runtime.precision": "mixed_bfloat16", "training.epochs": 1}),
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

    print("RESULT " + json.dumps(out))
    """
)


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_mirrored_two_cpus_matches_one_device(tmp_path):
    # 12 validation images: whole batches for both replicas. With 6, the last step gives one
    # replica an empty batch, which mixed_bfloat16 batch norm on this CPU rejects (open issue).
    data = write_processed_dataset(
        tmp_path / "data", num_classes=3, train_per_class=4, val_per_class=4, size=72
    )

    def run(part):
        proc = subprocess.run(
            [sys.executable, "-c", MIRRORED_SCRIPT, str(data), str(tmp_path / "run"), part],
            cwd=REPO,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.split("RESULT ", 1)[1])

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


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_two_local_processes(tmp_path):
    data = write_processed_dataset(
        tmp_path / "data", num_classes=2, train_per_class=4, val_per_class=2, size=72
    )
    run = RunDir(tmp_path / "run")
    args = [
        sys.executable,
        "-m",
        "keras_googlenet",
        "train",
        "--config",
        str(REPO / "configs" / "smoke.yaml"),
    ]
    args += ["--run-dir", str(run.root)]
    for value in tiny_overrides(data, **{"runtime.strategy": "multi_worker", "training.epochs": 2}):
        args += ["--set", value]
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(
            subprocess.Popen(
                args,
                cwd=REPO,
                env={**_env(), "TF_CONFIG": json.dumps(tf_config)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        outputs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]

    # The chief (worker 0) wrote the run folder; worker 1 only its own log.
    assert run.done.exists() and run.best.exists()
    rows = read_history(run.history)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert all(math.isfinite(r["loss"]) for r in rows)
    chief_log = run.logfile("output.log").read_text()
    assert "MultiWorkerMirroredStrategy with 2 replica(s)" in chief_log
    assert "4 global, 2 per replica" in chief_log
    worker_log = (run.root / "workers" / "worker_1" / "output.log").read_text()
    assert worker_log.count("epoch 2/2:") == 1
