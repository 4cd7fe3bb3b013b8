"""Launch to the first training step: what every run, and every resume, waits for.

    .venv/bin/python bench/startup.py                 # the demo's recipe, 3 fresh processes
    .venv/bin/python bench/startup.py --runs 1 --set model.input_size=224 ...

Each run is a fresh Python process that calls `train()` on a processed copy of the demo's
generated shapes (written once to bench/.cache/startup/) with `configs/demo.yaml`, one epoch,
and prints a timestamp at each boundary, measured from the process's own start:

    import      `import tensorflow, keras` and the package
    to fit      `train()` up to Keras's `on_train_begin`: config checks, the run folder, the
                tf.data pipelines, GoogLeNet built and compiled, the TensorBoard extras
    first step  `on_train_begin` to the first batch end: tracing the training function, the
                first batches decoded, the step itself
    next step   the second step alone (what a step costs once running)

Printed: each part's median over the runs with the spread, and launch to the end of the first
step. Nothing is asserted; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / ".cache" / "startup"
PER_CLASS = 40  # 8 shapes x 40: enough batches for the first epoch's first steps

# Runs in the child process: times from the interpreter's start (time.perf_counter is not
# comparable across processes; the child takes its own origin first thing).
CHILD = """
import time
origin = time.perf_counter()
import json
import keras_googlenet  # first: it picks TensorFlow's CPU kernels (keras_googlenet/cpu.py)
import keras
import tensorflow as tf
from keras_googlenet.config import load_config
from keras_googlenet.training.train import train
imported = time.perf_counter()

marks = {{}}

class Clock(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        marks["fit"] = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:
            marks["first"] = time.perf_counter()
        elif batch == 1:
            marks["second"] = time.perf_counter()
            self.model.stop_training = True

cfg = load_config({config!r}, {overrides!r})
started = time.perf_counter()
train(cfg, {run!r}, callbacks=[Clock()])
print("RESULT " + json.dumps({{
    "import": imported - origin,
    "to_fit": marks["fit"] - started,
    "first_step": marks["first"] - marks["fit"],
    "next_step": marks["second"] - marks["first"],
    "total": marks["first"] - origin,
}}))
"""

PARTS = (
    ("import", "import tensorflow, keras, the package"),
    ("to_fit", "train() to on_train_begin"),
    ("first_step", "on_train_begin to the first step's end"),
    ("next_step", "the second step"),
    ("total", "launch to the end of the first step"),
)


def dataset() -> Path:
    """The demo's shapes, preprocessed once into bench/.cache/startup/processed."""
    from keras_googlenet.config import load_config
    from keras_googlenet.data.shapes import write_shapes_dataset
    from preprocessing.image_dir_preprocessor import MARKER, preprocess

    processed = CACHE / "processed"
    if (processed / "val.csv").is_file() and not (processed / MARKER).exists():
        return processed
    shutil.rmtree(CACHE, ignore_errors=True)  # an interrupted earlier write: start again
    cfg = load_config(REPO / "configs" / "demo.yaml").preprocess
    write_shapes_dataset(CACHE / "shapes", per_class=PER_CLASS, seed=cfg.seed)
    preprocess(
        CACHE / "shapes",
        processed,
        val_split=cfg.val_split,
        size=cfg.size,
        seed=cfg.seed,
        overwrite=True,
    )
    return processed


def one_run(overrides: list[str]) -> dict:
    """One fresh process: the parts' seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        code = CHILD.format(
            config=str(REPO / "configs" / "demo.yaml"),
            overrides=overrides,
            run=str(Path(tmp) / "run"),
        )
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env={"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
        )
    if "RESULT " not in proc.stdout:
        raise SystemExit(f"the run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.split("RESULT ", 1)[1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    data = dataset()
    overrides = [f"data.input_dir={data}", "training.epochs=1", *args.set]
    runs = []
    for i in range(args.runs):
        runs.append(one_run(overrides))
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in runs[-1].items()))
    print(f"\n{'part':<42} median s (min-max) over {args.runs} run(s)")
    for key, text in PARTS:
        values = [r[key] for r in runs]
        print(f"{text:<42} {statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
