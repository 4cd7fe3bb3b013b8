"""report.html: its sections, that every image it shows exists, a run without history."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from keras_googlenet.evaluation.export_agreement import agreement
from keras_googlenet.evaluation.report import write_report


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.ids, self.rows, self._row, self._in_cell = [], [], [], None, False
        self.text = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "tr":
            self._row = []
        self._in_cell = tag in ("td", "th")

    def handle_endtag(self, tag):
        if tag == "tr":
            self.rows.append(self._row)
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_cell and self._row is not None:
            self._row.append(data)


def parse_report(path: Path) -> _Page:
    """The parsed page; asserts every image it references is a file beside it."""
    page = _Page()
    page.feed(path.read_text())
    assert page.images, "no image at all"
    for src in page.images:
        assert not src.startswith(("http:", "https:", "//")), src  # nothing from a network
        assert (path.parent / src).is_file(), src
    return page


def _metrics(tmp_path):
    return {
        "run": str(tmp_path / "run"),
        "checkpoint": "best.keras",
        "csv": "val.csv",
        "num_images": 4,
        "top1": 0.5,
        "top5": 1.0,
        "top_k": 3,
        "loss": 0.9,
        "mean_per_class_accuracy": 0.5,
        "averages": {"macro": {"precision": 0.4, "recall": 0.5, "f1": 0.44}},
        "calibration": {"ece_bins": 15, "ece": 0.2, "nll": 0.9, "temperature": None},
        "most_confused": [{"true": "a", "predicted": "b", "count": 2, "rate": 0.5, "true_id": 0}],
        "seconds": 1.5,
        "protocol": "10 crops",
    }


PER_CLASS = [
    {
        "id": 0,
        "label": "a",
        "count": 2,
        "precision": 1.0,
        "recall": 0.5,
        "f1": 0.667,
        "accuracy": 0.5,
    },
    {
        "id": 1,
        "label": "b",
        "count": 2,
        "precision": 0.5,
        "recall": 1.0,
        "f1": 0.5,
        "accuracy": 1.0,
    },
    {"id": 2, "label": "c", "count": 0, "precision": "", "recall": "", "f1": "", "accuracy": ""},
]


def test_report_structure_and_images(tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    from PIL import Image

    for name in ("confusion.png", "reliability.png", "worst.png"):  # no confused_pairs.png
        Image.new("RGB", (4, 4)).save(out / name)
    history = tmp_path / "history.csv"
    history.write_text(
        "epoch,loss,val_loss,main_top1,val_main_top1\n0,2.0,2.1,0.3,0.2\n1,1.5,1.7,0.5,0.4\n"
    )
    page = parse_report(write_report(out, _metrics(tmp_path), PER_CLASS, history))
    assert {"metrics", "curves", "calibration", "confusion", "mistakes", "classes"} <= set(page.ids)
    assert sorted(page.images) == ["confusion.png", "curves.png", "reliability.png", "worst.png"]
    text = "".join(page.text)
    assert "ECE (15 equal-width bins)" in text and "protocol: 10 crops" in text
    assert "most-confused pairs: not written (confused_pairs.png)" in text
    assert "no export compared" in text  # no --export: the page says how to get one
    # the class table: lowest F1 first, the class without images left out
    header = page.rows.index(["id", "label", "images", "precision", "recall", "F1", "accuracy"])
    assert [r[1] for r in page.rows[header + 1 :]] == ["b", "a"]


def test_report_without_history_says_so(tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "curves.png").write_bytes(b"stale")  # from an earlier report: not this run's curves
    path = write_report(out, _metrics(tmp_path), PER_CLASS, tmp_path / "history.csv")
    text = path.read_text()
    assert "no training curves" in text and "history.csv is missing" in text
    assert not (out / "curves.png").exists()


def test_report_export_section(tmp_path):
    from PIL import Image

    out = tmp_path / "eval"
    out.mkdir()
    Image.new("RGB", (4, 4)).save(out / "confusion.png")
    metrics = _metrics(tmp_path)
    metrics["export"] = {
        "folder": "/exports/a",
        "format": "onnx",
        "temperature": 1.5,
        "same_checkpoint": False,
        **agreement(
            np.array([[0.7, 0.3], [0.50002, 0.49998], [0.2, 0.8], [0.9, 0.1]]),
            np.array([[0.7, 0.3], [0.49998, 0.50002], [0.6, 0.4], [0.9, 0.1]]),
        ),
    }
    page = parse_report(write_report(out, metrics, PER_CLASS, tmp_path / "history.csv"))
    rows = {r[0]: r[1] for r in page.rows if len(r) == 2}
    assert rows["format"] == "onnx" and rows["images compared"] == "4"
    assert rows["same top-1 class"] == "0.5000" and rows["different top-1 class"] == "2"
    assert rows["  of which near-ties"] == "1"
    assert rows["largest probability difference"] == "0.4"
    assert "written from another checkpoint" in "".join(page.text)
