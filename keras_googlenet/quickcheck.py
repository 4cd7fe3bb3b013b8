"""The CIFAR-10 quick check: the Keras seed article's recipe, without its 30 GB of memory.

    keras-googlenet quickcheck               # the recipe: 25 epochs at 224 px
    keras-googlenet quickcheck --fast        # a few minutes on a laptop CPU
    keras-googlenet quickcheck --input DIR   # a local copy (see keras_googlenet.data.cifar)

Trains the same three-output GoogLeNet with `train()` (checkpoints, resume, TensorBoard, log
file in the run folder) on CIFAR-10 held as uint8 arrays; each batch is resized to the input size
inside tf.data, so memory stays at the 150 MB of the arrays plus a few batches. Ends with one
line comparing the validation accuracy reached with the seed's 81.9% after 25 epochs.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

from keras_googlenet.config import apply_overrides, load_config
from keras_googlenet.errors import UserError

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cifar10.yaml"
SEED_ACCURACY, SEED_EPOCHS, SEED_SIZE = 0.819, 25, 224

# --fast: a class-balanced subset, a small input and a few epochs (a few minutes on 2 cores).
# A smaller batch than the recipe's 256 gives the few thousand images enough SGD steps, and batch
# norm's moving averages (momentum 0.99) enough updates to be right at validation: with batch 64
# they still lagged after two epochs (train accuracy far above validation on a synthetic set).
FAST = {"train_per_class": 500, "test_per_class": 100, "image_size": 72, "epochs": 3}
FAST_BATCH = 32


def make_datasets(cifar, image_size: int, batch_size: int, seed: int = 0):
    """(train, validation) tf.data datasets resizing uint8 CIFAR batches to `image_size`.

    Batching comes before the resize: one `resize` call per batch, and only the batches in
    flight ever exist at the large size (the seed resized all 50,000 images up front).

    Returns:
        Two datasets of `(float32 images 0-255, {"main": y, "aux_4a": y, "aux_4d": y})`.
    """
    import tensorflow as tf

    from keras_googlenet.data.pipeline import untuned_options

    def resize(images, labels):
        images = tf.image.resize(tf.cast(images, tf.float32), (image_size, image_size))
        return images, {"main": labels, "aux_4a": labels, "aux_4d": labels}

    def pipeline(x, y, training):
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if training:
            # The uint8 arrays are small: a full shuffle costs 150 MB at most.
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size, drop_remainder=training)
        ds = ds.map(resize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
        return ds.with_options(untuned_options())

    return (
        pipeline(cifar.x_train, cifar.y_train, True),
        pipeline(cifar.x_test, cifar.y_test, False),
    )


def format_history(rows: list[dict]) -> str:
    """A per-epoch table: loss and accuracy of the three heads, train and validation."""
    heads = (("main", "main_top1"), ("aux_4a", "aux_4a_accuracy"), ("aux_4d", "aux_4d_accuracy"))
    header = ["epoch"]
    for head, _ in heads:
        header += [f"{head} loss", f"{head} acc"]
    header += [f"val {head} acc" for head, _ in heads]
    lines = ["  ".join(f"{h:>13}" for h in header)]
    for row in rows:

        def cell(key, row=row):
            value = row.get(key)
            return "n/a" if value is None else f"{value:.4f}"

        cells = [str(row["epoch"] + 1)]
        for head, acc in heads:
            cells += [cell(f"{head}_loss"), cell(acc)]
        cells += [cell(f"val_{acc}") for _, acc in heads]
        lines.append("  ".join(f"{c:>13}" for c in cells))
    return "\n".join(lines)


def verdict(
    val_accuracy: float, epochs: int, image_size: int, train_size: int, num_classes: int, fast: bool
) -> str:
    """The closing line: reached validation accuracy beside the seed's."""
    mode = " (--fast)" if fast else ""
    return (
        f"quick check: val accuracy {val_accuracy:.3f} after {epochs} epochs at {image_size} px "
        f"on {train_size} training images{mode}; the seed reached {SEED_ACCURACY:.3f} after "
        f"{SEED_EPOCHS} epochs at {SEED_SIZE} px on 50000 (chance: {1 / num_classes:.3f})"
    )


def peak_memory_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run(args) -> int:
    """Runs `keras-googlenet quickcheck`."""

    from keras_googlenet.data.cifar import load_cifar10

    start = time.perf_counter()
    cifar = load_cifar10(args.input, download=not args.offline)
    fast = FAST if args.fast else {}
    train_per_class = args.train_per_class or fast.get("train_per_class")
    test_per_class = args.test_per_class or fast.get("test_per_class")
    if train_per_class or test_per_class:
        cifar = cifar.subset(
            train_per_class or len(cifar.y_train), test_per_class or len(cifar.y_test)
        )
    print(
        f"CIFAR-10 from {cifar.source}: {len(cifar.y_train)} training and {len(cifar.y_test)} "
        f"validation images, {len(cifar.class_names)} classes"
    )

    overrides = {"model.num_classes": len(cifar.class_names)}
    if args.fast:
        overrides["data.batch_size"] = FAST_BATCH
    if args.epochs or fast:
        overrides["training.epochs"] = args.epochs or fast["epochs"]
    if args.image_size or fast:
        overrides["model.input_size"] = args.image_size or fast["image_size"]
    # --set wins over the flags above.
    cfg = apply_overrides(load_config(args.config), overrides, "quickcheck flags")
    # CIFAR images are resized straight to the input size; an export of the run does the same.
    square = {"preprocess.size": cfg.model.input_size, "preprocess.center_crop": False}
    cfg = apply_overrides(cfg, square, "quickcheck")
    if args.overrides:
        cfg = apply_overrides(cfg, args.overrides)
    if cfg.data.batch_size > len(cifar.y_train):
        raise UserError(
            f"data.batch_size {cfg.data.batch_size} is larger than the {len(cifar.y_train)} "
            "training images"
        )

    from keras_googlenet.data.dataset_info import DatasetInfo
    from keras_googlenet.training.history import read_history
    from keras_googlenet.training.run_dir import RunDir
    from keras_googlenet.training.train import train

    size = cfg.model.input_size
    train_ds, val_ds = make_datasets(cifar, size, cfg.data.batch_size, seed=cfg.data.seed)
    info = DatasetInfo(
        input_dir=Path(str(cifar.source)),
        class_names=tuple(cifar.class_names),
        mean_rgb=(0.0, 0.0, 0.0),  # the recipe scales to [0, 1] only
        train_size=len(cifar.y_train),
        val_size=len(cifar.y_test),
    )
    run_dir = args.run_dir or ("runs/quickcheck-fast" if args.fast else "runs/quickcheck")
    result = train(cfg, run_dir, restart=args.restart, datasets=(train_ds, val_ds, info))

    rows = read_history(RunDir(result["run_dir"]).history)
    if rows:
        print(format_history(rows))
    val = (result.get("metrics") or {}).get("val_main_top1")
    if val is None:
        raise UserError(f"{result['run_dir']}: no validation accuracy in history.csv", 1)
    print(
        f"run folder {result['run_dir']}; {time.perf_counter() - start:.0f} s; peak memory "
        f"{peak_memory_gb():.2f} GB"
    )
    print(verdict(val, cfg.training.epochs, size, len(cifar.y_train), info.num_classes, args.fast))
    sys.stdout.flush()
    return 0
