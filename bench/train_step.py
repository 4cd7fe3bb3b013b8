"""Training speed of GoogLeNet under `model.fit`: images/s and peak memory per precision policy.

    .venv/bin/python bench/train_step.py                       # 224 and 112, every policy
    .venv/bin/python bench/train_step.py --sizes 224 --policies float32 --steps 10

Random uint8 images (batch 32, 256 classes, batch norm and both aux heads on), the compiled
training model of `training/compile.py` (SGD + Nesterov, weight decay, three losses and their
metrics). Each (size, policy) runs in its own process, so peak memory (ru_maxrss) is its own.
The clock runs between batch-end callbacks of one `fit` call, from the end of the last warm-up
step to the end of the last step: timing the whole `fit` call would also time tearing down the
input iterator, which can wait for tf.data's autotune thread (seconds, at random).
`--set KEY=VALUE` tries a config change (e.g. runtime.jit_compile=true). bench/compare.py runs
this against torchvision's step on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(
    size: int, policy: str, batch: int, steps: int, warmup: int, overrides=(), ablate=()
) -> dict:
    """Images/s of `steps` training steps after `warmup` untimed ones (in this process).

    `ablate` switches parts off or back to what they were, to see what each costs:
    "keras_bn" (Keras's own batch norm training pass instead of the fused kernel), "metrics"
    (no metrics), "inter_op_1" (one TensorFlow op at a time).
    """
    import keras_googlenet  # noqa: F401  (first: it picks TensorFlow's CPU kernels, cpu.py)

    # isort: split
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_googlenet.config import load_config
    from keras_googlenet.training.compile import build_model, compile_model, make_optimizer
    from keras_googlenet.training.precision import precision_policy

    cfg = load_config(
        REPO / "configs" / "caltech256_sgd.yaml", [f"model.input_size={size}", *overrides]
    )

    class Info:
        class_names = tuple(str(i) for i in range(256))
        mean_rgb = (124.0, 117.0, 104.0)

    if "inter_op_1" in ablate:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, 256, batch).astype("int32")

    class StepEnds(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # waits for the step's result, so the clock sees finished work
            # `batch` is the last step run: one call per group under steps_per_execution.
            self.times.append((batch, time.perf_counter()))

    ends = StepEnds()
    with precision_policy(policy):
        model = build_model(cfg, Info())
        if "keras_bn" in ablate:
            for layer in model.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    del layer.call  # the instance's fused pass (model/batch_norm.py)
        if "metrics" in ablate:  # compile_model's losses and weights, without its metrics
            heads = model.output_names
            model.compile(
                optimizer=make_optimizer(cfg.optimizer),
                loss={h: keras.losses.SparseCategoricalCrossentropy() for h in heads},
                loss_weights={h: float(cfg.training.loss_weights.get(h, 0.0)) for h in heads},
            )
        else:
            model = compile_model(model, cfg)
        labels = {head: y for head in model.output_names}  # no aux labels without aux heads
        ds = tf.data.Dataset.from_tensors((x, labels)).repeat()
        model.fit(ds, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[ends])
    # From the first call that ends the warm-up (or later) to the last one.
    first_step, start = next((b, t) for b, t in ends.times if b >= warmup - 1)
    last_step, end = ends.times[-1]
    steps, seconds = last_step - first_step, end - start
    return {
        "size": size,
        "policy": policy,
        "batch": batch,
        "steps": steps,
        "images_per_second": steps * batch / seconds,
        "seconds_per_step": seconds / steps,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 112])
    parser.add_argument(
        "--policies", nargs="+", default=["float32", "mixed_bfloat16", "mixed_float16"]
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (>= 1)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per configuration")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--ablate", action="append", default=[], choices=["keras_bn", "metrics", "inter_op_1"]
    )
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "POLICY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        result = measure(
            int(args.one[0]),
            args.one[1],
            args.batch,
            args.steps,
            args.warmup,
            args.set,
            args.ablate,
        )
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    print(f"cpu cores: {os.cpu_count()}, batch {args.batch}, {args.steps} timed steps")
    print(f"{'size':>5} {'policy':<15} {'images/s':>9} {'s/step':>8} {'peak MiB':>9}")
    for size in args.sizes:
        for policy in args.policies:
            cmd = [sys.executable, __file__, "--one", str(size), policy]
            cmd += ["--batch", str(args.batch), "--steps", str(args.steps)]
            cmd += ["--warmup", str(args.warmup)]
            cmd += [f"--set={kv}" for kv in args.set]
            cmd += [f"--ablate={part}" for part in args.ablate]
            try:
                proc = subprocess.run(
                    cmd, env=env, capture_output=True, text=True, timeout=args.timeout
                )
            except subprocess.TimeoutExpired:
                print(f"{size:>5} {policy:<15} {'timeout':>9}", flush=True)
                continue
            if proc.returncode or "RESULT " not in proc.stdout:
                print(f"{size:>5} {policy:<15} failed: {proc.stderr.strip()[-300:]}", flush=True)
                continue
            r = json.loads(proc.stdout.split("RESULT ", 1)[1])
            print(
                f"{size:>5} {policy:<15} {r['images_per_second']:>9.1f} "
                f"{r['seconds_per_step']:>8.2f} {r['peak_rss_mib']:>9.0f}",
                flush=True,
            )
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"largest child peak memory: {children:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
