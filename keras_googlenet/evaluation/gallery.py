"""The worst mistakes: the images the model got most confidently wrong, and the most-confused
pairs with examples side by side, as PNG grids (and the first as a TensorBoard image)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

GALLERY_SIZE = 24  # images in the worst-mistakes grid
PAIR_ROWS = 6  # most-confused pairs shown with examples
PAIR_EXAMPLES = 3  # mistakes per pair, beside as many correct images of the predicted class
_THUMB = 128  # pixels per thumbnail side


def worst_mistakes(probabilities: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of the `n` wrongly classified images with the highest loss (-log p(true)),
    highest first; ties in file order."""
    wrong = np.flatnonzero(probabilities.argmax(axis=1) != labels)
    p_true = probabilities[wrong, labels[wrong]]
    # Ascending p(true) is descending loss; a stable sort keeps file order among ties.
    return wrong[np.argsort(p_true, kind="stable")[:n]]


def pair_examples(
    probabilities: np.ndarray, labels: np.ndarray, pairs: list[dict], per_pair: int
) -> list[tuple[dict, list[int], list[int]]]:
    """For each confused pair (true a -> predicted b): up to `per_pair` such mistakes, most
    confident first, and as many images of b classified right (what the model took a for)."""
    predicted = probabilities.argmax(axis=1)
    rows = []
    for pair in pairs:
        a, b = pair["true_id"], pair["predicted_id"]
        mistakes = np.flatnonzero((labels == a) & (predicted == b))
        mistakes = mistakes[np.argsort(-probabilities[mistakes, b], kind="stable")][:per_pair]
        right = np.flatnonzero((labels == b) & (predicted == b))
        right = right[np.argsort(-probabilities[right, b], kind="stable")][:per_pair]
        rows.append((pair, mistakes.tolist(), right.tolist()))
    return rows


def _thumbnail(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((_THUMB, _THUMB), Image.Resampling.BILINEAR))


def plot_worst(files, probabilities, labels, indices, class_names, columns: int = 6) -> bytes:
    """PNG grid of the images at `indices`, each titled true / predicted (probability)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = max(len(indices), 1)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.4 * rows), dpi=100)
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, i in zip(np.atleast_1d(axes).ravel(), indices, strict=False):
        predicted = int(probabilities[i].argmax())
        ax.imshow(_thumbnail(files[i]))
        ax.set_title(
            f"true {class_names[labels[i]][:16]}\npred {class_names[predicted][:16]} "
            f"{probabilities[i, predicted]:.0%}",
            fontsize=7,
        )
    if not len(indices):
        np.atleast_1d(axes).ravel()[0].text(0.5, 0.5, "no mistakes", ha="center")
    return _png(fig)


def plot_pairs(files, class_names, rows) -> bytes:
    """PNG: one row per confused pair, its mistakes on the left, right images of the predicted
    class on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = max([len(m) for _, m, _ in rows] + [len(r) for _, _, r in rows] + [1])
    n = max(len(rows), 1)
    fig, axes = plt.subplots(n, 2 * per, figsize=(1.8 * 2 * per, 2.1 * n), dpi=100, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, (pair, mistakes, right) in enumerate(rows):
        for j, i in enumerate(mistakes):
            axes[r, j].imshow(_thumbnail(files[i]))
        for j, i in enumerate(right):
            axes[r, per + j].imshow(_thumbnail(files[i]))
        axes[r, 0].set_title(
            f"{pair['true'][:20]} taken for {pair['predicted'][:20]} ({pair['count']}x)",
            fontsize=8,
            loc="left",
        )
        axes[r, per].set_title(f"real {pair['predicted'][:20]}", fontsize=8, loc="left")
    if not rows:
        axes[0, 0].text(0.5, 0.5, "no confusions", ha="center")
    return _png(fig)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def write_tensorboard_image(logdir: Path, name: str, png: bytes, step: int = 0) -> None:
    """Writes a PNG as a TensorBoard image summary under `logdir`."""
    import tensorflow as tf

    image = tf.io.decode_png(png, channels=3)[None]
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        tf.summary.image(name, image, step=step)
    writer.close()
