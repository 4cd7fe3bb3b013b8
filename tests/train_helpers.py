"""Shared pieces of the training tests: a tiny config, running the CLI, reading event files."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZE = 65  # the smallest input the aux heads accept: the fastest GoogLeNet there is


def tiny_overrides(data_dir, **extra) -> list[str]:
    """`--set` values for a few-step run of configs/smoke.yaml on a tiny dataset."""
    values = {
        "data.input_dir": str(data_dir),
        "model.input_size": SIZE,
        "data.train_augment": f"[{{name: random_crop, size: {SIZE}}}, {{name: horizontal_flip}}]",
        "data.val_augment": f"[{{name: center_crop, size: {SIZE}}}]",
        "data.batch_size": 4,
        "data.steps_per_epoch": 2,
        "data.validation_steps": None,
        "training.epochs": 2,
        **extra,
    }
    return [f"{k}={'null' if v is None else v}" for k, v in values.items()]


def tiny_config(data_dir, **extra):
    from keras_googlenet.config import load_config

    return load_config(REPO / "configs" / "smoke.yaml", tiny_overrides(data_dir, **extra))


def run_train_cli(args, env_extra=None, timeout=300) -> subprocess.CompletedProcess:
    """Runs `python -m keras_googlenet.train ARGS` in a fresh process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "keras_googlenet.train", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def scalar_steps(log_dir) -> dict[str, list[int]]:
    """`{"train/epoch_loss": [0, 1, ...], ...}`: every scalar's steps, in the order on disk.

    Read raw (not through TensorBoard's reader, which hides repeated steps by purging them).
    """
    import tensorflow as tf

    steps = defaultdict(list)
    for path in sorted(Path(log_dir).rglob("events.out.tfevents.*"), key=os.path.getmtime):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    steps[f"{path.parent.name}/{value.tag}"].append(event.step)
    return dict(steps)
