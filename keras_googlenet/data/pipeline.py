"""The input pipeline: tf.data datasets from a processed folder's CSV files.

The datasets come from a `DatasetInfo` (`dataset_info.py`: the processed folder's files, checked
before training starts). They ship raw pixels:
images are uint8, `[batch, input_size, input_size, 3]`, on the 0-255 scale; the model's first
layer subtracts the mean and divides by `data.std_rgb` (`build_googlenet(..., mean_rgb=...)`),
so an exported model takes the same raw images. Labels are a dict keyed by the model's outputs
(`{"main", "aux_4a", "aux_4d"}`, int32 class ids), as Keras 3 matches labels to outputs by name.

Training order, per input pipeline (one per worker), pass after pass (an epoch is one pass, or
`data.steps_per_epoch` steps of the stream):

    file list --shuffle (whole list, seeded by data.seed and the pass: the same on every
    worker)--> shard over workers --> read + decode (+ first crop, JPEG window only) + augment
    (seeded by pass and place), parallel --> batch (drop remainder) --> labels per head
    --> prefetch

With the decoded images cached (`data.cache`, see cache.py), the first part runs once:

    file list --shuffle once--> shard --> read + decode --> cache --> shuffle (seeded by the
    pass) --> cut to whole batches --> augment --> batch ...

Nothing in the order depends on how often a dataset was iterated: a resumed run starts the
stream at its step (`make_train_dataset(start_step=...)`) and sees the batches it would have.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import NamedTuple

import tensorflow as tf

from keras_googlenet.config import Config
from keras_googlenet.data.albumentations_ops import compile_albumentations
from keras_googlenet.data.augment import Augment, compile_augment
from keras_googlenet.data.cache import use_cache
from keras_googlenet.data.dataset_info import DatasetInfo, read_split, resolve_path
from keras_googlenet.data.decode import decode_and_augment, decode_rgb, window_decode_pays
from keras_googlenet.errors import ConfigError
from keras_googlenet.model.table import OUTPUT_NAMES as HEADS

# The functions mapped below are plain TensorFlow (no Python control flow on tensors), so they
# need no autograph conversion: converting them was three quarters of building the pipelines
# (bench/README.md, start-up). MixUp/CutMix (Keras layers) keep autograph.
_no_autograph = tf.autograph.experimental.do_not_convert

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Batch sizes and distribution.


def global_batch_size(cfg: Config, num_replicas: int) -> int:
    """The batch summed over all replicas, from `data.batch_size` and `data.batch_size_is`.

    Raises:
        ConfigError: a global batch that the replicas cannot share evenly.
    """
    b = cfg.data.batch_size
    if cfg.data.batch_size_is == "per_replica":
        return b * num_replicas
    if b % num_replicas:
        raise ConfigError(
            f"config: 'data.batch_size' {b} (global) is not divisible by the {num_replicas} "
            "replicas; change it or set data.batch_size_is: per_replica"
        )
    return b


def distribute_for_fit(strategy: tf.distribute.Strategy, dataset_fn):
    """What to pass to `model.fit` under `strategy`.

    Args:
        strategy: the training strategy (default, Mirrored or MultiWorkerMirrored).
        dataset_fn: `fn(input_context) -> tf.data.Dataset`, e.g.
            `lambda ctx: make_train_dataset(cfg, info, input_context=ctx)`; the dataset must be
            batched per replica and sharded by `input_context` (the datasets of this module are).

    Returns:
        The plain dataset with one replica (Keras then knows its length for the progress bar);
        else `strategy.distribute_datasets_from_function(dataset_fn)`: each worker builds its
        own pipeline over its shard of the files, which Keras 3 `fit` accepts as is. (A plain
        global-batch dataset would also work, but under MultiWorkerMirroredStrategy Keras would
        auto-shard it by element: every worker would read and decode every file.)
    """
    if strategy.num_replicas_in_sync == 1:
        return dataset_fn(tf.distribute.InputContext())
    return strategy.distribute_datasets_from_function(dataset_fn)


def _batch_for(cfg: Config, input_context, num_replicas: int) -> tuple[int, int, int, int]:
    """(batch of this pipeline, examples per step of this pipeline, pipelines, pipeline id)."""
    if input_context is None:
        batch = global_batch_size(cfg, num_replicas)
        return batch, batch, 1, 0
    replicas = input_context.num_replicas_in_sync
    pipelines = input_context.num_input_pipelines
    per_replica = input_context.get_per_replica_batch_size(global_batch_size(cfg, replicas))
    return (
        per_replica,
        per_replica * (replicas // pipelines),
        pipelines,
        input_context.input_pipeline_id,
    )


class ValLayout(NamedTuple):
    """How one validation pipeline cuts its share of the images (see `val_layout`)."""

    start: int  # index of its first image
    count: int  # its images
    batch: int  # every batch's size, padding included
    batches: int  # its number of batches (the same in every pipeline)
    steps: int  # validation steps: pass them to Keras (see `val_layout`)
    weight: float  # the sample weight of a real image (padding: 0)


def val_layout(
    n: int, replicas: int, per_replica: int, pipelines: int = 1, pipeline_id: int = 0
) -> ValLayout:
    """Equal validation batches, padded with zero-weight images, so every strategy is exact.

    A plain `batch(drop_remainder=False)` gives the replicas of the last step uneven batches,
    an empty one whenever the remainder is smaller than the replicas (batch norm then fails).
    Here every replica of every step gets `batch` images, the last ones padded with blank
    zero-weight images. Keras averages each batch's loss (summed losses / batch size) with equal
    weights when the batches are equal; real images get the weight `S * R * batch / n` (S steps,
    R replicas), so those averages and the weighted accuracies come out as the plain means over
    the `n` real images: what one device computes, within float rounding. Keras must be given
    `steps`: left to find the end itself under a distribution strategy, it runs one more step
    of empty batches and counts it in the per-output losses and accuracies.

    Args:
        n: images in the validation set.
        replicas: replicas in sync (over all workers).
        per_replica: the per-replica batch size.
        pipelines, pipeline_id: input pipelines (one per worker) and which one this is: each
            reads its own contiguous share, in as many batches as the others.
    """
    steps = max(1, -(-n // (replicas * per_replica)))
    share, extra = divmod(n, pipelines)
    start = pipeline_id * share + min(pipeline_id, extra)
    batches = steps * replicas // pipelines
    batch = max(1, -(-(share + (extra > 0)) // batches))  # the largest share fits
    return ValLayout(
        start=start,
        count=share + (pipeline_id < extra),
        batch=batch,
        batches=batches,
        steps=steps,
        weight=steps * replicas * batch / n if n else 0.0,
    )


# --------------------------------------------------------------------------------------------
# Decoding.


def _check_output_size(augment: Augment, albumentations, cfg: Config, key: str) -> None:
    size = cfg.model.input_size
    out = augment.output_size
    if out is not None and out != size and albumentations is None:
        raise ConfigError(
            f"config: '{key}' makes {out}x{out} images but model.input_size is {size}; "
            f"end the list with a crop or resize of size {size}"
        )
    if out is None and albumentations is None:
        raise ConfigError(
            f"config: '{key}' sets no image size; add e.g. {{name: center_crop, size: {size}}} "
            f"or {{name: resize, size: {size}}} (model.input_size is {size})"
        )


def _check_albumentations_output(cfg, info, augment, albumentations) -> None:
    """Runs the albumentations path once on the first training image: a wrong output size
    is a config mistake, better reported now than as skipped images mid-epoch."""
    size = cfg.model.input_size
    contents = tf.io.read_file(info.train_files[0])
    out = decode_and_augment(contents, tf.constant([0, 0], tf.int64), augment, albumentations)
    if tuple(out.shape) != (size, size, 3):
        raise ConfigError(
            f"config: 'data.train_augment' + 'data.albumentations' make {tuple(out.shape)} "
            f"images from {info.train_files[0]}, but model.input_size is {size}"
        )


def _labels(images, labels, heads):
    if not labels.dtype.is_floating:  # soft labels (data.batch_augment) stay float rows
        labels = tf.cast(labels, tf.int32)
    return images, {h: labels for h in heads}


def untuned_options() -> tf.data.Options:
    """tf.data options without the autotuning model thread, for every dataset that `fit` reads.

    TensorFlow 2.21 deletes an iterator only once that thread wakes, and it sleeps up to 60 s
    between tunings: `fit` hung 43-47 s, idle, in the training iterator's destructor after the
    demo's last epoch (4 runs in 6). Without the thread, AUTOTUNE values take TensorFlow's fixed
    defaults; the pipeline was no slower on 2 cores (bench/README.md, "Autotuning off").
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def _options(cfg: Config, *, deterministic: bool, sharded: bool) -> tf.data.Options:
    options = untuned_options()
    # Out-of-order parallel map is faster; a reproducible run needs the order fixed.
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True
    if sharded:  # we shard by file ourselves; stop tf.distribute from sharding again
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options


