"""The preprocessor end to end on generated messy folders: formats, counts, mean, safety, CLI."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import cli, write_processed_dataset
from PIL import Image

from keras_googlenet.errors import UserError
from preprocessing import image_dir_preprocessor as pre
from preprocessing.folders import parse_label, stratified_split, unique_names, val_count
from preprocessing.image_io import load_rgb

REPO = Path(__file__).resolve().parents[1]
SIZE = 48
NAME = re.compile(r"[0-9a-f]{16}\.jpg")


def picture(rng, height, width) -> np.ndarray:
    """A smooth random picture (a gradient plus a blob), different for every call."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 210, 3)
    slope = rng.uniform(-60, 60, 3)
    blob = 50 * np.exp(
        -((x - width * rng.uniform()) ** 2 + (y - height * rng.uniform()) ** 2)
        / (0.05 * width * height)
    )
    img = base + slope * (x / width)[..., None] + blob[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg(path: Path, img: np.ndarray, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, "JPEG", quality=92, **kwargs)


def write_messy_folder(root: Path, seed: int = 0) -> dict[str, str]:
    """A Caltech-layout folder with every kind of file SPEC §2 lists.

    Returns:
        relative path -> expected skip reason, for every file that must be skipped.
    """
    rng = np.random.default_rng(seed)
    for folder, prefix in (("001.cats", "001"), ("002.owls", "002"), ("dogs", "dog")):
        for i in range(1, 7):
            h, w = rng.integers(40, 160, 2)
            jpeg(root / folder / f"{prefix}_{i:04d}.jpg", picture(rng, h, w))
    cats = root / "001.cats"
    jpeg(cats / "001_0007.jpg", picture(rng, 90, 120)[..., 0])  # grayscale
    Image.fromarray(picture(rng, 80, 100)).convert("CMYK").save(cats / "001_0008.jpg", "JPEG")
    Image.fromarray(picture(rng, 70, 70)).save(cats / "001_0009.jpg", "PNG")  # PNG as .jpg
    Image.fromarray(picture(rng, 60, 90)).convert("P").save(cats / "001_0010.gif", "GIF")
    jpeg(cats / "001_0011.jpg", picture(rng, 20, 20))  # tiny
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    jpeg(cats / "001_0012.jpg", picture(rng, 60, 120), exif=exif)
    owls = root / "002.owls"
    jpeg(owls / "002_0007.jpg", picture(rng, 2000, 3000))  # big
    Image.fromarray(picture(rng, 50, 50)).save(owls / "002_0008.jpg", "WEBP")
    Image.fromarray(picture(rng, 50, 50)).save(owls / "002_0009.bmp", "BMP")
    full = (root / "dogs" / "dog_0001.jpg").read_bytes()
    bad = {
        "002.owls/002_0010.jpg": "truncated",
        "002.owls/002_0011.jpg": "empty file",
        "dogs/readme.txt": "not an image",
        "dogs/Thumbs.db": "not an image",
        "dogs/.DS_Store": "hidden",
        "001.cats/._001_0001.jpg": "hidden",
        "dogs/more": "subfolder",
        "notes.txt": "not in a class folder",
    }
    (owls / "002_0010.jpg").write_bytes(full[: len(full) // 2])
    (owls / "002_0011.jpg").write_bytes(b"")
    (root / "dogs/readme.txt").write_text("photos of dogs\n")
    (root / "dogs/Thumbs.db").write_bytes(bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
    (root / "dogs/.DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (cats / "._001_0001.jpg").write_bytes(b"\x00\x05\x16\x07")
    jpeg(root / "dogs/more/dog_0100.jpg", picture(rng, 50, 50))
    (root / "notes.txt").write_text("downloaded from somewhere\n")
    for i in range(1, 4):
        jpeg(root / "257.clutter" / f"257_{i:04d}.jpg", picture(rng, 50, 60))
    return bad


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def header(path: Path) -> str:
    return path.read_text(encoding="utf-8").splitlines()[0]


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file under `out` (relative path -> bytes)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """The messy folder, processed once with two workers; (input, bad files, output, summary)."""
    root = tmp_path_factory.mktemp("messy")
    bad = write_messy_folder(root / "raw")
    summary = pre.preprocess(root / "raw", root / "out", size=SIZE, workers=2, progress=False)
    return root / "raw", bad, root / "out", summary


# --------------------------------------------------------------------------------------------
# Output formats and counts.


def test_output_files_and_formats(messy):
    _, _, out, _ = messy
    top = sorted(p.name for p in out.iterdir())
    assert top == sorted(["train", "val", *pre.TABLES, *pre.REPORTS])  # no staging, no marker
    for split in ("train", "val"):
        assert header(out / f"{split}.csv") == "image,class"
        rows = read_csv(out / f"{split}.csv")
        assert rows and {r["image"] for r in rows} == {p.name for p in (out / split).iterdir()}
        for row in rows:
            assert NAME.fullmatch(row["image"]) and row["class"] in {"0", "1", "2"}
            with Image.open(out / split / row["image"]) as im:
                assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (SIZE, SIZE))
    names = [r["image"] for s in ("train", "val") for r in read_csv(out / f"{s}.csv")]
    assert len(names) == len(set(names))
    assert (out / "categories.csv").read_text() == "id,label\n0,cats\n1,owls\n2,dogs\n"
    mean = json.loads((out / "rgb_val.json").read_text())
    assert list(mean) == ["R", "G", "B"]
    assert all(isinstance(v, float) and 0 < v < 255 for v in mean.values())
    assert header(out / "skipped.csv") == "file,reason,detail"


def test_every_file_accounted_for(messy):
    raw, bad, out, summary = messy
    skipped = {r["file"]: r["reason"] for r in read_csv(out / "skipped.csv")}
    assert skipped == bad
    # Everything in the used class folders and at the top level, clutter left out.
    entries = [p for p in raw.iterdir() if p.name != "257.clutter"]
    entries += [q for p in entries if p.is_dir() for q in p.iterdir()]
    files = len([p for p in entries if not p.is_dir() or p.parent != raw])
    assert summary.found == files == 35
    assert summary.found == summary.written + sum(summary.skipped.values())
    assert summary.written == 27 and summary.skipped["not an image"] == 2
    assert summary.left_out == [("257.clutter", 3)]
    sources = read_csv(out / "sources.csv")
    assert len(sources) == summary.written
    assert not any(s["source"].startswith("257.clutter") for s in sources)
    line = summary.line()
    assert "found 35 files in 3 classes" in line and "left out 257.clutter" in line


def test_split_is_stratified(messy):
    _, _, out, summary = messy
    per_class = {}
    for row in read_csv(out / "sources.csv"):
        per_class.setdefault(row["class"], {"train": 0, "val": 0})[row["split"]] += 1
    assert summary.train == sum(c["train"] for c in per_class.values())
    for counts in per_class.values():
        n = counts["train"] + counts["val"]
        assert counts["val"] == val_count(n, 0.2) >= 1


def test_outputs_match_what_the_pipeline_reads(messy, tmp_path):
    # tests/helpers.py writes the format the training pipeline's tests read.
    _, _, out, _ = messy
    reference = write_processed_dataset(tmp_path / "ref", num_classes=2, size=32)
    for name in ("train.csv", "val.csv", "categories.csv"):
        assert header(out / name) == header(reference / name)
    ref_mean = json.loads((reference / "rgb_val.json").read_text())
    assert list(json.loads((out / "rgb_val.json").read_text())) == list(ref_mean)


def test_training_pipeline_reads_the_output(messy):
    from keras_googlenet.config import load_config
    from keras_googlenet.data.dataset_info import read_dataset_info

    _, _, out, summary = messy
    info = read_dataset_info(load_config(overrides={"data.input_dir": str(out)}))
    assert info.class_names == ("cats", "owls", "dogs") and not info.skipped
    assert (info.train_size, info.val_size) == (summary.train, summary.val)
    assert info.mean_rgb == tuple(summary.mean_rgb[c] for c in "RGB")


def test_mean_is_over_train_pixels(messy):
    raw, _, out, _ = messy
    train = [r for r in read_csv(out / "sources.csv") if r["split"] == "train"]
    pixels = np.concatenate([load_rgb(raw / r["source"], SIZE).reshape(-1, 3) for r in train])
    mean = json.loads((out / "rgb_val.json").read_text())
    np.testing.assert_allclose([mean[c] for c in "RGB"], pixels.mean(axis=0), rtol=1e-12)
    # The JPEGs on disk (what training reads) agree within JPEG's rounding.
    decoded = np.stack([np.asarray(Image.open(out / "train" / r["image"])) for r in train])
    np.testing.assert_allclose([mean[c] for c in "RGB"], decoded.mean(axis=(0, 1, 2)), atol=1.0)
    everything = np.stack(
        [load_rgb(raw / r["source"], SIZE) for r in read_csv(out / "sources.csv")]
    )
    assert not np.allclose(everything.mean(axis=(0, 1, 2)), pixels.mean(axis=0))  # val excluded


# --------------------------------------------------------------------------------------------
# Determinism, small classes, options.


def small_folder(root: Path, classes=("001.a", "002.b", "003.c"), per_class=6, seed=1) -> Path:
    rng = np.random.default_rng(seed)
    for folder in classes:
        for i in range(per_class):
            jpeg(root / folder / f"{i:04d}.jpg", picture(rng, 40 + 7 * i, 60))
    return root


def test_same_seed_same_output_any_worker_count(tmp_path):
    raw = small_folder(tmp_path / "raw")
    pre.preprocess(raw, tmp_path / "a", size=32, seed=7, workers=1, progress=False)
    pre.preprocess(raw, tmp_path / "b", size=32, seed=7, workers=2, progress=False)
    pre.preprocess(raw, tmp_path / "c", size=32, seed=8, workers=2, progress=False)
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")
    a, c = read_csv(tmp_path / "a/sources.csv"), read_csv(tmp_path / "c/sources.csv")
    assert {r["image"] for r in a}.isdisjoint({r["image"] for r in c})
    val_a = {r["source"] for r in a if r["split"] == "val"}
    val_c = {r["source"] for r in c if r["split"] == "val"}
    assert len(val_a) == len(val_c) == 3 and val_a != val_c


def test_spawned_workers_give_the_same_output(tmp_path, monkeypatch):
    # In a process that already runs TensorFlow (the demo) workers are spawned, not forked;
    # forked workers are covered by the command-line tests (fresh processes, no TensorFlow).
    raw = small_folder(tmp_path / "raw", per_class=3)
    pre.preprocess(raw, tmp_path / "one", size=24, workers=1, progress=False)
    from preprocessing import workers

    monkeypatch.setattr(workers, "_start_method", lambda: "spawn")
    pre.preprocess(raw, tmp_path / "spawn", size=24, workers=2, progress=False)
    assert snapshot(tmp_path / "one") == snapshot(tmp_path / "spawn")


def test_split_of_a_class_does_not_depend_on_other_classes():
    files = {"001.a": [f"001.a/{i}.jpg" for i in range(10)]}
    alone = stratified_split(files, 0.2, seed=3)
    more = stratified_split({**files, "002.b": ["002.b/x.jpg", "002.b/y.jpg"]}, 0.2, seed=3)
    assert alone[1] <= more[1] and len(alone[1]) == 2
    assert len(set(unique_names(5000, 1))) == 5000 and unique_names(3, 1) == unique_names(3, 1)


def test_split_keeps_each_group_of_copies_on_one_side():
    files = {
        "001.a": [f"001.a/{i}.jpg" for i in range(10)],
        "002.b": [f"002.b/{i}.jpg" for i in range(10)],
    }
    plain = stratified_split(files, 0.2, seed=3)
    assert stratified_split(files, 0.2, seed=3, groups=[]) == plain  # no groups: as before
    groups = [["001.a/0.jpg", "001.a/1.jpg"], ["001.a/2.jpg", "002.b/5.jpg", "002.b/6.jpg"]]
    for seed in range(20):
        train, val = stratified_split(files, 0.2, seed=seed, groups=groups)
        assert train | val == {f for names in files.values() for f in names}
        for group in groups:
            assert set(group) <= train or set(group) <= val, (seed, group)
        assert len(val) <= 4  # each class's share (2) is never exceeded


def test_val_count_keeps_both_splits_when_possible():
    assert [val_count(n, 0.2) for n in (0, 1, 2, 3, 5, 10, 11)] == [0, 0, 1, 1, 1, 2, 2]
    assert val_count(4, 0.9) == 3  # at least one image stays in train


def test_labels_from_folder_names():
    assert parse_label("001.ak47") == "ak47"
    assert parse_label("045.computer-keyboard") == "computer-keyboard"
    assert parse_label("cats") == "cats" and parse_label("v1.2") == "v1.2"


def test_classes_with_too_few_images(tmp_path, caplog):
    raw = small_folder(tmp_path / "raw", classes=("001.a", "002.b"))
    jpeg(raw / "003.one" / "good.jpg", picture(np.random.default_rng(0), 50, 50))
    (raw / "003.one" / "bad.jpg").write_bytes(b"not a picture")
    (raw / "004.none").mkdir()
    (raw / "004.none" / "zero.jpg").write_bytes(b"")
    summary = pre.preprocess(raw, tmp_path / "out", size=32, workers=1, progress=False)
    assert len(summary.warnings) == 2
    assert any("003.one" in w and "train only" in w for w in summary.warnings)
    assert any("004.none" in w and "left out" in w for w in summary.warnings)
    assert "004.none" in caplog.text
    cats = read_csv(tmp_path / "out/categories.csv")
    assert [(c["id"], c["label"]) for c in cats] == [("0", "a"), ("1", "b"), ("2", "one")]
    assert "2" not in {r["class"] for r in read_csv(tmp_path / "out/val.csv")}
    assert sum(r["class"] == "2" for r in read_csv(tmp_path / "out/train.csv")) == 1
    assert summary.found == summary.written + sum(summary.skipped.values()) == 15


def test_fewer_than_two_readable_classes_is_an_error(tmp_path):
    raw = small_folder(tmp_path / "raw", classes=("001.a",), per_class=3)
    (raw / "002.b").mkdir()
    (raw / "002.b" / "x.jpg").write_text("not an image")
    with pytest.raises(UserError, match="fewer than two classes.*skipped.csv"):
        pre.preprocess(raw, tmp_path / "out", size=24, workers=1, progress=False)
    assert read_csv(tmp_path / "out/skipped.csv")[0]["file"] == "002.b/x.jpg"
    assert not (tmp_path / "out/train.csv").exists()


def test_input_one_level_too_high_gets_a_hint(tmp_path):
    small_folder(tmp_path / "download" / "256_ObjectCategories", per_class=1)
    with pytest.raises(UserError, match="did you mean --input .*256_ObjectCategories"):
        pre.preprocess(tmp_path / "download", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_include_clutter_and_no_center_crop(tmp_path):
    raw = small_folder(tmp_path / "raw", classes=("001.a", "002.b", "257.clutter"))
    summary = pre.preprocess(
        raw, tmp_path / "out", size=24, include_clutter=True, center_crop=False, progress=False
    )
    assert summary.num_classes == 3 and summary.written == 18
    assert read_csv(tmp_path / "out/categories.csv")[2]["label"] == "clutter"


# --------------------------------------------------------------------------------------------
# Safety: the output folder, interruptions.


def test_refuses_non_empty_output_unless_overwrite(tmp_path):
    raw = small_folder(tmp_path / "raw")
    out = tmp_path / "out"
    pre.preprocess(raw, out, size=24, workers=1, progress=False)
    before = snapshot(out)
    with pytest.raises(UserError, match="not empty"):
        pre.preprocess(raw, out, size=24, workers=1, progress=False)
    assert snapshot(out) == before
    (out / "my_notes.txt").write_text("mine")
    pre.preprocess(raw, out, size=32, workers=1, overwrite=True, progress=False)
    assert (out / "my_notes.txt").read_text() == "mine"  # only our own files are replaced
    with Image.open(out / "train" / read_csv(out / "train.csv")[0]["image"]) as im:
        assert im.size == (32, 32)
    with pytest.raises(UserError, match="inside the input"):
        pre.preprocess(raw, raw / "001.a" / "out", progress=False)
    with pytest.raises(UserError, match="inside the output"):
        pre.preprocess(raw, tmp_path, overwrite=True, progress=False)


def test_crash_while_writing_tables_then_rerun(tmp_path, monkeypatch):
    raw = small_folder(tmp_path / "raw")
    out = tmp_path / "out"
    real_write = pre._write_csv

    def dies_at_val_csv(path, head, rows):
        if path.name == "val.csv":
            raise KeyboardInterrupt
        real_write(path, head, rows)

    monkeypatch.setattr(pre, "_write_csv", dies_at_val_csv)
    with pytest.raises(KeyboardInterrupt):
        pre.preprocess(raw, out, size=24, workers=1, progress=False)
    assert (out / pre.MARKER).exists() and not (out / "val.csv").exists()
    for row in read_csv(out / "train.csv"):  # a table that exists names only real files
        assert (out / "train" / row["image"]).is_file()
    monkeypatch.setattr(pre, "_write_csv", real_write)
    summary = pre.preprocess(raw, out, size=24, workers=1, progress=False)  # no --overwrite
    assert any("interrupted" in w for w in summary.warnings)
    assert not (out / pre.MARKER).exists()
    pre.preprocess(raw, tmp_path / "fresh", size=24, workers=1, progress=False)
    assert snapshot(out) == snapshot(tmp_path / "fresh")


def start_preprocessor(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "keras_googlenet", "preprocess", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.fixture(scope="module")
def slow_folder(tmp_path_factory):
    """Two classes of 60 copies of a 1200x900 PNG (PNG has no fast draft decode): ~2 s."""
    raw = tmp_path_factory.mktemp("slow") / "raw"
    y, x = np.mgrid[0:900, 0:1200]
    img = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    for folder in ("001.a", "002.b"):
        (raw / folder).mkdir(parents=True)
        Image.fromarray(img).save(raw / folder / "0000.png")
        data = (raw / folder / "0000.png").read_bytes()
        for i in range(1, 60):
            (raw / folder / f"{i:04d}.png").write_bytes(data)
    return raw


def wait_for_staged(out: Path, count: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    staging = out / pre.STAGING_DIR
    while time.monotonic() < deadline:
        if staging.is_dir() and len(os.listdir(staging)) >= count:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("no progress")


def slow_run(folder: Path, out: Path, workers: int) -> subprocess.Popen:
    """The preprocessor CLI on the slow folder, as the interruption tests start it."""
    args = ["--input", str(folder), "--output", str(out), "--image-size", "32", "--no-progress"]
    return start_preprocessor(*args, "--workers", str(workers))


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_starts_clean(slow_folder, tmp_path):
    out = tmp_path / "out"
    proc = slow_run(slow_folder, out, workers=1)
    wait_for_staged(out, 10, proc)
    assert proc.poll() is None  # still running: the kill lands mid-run
    proc.kill()
    proc.communicate()
    assert (out / pre.MARKER).exists()
    assert not any((out / t).exists() for t in pre.TABLES)  # no table names missing images
    rerun = slow_run(slow_folder, out, workers=2)
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert "interrupted run" in stderr and "found 120 files" in stdout
    assert not (out / pre.MARKER).exists() and not (out / pre.STAGING_DIR).exists()
    rows = read_csv(out / "train.csv") + read_csv(out / "val.csv")
    on_disk = len(list((out / "train").iterdir())) + len(list((out / "val").iterdir()))
    assert len(rows) == 120 == on_disk


@pytest.mark.slow
def test_ctrl_c_stops_cleanly(slow_folder, tmp_path):
    out = tmp_path / "out"
    proc = slow_run(slow_folder, out, workers=2)
    wait_for_staged(out, 4, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert stderr.strip() == "interrupted" and "Traceback" not in stderr
    assert (out / pre.MARKER).exists() and not (out / "train.csv").exists()


# --------------------------------------------------------------------------------------------
# Command line.


def test_cli_config_values_and_flags_win(tmp_path):
    raw = small_folder(tmp_path / "raw", classes=("001.a", "002.b", "003.c", "257.clutter"))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"preprocess:\n  size: 20\n  val_split: 0.5\n  include_clutter: true\n"
        f"  source_dir: {raw}\ndata:\n  input_dir: {tmp_path / 'out'}\n"
    )
    argv = ["--config", str(recipe), "--image-size", "28", "--no-include-clutter", "--no-progress"]
    assert cli("preprocess", *argv) == 0
    assert len(read_csv(tmp_path / "out/categories.csv")) == 3  # the flag won
    assert len(read_csv(tmp_path / "out/val.csv")) == 9  # val_split 0.5 from the file
    name = read_csv(tmp_path / "out/train.csv")[0]["image"]
    with Image.open(tmp_path / "out/train" / name) as im:
        assert im.size == (28, 28)  # the flag won


@pytest.mark.parametrize(
    "case, args, message",
    [
        ("missing input", ["--input", "{tmp}/nowhere", "--output", "{tmp}/o"], "does not exist"),
        ("no classes", ["--input", "{tmp}/flat", "--output", "{tmp}/o"], "no class folders"),
        (
            "split high",
            ["--input", "{raw}", "--output", "{tmp}/o", "--val-split", "1.5"],
            "--val-split must be between 0 and 1",
        ),
        (
            "split zero",
            ["--input", "{raw}", "--output", "{tmp}/o", "--val-split", "0"],
            "--val-split",
        ),
        (
            "bad int",
            ["--input", "{raw}", "--output", "{tmp}/o", "--image-size", "big"],
            "--image-size",
        ),
        ("no output", ["--input", "{raw}"], "--output is required"),
        ("not empty", ["--input", "{raw}", "--output", "{tmp}/flat"], "--overwrite"),
        ("config key", ["--config", "{tmp}/bad.yaml", "--output", "{tmp}/o"], "preprocess.sise"),
        (
            "config value",
            ["--config", "{tmp}/zero.yaml", "--input", "{raw}", "--output", "{tmp}/o"],
            "preprocess.workers must be at least 1",
        ),
    ],
)
def test_cli_bad_arguments_one_line_exit_2(tmp_path, case, args, message):
    raw = small_folder(tmp_path / "raw", per_class=1)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(b"x")
    (tmp_path / "bad.yaml").write_text("preprocess:\n  sise: 10\n")
    (tmp_path / "zero.yaml").write_text("preprocess:\n  workers: 0\n")
    argv = [a.format(tmp=tmp_path, raw=raw) for a in args]
    proc = start_preprocessor(*argv)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, (case, stderr)
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert stderr.startswith("error: ") and message in stderr, stderr
    assert not (tmp_path / "o").exists()


def test_fuzzed_files_are_written_or_skipped_with_a_reason(tmp_path):
    """320 mutated files in two class folders: found == written + skipped, a reason for every
    skip, and every written image decodes at the output size."""
    from helpers import fuzzed_image_files

    src = tmp_path / "in"
    paths = fuzzed_image_files(src / "raw", count=320)
    for i, path in enumerate(paths):
        folder = src / ("001.cats" if i % 2 else "002.dogs")
        folder.mkdir(exist_ok=True)
        path.rename(folder / path.name)
    (src / "raw").rmdir()
    out = tmp_path / "out"
    summary = pre.preprocess(src, out, size=24, workers=2, progress=False, seed=1)
    assert summary.found == len(paths) >= 300
    assert summary.found == summary.written + sum(summary.skipped.values())
    with open(out / "skipped.csv", newline="") as f:
        skipped = list(csv.DictReader(f))
    assert len(skipped) == sum(summary.skipped.values())
    assert all(row["reason"] for row in skipped)
    written = sorted((out / "train").iterdir()) + sorted((out / "val").iterdir())
    assert len(written) == summary.written > 0
    for path in written:
        with Image.open(path) as im:
            assert im.size == (24, 24) and im.mode == "RGB", path
