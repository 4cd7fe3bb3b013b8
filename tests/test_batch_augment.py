"""Batch augmentation (MixUp, CutMix, RandAugment as Keras layers): soft labels that sum to 1
on all three heads, images in range, seeded, bad parameters named. Training on the soft labels
(categorical losses on every head, one-hot validation labels) is covered by the EMA run in
test_run_dir.py."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import cli, tiny_config

from keras_googlenet.data import pipeline as data
from keras_googlenet.data.batch_augment import make_batch_augment
from keras_googlenet.data.dataset_info import read_dataset_info

ALL = "[{name: randaugment, num_ops: 2, magnitude: 0.5}, {name: mixup, alpha: 0.4}, {name: cutmix}]"


def test_soft_labels_sum_to_one_on_every_head(shared_processed_dataset):
    cfg = tiny_config(shared_processed_dataset, **{"data.batch_augment": ALL})
    images, labels = next(iter(data.make_train_dataset(cfg, read_dataset_info(cfg))))
    images = images.numpy()
    assert images.dtype == np.float32 and images.shape == (4, 65, 65, 3)
    assert images.min() >= 0.0 and images.max() <= 255.0
    main = labels["main"].numpy()
    assert main.shape == (4, 3) and main.dtype == np.float32
    np.testing.assert_allclose(main.sum(axis=1), 1.0, atol=1e-5)
    assert main.min() >= 0.0
    for head in ("aux_4a", "aux_4d"):
        np.testing.assert_array_equal(labels[head].numpy(), main)


def test_deterministic_pipeline_repeats_its_batch(shared_processed_dataset):
    cfg = tiny_config(
        shared_processed_dataset, **{"data.batch_augment": ALL, "data.deterministic": True}
    )
    info = read_dataset_info(cfg)
    first, second = (next(iter(data.make_train_dataset(cfg, info))) for _ in range(2))
    np.testing.assert_array_equal(first[0].numpy(), second[0].numpy())
    np.testing.assert_array_equal(first[1]["main"].numpy(), second[1]["main"].numpy())


def test_same_seed_same_batch():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8))
    labels = tf.constant([0, 1, 2, 0, 1, 2])
    entries = [{"name": "randaugment"}, {"name": "mixup", "alpha": 0.4}, {"name": "cutmix"}]

    def run(seed):
        x, y = make_batch_augment(entries, 3, seed)(images, labels)
        return x.numpy(), y.numpy()

    (x1, y1), (x2, y2), (x3, _) = run(5), run(5), run(6)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    np.testing.assert_allclose(y1.sum(axis=1), 1.0, atol=1e-5)
    # Mixed: some rows hold two classes.
    assert (np.count_nonzero(y1 > 1e-6, axis=1) > 1).any()


@pytest.mark.parametrize(
    "value, message",
    [
        ("[{name: mixup, alpha: 0}]", "'data.batch_augment[0].alpha' must be positive"),
        ("[{name: cutmix, alpha: -1}]", "'data.batch_augment[0].alpha' must be positive"),
        (
            "[{name: mixup}, {name: randaugment, magnitude: 1.5}]",
            "'data.batch_augment[1].magnitude' must be in [0, 1]",
        ),
        ("[{name: randaugment, num_ops: 0}]", "'data.batch_augment[0].num_ops'"),
        ("[{name: mixupp}]", "'data.batch_augment[0].name': unknown 'mixupp'"),
        ("[{name: mixup, beta: 1}]", "'data.batch_augment[0].beta': not a parameter of mixup"),
    ],
)
def test_bad_parameters_are_one_line_exit_2(value, message, capsys):
    assert cli("config", "smoke", "--set", f"data.batch_augment={value}") == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_float32_under_every_policy(policy):
    """The layers are built under the run's global policy; they compute in float32 anyway, so
    a mixed-precision run gets the float32 run's batches, to the bit."""
    import tensorflow as tf

    from keras_googlenet.training.precision import precision_policy

    rng = np.random.default_rng(1)
    images = tf.constant(rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8))
    labels = tf.constant([0, 1, 2, 0, 1, 2])
    entries = [{"name": "randaugment"}, {"name": "mixup", "alpha": 0.4}, {"name": "cutmix"}]

    def run(p):
        with precision_policy(p):
            x, y = make_batch_augment(entries, 3, seed=3)(images, labels)
        return x.numpy(), y.numpy()

    (x32, y32), (x, y) = run("float32"), run(policy)
    assert x.dtype == np.float32 and y.dtype == np.float32
    np.testing.assert_array_equal(x, x32)
    np.testing.assert_array_equal(y, y32)
