"""Decoding image files in the pipeline: any format by its bytes, and JPEG crop windows alone.

The serving graph decodes with the same `decode_rgb`, so a served image is read like a
validation image.
"""

from __future__ import annotations

import tensorflow as tf

from keras_googlenet.data.augment import Augment


def decode_rgb(contents: tf.Tensor) -> tf.Tensor:
    """JPEG/PNG/GIF/BMP bytes -> HxWx3 uint8 (grayscale and RGBA become RGB; GIF: first frame).

    The format comes from the bytes, not the file name (PNG content under a .jpg name works).
    """
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


# Decode only the crop window when it covers less than this fraction of the image.
_WINDOW_DECODE_BELOW = 0.5


def window_decode_pays(augment: Augment, sample_path: str) -> bool:
    """Whether decoding only the first crop's window is worth its extra steps (reading the
    JPEG header, conditionals), judged once from one file: processed folders hold one size.

    Measured (bench/pipeline.py, `always_window`): cropping 224 out of 256 (77% of the area)
    the window decode is slower than decoding everything; it pays off for small windows
    (random_resized_crop, large source images).
    """
    if not augment.crops_first:
        return False
    step = augment.steps[0]
    if step.name == "random_resized_crop":
        return True
    try:
        h, w, _ = tf.io.extract_jpeg_shape(tf.io.read_file(sample_path)).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
        return False  # not a JPEG
    size = dict(step.params)["size"]
    return size * size < _WINDOW_DECODE_BELOW * h * w


def decode_and_augment(
    contents, seed, augment: Augment, albumentations=None, window_decode: bool = True
) -> tf.Tensor:
    """Decodes one file and applies the transforms, then albumentations.

    With `window_decode`, a first crop of under half a JPEG's area decodes only its window:
    `decode_and_crop_jpeg` skips the pixels outside it, giving the same window as decoding the
    whole image and cutting it, with the same pixels but for chroma rounding (a few levels)
    along the window's left/top edge.
    """
    if window_decode and augment.crops_first:
        is_jpeg = tf.equal(tf.strings.substr(contents, 0, 3), b"\xff\xd8\xff")

        def whole():
            return augment(decode_rgb(contents), seed, stop=1)

        def window_only():
            shape = tf.io.extract_jpeg_shape(contents)

            window = augment.first_window(shape, seed)

            def cropped():
                pixels = tf.io.decode_and_crop_jpeg(contents, window, channels=3)
                return augment.finish_first(pixels)

            area = tf.cast(window[2] * window[3], tf.float32)
            small = area < _WINDOW_DECODE_BELOW * tf.cast(shape[0] * shape[1], tf.float32)
            return tf.cond(augment.fits_window(shape) & small, cropped, whole)

        image = tf.cond(is_jpeg, window_only, whole)
        image.set_shape([None, None, 3])
        image = augment(image, seed, start=1)
    else:
        image = augment(decode_rgb(contents), seed)
    if albumentations is not None:
        image = albumentations(image, tf.random.experimental.stateless_fold_in(seed, 7919))
    return image
