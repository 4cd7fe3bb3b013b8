"""Transforms of data/augment.py: eagerly and inside Dataset.map, seeds, config errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_googlenet.config import ConfigError, load_config
from keras_googlenet.data import albumentations_ops as alb_ops
from keras_googlenet.data import augment as aug

# One entry per transform, with the output size it must give a 48x40 input.
CASES = {
    "random_crop": ({"name": "random_crop", "size": 32}, (32, 32)),
    "center_crop": ({"name": "center_crop", "size": 32}, (32, 32)),
    "resize": ({"name": "resize", "size": 24}, (24, 24)),
    "random_resized_crop": ({"name": "random_resized_crop", "size": 28}, (28, 28)),
    "horizontal_flip": ({"name": "horizontal_flip", "p": 1.0}, (48, 40)),
    "vertical_flip": ({"name": "vertical_flip", "p": 1.0}, (48, 40)),
    "rotate90": ({"name": "rotate90"}, None),  # 48x40 or 40x48
    "color_jitter": (
        {"name": "color_jitter", "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1},
        (48, 40),
    ),
}
RANDOM = {"random_crop", "random_resized_crop", "rotate90", "color_jitter"}


def test_every_transform_is_covered():
    assert set(CASES) == set(aug.TRANSFORMS)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return tf.constant(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))


def seed(a, b=0):
    return tf.constant([a, b], tf.int64)


def run(entry, image, s):
    return aug.compile_augment([entry])(image, s)


@pytest.mark.parametrize("name", sorted(CASES))
def test_transform_eager_shape_dtype_range(name, image):
    entry, hw = CASES[name]
    out = run(entry, image, seed(1)).numpy()
    assert out.dtype == np.uint8
    assert out.shape[2] == 3
    if hw is None:
        assert out.shape[:2] in ((48, 40), (40, 48))
    else:
        assert out.shape[:2] == hw
    # float input stays float and within 0..255
    out_f = run(entry, tf.cast(image, tf.float32), seed(1)).numpy()
    assert out_f.dtype == np.float32
    assert out_f.min() >= 0 and out_f.max() <= 255


@pytest.mark.parametrize("name", sorted(CASES))
def test_transform_in_dataset_map_matches_eager(name, image):
    entry, _ = CASES[name]
    augment = aug.compile_augment([entry])
    seeds = tf.constant([[i, 7] for i in range(4)], tf.int64)
    # Without autograph, as data/pipeline.py maps every transform: each must be plain
    # TensorFlow (a Python `if` on a tensor fails to trace here).
    plain = tf.autograph.experimental.do_not_convert(lambda s: augment(image, s))
    ds = tf.data.Dataset.from_tensor_slices(seeds).map(plain)
    for s, out in zip(seeds, ds, strict=True):
        np.testing.assert_array_equal(out.numpy(), augment(image, s).numpy())


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_transform_varies_and_repeats(name, image):
    entry, _ = CASES[name]
    outs = [run(entry, image, seed(i)).numpy() for i in range(8)]
    assert len({o.tobytes() for o in outs}) > 1, "the same output for 8 seeds"
    np.testing.assert_array_equal(run(entry, image, seed(3)).numpy(), outs[3])


def test_crops_cut_the_right_window(image):
    x = image.numpy()
    np.testing.assert_array_equal(run(CASES["center_crop"][0], image, seed(0)), x[8:40, 4:36])
    # a random crop is some 32x32 window of the image
    out = run(CASES["random_crop"][0], image, seed(5)).numpy()
    found = any(
        np.array_equal(out, x[t : t + 32, left : left + 32])
        for t in range(48 - 32 + 1)
        for left in range(40 - 32 + 1)
    )
    assert found


def test_flips_and_rotation_are_exact(image):
    x = image.numpy()
    np.testing.assert_array_equal(run(CASES["horizontal_flip"][0], image, seed(0)), x[:, ::-1])
    np.testing.assert_array_equal(run(CASES["vertical_flip"][0], image, seed(0)), x[::-1])
    rotations = [np.rot90(x, k) for k in range(4)]
    seen = set()
    for i in range(16):
        out = run({"name": "rotate90"}, image, seed(i)).numpy()
        k = [j for j, r in enumerate(rotations) if r.shape == out.shape and np.array_equal(r, out)]
        assert len(k) == 1
        seen.add(k[0])
    assert seen == {0, 1, 2, 3}


def test_probability(image):
    x = image.numpy()
    never = [run({"name": "horizontal_flip", "p": 0}, image, seed(i)) for i in range(6)]
    assert all(np.array_equal(o, x) for o in never)
    flipped = [
        np.array_equal(run({"name": "horizontal_flip"}, image, seed(i)), x[:, ::-1])
        for i in range(24)
    ]
    assert 0 < sum(flipped) < 24  # default p = 0.5


def test_color_jitter_zero_is_identity_and_brightness_moves_mean(image):
    np.testing.assert_array_equal(run({"name": "color_jitter"}, image, seed(1)), image)
    gray = tf.fill([8, 8, 3], tf.constant(100, tf.uint8))
    means = {
        float(
            tf.reduce_mean(
                tf.cast(run({"name": "color_jitter", "brightness": 0.5}, gray, seed(i)), tf.float32)
            )
        )
        for i in range(6)
    }
    assert len(means) > 1 and all(50 <= m <= 150 for m in means)


def test_random_resized_crop_respects_scale(image):
    # scale 1, ratio around the image's own: the whole image, resized
    entry = {"name": "random_resized_crop", "size": 24, "scale": [1.0, 1.0], "ratio": [0.8, 0.9]}
    whole = tf.image.resize(image, [24, 24], antialias=True)
    out = run(entry, image, seed(2))
    expected = tf.cast(tf.clip_by_value(tf.round(whole), 0, 255), tf.uint8)
    np.testing.assert_array_equal(out, expected)


def test_small_image_is_upscaled_before_crop():
    small = tf.zeros([20, 30, 3], tf.uint8)
    assert run({"name": "random_crop", "size": 32}, small, seed(0)).shape == (32, 32, 3)
    assert run({"name": "center_crop", "size": 32}, small, seed(0)).shape == (32, 32, 3)


def test_adding_a_transform_keeps_earlier_draws(image):
    one = aug.compile_augment([CASES["random_crop"][0]])(image, seed(9))
    two = aug.compile_augment([CASES["random_crop"][0], {"name": "vertical_flip", "p": 0}])
    np.testing.assert_array_equal(one, two(image, seed(9)))


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            {"name": "random_crp", "size": 3},
            "unknown transform 'random_crp' (did you mean 'random_crop'",
        ),
        ({"name": "random_crop"}, "random_crop needs 'size'"),
        ({"name": "random_crop", "sise": 3, "size": 3}, "unknown parameter 'sise'"),
        ({"name": "random_crop", "size": -3}, "size must be a positive integer"),
        ({"name": "random_crop", "size": 3, "p": 0.5}, "its p must be 1"),
        ({"name": "horizontal_flip", "p": 2}, "p must be a number in [0, 1]"),
        ({"name": "color_jitter", "hue": 0.7}, "hue must be a number in [0, 0.5]"),
        ({"name": "random_resized_crop", "size": 8, "scale": [0.9, 0.1]}, "scale must be"),
        ("random_crop", "must be a mapping with a 'name'"),
    ],
)
def test_bad_entries_name_the_index(entry, message):
    with pytest.raises(ConfigError) as e:
        aug.compile_augment([{"name": "horizontal_flip"}, entry], "data.train_augment")
    assert "'data.train_augment[1]'" in str(e.value)
    assert message in str(e.value)


def test_config_file_errors_at_load_time(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  val_augment:\n    - {name: center_crop, size: 224, wat: 1}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*'data.val_augment\[0\]'.*'wat'"):
        load_config(path)
    path.write_text("data:\n  albumentations:\n    - {HorizontalFlp: {p: 0.5}}\n")
    with pytest.raises(ConfigError, match=r"'data.albumentations\[0\]'.*HorizontalFlp"):
        load_config(path)


# ---------------------------------------------------------------------------------------------
# albumentations


@pytest.mark.parametrize(
    "entries, message",
    [
        ([{"NoSuchTransform": {}}], "unknown albumentations transform 'NoSuchTransform'"),
        ([{"RandomCrop": {"height": 8, "widht": 8}}], "unknown parameter 'widht'"),
        ([{"RandomCrop": {"height": "a", "width": 8}}], "bad parameters for RandomCrop"),
        ([{"HorizontalFlip": {"p": 0.5}, "VerticalFlip": {}}], "one-key mapping"),
        ([{"Compose": {}}], "unknown albumentations transform 'Compose'"),
    ],
)
def test_albumentations_errors(entries, message):
    with pytest.raises(ConfigError) as e:
        alb_ops.compile_albumentations(entries, "data.albumentations")
    assert "'data.albumentations[0]'" in str(e.value) and message in str(e.value)


def test_albumentations_in_dataset_map(image):
    alb = alb_ops.compile_albumentations(
        [{"RandomCrop": {"height": 32, "width": 32}}, {"HorizontalFlip": {"p": 0.5}}]
    )
    assert alb_ops.compile_albumentations([]) is None
    seeds = tf.constant([[i, 1] for i in range(6)], tf.int64)
    ds = tf.data.Dataset.from_tensor_slices(seeds).map(
        lambda s: alb(image, s, output_size=32), num_parallel_calls=2
    )
    outs = [o.numpy() for o in ds]
    assert all(o.shape == (32, 32, 3) and o.dtype == np.uint8 for o in outs)
    assert len({o.tobytes() for o in outs}) > 1
    # the same seed gives the same output, eagerly too
    np.testing.assert_array_equal(alb(image, seeds[2], output_size=32), outs[2])


def test_albumentations_without_reseeding_still_varies(image):
    alb = alb_ops.compile_albumentations([{"HorizontalFlip": {"p": 0.5}}], reseed=False)
    outs = {alb(image, seed(0)).numpy().tobytes() for _ in range(16)}
    assert len(outs) == 2  # flipped or not, whatever the (ignored) seed
