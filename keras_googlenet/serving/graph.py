"""In-graph preprocessing and the serving functions shared by export and predict.

A served image goes through the validation path, inside the TensorFlow graph:

    any HxW uint8 image
      -> center crop to a square (trim the longer side equally; skipped when the dataset was
         made with `preprocess.center_crop: false`)
      -> resize to `preprocess.size` x `preprocess.size` (256), bicubic with antialiasing (within
         about 0.2 grey levels on average of the preprocessor's Pillow bicubic), rounded back to
         0-255 integers as the preprocessor's JPEGs are (imported ImageNet weights: their
         source's resize, see import_weights.PREPROCESSING)
      -> center crop `model.input_size` (224), as the validation pipeline does
      -> the model, whose first layer subtracts the training-set mean and divides by the std.

An image already at `preprocess.size` (a processed dataset file) is only center-cropped, so the
served model sees exactly what evaluation sees. `serve_bytes` decodes with TensorFlow, which
ignores EXIF orientation; the predict CLI decodes with the preprocessor's own reader instead.

Three endpoints, each returning `probabilities` (batch x classes, float32), `top_k_ids` (int32),
`top_k_probabilities` and `top_k_labels` (the category names, stored in the graph):

    serve_images  uint8 [batch, height, width, 3], any height and width (the default signature)
    serve_bytes   string [batch], encoded JPEG, PNG, GIF or BMP files
    serve         float32 [batch, input_size, input_size, 3], pixels already cropped (0-255)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import tensorflow as tf

from keras_googlenet.data.decode import decode_rgb

DEFAULT_TOP_K = 5
OUTPUT_KEYS = ("probabilities", "top_k_ids", "top_k_probabilities", "top_k_labels")


@dataclass(frozen=True)
class ServingSpec:
    """What the serving graph needs besides the model.

    Attributes:
        input_size: the model's input height and width (`model.input_size`).
        resize_size: the side images are resized to before the center crop (`preprocess.size`).
        crop_square: center crop to a square before resizing (`preprocess.center_crop`).
        class_names: label of each class id, in id order (categories.csv).
        top_k: how many classes the top-k outputs hold (at most the number of classes).
        resize_method: "bicubic" (the preprocessor's) or "bilinear" (torchvision's, slim's).
    """

    input_size: int
    resize_size: int
    crop_square: bool
    class_names: tuple[str, ...]
    top_k: int = DEFAULT_TOP_K
    resize_method: str = "bicubic"

    def __post_init__(self):
        object.__setattr__(self, "class_names", tuple(self.class_names))
        # A resize below the crop would leave nothing to crop; never shrink below the input.
        object.__setattr__(self, "resize_size", max(int(self.resize_size), int(self.input_size)))
        object.__setattr__(self, "top_k", max(1, min(int(self.top_k), len(self.class_names))))

    @classmethod
    def from_config(cls, config, class_names: Sequence[str], top_k: int = DEFAULT_TOP_K):
        """The spec of a run trained with `config` (a `keras_googlenet.config.Config`)."""
        return cls(
            input_size=config.model.input_size,
            resize_size=config.preprocess.size,
            crop_square=config.preprocess.center_crop,
            class_names=tuple(class_names),
            top_k=top_k,
        )

    @classmethod
    def from_imported(cls, info: dict, top_k: int = DEFAULT_TOP_K):
        """The spec of an imported weights file (`info`: its JSON): its source's preprocessing
        and its class names."""
        from keras_googlenet.model.import_weights import PREPROCESSING

        prep = PREPROCESSING[info["source"]]
        return cls(
            input_size=prep["input_size"],
            resize_size=prep["resize_size"],
            crop_square=prep["crop_square"],
            class_names=tuple(info["class_names"]),
            top_k=top_k,
            resize_method=prep["resize_method"],
        )

    def to_dict(self) -> dict:
        return {
            "input_size": self.input_size,
            "resize_size": self.resize_size,
            "crop_square": self.crop_square,
            "resize_method": self.resize_method,
            "top_k": self.top_k,
            "num_classes": len(self.class_names),
        }


def _center_crop(images, height, width):
    """Center crop of a [batch, H, W, C] tensor to height x width (odd margins: one more below)."""
    shape = tf.shape(images)
    top = (shape[1] - height) // 2
    left = (shape[2] - width) // 2
    return images[:, top : top + height, left : left + width, :]


def preprocess_images(images, spec: ServingSpec):
    """uint8 [batch, H, W, 3] of any size -> float32 [batch, input, input, 3], 0-255 pixels."""
    images = tf.convert_to_tensor(images)
    if spec.crop_square:
        shape = tf.shape(images)
        side = tf.minimum(shape[1], shape[2])
        images = _center_crop(images, side, side)
    size = spec.resize_size
    resized = tf.image.resize(
        tf.cast(images, tf.float32), (size, size), method=spec.resize_method, antialias=True
    )
    # The preprocessor stores 8-bit images; round so the model sees what training saw.
    resized = tf.clip_by_value(tf.round(resized), 0.0, 255.0)
    cropped = _center_crop(resized, spec.input_size, spec.input_size)
    return tf.ensure_shape(cropped, (None, spec.input_size, spec.input_size, 3))


def make_serving_functions(model: keras.Model, spec: ServingSpec) -> dict:
    """The three endpoints as (python function, input signature) pairs.

    Args:
        model: a float32 inference model (one softmax output) taking 0-255 pixels.
        spec: the preprocessing and the class names.

    Returns:
        `{name: (fn, [tf.TensorSpec])}` for `serve_images`, `serve_bytes` and `serve`; the
        functions are not wrapped in `tf.function` (`ExportArchive.add_endpoint` does that).
    """
    labels = tf.constant(list(spec.class_names), dtype=tf.string)
    size = spec.input_size

    def outputs(pixels):
        probabilities = model(pixels, training=False)
        top = tf.math.top_k(probabilities, k=spec.top_k)
        return {
            "probabilities": probabilities,
            "top_k_ids": top.indices,
            "top_k_probabilities": top.values,
            "top_k_labels": tf.gather(labels, top.indices),
        }

    def serve(pixels):
        return outputs(pixels)

    def serve_images(images):
        return outputs(preprocess_images(images, spec))

    def serve_bytes(encoded):
        def one(data):
            return preprocess_images(decode_rgb(data)[None], spec)[0]

        pixels = tf.map_fn(
            one, encoded, fn_output_signature=tf.TensorSpec((size, size, 3), tf.float32)
        )
        return outputs(pixels)

    return {
        # The first one becomes the SavedModel's `serving_default` signature.
        "serve_images": (serve_images, [tf.TensorSpec((None, None, None, 3), tf.uint8)]),
        "serve_bytes": (serve_bytes, [tf.TensorSpec((None,), tf.string)]),
        "serve": (serve, [tf.TensorSpec((None, size, size, 3), tf.float32)]),
    }


def compiled_serving_functions(model: keras.Model, spec: ServingSpec) -> dict:
    """The same endpoints wrapped in `tf.function`, for use in this process (predict on a run)."""
    return {
        name: tf.function(fn, input_signature=signature, autograph=False)
        for name, (fn, signature) in make_serving_functions(model, spec).items()
    }
