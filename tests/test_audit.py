"""The duplicate audit: planted copies among photo-like look-alikes, the split, the report."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import cli, photo_like, write_processed_dataset
from PIL import Image

from preprocessing import audit_report
from preprocessing import image_dir_preprocessor as pre
from preprocessing.audit import NEAR_THRESHOLD, Audit, find_groups, fingerprint, near_pairs

SIZE = 64
CLASSES = ("001.cats", "002.dogs", "003.owls")


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def save(path: Path, img: np.ndarray, quality: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, "JPEG", quality=quality)


def write_planted(root: Path) -> list[set[str]]:
    """Eight distinct photos per class, all drawn from two shared palettes, and six planted
    copies of six of them. Returns the expected groups (sets of relative paths)."""
    rng = np.random.default_rng(7)
    palettes = [rng.uniform(0, 255, (4, 3)) for _ in range(2)]
    originals = {}
    for c, folder in enumerate(CLASSES):
        for k in range(8):
            h, w = (int(v) for v in rng.integers(150, 220, 2))
            img = photo_like(rng, h, w, palettes[(c + k) % 2])
            rel = f"{folder}/{folder[:3]}_{k:04d}.jpg"
            save(root / rel, img)
            originals[rel] = img
    names = list(originals)
    copies = {}
    # Exact: the same pixels, other bytes (a comment segment, as an editor's metadata adds).
    copies["001.cats/exact.jpg"] = (names[0], None)
    data = (root / names[0]).read_bytes()
    comment = b"saved again"
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    (root / "001.cats/exact.jpg").write_bytes(data[:2] + segment + data[2:])
    h, w = originals[names[1]].shape[:2]
    copies["001.cats/requality.jpg"] = (names[1], originals[names[1]])
    save(root / "001.cats/requality.jpg", originals[names[1]], quality=55)
    small = Image.fromarray(originals[names[9]]).resize((w * 6 // 10, h * 6 // 10))
    copies["002.dogs/resized.jpg"] = (names[9], None)
    save(root / "002.dogs/resized.jpg", np.asarray(small))
    img = originals[names[10]]
    dy, dx = img.shape[0] * 15 // 1000, img.shape[1] * 15 // 1000  # 1.5% off each side
    copies["002.dogs/cropped.jpg"] = (names[10], None)
    save(root / "002.dogs/cropped.jpg", img[dy : img.shape[0] - dy, dx : img.shape[1] - dx])
    bright = np.clip(originals[names[17]].astype(int) + 15, 0, 255).astype(np.uint8)
    copies["003.owls/brighter.jpg"] = (names[17], None)
    save(root / "003.owls/brighter.jpg", bright)
    # The same photo filed under a second class: a label conflict.
    copies["001.cats/also_an_owl.jpg"] = (names[18], None)
    save(root / "001.cats/also_an_owl.jpg", originals[names[18]], quality=80)
    return [{copy, original} for copy, (original, _) in copies.items()]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """(raw folder, expected groups, output, summary) of one default preprocess run."""
    root = tmp_path_factory.mktemp("planted")
    expected = write_planted(root / "raw")
    summary = pre.preprocess(
        root / "raw", root / "out", size=SIZE, workers=2, progress=False, val_split=0.4
    )
    return root / "raw", expected, root / "out", summary


def groups_of(rows: list[dict]) -> list[set[str]]:
    by_group: dict[str, set[str]] = {}
    for row in rows:
        by_group.setdefault(row["group"], set()).add(row["file"])
    return list(by_group.values())


def test_every_planted_copy_found_and_no_distinct_image_grouped(planted):
    _, expected, out, summary = planted
    rows = read_csv(out / "audit.csv")
    found = groups_of(rows)
    assert sorted(map(sorted, found)) == sorted(map(sorted, expected))
    kinds = {row["file"]: row["kind"] for row in rows}
    # The reference is the largest copy (the comment adds bytes; the resized one has fewer pixels).
    assert (kinds["001.cats/exact.jpg"], kinds["001.cats/001_0000.jpg"]) == ("reference", "exact")
    assert (kinds["002.dogs/002_0001.jpg"], kinds["002.dogs/resized.jpg"]) == ("reference", "near")
    conflicts = {row["file"] for row in rows if row["conflict"] == "yes"}
    assert conflicts == {"001.cats/also_an_owl.jpg", "003.owls/003_0002.jpg"}
    counts = json.loads((out / "audit.json").read_text())
    assert counts == summary.audit
    assert counts["exact_duplicates"] == {
        "groups": 1,
        "files": 2,
        "span_classes": 0,
        "across_split": 0,
    }
    assert counts["near_duplicates"]["groups"] == 5
    assert counts["near_duplicates"]["span_classes"] == 1
    assert counts["images_per_class"] == {"001.cats": 11, "002.dogs": 10, "003.owls": 9}
    assert counts["imbalance"] == pytest.approx(11 / 9, abs=1e-3)


def test_no_group_crosses_the_split(planted):
    _, expected, out, _ = planted
    split_of = {r["source"]: r["split"] for r in read_csv(out / "sources.csv")}
    for group in expected:
        assert len({split_of[f] for f in group}) == 1, group
    assert {split_of[f] for g in expected for f in g} == {"train", "val"}  # not all in train
    for row in read_csv(out / "audit.csv"):
        assert row["split"] == split_of[row["file"]]


def test_report_pictures_exist(planted):
    _, _, out, _ = planted
    pictures = sorted(p.name for p in (out / "audit").iterdir())
    assert pictures[:2] == ["classes.png", "conflict_001.jpg"]
    assert "group_006.jpg" in pictures and "group_007.jpg" not in pictures
    with Image.open(out / "audit" / "conflict_001.jpg") as im:
        assert im.size == (2 * audit_report.THUMB, audit_report.THUMB + 30)
    assert not list(out.glob(".audit-*"))


def test_dedupe_keeps_the_largest_copy(planted, tmp_path):
    raw, expected, _, _ = planted
    summary = pre.preprocess(raw, tmp_path, size=SIZE, workers=1, progress=False, dedupe=True)
    sources = {r["source"] for r in read_csv(tmp_path / "sources.csv")}
    assert summary.written == 30 - len(expected)
    for group in expected:
        assert len(group & sources) == 1
    assert "002.dogs/resized.jpg" not in sources and "002.dogs/002_0001.jpg" in sources
    skipped = {r["file"]: r["reason"] for r in read_csv(tmp_path / "skipped.csv")}
    assert sorted(skipped.values()) == [pre.DUPLICATE] * len(expected)
    assert summary.audit["left_out"] == {
        "--dedupe: a smaller copy of the group's reference": len(expected)
    }


def test_drop_conflicts_leaves_the_conflicting_group_out(planted, tmp_path):
    raw, _, _, _ = planted
    pre.preprocess(raw, tmp_path, size=SIZE, workers=1, progress=False, drop_conflicts=True)
    sources = {r["source"] for r in read_csv(tmp_path / "sources.csv")}
    skipped = {r["file"]: r["reason"] for r in read_csv(tmp_path / "skipped.csv")}
    conflict = {"001.cats/also_an_owl.jpg", "003.owls/003_0002.jpg"}
    assert skipped == dict.fromkeys(conflict, pre.CONFLICT)
    assert not conflict & sources and len(sources) == 28


def test_no_audit_writes_no_report_and_dedupe_needs_it(planted, tmp_path, capsys):
    raw, _, _, _ = planted
    summary = pre.preprocess(raw, tmp_path / "a", size=SIZE, workers=1, progress=False, audit=False)
    assert summary.audit is None and not (tmp_path / "a" / "audit.csv").exists()
    assert (
        cli("preprocess", "--input", raw, "--output", tmp_path / "b", "--no-audit", "--dedupe") == 2
    )
    assert "--dedupe needs the audit" in capsys.readouterr().err


def test_audit_job_reports_leakage_of_a_processed_folder(tmp_path, capsys):
    data = tmp_path / "data"
    write_processed_dataset(data, num_classes=3, train_per_class=4, val_per_class=2, size=SIZE)
    first = read_csv(data / "train.csv")[0]
    shutil.copy(data / "train" / first["image"], data / "val" / "leaked.jpg")
    with open(data / "val.csv", "a", encoding="utf-8", newline="") as f:
        csv.writer(f).writerow(["leaked.jpg", first["class"]])
    assert cli("audit", "--input", data, "--workers", "1", "--no-progress") == 0
    out = capsys.readouterr().out
    assert "1 exact-duplicate groups (2 files), 0 span two or more classes, 1 left across" in out
    assert "leak: val/leaked.jpg" in out or f"leak: train/{first['image']}" in out
    counts = json.loads((data / "audit.json").read_text())
    assert counts["exact_duplicates"]["across_split"] == 1


def test_dataset_facts_record_the_audit(planted, tmp_path):
    from keras_googlenet.config import Config, DataConfig
    from keras_googlenet.data.dataset_info import read_dataset_info
    from keras_googlenet.training.run_dir import RunDir, write_dataset_facts

    _, _, out, summary = planted
    info = read_dataset_info(Config(data=DataConfig(input_dir=str(out))))
    write_dataset_facts(RunDir(tmp_path), info)
    facts = json.loads((tmp_path / "dataset.json").read_text())
    assert facts["audit"] == summary.audit


def test_clean_and_single_image_audits_say_so_in_one_line():
    rng = np.random.default_rng(3)
    photos = [photo_like(rng, 80, 80) for _ in range(5)]
    prints = [fingerprint(p, p.shape, (6400, 1000)) for p in photos]

    def lines(n):
        audit = Audit(
            files=[f"{i}.jpg" for i in range(n)],
            paths=[""] * n,
            classes=["a"] * n,
            splits=[""] * n,
            groups=find_groups(prints[:n], lambda k: None),
            notes={},
        )
        return audit.lines()

    assert lines(1) == ["audit: 1 image, nothing to compare"]
    assert lines(5)[0].startswith("audit: no exact or near duplicates among 5 images")


def test_banded_search_finds_exactly_the_pairs_a_full_comparison_finds():
    rng = np.random.default_rng(0)
    hashes = [int(v) for v in rng.integers(0, 2**63, 1500, dtype=np.int64)]
    planted = set()
    for k in range(200):  # planted pairs at every distance up to the threshold and past it
        flips = rng.choice(64, size=k % (NEAR_THRESHOLD + 3), replace=False)
        if len(flips) <= NEAR_THRESHOLD:
            planted.add((k, len(hashes)))
        hashes.append(hashes[k] ^ sum(1 << int(b) for b in flips))
    values = np.array(hashes, dtype=np.uint64)
    brute = {
        (i, j)
        for i in range(len(values))
        for j in np.nonzero(np.bitwise_count(values[i] ^ values[i + 1 :]) <= NEAR_THRESHOLD)[0]
        + i
        + 1
    }
    assert set(near_pairs(hashes)) == {(int(i), int(j)) for i, j in brute}
    assert planted <= brute and len(planted) > 150


def test_an_interrupted_report_leaves_nothing_half_written(planted, tmp_path, monkeypatch):
    _, _, out, _ = planted
    audit = Audit(
        files=["a.jpg", "b.jpg"],
        paths=[str(p) for p in sorted((out / "train").iterdir())[:2]],
        classes=["x", "y"],
        splits=["train", "val"],
        groups=[],
        notes={},
    )
    audit_report.write_report(audit, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(audit_report, "class_chart", interrupted)
    audit.splits = ["train", "train"]
    with pytest.raises(KeyboardInterrupt):
        audit_report.write_report(audit, tmp_path)
    # audit.csv is rewritten whole (atomically); the pictures and audit.json stay the old ones.
    after = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert set(after) == set(before) and after["audit.json"] == before["audit.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
