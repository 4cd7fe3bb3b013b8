"""The worst-mistakes gallery: which images it picks, the grids, the TensorBoard image."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from keras_googlenet.evaluation import gallery

PROBS = np.array(
    [
        [0.1, 0.8, 0.1],  # 0: true 0 -> 1, loss -log 0.1
        [0.6, 0.3, 0.1],  # 1: right
        [0.01, 0.98, 0.01],  # 2: true 0 -> 1, loss -log 0.01 (the worst)
        [0.3, 0.3, 0.4],  # 3: true 1 -> 2, loss -log 0.3
        [0.05, 0.9, 0.05],  # 4: right, class 1
        [0.2, 0.7, 0.1],  # 5: true 0 -> 1, loss -log 0.2
    ]
)
LABELS = np.array([0, 0, 0, 1, 1, 0])


def test_worst_mistakes_are_the_highest_loss_wrong_images():
    assert gallery.worst_mistakes(PROBS, LABELS, 3).tolist() == [2, 0, 5]
    assert gallery.worst_mistakes(PROBS, LABELS, 10).tolist() == [2, 0, 5, 3]
    assert gallery.worst_mistakes(PROBS, np.argmax(PROBS, 1), 5).tolist() == []


def test_pair_examples_and_grids(tmp_path):
    pair = {"true_id": 0, "true": "a", "predicted_id": 1, "predicted": "b", "count": 3}
    rows = gallery.pair_examples(PROBS, LABELS, [pair], per_pair=2)
    # mistakes 0 -> 1, most confident in b first; right images of b: image 4
    assert rows == [(pair, [2, 0], [4])]

    files = []
    for i in range(len(LABELS)):
        files.append(str(tmp_path / f"{i}.jpg"))
        Image.new("RGB", (40, 30), (40 * i, 0, 0)).save(files[-1])
    names = ["a", "b", "c"]
    worst = gallery.plot_worst(files, PROBS, LABELS, [2, 0, 5, 3], names, columns=2)
    pairs = gallery.plot_pairs(files, names, rows)
    for png in (worst, pairs):
        assert Image.open(io.BytesIO(png)).format == "PNG"
    assert Image.open(io.BytesIO(worst)).size[1] > Image.open(io.BytesIO(pairs)).size[1]

    import tensorflow as tf

    gallery.write_tensorboard_image(tmp_path / "tb", "worst_mistakes", worst)
    (event_file,) = (tmp_path / "tb").iterdir()
    tags = []
    for record in tf.data.TFRecordDataset(str(event_file)):
        event = tf.compat.v1.Event.FromString(record.numpy())
        tags += [v.tag for v in event.summary.value]
    assert tags == ["worst_mistakes"]