def _heads(cfg: Config) -> tuple[str, ...]:
    return HEADS if cfg.model.aux_heads else HEADS[:1]


# --------------------------------------------------------------------------------------------
# The datasets.


def _usable_per_pipeline(cfg: Config, info: DatasetInfo, input_context, num_replicas) -> int:
    """Training images one pipeline turns into batches per epoch: the same in every pipeline
    (collective ops need equal step counts), a whole number of its steps."""
    _, per_step, pipelines, _ = _batch_for(cfg, input_context, num_replicas)
    n = info.train_size
    usable = n // (per_step * pipelines) * per_step
    if usable == 0:
        raise ConfigError(
            f"config: 'data.batch_size' {cfg.data.batch_size} is larger than the "
            f"{n} training images (drop_remainder would leave no batch)"
        )
    return usable


def steps_per_pass(cfg: Config, info: DatasetInfo, input_context=None, num_replicas=1) -> int:
    """Training steps in one pass over the files: whole batches, the same in every pipeline."""
    _, per_step, _, _ = _batch_for(cfg, input_context, num_replicas)
    return _usable_per_pipeline(cfg, info, input_context, num_replicas) // per_step


def _pass_seed(seed: int, epoch_pass: int) -> int:
    """The shuffle seed of pass `epoch_pass`: a pass's order is a function of `data.seed` and
    the pass alone, so a resumed process draws the same order (never 0: TensorFlow's own
    meaning for "no seed")."""
    return (seed * 1_000_003 + epoch_pass) % (2**31 - 1) + 1


