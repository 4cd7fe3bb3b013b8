"""What the training callbacks cost per step, on this machine: `train()`'s own `model.fit`.

    .venv/bin/python bench/callbacks.py                  # 3 rounds, small and large input
    .venv/bin/python bench/callbacks.py --sizes 72 --rounds 1

Three callback sets, each in its own process, on the same in-memory batches (random uint8
images, 256 classes, batch 8, the production model: fused batch norm, both aux heads, the real
loss weights):

    none     no callback but the clock: `run_callbacks` replaced by an empty list (the bench
             catches the "stopped after epoch 0" that follows: no callback saved the state)
    after    the run's callbacks as training builds them today: hooks at batch *begin* only
             (StopOnSignal's flag, StateKeeper every `backup_every` steps, the EMA, the
             profiler window) and at epoch end, so Keras dispatches batch ends asynchronously
    before   `after` plus one batch-end hook that reads the step's logs into Python floats, the
             pattern of the old EpochStats, StopOnNaN and ResumableBackup: Keras then turns its
             asynchronous dispatch off and every step waits for its results

The clock is a batch-begin hook (it leaves Keras's dispatch as it is): the median interval
between successive batch begins of the second epoch, so epoch ends, validation and
checkpoints are outside it. Printed per size: ms/step of each set (median of the rounds, with
their spread), its difference from `none`, and the time spent inside the batch hooks
themselves per step (each overridden hook wrapped in a timer): the first is what a user
sees and is noisy on a shared 2-core machine; the second is the callbacks' own host work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETS = ("none", "after", "before")
BATCH = 8
CLASSES = 256


def measure(size: int, which: str, steps: int) -> dict:
    """`step`: the median seconds between batch begins of epoch 2; `hooks`: the seconds per
    step spent inside the run's own batch hooks (and `before`'s), in this process."""
    import keras_googlenet  # noqa: F401  (first: it picks TensorFlow's CPU kernels, cpu.py)

    # isort: split
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_googlenet.config import load_config
    from keras_googlenet.data.dataset_info import DatasetInfo
    from keras_googlenet.errors import UserError
    from keras_googlenet.training import callbacks as cb
    from keras_googlenet.training.train import train

    cfg = load_config(
        REPO / "configs" / "caltech256_sgd.yaml",
        [
            f"model.input_size={size}",
            f"preprocess.size={size}",
            f"model.num_classes={CLASSES}",
            f"data.batch_size={BATCH}",
            "training.epochs=2",
            "runtime.precision=float32",
            "logging.profile_batches=null",
        ],
    )
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (steps * BATCH, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, CLASSES, steps * BATCH).astype("int32")

    def batches(count):
        y = {"main": labels[: count * BATCH], "aux_4a": labels[: count * BATCH]}
        y["aux_4d"] = y["main"]
        ds = tf.data.Dataset.from_tensor_slices((images[: count * BATCH], y))
        return ds.batch(BATCH).prefetch(2)

    info = DatasetInfo(
        input_dir=Path("."),
        class_names=tuple(str(i) for i in range(CLASSES)),
        mean_rgb=(124.0, 117.0, 104.0),
        train_size=steps * BATCH,
        val_size=BATCH,
    )

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.begins = {}

        def on_train_batch_begin(self, batch, logs=None):
            self.begins.setdefault(self._epoch, []).append(time.perf_counter())

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

    class ReadLogs(keras.callbacks.Callback):  # the old callbacks' per-step pattern
        def on_train_batch_end(self, batch, logs=None):
            for value in (logs or {}).values():
                float(value)

    in_hooks = []  # (epoch, seconds) spent inside the run's batch hooks

    def timed(callback):
        # Only the hooks a callback overrides: wrapping a default batch-end hook would turn
        # Keras's asynchronous dispatch off.
        for name in ("on_train_batch_begin", "on_train_batch_end"):
            if getattr(type(callback), name) is getattr(keras.callbacks.Callback, name):
                continue
            hook = getattr(callback, name)

            def wrapped(batch, logs=None, hook=hook):
                start = time.perf_counter()
                try:
                    return hook(batch, logs)
                finally:
                    in_hooks.append((clock._epoch, time.perf_counter() - start))

            setattr(callback, name, wrapped)
        return callback

    clock = Clock()
    extra = [clock] + ([timed(ReadLogs())] if which == "before" else [])
    if which == "none":
        cb.run_callbacks = lambda *args, **kwargs: []
    else:
        run_callbacks = cb.run_callbacks
        cb.run_callbacks = lambda *a, **k: [timed(c) for c in run_callbacks(*a, **k)]
    with tempfile.TemporaryDirectory() as run_dir:
        try:
            train(cfg, run_dir, datasets=(batches(steps), batches(1), info), callbacks=extra)
        except UserError:
            if which != "none":
                raise
    begins = clock.begins[1]
    step = statistics.median(b - a for a, b in zip(begins, begins[1:], strict=False))
    hooks = sum(t for epoch, t in in_hooks if epoch == 1) / len(begins)
    return {"step": step, "hooks": hooks}


def _in_process(size: int, which: str, steps: int) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    code = (
        "import json, sys; sys.path.insert(0, 'bench'); import callbacks; "
        f"print('RESULT', json.dumps(callbacks.measure({size}, {which!r}, {steps})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line.split(" ", 1)[1])
    raise RuntimeError(f"{which} at {size} px failed:\n{out.stderr[-3000:]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[72, 224])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch")
    args = parser.parse_args(argv)
    for size in args.sizes:
        steps = args.steps or (40 if size <= 96 else 12)
        results = {which: [] for which in SETS}
        for _ in range(args.rounds):  # interleaved: a slow minute hits every set alike
            for which in SETS:
                results[which].append(_in_process(size, which, steps))
        med = {w: statistics.median(x["step"] for x in r) for w, r in results.items()}
        print(f"{size} px, batch {BATCH}, {steps} steps per epoch, {args.rounds} round(s):")
        for which in SETS:
            r = [x["step"] for x in results[which]]
            h = [x["hooks"] * 1e3 for x in results[which]]
            spread = f"{min(r) * 1e3:.1f}-{max(r) * 1e3:.1f}"
            line = f"  {which:<7} {med[which] * 1e3:8.1f} ms/step ({spread})"
            if which != "none":
                line += f"  vs none {(med[which] - med['none']) * 1e3:+.1f} ms"
                line += f" ({(med[which] / med['none'] - 1):+.1%})"
                line += f"; in the hooks {statistics.median(h):.2f} ms/step"
                line += f" ({min(h):.2f}-{max(h):.2f})"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
