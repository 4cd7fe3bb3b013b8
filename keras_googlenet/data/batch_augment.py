"""Batch-level augmentation with Keras's preprocessing layers: MixUp, CutMix and RandAugment.

`data.batch_augment` is an ordered list, applied to each training batch after `batch()`:

    batch_augment:
      - {name: randaugment, num_ops: 2, magnitude: 0.5}   # keras.layers.RandAugment
      - {name: mixup, alpha: 0.2}                         # keras.layers.MixUp
      - {name: cutmix, alpha: 1.0}                        # keras.layers.CutMix

MixUp and CutMix mix pairs of images of a batch and their labels, so the labels become soft:
one-hot rows mixed with the same weights, summing to 1, the same for all three heads. The
losses are then categorical cross-entropies on those rows and the validation labels are
one-hot too (`soft_labels`; see `training.compile.compile_model`). RandAugment draws its
operations per batch and their strengths per image. The layers compute in float32 under every
precision policy, and images leave as float32 on the 0-255 scale (the model normalizes them).

Seeded: each layer gets `data.seed` (plus the pipeline's index and its position in the list);
the map runs sequentially, so the same seed gives the same batches.
"""

from __future__ import annotations

from keras_googlenet.errors import ConfigError

KEY = "data.batch_augment"
# name -> {parameter: default}; mixup/cutmix alpha is the Beta distribution's parameter.
PARAMS = {
    "mixup": {"alpha": 0.2},
    "cutmix": {"alpha": 1.0},
    "randaugment": {"num_ops": 2, "magnitude": 0.5},
}
MIXING = ("mixup", "cutmix")


def check_batch_augment(entries, source: str = "config") -> list[tuple[str, dict]]:
    """[(name, parameters with defaults)] of `data.batch_augment`; bad entries raise one line
    naming the key (`data.batch_augment[1].alpha`)."""
    out = []
    for i, entry in enumerate(entries or []):
        where = f"{KEY}[{i}]"
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"{source}: '{where}' must be a mapping with a name")
        name = entry["name"]
        if name not in PARAMS:
            raise ConfigError(
                f"{source}: '{where}.name': unknown {name!r} (one of {', '.join(PARAMS)})"
            )
        params = dict(PARAMS[name])
        for key, value in entry.items():
            if key == "name":
                continue
            if key not in params:
                raise ConfigError(f"{source}: '{where}.{key}': not a parameter of {name}")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{source}: '{where}.{key}' must be a number, got {value!r}")
            params[key] = value
        if "alpha" in params and not params["alpha"] > 0:
            raise ConfigError(f"{source}: '{where}.alpha' must be positive, got {params['alpha']}")
        if "magnitude" in params and not 0 <= params["magnitude"] <= 1:
            raise ConfigError(
                f"{source}: '{where}.magnitude' must be in [0, 1], got {params['magnitude']}"
            )
        if "num_ops" in params and (
            not isinstance(params["num_ops"], int) or params["num_ops"] < 1
        ):
            raise ConfigError(
                f"{source}: '{where}.num_ops' must be an integer of at least 1, "
                f"got {params['num_ops']}"
            )
        out.append((name, params))
    return out


def soft_labels(entries) -> bool:
    """Whether the list mixes labels (MixUp or CutMix): then every label is a one-hot row."""
    return any(isinstance(e, dict) and e.get("name") in MIXING for e in entries or [])


def make_batch_augment(entries, num_classes: int, seed: int):
    """A function (uint8 or float images [B, S, S, 3], int labels [B]) -> (float32 images,
    labels: one-hot float32 [B, num_classes] when the list mixes, else the int labels).

    Args:
        entries: `data.batch_augment`.
        num_classes: the number of classes (the one-hot width).
        seed: the first layer's seed; later layers get `seed + index`.
    """
    import keras
    import tensorflow as tf

    layers = []
    # float32 whatever the global policy: the layers are built inside a run's mixed-precision
    # block, where they would otherwise compute in float16/bfloat16 (MixUp then fails on its
    # float32 labels) and hand the model other pixels than a float32 run's.
    f32 = {"dtype": "float32"}
    for i, (name, p) in enumerate(check_batch_augment(entries)):
        if name == "mixup":
            layers.append(keras.layers.MixUp(alpha=p["alpha"], seed=seed + i, **f32))
        elif name == "cutmix":
            layers.append(keras.layers.CutMix(factor=p["alpha"], seed=seed + i, **f32))
        else:
            layers.append(
                keras.layers.RandAugment(
                    value_range=(0, 255),
                    num_ops=p["num_ops"],
                    factor=p["magnitude"],
                    seed=seed + i,
                    **f32,
                )
            )
    mixes = soft_labels(entries)

    def apply(images, labels):
        images = tf.cast(images, tf.float32)
        if mixes:
            labels = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float32)
        for layer in layers:
            if isinstance(layer, keras.layers.RandAugment):
                images = layer(images, training=True)
            else:
                out = layer({"images": images, "labels": labels}, training=True)
                images, labels = out["images"], out["labels"]
        return tf.clip_by_value(images, 0.0, 255.0), labels

    return apply


def one_hot_labels(dataset, num_classes: int):
    """(images, {head: int labels}[, weights]) -> (images, {head: one-hot float32}[, weights]):
    the validation labels of a run whose training labels are soft."""
    import tensorflow as tf

    def convert(images, labels, *rest):
        one_hot = {
            head: tf.one_hot(tf.cast(y, tf.int32), num_classes, dtype=tf.float32)
            for head, y in labels.items()
        }
        return (images, one_hot, *rest)

    return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