def train_files(
    cfg: Config,
    info: DatasetInfo,
    *,
    input_context=None,
    num_replicas: int = 1,
    cached: bool = False,
    epoch_pass: int = 0,
):
    """The (path, label) dataset one training pipeline reads in pass `epoch_pass`, undecoded.

    The whole file list is shuffled by (`data.seed`, pass), the same way on every worker, then
    cut to a multiple of what all pipelines consume per step and sharded, so every pipeline gets
    the same number of full batches and each example is read at most once per pass across
    workers (the few left over change each pass, like a dropped remainder). With `cached`, the
    order is drawn once (by `data.seed`) and nothing is cut: each pipeline caches its whole
    shard, and `make_train_dataset` shuffles the decoded images and cuts after the cache, so
    the few left over still change each pass.
    """
    _, _, pipelines, pipeline_id = _batch_for(cfg, input_context, num_replicas)
    usable = _usable_per_pipeline(cfg, info, input_context, num_replicas) * pipelines
    n = info.train_size
    files = tf.data.Dataset.from_tensor_slices(
        (list(info.train_files), tf.constant(info.train_labels, tf.int32))
    )
    # Shuffled even when cached: a CSV sorted by class would otherwise fill the cache (and a
    # shuffle buffer smaller than the set after it) one class at a time.
    seed = cfg.data.seed if cached else _pass_seed(cfg.data.seed, epoch_pass)
    files = files.shuffle(n, seed=seed, reshuffle_each_iteration=False)
    if not cached:
        files = files.take(usable)
    if pipelines > 1:
        files = files.shard(pipelines, pipeline_id)
    return files


