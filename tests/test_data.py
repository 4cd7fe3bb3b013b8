"""The input pipeline: dataset checks, batches and labels, determinism, sharding, bad files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO
from helpers import in_order
from PIL import Image

from keras_googlenet.config import ConfigError, apply_overrides, load_config
from keras_googlenet.data import pipeline as data
from keras_googlenet.data.dataset_info import read_dataset_info
from keras_googlenet.data.decode import decode_and_augment, decode_rgb
from keras_googlenet.errors import UserError

SMALL = [
    "model.input_size=72",
    "data.batch_size=4",
    "data.train_augment=[{name: random_crop, size: 72}, {name: horizontal_flip}, "
    "{name: rotate90, p: 0.5}]",
    "data.val_augment=[{name: center_crop, size: 72}]",
]


def config(root, *overrides):
    return load_config(None, [f"data.input_dir={root}", *SMALL, *overrides])


def _real(weights):
    """Rows of a batch that are images (validation batches end with zero-weight padding)."""
    return weights[0].numpy() > 0 if weights else slice(None)


def images_of(ds):
    return np.concatenate([x.numpy()[_real(w)] for x, _, *w in ds])


def labels_of(ds):
    return np.concatenate([y["main"].numpy()[_real(w)] for _, y, *w in ds])


# ---------------------------------------------------------------------------------------------
# read_dataset_info


def test_info_reads_the_folder(shared_processed_dataset):
    info = read_dataset_info(config(shared_processed_dataset))
    assert info.class_names == ("class0", "class1", "class2")
    assert info.num_classes == 3
    assert (info.train_size, info.val_size) == (24, 12)
    mean = json.loads((shared_processed_dataset / "rgb_val.json").read_text())
    assert info.mean_rgb == (mean["R"], mean["G"], mean["B"])
    assert all(os.path.isfile(p) for p in info.train_files + info.val_files)
    assert sorted(set(info.train_labels)) == [0, 1, 2]


def test_info_accepts_pytorch_seed_layout(processed_dataset):
    # The seed's preprocessor may write rgb_train.json and pandas CSVs with an index column.
    os.rename(processed_dataset / "rgb_val.json", processed_dataset / "rgb_train.json")
    csv = processed_dataset / "train.csv"
    lines = csv.read_text().splitlines()
    rows = [f",{lines[0]}"] + [f"{i},{line}" for i, line in enumerate(lines[1:])]
    csv.write_text("\n".join(rows) + "\n")
    info = read_dataset_info(config(processed_dataset))
    assert info.train_size == 24 and len(info.mean_rgb) == 3


def _break(root, what):
    """Applies one mistake to a processed folder; returns (overrides, text the error names)."""
    if what == "missing_files":
        for name in sorted(os.listdir(root / "train"))[:3]:
            os.remove(root / "train" / name)
        return [], "3 of 24 listed files are missing"
    if what == "class_out_of_range":
        lines = (root / "val.csv").read_text().splitlines()
        lines[2] = lines[2].split(",")[0] + ",7"
        (root / "val.csv").write_text("\n".join(lines) + "\n")
        return [], "val.csv: line 3: class 7 is outside 0..2"
    if what == "num_classes_mismatch":
        return ["model.num_classes=5"], "categories.csv: lists 3 classes but model.num_classes is 5"
    if what == "no_mean_file":
        os.remove(root / "rgb_val.json")
        return [], "rgb_train.json: mean file not found"
    if what == "bad_mean":
        (root / "rgb_val.json").write_text('{"R": 300, "G": 1, "B": 2}')
        return [], "rgb_val.json: expected"
    if what == "empty_csv":
        (root / "train.csv").write_text("image,class\n")
        return [], "train.csv: no rows"
    if what == "wrong_columns":
        (root / "val.csv").write_text("file,label\na.jpg,0\n")
        return [], "val.csv: expected columns image,class"
    if what == "categories_ids":
        (root / "categories.csv").write_text("id,label\n0,a\n2,b\n3,c\n")
        return [], "categories.csv: ids must be 0..2"
    if what == "not_a_folder":
        return ["data.input_dir=/nonexistent/folder"], "/nonexistent/folder: data.input_dir"
    if what == "bad_class_value":
        (root / "train.csv").write_text("image,class\ntrain_0_0000.jpg,cat\n")
        return [], "train.csv: line 2: class must be an integer"
    raise AssertionError(what)


@pytest.mark.parametrize(
    "what",
    [
        "missing_files",
        "class_out_of_range",
        "num_classes_mismatch",
        "no_mean_file",
        "bad_mean",
        "empty_csv",
        "wrong_columns",
        "categories_ids",
        "not_a_folder",
        "bad_class_value",
    ],
)
def test_info_errors_name_the_file(processed_dataset, what):
    overrides, expected = _break(processed_dataset, what)
    with pytest.raises(UserError) as e:
        read_dataset_info(config(processed_dataset, *overrides))
    assert expected in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_input_dir_is_a_config_error():
    with pytest.raises(ConfigError, match="'data.input_dir' is required"):
        read_dataset_info(load_config(None, SMALL))


# ---------------------------------------------------------------------------------------------
# Odd files in a processed folder


def _odd_files(root):
    """Grayscale JPEG, RGBA PNG, PNG content under a .jpg name, replacing three train files."""
    names = sorted(os.listdir(root / "train"))[:3]
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (80, 80), dtype=np.uint8), "L").save(
        root / "train" / names[0], format="JPEG"
    )
    Image.fromarray(rng.integers(0, 256, (80, 80, 4), dtype=np.uint8), "RGBA").save(
        root / "train" / names[1], format="PNG"
    )
    Image.fromarray(rng.integers(0, 256, (90, 76, 3), dtype=np.uint8)).save(
        root / "train" / names[2], format="PNG"
    )
    return [str(root / "train" / n) for n in names]


# Both training paths: JPEGs decoded each epoch, or once into the in-memory cache.
CACHE = pytest.mark.parametrize("cache", ["false", "true"])


@CACHE
def test_grayscale_rgba_and_png_named_jpg_give_three_channels(processed_dataset, cache):
    paths = _odd_files(processed_dataset)
    for path in paths:
        assert decode_rgb(tf.io.read_file(path)).shape[-1] == 3
    # the whole train pipeline reads them (no file is skipped: 24 images, 6 batches of 4)
    cfg = config(processed_dataset, "data.on_bad_image=fail", f"data.cache={cache}")
    info = read_dataset_info(cfg)
    ds = data.make_train_dataset(cfg, info)
    batches = list(ds)
    assert len(batches) == 6
    assert all(x.shape == (4, 72, 72, 3) for x, _ in batches)


def test_window_decode_equals_whole_decode(shared_processed_dataset):
    """The JPEG window decode gives the pixels of decoding everything and cropping."""
    cfg = config(shared_processed_dataset)
    info = read_dataset_info(cfg)
    # windows under half the image: decoded alone (80x80 files)
    crops = [
        {"name": "random_crop", "size": 40},
        {"name": "random_resized_crop", "size": 32, "scale": [0.1, 0.4]},
        {"name": "center_crop", "size": 72},  # 81%: decoded whole, cut
    ]
    for i, (crop, path) in enumerate(zip(crops * 2, info.train_files[:6], strict=True)):
        augment = data.compile_augment([crop, {"name": "horizontal_flip"}])
        contents = tf.io.read_file(path)
        s = tf.constant([i, 3], tf.int64)
        fused = decode_and_augment(contents, s, augment)
        whole = augment(decode_rgb(contents), s)
        diff = np.abs(fused.numpy().astype(int) - whole.numpy().astype(int))
        # libjpeg upsamples the chroma at the window's edge from fewer neighbours
        assert diff.max() <= 4 and (diff == 0).mean() > 0.98


def test_jpeg_smaller_than_the_crop_is_upscaled(tmp_path):
    path = tmp_path / "small.jpg"
    Image.fromarray(np.full((50, 60, 3), 128, np.uint8)).save(path)
    augment = data.compile_augment([{"name": "random_crop", "size": 72}])
    out = decode_and_augment(tf.io.read_file(str(path)), tf.constant([1, 2]), augment)
    assert out.shape == (72, 72, 3)


# ---------------------------------------------------------------------------------------------
# Undecodable files


def test_truncated_and_non_image_files_skip_or_fail(processed_dataset, caplog):
    train = processed_dataset / "train"
    names = sorted(os.listdir(train))
    truncated = train / names[0]
    truncated.write_bytes(truncated.read_bytes()[:300])
    (train / names[1]).write_bytes(b"not an image at all")
    (train / names[2]).write_bytes(b"")
    with pytest.raises(UserError) as e:
        read_dataset_info(config(processed_dataset, "data.on_bad_image=fail"))
    message = str(e.value)
    assert "3 undecodable image(s)" in message
    assert names[0] in message and "truncated JPEG" in message
    assert "not a JPEG, PNG, GIF or BMP image" in message and "empty file" in message

    with caplog.at_level("WARNING"):
        info = read_dataset_info(config(processed_dataset))
    assert info.train_size == 21
    assert {os.path.basename(p) for p, _ in info.skipped} == set(names[:3])
    assert "skipping 3 undecodable image(s)" in caplog.text


def _corrupt_inside(path):
    """A JPEG with intact start and end markers but garbage in between: passes the probe."""
    raw = path.read_bytes()
    path.write_bytes(raw[:200] + bytes(range(256)) * 4 + b"\xff\xd9")


@CACHE
def test_corrupt_file_at_training_time(processed_dataset, cache):
    names = sorted(os.listdir(processed_dataset / "train"))
    _corrupt_inside(processed_dataset / "train" / names[0])
    cfg = config(
        processed_dataset,
        "data.train_augment=[{name: center_crop, size: 72}]",
        f"data.cache={cache}",
    )
    info = read_dataset_info(cfg)
    assert info.train_size == 24  # the probe cannot see it
    # skip: the epoch goes on without it (23 images -> 5 batches of 4, was 6)
    assert len(list(data.make_train_dataset(cfg, info))) == 5
    # fail: the epoch stops with the decoder's error
    cfg_fail = config(
        processed_dataset,
        "data.on_bad_image=fail",
        "data.train_augment=[{name: center_crop, size: 72}]",
        f"data.cache={cache}",
    )
    with pytest.raises(tf.errors.InvalidArgumentError):
        list(data.make_train_dataset(cfg_fail, info))


# ---------------------------------------------------------------------------------------------
# Datasets


@CACHE
def test_train_batches_labels_and_raw_pixels(shared_processed_dataset, cache):
    cfg = config(shared_processed_dataset, f"data.cache={cache}")
    info = read_dataset_info(cfg)
    batches = list(data.make_train_dataset(cfg, info))
    assert len(batches) == 24 // 4
    for x, y in batches:
        assert x.dtype == tf.uint8 and x.shape == (4, 72, 72, 3)
        assert set(y) == {"main", "aux_4a", "aux_4d"}
        assert all(v.dtype == tf.int32 and v.shape == (4,) for v in y.values())
        np.testing.assert_array_equal(y["main"], y["aux_4a"])
    # one epoch: every class as often as in the CSV (each file once, nothing dropped here)
    assert sorted(np.bincount(labels_of(batches))) == [8, 8, 8]
    pixels = images_of(batches)
    assert pixels.max() > 200 and pixels.min() < 60  # raw 0-255, not normalized

    no_aux = config(shared_processed_dataset, "model.aux_heads=false")
    _, y = next(iter(data.make_train_dataset(no_aux, info)))
    assert set(y) == {"main"}
    # no autotuning thread, which could hold the iterator's deletion (the end of `fit`) 60 s
    for ds in (data.make_train_dataset(cfg, info), data.make_val_dataset(cfg, info)):
        assert ds.options().autotune.enabled is False


@CACHE
def test_train_reshuffles_each_epoch_and_repeats_with_a_seed(shared_processed_dataset, cache):
    cfg = config(
        shared_processed_dataset, "data.deterministic=true", "data.seed=3", f"data.cache={cache}"
    )
    info = read_dataset_info(cfg)
    two = images_of(data.make_train_dataset(cfg, info, passes=2))
    first, second = two[:24], two[24:]
    assert not np.array_equal(first, second)  # new order and new augmentation each epoch
    again = data.make_train_dataset(cfg, info)
    np.testing.assert_array_equal(images_of(again), first)  # same seed: same run
    # A resumed run starting at pass 2 gets pass 2 (not pass 1 again), and mid-pass the rest
    np.testing.assert_array_equal(
        images_of(data.make_train_dataset(cfg, info, start_step=6)), second
    )
    np.testing.assert_array_equal(
        images_of(data.make_train_dataset(cfg, info, start_step=8)), second[8:]
    )
    other = data.make_train_dataset(apply_overrides(cfg, {"data.seed": 4}), info)
    assert not np.array_equal(images_of(other), first)


def test_steps_per_epoch_repeats(shared_processed_dataset):
    cfg = config(shared_processed_dataset, "data.steps_per_epoch=3")
    info = read_dataset_info(cfg)
    ds = data.make_train_dataset(cfg, info, passes=data.passes_for(0, 20, 6))
    assert len(list(ds)) == 24  # 20 steps need 4 passes of 6 (24 images of batch 4)
    assert data.passes_for(4, 3, 6) == 2 and data.passes_for(6, 6, 6) == 1


def test_cache_gives_full_epochs(shared_processed_dataset):
    cfg = config(shared_processed_dataset, "data.cache=true", "data.shuffle_buffer=8")
    info = read_dataset_info(cfg)
    both = labels_of(in_order(data.make_train_dataset(cfg, info, passes=2)))
    a, b = both[:24], both[24:]
    assert sorted(np.bincount(a)) == sorted(np.bincount(b)) == [8, 8, 8]
    assert not np.array_equal(a, b)


def test_val_is_identical_across_passes_and_in_csv_order(shared_processed_dataset):
    cfg = config(shared_processed_dataset, "data.batch_size=5")
    info = read_dataset_info(cfg)
    ds = data.make_val_dataset(cfg, info)
    # 12 images in 3 equal batches: no step is short, no image is dropped (`val_layout`)
    assert [x.shape[0] for x, _, _ in ds] == [4, 4, 4]
    first, second = images_of(ds), images_of(ds)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(labels_of(ds), info.val_labels)
    # center crop of the 80x80 file
    whole = tf.io.decode_jpeg(tf.io.read_file(info.val_files[0])).numpy().astype(int)
    assert np.abs(first[0].astype(int) - whole[4:76, 4:76]).max() <= 4  # window-edge chroma


@pytest.mark.parametrize(
    "n, replicas, per_replica, pipelines",
    [
        (12, 1, 5, 1),
        (17, 2, 4, 1),
        (16, 2, 4, 1),
        (15, 2, 4, 1),
        (1, 2, 4, 1),
        (9, 4, 1, 2),
        (1001, 8, 32, 2),
        (3, 8, 16, 4),
    ],
)
def test_val_layout_sees_every_image_once_in_equal_batches(n, replicas, per_replica, pipelines):
    layouts = [data.val_layout(n, replicas, per_replica, pipelines, p) for p in range(pipelines)]
    covered = [i for lay in layouts for i in range(lay.start, lay.start + lay.count)]
    assert covered == list(range(n))
    for lay in layouts:
        assert 1 <= lay.batch <= per_replica
        assert lay.count <= lay.batches * lay.batch  # the rest is padding
        assert lay.batches == layouts[0].batches and lay.batch == layouts[0].batch
        assert lay.batches % (replicas // pipelines) == 0  # whole steps for every replica
    # weight x real images = all the slots: the equal-weight mean of batch means is exact
    slots = layouts[0].batches * pipelines * layouts[0].batch
    assert layouts[0].weight * n == pytest.approx(slots)


def test_val_padding_has_zero_weight(shared_processed_dataset):
    cfg = config(shared_processed_dataset, "data.batch_size=5")
    info = read_dataset_info(cfg)
    other = shared_processed_dataset / "val.csv"
    lines = other.read_text().splitlines()[:12]  # 11 images: 3 batches of 4, one blank
    short = shared_processed_dataset.parent / "val11.csv"
    short.write_text("\n".join(lines) + "\n")
    batches = list(data.make_val_dataset(cfg, info, csv_path=short))
    weights = np.concatenate([w.numpy() for _, _, w in batches])
    assert [x.shape[0] for x, _, _ in batches] == [4, 4, 4]
    np.testing.assert_allclose(weights, [12 / 11] * 11 + [0.0], rtol=1e-6)
    assert not batches[-1][0].numpy()[-1].any()  # the blank image


def test_val_from_another_csv(shared_processed_dataset, tmp_path):
    lines = (shared_processed_dataset / "val.csv").read_text().splitlines()[:4]
    other = tmp_path / "test.csv"
    other.write_text("\n".join(lines) + "\n")
    cfg = config(shared_processed_dataset)
    info = read_dataset_info(cfg)
    assert len(labels_of(data.make_val_dataset(cfg, info, csv_path=other))) == 3


def test_output_size_must_match_the_model(shared_processed_dataset):
    cfg = config(shared_processed_dataset, "data.val_augment=[{name: center_crop, size: 64}]")
    info = read_dataset_info(cfg)
    with pytest.raises(ConfigError, match="'data.val_augment' makes 64x64 images"):
        data.make_val_dataset(cfg, info)
    cfg = config(shared_processed_dataset, "data.train_augment=[{name: horizontal_flip}]")
    with pytest.raises(ConfigError, match="'data.train_augment' sets no image size"):
        data.make_train_dataset(cfg, info)
    cfg = config(
        shared_processed_dataset,
        "data.train_augment=[]",
        "data.albumentations=[{CenterCrop: {height: 60, width: 60}}]",
    )
    with pytest.raises(ConfigError, match=r"make \(60, 60, 3\) images"):
        data.make_train_dataset(cfg, info)


@CACHE
def test_albumentations_path(shared_processed_dataset, cache):
    cfg = config(
        shared_processed_dataset,
        f"data.cache={cache}",
        "data.train_augment=[]",
        "data.albumentations=[{RandomCrop: {height: 72, width: 72}}, {HorizontalFlip: {p: 0.5}}]",
        "data.deterministic=true",
    )
    info = read_dataset_info(cfg)
    ds = data.make_train_dataset(cfg, info)
    a = images_of(ds)
    assert a.shape == (24, 72, 72, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(images_of(data.make_train_dataset(cfg, info)), a)


def test_global_batch_size():
    cfg = load_config(None, ["data.batch_size=8"])
    assert data.global_batch_size(cfg, 1) == 8
    assert data.global_batch_size(cfg, 4) == 8
    with pytest.raises(ConfigError, match="not divisible by the 3 replicas"):
        data.global_batch_size(cfg, 3)
    per_replica = apply_overrides(cfg, {"data.batch_size_is": "per_replica"})
    assert data.global_batch_size(per_replica, 3) == 24


def test_batch_larger_than_dataset(shared_processed_dataset):
    cfg = config(shared_processed_dataset, "data.batch_size=32")
    with pytest.raises(ConfigError, match="larger than the 24 training images"):
        data.make_train_dataset(cfg, read_dataset_info(cfg))


# ---------------------------------------------------------------------------------------------
# Sharding


def test_two_pipelines_cover_each_example_once(processed_dataset):
    # 27 train images; global batch 4 over 2 replicas on 2 workers: 24 usable, 12 per worker
    from helpers import write_processed_dataset

    root = write_processed_dataset(processed_dataset.parent / "odd", train_per_class=9)
    cfg = config(root)
    info = read_dataset_info(cfg)
    for epoch_seed in (1, 2):
        cfg_e = apply_overrides(cfg, {"data.seed": epoch_seed})
        shards = []
        for i in range(2):
            ctx = tf.distribute.InputContext(
                num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2
            )
            shards.append(
                [
                    p.decode()
                    for p, _ in data.train_files(cfg_e, info, input_context=ctx).as_numpy_iterator()
                ]
            )
            ds = data.make_train_dataset(cfg_e, info, input_context=ctx)
            assert [x.shape[0] for x, _ in ds] == [2] * 6  # per-replica batch 2
        assert len(shards[0]) == len(shards[1]) == 12
        assert not set(shards[0]) & set(shards[1])
        assert len(set(shards[0] + shards[1])) == 24


def test_cached_pipelines_split_the_files_and_rotate_the_leftovers(processed_dataset):
    # 27 train images, 2 pipelines of per-replica batch 2 (global 4): each caches its whole
    # shard (14 or 13 files) and yields 6 batches an epoch; what is left over changes per epoch.
    import hashlib

    from helpers import write_processed_dataset

    root = write_processed_dataset(processed_dataset.parent / "odd", train_per_class=9)
    cfg = config(
        root, "data.train_augment=[{name: center_crop, size: 72}]", "data.deterministic=true"
    )
    info = read_dataset_info(cfg)
    shards, seen = [], []
    for i in range(2):
        ctx = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2
        )
        files = data.train_files(cfg, info, input_context=ctx, cached=True)
        shards.append([p.decode() for p, _ in files.as_numpy_iterator()])
        ds = data.make_train_dataset(cfg, info, input_context=ctx, cached=True, passes=6)
        stream = list(ds)
        assert len(stream) == 6 * 6
        epochs = []
        for k in range(6):
            batches = stream[6 * k : 6 * (k + 1)]
            assert [x.shape[0] for x, _ in batches] == [2] * 6
            epochs.append(
                {hashlib.sha1(im.tobytes()).hexdigest() for x, _ in batches for im in x.numpy()}
            )
        assert all(len(e) == 12 for e in epochs)  # each image at most once per epoch
        assert len(set.union(*epochs)) == len(shards[i])  # every file of the shard gets its turn
        seen.append(set.union(*epochs))
    assert sorted(map(len, shards)) == [13, 14]
    assert not set(shards[0]) & set(shards[1]) and len(set(shards[0] + shards[1])) == 27
    assert not seen[0] & seen[1]


SUBPROCESS = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from keras_googlenet.data import pipeline as data
    from keras_googlenet.data.dataset_info import read_dataset_info
    from keras_googlenet.config import load_config

    cfg = load_config(None, sys.argv[2:])
    info = read_dataset_info(cfg)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    train = data.distribute_for_fit(
        strategy, lambda ctx: data.make_train_dataset(cfg, info, input_context=ctx))
    val = data.distribute_for_fit(
        strategy, lambda ctx: data.make_val_dataset(cfg, info, input_context=ctx))
    # every example once per epoch: per-replica batches of 2, all 24 labels
    seen = []
    for _, y in train:
        for part in strategy.experimental_local_results(y["main"]):
            assert part.shape == (2,), part.shape
            seen.extend(part.numpy().tolist())
    assert sorted(np.bincount(seen)) == [8, 8, 8], seen
    with strategy.scope():
        inputs = keras.Input((72, 72, 3))
        x = keras.layers.Rescaling(1 / 255)(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        outputs = {h: keras.layers.Dense(3, activation="softmax", name=h)(x)
                   for h in ("main", "aux_4a", "aux_4d")}
        model = keras.Model(inputs, outputs)
        model.compile("sgd", loss="sparse_categorical_crossentropy",
                      metrics={"main": ["accuracy"]})
    history = model.fit(train, validation_data=val, epochs=1, verbose=0)
    assert "val_loss" in history.history
    print("OK", strategy.num_replicas_in_sync)
    """
)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(shared_processed_dataset):
    overrides = [f"data.input_dir={shared_processed_dataset}", *SMALL]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", SUBPROCESS, "x", *overrides],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK 2" in result.stdout


