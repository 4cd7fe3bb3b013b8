"""PNG curves of a run from its history.csv: loss, accuracy and learning rate per epoch."""

from __future__ import annotations

import io
from pathlib import Path

from keras_googlenet.atomic import atomic_write_bytes
from keras_googlenet.model.table import OUTPUT_NAMES as HEADS
from keras_googlenet.training.history import read_history


def _series(rows, key):
    points = [(r["epoch"] + 1, r[key]) for r in rows if isinstance(r.get(key), float)]
    return [p[0] for p in points], [p[1] for p in points]


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def plot_history(history_csv: str | Path, plots_dir: str | Path) -> list[Path]:
    """Writes loss.png, accuracy.png and learning_rate.png; returns their paths.

    Returns [] when the history has no rows.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must come before pyplot
    import matplotlib.pyplot as plt

    rows = read_history(history_csv)
    if not rows:
        return []
    plots_dir = Path(plots_dir)
    written = []

    figures = {
        "loss.png": ("loss (weighted sum; dashed: per head)", "loss", ["loss"], HEADS, "loss"),
        "accuracy.png": ("accuracy", "accuracy", ["main_top1", "main_top5"], HEADS[1:], "accuracy"),
    }
    for name, (title, ylabel, totals, heads, suffix) in figures.items():
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for key in totals:
            for prefix, style in (("", "-"), ("val_", "-")):
                x, y = _series(rows, prefix + key)
                if x:
                    ax.plot(x, y, style, marker="o", ms=3, label=prefix + key)
        for head in heads:
            key = f"{head}_{suffix}"
            if suffix == "loss" and head == "main":
                key = "main_loss"
            for prefix in ("", "val_"):
                x, y = _series(rows, prefix + key)
                if x:
                    ax.plot(x, y, "--", lw=1, label=prefix + key)
        ax.set(title=title, xlabel="epoch", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        _save(fig, plots_dir / name)
        plt.close(fig)
        written.append(plots_dir / name)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    x, y = _series(rows, "learning_rate")
    ax.plot(x, y, marker="o", ms=3)
    if y and min(y) > 0 and max(y) / min(y) > 20:
        ax.set_yscale("log")
    ax.set(title="learning rate", xlabel="epoch", ylabel="learning rate")
    ax.grid(alpha=0.3)
    _save(fig, plots_dir / "learning_rate.png")
    plt.close(fig)
    written.append(plots_dir / "learning_rate.png")
    return written
