"""The CIFAR-10 quick check end to end on tiny local copies (never the network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import cli
from test_cifar import write_cifar_archive, write_cifar_batches, write_cifar_image_folder

from keras_googlenet import quickcheck
from keras_googlenet.data import cifar

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--epochs", "1", "--image-size", "65", "--set", "data.batch_size=4", "--offline"]


def _env(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, KERAS_HOME=str(tmp_path / "keras_home"))
    env[cifar.OFFLINE_ENV] = "1"
    return env


def test_datasets_resize_batches_on_the_fly(tmp_path):
    data = cifar.find_local(write_cifar_batches(tmp_path)[0])
    train_ds, val_ds = quickcheck.make_datasets(data, 67, batch_size=3)
    images, labels = next(iter(train_ds))
    assert images.shape == (3, 67, 67, 3) and images.dtype.name == "float32"
    assert set(labels) == {"main", "aux_4a", "aux_4d"}
    # 0-255 pixels: the model divides by 255 (mean 0) as the recipe scales to [0, 1].
    assert 200 < float(images.numpy().max()) <= 255
    assert sum(1 for _ in train_ds) == 20 // 3  # drop_remainder for training
    assert sum(int(b[0].shape[0]) for b in val_ds) == 8  # every validation image once
    assert [ds.options().autotune.enabled for ds in (train_ds, val_ds)] == [False, False]


def test_verdict_and_history_table():
    line = quickcheck.verdict(0.4312, 3, 72, 5000, 10, fast=True)
    assert "0.431 after 3 epochs at 72 px" in line and "(--fast)" in line
    assert "0.819 after 25 epochs at 224 px" in line
    row = {"epoch": 0, "main_loss": 1.5, "main_top1": 0.25, "val_aux_4d_accuracy": 0.125}
    table = quickcheck.format_history([row]).splitlines()
    assert "aux_4a loss" in table[0] and "val aux_4d acc" in table[0]
    assert table[1].split()[:3] == ["1", "1.5000", "0.2500"] and table[1].split()[-1] == "0.1250"


@pytest.mark.slow
def test_quickcheck_on_the_real_archive_format(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(cifar.OFFLINE_ENV, "1")
    archive = write_cifar_archive(tmp_path)
    run = tmp_path / "run"
    code = cli("quickcheck", *["--input", str(archive), "--run-dir", str(run), *TINY])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "20 training and 8 validation images" in out.out
    assert "epoch 1/1" in out.err  # train's per-epoch line
    lines = out.out.strip().splitlines()
    assert lines[-1].startswith("quick check: val accuracy ")
    assert "after 1 epochs at 65 px" in lines[-1] and "0.819 after 25 epochs" in lines[-1]
    header = next(i for i, line in enumerate(lines) if "aux_4d loss" in line)
    values = [float(v) for v in lines[header + 1].split()[1:]]
    assert len(values) == 9 and all(np.isfinite(values))
    for path in ("config.yaml", "history.csv", "output.log", "checkpoints/best.keras", "DONE"):
        assert (run / path).exists(), path

    # A quick-check run exports like any other (its class names are in the run folder).
    export = tmp_path / "export"
    assert cli("export", "--run-dir", run, "--output", export) == 0
    labels = (export / "labels.txt").read_text().splitlines()
    assert labels == json.loads((run / "dataset.json").read_text())["class_names"]
    assert len(labels) == 10
    capsys.readouterr()

    # The same command again: the finished run is recognised, the verdict printed again.
    code = cli("quickcheck", *["--input", str(archive), "--run-dir", str(run), *TINY])
    out = capsys.readouterr()
    assert code == 0 and "already finished" in out.err
    assert out.out.strip().splitlines()[-1].startswith("quick check: val accuracy")


@pytest.mark.slow
def test_quickcheck_cli_on_an_image_folder(tmp_path):
    root = write_cifar_image_folder(tmp_path / "cifar_images")
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "keras_googlenet", "quickcheck", "--input", str(root)]
        + ["--run-dir", str(run), *TINY],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "12 training and 6 validation images, 2 classes" in proc.stdout
    assert "(chance: 0.500)" in proc.stdout.strip().splitlines()[-1]
    assert (run / "checkpoints" / "last.keras").is_file()


def test_no_data_offline_is_one_clear_message(tmp_path):
    # No --input, nothing in data/cifar10 or the Keras cache, no network: exit 2, one line
    # that says what to download and where to put it, before TensorFlow is even imported.
    proc = subprocess.run(
        [sys.executable, "-m", "keras_googlenet", "quickcheck", "--fast"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: CIFAR-10 not found")
    assert "cifar-10-python.tar.gz" in lines[0] and "data/cifar10/" in lines[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "runs").exists()


def test_bad_data_dir_and_bad_flags(tmp_path, capsys):
    assert cli("quickcheck", *["--input", str(tmp_path / "nope"), "--offline"]) == 2
    assert "no CIFAR-10 copy there" in capsys.readouterr().err
    folder = write_cifar_batches(tmp_path / "copy")[0]
    code = cli("quickcheck", *["--input", str(folder), "--image-size", "40"])
    assert code == 2 and "model.input_size" in capsys.readouterr().err