def make_train_dataset(
    cfg: Config,
    info: DatasetInfo,
    *,
    input_context=None,
    num_replicas: int = 1,
    cached: bool | None = None,
    start_step: int = 0,
    passes: int = 1,
) -> tf.data.Dataset:
    """The training stream: `(images, labels)` batches, shuffled and augmented, from step
    `start_step` on, for `passes` passes over the training files.

    Pass p's order and each image's augmentation are functions of `data.seed`, p, the pipeline
    and the image's place in the pass, never of how often a dataset was iterated before: a
    run resumed at step `start_step` (epochs x steps per epoch + steps into the epoch) gets the
    very batches the stopped process would have trained on next (in the same order with
    `data.deterministic`; without it, parallel decoding may swap a few neighbours). An epoch is
    one pass (`steps_per_pass` steps), or `data.steps_per_epoch` steps cut from the stream.

    Args:
        cfg: the config (`data.*`, `model.input_size`, `model.aux_heads`).
        info: from `read_dataset_info`.
        input_context: given by `distribute_for_fit`: batch per replica and this pipeline's
            shard of the files. None: one pipeline, global batch over `num_replicas`.
        num_replicas: replicas sharing the global batch when `input_context` is None.
        cached: whether decoded images are cached (`data/cache.py`); None: `use_cache` decides
            here. Several workers must agree (their shards differ between the two ways), so
            training decides once for all of them and passes it.
        start_step: the first step of the stream (this pipeline's steps, not images).
        passes: the passes to yield, from the one `start_step` is in.

    Returns:
        A dataset of `(uint8 [B, S, S, 3], {"main": int32 [B], ...})`, S = model.input_size,
        raw 0-255 pixels.

    Raises:
        ConfigError: augmentation lists that do not produce model.input_size images.
    """
    d = cfg.data
    augment = compile_augment(d.train_augment, "data.train_augment")
    albumentations = compile_albumentations(
        d.albumentations, "data.albumentations", reseed=d.deterministic
    )
    _check_output_size(augment, albumentations, cfg, "data.train_augment")
    if albumentations is not None:
        _check_albumentations_output(cfg, info, augment, albumentations)
    batch, per_step, pipelines, pipeline_id = _batch_for(cfg, input_context, num_replicas)
    size = cfg.model.input_size
    pass_steps = steps_per_pass(cfg, info, input_context, num_replicas)
    first_pass, skip_steps = divmod(int(start_step), pass_steps)
    usable = pass_steps * per_step

    if cached is None:
        cached = use_cache(cfg, info.train_files, pipelines)
    if cached:
        # Decoded whole images are cached once; each pass then shuffles them (so the order
        # must be drawn after the cache) and cuts whole batches.
        files = train_files(cfg, info, input_context=input_context, cached=True)
        decoded = files.map(
            _no_autograph(lambda p, y: (decode_rgb(tf.io.read_file(p)), y)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        if d.on_bad_image == "skip":
            decoded = decoded.ignore_errors(log_warning=True)
        decoded = decoded.cache()
        buffer = min(d.shuffle_buffer, info.train_size) or 1

    def one_pass(epoch_pass: int):
        """Pass `epoch_pass`'s (item, augmentation seed) pairs; no functions in it, so each
        pass costs no tracing (the maps below run once over the whole stream)."""
        if cached:
            seed = _pass_seed(d.seed, epoch_pass)
            items = decoded.shuffle(buffer, seed=seed, reshuffle_each_iteration=False)
            items = items.take(usable)
        else:
            items = train_files(
                cfg,
                info,
                input_context=input_context,
                num_replicas=num_replicas,
                epoch_pass=epoch_pass,
            )
        place = tf.data.Dataset.range(epoch_pass * 2**31, epoch_pass * 2**31 + usable)
        return tf.data.Dataset.zip((items, place))

    stream = None
    for epoch_pass in range(first_pass, first_pass + max(1, passes)):
        ds = one_pass(epoch_pass)
        if epoch_pass == first_pass and skip_steps:
            ds = ds.skip(skip_steps * per_step)  # a resumed pass: what was already trained
        stream = ds if stream is None else stream.concatenate(ds)
    aug_base = tf.constant(d.seed + 1_000_003 * pipeline_id, tf.int64)
    window = window_decode_pays(augment, info.train_files[0])

    @_no_autograph
    def load(item, place):
        source, label = item
        seed = tf.stack([aug_base, place])  # stateless: (pipeline, pass, place in the pass)
        if cached:
            image = augment(source, seed)
            if albumentations is not None:
                image = albumentations(image, tf.random.experimental.stateless_fold_in(seed, 7919))
        else:
            contents = tf.io.read_file(source)
            image = decode_and_augment(contents, seed, augment, albumentations, window)
        return tf.ensure_shape(image, [size, size, 3]), label

    ds = stream.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if d.on_bad_image == "skip" and (not cached or albumentations is not None):
        # Files that looked fine to `probe_image` but fail to decode: dropped, one warning each.
        # Cached images were decoded, and bad files dropped, before the cache; skipping again
        # would keep tf.data from fusing this map into the batch (30% of the cached rate).
        ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(batch, drop_remainder=True, num_parallel_calls=tf.data.AUTOTUNE)
    if d.batch_augment:
        from keras_googlenet.data.batch_augment import make_batch_augment

        mix = make_batch_augment(d.batch_augment, len(info.class_names), d.seed + pipeline_id)
        ds = ds.map(mix)  # sequential: the layers' seed generators advance in a fixed order
    ds = ds.map(_no_autograph(lambda x, y: _labels(x, y, _heads(cfg))))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(
        _options(cfg, deterministic=d.deterministic, sharded=input_context is not None)
    )


def passes_for(start_step: int, steps: int, pass_steps: int) -> int:
    """Passes a stream from `start_step` must hold to give `steps` steps."""
    first = start_step // pass_steps
    last = (start_step + steps - 1) // pass_steps
    return last - first + 1


def make_val_dataset(
    cfg: Config,
    info: DatasetInfo,
    *,
    csv_path: str | os.PathLike | None = None,
    input_context=None,
    num_replicas: int = 1,
) -> tf.data.Dataset:
    """The validation dataset: every listed image once, in CSV order, deterministic.

    Args:
        cfg: the config (`data.val_augment`, batch size, `model.input_size`).
        info: from `read_dataset_info` (its validation files are used unless `csv_path`).
        csv_path: another CSV (columns `image,class`) of files in `data.valid_dir`, checked the
            same way (e.g. a test split for evaluation).
        input_context: batch per replica, and this worker's share of the images: each image
            is evaluated once over all workers and replicas, every worker takes the same number
            of steps (collective ops need that) and no replica gets an empty batch
            (`val_layout`).
        num_replicas: replicas sharing the global batch when `input_context` is None.

    Returns:
        A dataset of `(uint8 [B, S, S, 3], {"main": int32 [B], ...}, float32 [B] weights)`,
        every batch the same size, blank zero-weight images after the real ones (see
        `val_layout`; drop weight-0 rows to get the images alone).
    """
    d = cfg.data
    augment = compile_augment(d.val_augment, "data.val_augment")
    _check_output_size(augment, None, cfg, "data.val_augment")
    batch, _, _, _ = _batch_for(cfg, input_context, num_replicas)
    size = cfg.model.input_size
    paths, labels = info.val_files, info.val_labels
    if csv_path is not None:
        image_dir = resolve_path(info.input_dir, d.valid_dir)
        paths, labels = read_split(cfg, Path(csv_path), image_dir, info.num_classes, [])
    fixed_seed = tf.constant([0, 0], tf.int64)  # val transforms are deterministic anyway
    window = window_decode_pays(augment, paths[0])

    replicas = input_context.num_replicas_in_sync if input_context else 1
    pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    layout = val_layout(len(paths), replicas, batch, pipelines, pipeline_id)
    mine = slice(layout.start, layout.start + layout.count)
    weight = tf.constant(layout.weight, tf.float32)

    @_no_autograph
    def load(path, label):
        image = decode_and_augment(tf.io.read_file(path), fixed_seed, augment, None, window)
        return tf.ensure_shape(image, [size, size, 3]), label, weight

    ds = tf.data.Dataset.from_tensor_slices(
        (list(paths[mine]), tf.constant(labels[mine], tf.int32))
    )
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if d.on_bad_image == "skip":
        ds = ds.ignore_errors(log_warning=True)
    blank = (tf.zeros([size, size, 3], tf.uint8), tf.constant(0, tf.int32), tf.constant(0.0))
    # Padding after the real images, then cut to exactly `batches` equal batches (also when a
    # file failed to decode and was dropped above).
    ds = ds.concatenate(tf.data.Dataset.from_tensors(blank).repeat())
    ds = ds.take(layout.batches * layout.batch).batch(layout.batch, drop_remainder=True)
    ds = ds.map(_no_autograph(lambda x, y, w: (*_labels(x, y, _heads(cfg)), w)))
    if d.cache is True:  # auto leaves validation alone: it is a fifth of the images
        ds = ds.cache()
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_options(cfg, deterministic=True, sharded=input_context is not None))