# ---------------------------------------------------------------------------------------------
# With the real model


@pytest.mark.slow
def test_real_model_fits_the_pipeline_and_normalizes_inside(shared_processed_dataset):
    import keras

    from keras_googlenet.model.googlenet import build_googlenet

    cfg = config(shared_processed_dataset)
    info = read_dataset_info(cfg)
    keras.utils.set_random_seed(0)
    model = build_googlenet(3, (72, 72, 3), mean_rgb=info.mean_rgb, std_rgb=cfg.data.std_rgb)
    model.compile(
        "sgd",
        loss={h: "sparse_categorical_crossentropy" for h in data.HEADS},
        loss_weights={"main": 1.0, "aux_4a": 0.3, "aux_4d": 0.3},
        metrics={"main": ["accuracy"]},
    )
    history = model.fit(data.make_train_dataset(cfg, info), steps_per_epoch=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])

    # The pipeline ships raw pixels; the model's first layer normalizes them: the layers after
    # it, fed (x - mean) / std by hand, give the same output.
    x, _, _ = next(iter(data.make_val_dataset(cfg, info)))
    assert x.dtype == tf.uint8
    after = keras.Model(model.get_layer("normalize").output, model.get_layer("main").output)
    normalized = (tf.cast(x, tf.float32) - np.array(info.mean_rgb, np.float32)) / cfg.data.std_rgb
    np.testing.assert_allclose(
        after(normalized, training=False), model(x, training=False)["main"], atol=1e-6
    )
    assert not np.allclose(after(tf.cast(x, tf.float32), training=False), after(normalized))


