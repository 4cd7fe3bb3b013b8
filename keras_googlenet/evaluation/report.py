"""report.html: one page per evaluation, opened from the report folder without a network.

The page links the PNGs written beside it (confusion.png, reliability.png, worst.png,
confused_pairs.png, and curves.png drawn here from the run's history.csv), so the folder is the
report: copy it whole. A missing part (no history.csv, no gallery) is said on the page.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

from keras_googlenet.atomic import atomic_write_bytes, atomic_write_text

REPORT_FILE = "report.html"
CURVES_FILE = "curves.png"

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1150px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th { background: #eee; } td.l, th.l { text-align: left; }
img { max-width: 100%; border: 1px solid #ddd; }
.missing { color: #a00; }
"""


def plot_curves(rows: list[dict]) -> bytes | None:
    """PNG of the losses and top-1 accuracies per epoch in history.csv rows; None if none."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in rows[0] if k != "epoch" and isinstance(rows[0][k], float)]
    panels = [
        ("loss", [k for k in keys if k in ("loss", "val_loss")]),
        ("top-1", [k for k in keys if k.endswith("top1")]),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), dpi=100)
    epochs = [r["epoch"] + 1 for r in rows]
    for ax, (title, names) in zip(axes, panels, strict=True):
        for name in names:
            ax.plot(epochs, [r[name] for r in rows], marker="o", markersize=3, label=name)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if names:
            ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _image(out: Path, name: str, alt: str) -> str:
    if not (out / name).is_file():
        return f'<p class="missing">{html.escape(alt)}: not written ({html.escape(name)})</p>'
    return f'<p><img src="{html.escape(name)}" alt="{html.escape(alt)}"></p>'


def _table(header: list[str], rows: list[list], left: int = 0) -> str:
    def cell(tag, i, v):
        cls = ' class="l"' if i < left else ""
        text = f"{v:.4f}" if isinstance(v, float) else str(v)
        return f"<{tag}{cls}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _export_section(e: dict | None) -> str:
    """Where an export agrees with the checkpoint (metrics.json's `export`), or why not shown."""
    if e is None:
        return (
            '<p class="missing">no export compared: <code>evaluate --export DIR</code> runs an '
            "export on these images beside the checkpoint</p>"
        )
    rows = [
        ["export", e["folder"]],
        ["format", e["format"]],
        ["temperature", "none (T = 1)" if e["temperature"] is None else e["temperature"]],
        ["images compared", e["images"]],
        ["same top-1 class", e["top1_agreement"]],
        ["different top-1 class", e["disagreements"]],
        ["  of which near-ties", e["disagreements_at_ties"]],
        ["largest probability difference", f"{e['max_abs_difference']:.3g}"],
        ["mean probability difference", f"{e['mean_abs_difference']:.3g}"],
    ]
    warning = (
        ""
        if e["same_checkpoint"]
        else '<p class="missing">this export was written from another checkpoint</p>'
    )
    return warning + _table(["", "value"], rows, left=1)


def write_report(out: Path, metrics: dict, per_class: list[dict], history_csv: Path) -> Path:
    """Writes out/curves.png (from `history_csv`, if it is there) and out/report.html.

    Args:
        out: the evaluation folder, holding the other PNGs already.
        metrics: what metrics.json holds.
        per_class: the rows of per_class.csv.
        history_csv: the run's history.csv (may be missing).

    Returns:
        The path of report.html.
    """
    from keras_googlenet.training.history import read_history

    out = Path(out)
    curves = plot_curves(read_history(history_csv))
    if curves is not None:
        atomic_write_bytes(out / CURVES_FILE, curves)
    else:
        (out / CURVES_FILE).unlink(missing_ok=True)  # an older report's curves are not these
    m, c = metrics, metrics["calibration"]
    headline = [
        ["images", m["num_images"]],
        ["top-1", m["top1"]],
        [f"top-{m['top_k']}", m["top5"]],
        ["loss (mean cross-entropy)", m["loss"]],
        ["mean per-class accuracy", m["mean_per_class_accuracy"]],
        *[[f"{avg} {k}", v] for avg, scores in m["averages"].items() for k, v in scores.items()],
        [f"ECE ({c['ece_bins']} equal-width bins)", c["ece"]],
        ["NLL", c["nll"]],
    ]
    if c["temperature"] is not None:
        headline += [
            ["temperature", c["temperature"]],
            ["ECE at that temperature", c["ece_calibrated"]],
            ["NLL at that temperature", c["nll_calibrated"]],
        ]
    ranked = sorted(
        (r for r in per_class if r["count"]), key=lambda r: (r["f1"], r["id"])
    )  # worst first: the classes that fail
    class_rows = [
        [r["id"], r["label"], r["count"], r["precision"], r["recall"], r["f1"], r["accuracy"]]
        for r in ranked
    ]
    pairs = [[p["true"], p["predicted"], p["count"], p["rate"]] for p in m["most_confused"][:15]]
    if curves is None:
        curves_html = (
            f'<p class="missing">no training curves: {html.escape(str(history_csv))} is missing '
            "or has no finished epoch</p>"
        )
    else:
        curves_html = _image(out, CURVES_FILE, "training curves")
    export_html = _export_section(m.get("export"))
    title = f"{Path(m['run']).name}: {Path(m['checkpoint']).name} on {Path(m['csv']).name}"
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>protocol: {html.escape(m.get('protocol', 'centre crop'))}; {m['seconds']} s</p>",
        '<h2 id="metrics">Metrics</h2>',
        _table(["metric", "value"], headline, left=1),
        '<h2 id="curves">Training curves</h2>',
        curves_html,
        '<h2 id="calibration">Calibration</h2>',
        _image(out, "reliability.png", "reliability diagram"),
        '<h2 id="export">Export against the checkpoint</h2>',
        export_html,
        '<h2 id="confusion">Confusion matrix</h2>',
        _image(out, "confusion.png", "confusion matrix"),
        _table(["true", "predicted as", "count", "share"], pairs, left=2),
        '<h2 id="mistakes">Worst mistakes</h2>',
        _image(out, "worst.png", "most confidently wrong images"),
        _image(out, "confused_pairs.png", "most-confused pairs"),
        '<h2 id="classes">Classes, lowest F1 first</h2>',
        _table(
            ["id", "label", "images", "precision", "recall", "F1", "accuracy"],
            class_rows,
            left=2,
        ),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
    path = out / REPORT_FILE
    atomic_write_text(path, page)
    return path
