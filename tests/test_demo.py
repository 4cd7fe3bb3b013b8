"""The demo end to end (--quick: tiny dataset, one epoch): every step runs, every artifact is
there, and a second run reuses what is done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_demo_runs_the_whole_chain_twice(tmp_path, capsys):
    work = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "keras_googlenet", "demo", "--quick", "--output", str(work)],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for step in range(1, 7):
        assert f"[{step}/6]" in out

    # 1. The generated Caltech256-style folder and the held-out images.
    assert (work / "shapes" / "001.circle" / "001_0001.jpg").is_file()
    heldout = sorted((work / "heldout").glob("*.jpg"))
    assert len(heldout) == 8
    # 2. The real preprocessor: the broken files were skipped and listed.
    processed = work / "processed"
    for name in ("train.csv", "val.csv", "categories.csv", "rgb_val.json", "skipped.csv"):
        assert (processed / name).is_file(), name
    assert len((processed / "skipped.csv").read_text().strip().splitlines()) - 1 >= 3
    # 3. Training with the aux heads, its run folder complete.
    run = work / "run"
    for name in ("config.yaml", "output.log", "history.csv", "DONE", "checkpoints/best.keras"):
        assert (run / name).exists(), name
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert list((run / "plots").glob("*.png"))
    assert "aux_4a_accuracy" in (run / "history.csv").read_text().splitlines()[0]
    # 4. The SavedModel.
    assert (work / "export" / "saved_model.pb").is_file()
    # 5. Evaluation on the validation split, the export run beside the checkpoint.
    metrics = json.loads((run / "eval" / "best-val" / "metrics.json").read_text())
    assert metrics["csv"].endswith("val.csv") and 0 <= metrics["top1"] <= 1
    assert (run / "eval" / "best-val" / "confusion.png").is_file()
    agree = metrics["export"]
    assert agree["same_checkpoint"] and agree["images"] == metrics["num_images"]
    assert agree["max_abs_difference"] < 1e-4 and "the export gives the same class on" in out
    # 6. A prediction line per held-out image, then every path and the TensorBoard command.
    predicted = [
        line.split()[0] for line in out.splitlines() if line.endswith(" ok") or "wrong (is" in line
    ]
    assert sorted(predicted) == [p.name for p in heldout]
    assert f"tensorboard --logdir {run / 'tensorboard'}" in out
    assert str(work / "export") in out
    assert out.strip().splitlines()[-1].startswith("demo: val top-1 ")

    # Again, in the same folder: the data and the finished run are reused, and it still ends
    # with every step done.
    assert cli("demo", *["--quick", "--output", str(work)]) == 0
    again = capsys.readouterr()
    assert again.out.count("reusing") == 2
    assert "already finished" in again.err
    assert again.out.strip().splitlines()[-1].startswith("demo: val top-1 ")
    assert not (work / "run-2").exists()


def test_too_few_images_per_class_is_refused(tmp_path, capsys):
    assert cli("demo", *["--per-class", "2", "--output", str(tmp_path / "d")]) == 2
    assert "--per-class must be at least 5" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
