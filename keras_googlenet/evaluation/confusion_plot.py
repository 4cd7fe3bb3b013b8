"""The confusion matrix as a PNG, readable at 256 classes."""

from __future__ import annotations

import io
import math

import numpy as np


def plot_confusion(confusion: np.ndarray, class_names, pairs: list[dict], title: str) -> bytes:
    """PNG of the row-normalized confusion matrix with the most-confused pairs beside it.

    With many classes (Caltech256: 256) the names cannot fit on the axes: ticks show class ids
    every few classes, and the side panel names the pairs that matter.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    c = confusion.shape[0]
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    side = float(np.clip(4 + 0.055 * c, 6, 18))  # inches of matrix: ~8 px per class at 256
    fig = plt.figure(figsize=(side + 6.5, side + 1), dpi=120)
    grid = fig.add_gridspec(1, 2, width_ratios=[side, 6.5], wspace=0.05)
    ax = fig.add_subplot(grid[0])
    # A square-root scale: the off-diagonal shares are small next to the diagonal.
    im = ax.imshow(rows, cmap="viridis", norm=PowerNorm(0.5, vmin=0, vmax=1), interpolation="none")
    if c <= 40:
        ticks = np.arange(c)
        names = [f"{i} {class_names[i][:18]}" for i in ticks]
        ax.set_xticks(ticks, labels=[str(i) for i in ticks], fontsize=7)
        ax.set_yticks(ticks, labels=names, fontsize=7)
    else:
        step = math.ceil(c / 32)
        ticks = np.arange(0, c, step)
        ax.set_xticks(ticks, labels=[str(i) for i in ticks], fontsize=7, rotation=90)
        ax.set_yticks(ticks, labels=[str(i) for i in ticks], fontsize=7)
    ax.set_xlabel("predicted class id")
    ax.set_ylabel("true class id")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="share of the true class")

    panel = fig.add_subplot(grid[1])
    panel.axis("off")
    lines = ["most confused (true -> predicted)", "  count  share", ""]
    for pair in pairs:
        lines.append(
            f"{pair['count']:6d}  {pair['rate']:5.1%}  {pair['true_id']} {pair['true'][:22]}"
            f" -> {pair['predicted_id']} {pair['predicted'][:22]}"
        )
    if not pairs:
        lines.append("(no confusions)")
    panel.text(0, 1, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()