def test_probe_and_decode_on_fuzzed_files(tmp_path):
    """The training reader on 320 mutated files: `probe_image` gives a reason or passes the
    file; a passed file decodes to an image or raises the tf.errors that `on_bad_image: skip`
    drops (never a crash, never a huge allocation from a declared size)."""
    from helpers import fuzzed_image_files

    from keras_googlenet.data.dataset_info import probe_image

    paths = fuzzed_image_files(tmp_path, count=320)
    passed, skipped, decoded, dropped = [], [], 0, 0
    for path in paths:
        reason = probe_image(str(path))
        (skipped if reason else passed).append(path)
        assert reason is None or (isinstance(reason, str) and reason), path
    assert len(passed) + len(skipped) == len(paths)
    for name in ("huge.png", "wide.png", "huge.gif", "huge.jpg", "empty.jpg", "text.jpg"):
        assert tmp_path / name in skipped, name
    for path in passed:
        try:
            image = data.decode_rgb(tf.io.read_file(str(path)))
        except (tf.errors.InvalidArgumentError, tf.errors.ResourceExhaustedError):
            dropped += 1
            continue
        assert image.shape[-1] == 3 and image.dtype == tf.uint8, path
        decoded += 1
    assert decoded + dropped == len(passed) and decoded > 0
