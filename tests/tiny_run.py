"""A tiny trained run folder shared by the evaluate, export and predict tests.

Built once per test session (the three test modules wrap `get_tiny_run` in a fixture; the run is
cached here so it is trained only once): 3 classes of 80x80 JPEGs, 72x72 input, 2 epochs of 2
SGD steps by `keras_googlenet.train`, interrupted and resumed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import write_processed_dataset

REPO = Path(__file__).resolve().parents[1]
_CACHE: dict[str, Path] = {}


OVERRIDES = {
    "data.batch_size": 8,
    "data.steps_per_epoch": 2,
    "data.validation_steps": None,  # the whole validation CSV: 12 images
    "training.epochs": 2,
    "training.checkpoint_interval": 1,
    "training.seed": 0,
    "data.deterministic": True,  # the same run every time: tests compare against it
}
KILL_AT_STEP = 3  # the middle of epoch 2: epoch 1 is finished and backed up


def tiny_config(dataset: Path, **overrides):
    """configs/smoke.yaml on `dataset`: 72x72 input from 80x80 images, batch 8, 2x2 steps."""
    from keras_googlenet.config import load_config

    values = {"data.input_dir": str(dataset), **OVERRIDES, **overrides}
    return load_config(REPO / "configs" / "smoke.yaml", values)


def _build_run(root: Path) -> Path:
    """Trains with the real CLI, kills it mid-epoch 2 (SIGKILL, like a power cut), then resumes
    it in this process with `train()`: every test of evaluate/export/predict runs on a resumed
    run."""
    from keras_googlenet.run_dir import RunDir
    from keras_googlenet.train import KILL_ENV, train

    dataset = write_processed_dataset(root / "data", num_classes=3, size=80)
    run = RunDir(root / "run")
    args = ["--config", str(REPO / "configs" / "smoke.yaml"), "--run-dir", str(run.root)]
    for key, value in {"data.input_dir": str(dataset), **OVERRIDES}.items():
        args += ["--set", f"{key}={'null' if value is None else value}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), KILL_ENV: str(KILL_AT_STEP)}
    killed = subprocess.run(
        [sys.executable, "-m", "keras_googlenet.train", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not run.done.exists() and run.best.exists()
    result = train(tiny_config(dataset), run.root)
    assert result["status"] == "finished" and result["initial_epoch"] == 1, result
    return run.root


def get_tiny_run(tmp_path_factory) -> Path:
    """The run folder (read-only for tests: copy it before changing anything).

    Test modules wrap this in a session fixture; the cache makes it one run per session.
    """
    if "run" not in _CACHE:
        _CACHE["run"] = _build_run(tmp_path_factory.mktemp("tiny_run"))
    return _CACHE["run"]


def get_tiny_export(tmp_path_factory) -> Path:
    """The tiny run exported with the CLI (read-only for tests)."""
    if "export" not in _CACHE:
        from keras_googlenet.errors import run_cli
        from keras_googlenet.export import main

        run = get_tiny_run(tmp_path_factory)
        out = tmp_path_factory.mktemp("tiny_export") / "export"
        code = run_cli(main, ["--run", str(run), "--output", str(out)])
        assert code == 0
        _CACHE["export"] = out
    return _CACHE["export"]
