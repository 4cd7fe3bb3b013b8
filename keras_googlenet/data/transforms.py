"""The image transforms of the augmentation lists, each a small pure function over one image.

`fn(image, seed, **params) -> image` over one HxWx3 image; `seed` is a shape-[2] integer tensor
for TensorFlow's stateless random ops (same seed, same result). The output has the input's
dtype: uint8 in, uint8 out (resized and colour-changed values are rounded and clipped). Crops
also exist as `*_window` functions giving the window, so the pipeline can decode only that part
of a JPEG. `augment.py` names them and checks their parameters.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

# --------------------------------------------------------------------------------------------
# Helpers.


def _restore_dtype(image: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """Float pixels on the 0-255 scale back to `dtype` (rounded and clipped for uint8)."""
    if dtype == tf.uint8:
        return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
    return tf.cast(tf.clip_by_value(image, 0.0, 255.0), dtype)


def resize_to(image: tf.Tensor, height, width) -> tf.Tensor:
    """Bilinear resize keeping the input's dtype, antialiased only when shrinking.

    The antialiased kernel costs ~3x plain bilinear and changes nothing when enlarging (the
    usual case for random_resized_crop's windows).
    """
    size = tf.stack([height, width])
    shape = tf.shape(image)
    shrinks = tf.logical_or(shape[0] > size[0], shape[1] > size[1])
    out = tf.cond(
        shrinks,
        lambda: tf.image.resize(image, size, antialias=True),
        lambda: tf.image.resize(image, size),
    )
    return _restore_dtype(out, image.dtype)


def _ensure_min_side(image: tf.Tensor, size: int) -> tf.Tensor:
    """Upscales an image whose shorter side is below `size` so that a size x size crop fits.

    Processed folders hold 256x256 images, so this is the rare path (a user's own folder of
    small images); without it the crop would fail mid-epoch.
    """
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    short = tf.minimum(h, w)

    def upscale():
        scale = size / tf.cast(short, tf.float32)
        new_h = tf.maximum(size, tf.cast(tf.math.ceil(tf.cast(h, tf.float32) * scale), tf.int32))
        new_w = tf.maximum(size, tf.cast(tf.math.ceil(tf.cast(w, tf.float32) * scale), tf.int32))
        return resize_to(image, new_h, new_w)

    return tf.cond(short < size, upscale, lambda: image)


# --------------------------------------------------------------------------------------------
# Crop windows. A crop is "pick a window from the image's shape, then cut it out"; the window
# depends only on the shape, so the pipeline can decode just that window of a JPEG
# (`tf.io.decode_and_crop_jpeg`) and get the same pixels without decoding the whole file.


def random_crop_window(shape, seed, *, size: int):
    """(top, left, height, width) of a uniformly placed size x size window."""
    h, w = shape[0], shape[1]
    top = tf.random.stateless_uniform([], seed, 0, h - size + 1, dtype=tf.int32)
    left_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    left = tf.random.stateless_uniform([], left_seed, 0, w - size + 1, dtype=tf.int32)
    return tf.stack([top, left, size, size])


def center_crop_window(shape, seed, *, size: int):
    """(top, left, height, width) of the centered size x size window."""
    del seed  # deterministic
    h, w = shape[0], shape[1]
    return tf.stack([(h - size) // 2, (w - size) // 2, size, size])


def random_resized_crop_window(shape, seed, *, size: int, scale, ratio):
    """(top, left, height, width) of a window with a random area fraction and aspect ratio.

    As in the Inception training recipe: area in `scale` of the image, width/height in `ratio`,
    10 tries, else the whole image.
    """
    del size  # the window is resized to size x size afterwards
    begin, window, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.stack([shape[0], shape[1], 3]),
        tf.zeros([1, 0, 4], tf.float32),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=tuple(ratio),
        area_range=tuple(scale),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return tf.stack([begin[0], begin[1], window[0], window[1]])


def _cut(image, window):
    return tf.slice(
        image, tf.stack([window[0], window[1], 0]), tf.stack([window[2], window[3], -1])
    )


# --------------------------------------------------------------------------------------------
# The transforms: fn(image, seed, **params) -> image.


def random_crop(image, seed, *, size: int):
    """A size x size crop at a random position (upscaling first if the image is smaller)."""
    image = _ensure_min_side(image, size)
    return _cut(image, random_crop_window(tf.shape(image), seed, size=size))


def center_crop(image, seed=None, *, size: int):
    """The centered size x size crop (upscaling first if the image is smaller)."""
    image = _ensure_min_side(image, size)
    return _cut(image, center_crop_window(tf.shape(image), seed, size=size))


def resize(image, seed=None, *, size: int):
    """Resize to size x size (aspect ratio not kept)."""
    del seed
    return resize_to(image, size, size)


def random_resized_crop(image, seed, *, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """A window of random area and aspect ratio, resized to size x size (Inception-style)."""
    window = random_resized_crop_window(tf.shape(image), seed, size=size, scale=scale, ratio=ratio)
    return resize_to(_cut(image, window), size, size)


# Flips and rotations take `active` (a boolean tensor: the entry's `p` draw) rather than being
# wrapped in the generic tf.cond of `Augment`. A flip reverses only when drawn (under a cond of
# its own: measured 15% more images/s from cached images than an always-run reverse over a
# dynamic list of axes, bench/pipeline.py); rotate90 likewise does nothing for k = 0.


def _reverse(image, flags):
    """Reverses the axes (0: rows, 1: columns) whose flag is true."""
    return tf.reverse(image, tf.boolean_mask(tf.constant([0, 1]), tf.stack(flags)))


def _flip(image, axis: int, active):
    if active is True:  # p = 1: no branch to take
        return tf.reverse(image, [axis])
    return tf.cond(tf.convert_to_tensor(active), lambda: tf.reverse(image, [axis]), lambda: image)


def horizontal_flip(image, seed=None, active=True):
    """Mirror left-right (the probability is the entry's `p`)."""
    del seed
    return _flip(image, 1, active)


def vertical_flip(image, seed=None, active=True):
    """Mirror top-bottom (the probability is the entry's `p`)."""
    del seed
    return _flip(image, 0, active)


def rotate90(image, seed, active=True):
    """Rotate by k * 90 degrees counter-clockwise, k uniform in {0, 1, 2, 3} (like
    albumentations' RandomRotate90; the same result as `tf.image.rot90(image, k)`).

    Non-square images swap height and width for odd k.
    """
    k = tf.random.stateless_uniform([], seed, 0, 4, dtype=tf.int32)
    k = tf.where(tf.convert_to_tensor(active), k, 0)

    def rotated():
        # rot90 by k = transpose (k odd), then reverse rows (k = 1, 2) and columns (k = 2, 3).
        perm = tf.where(k % 2 == 1, tf.constant([1, 0, 2]), tf.constant([0, 1, 2]))
        return _reverse(tf.transpose(image, perm), [(k == 1) | (k == 2), (k == 2) | (k == 3)])

    # k = 0 (most draws at p = 0.5) copies nothing.
    out = tf.cond(k > 0, rotated, lambda: tf.identity(image))
    square = image.shape[0] is not None and image.shape[0] == image.shape[1]
    if square:
        out.set_shape(image.shape)
    return out


def _factor(seed, amount):
    return tf.random.stateless_uniform([], seed, max(0.0, 1.0 - amount), 1.0 + amount)


_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as tf.image.rgb_to_grayscale
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def color_jitter(image, seed, *, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0):
    """Random brightness, contrast, saturation and hue, in that fixed order (torchvision's ranges).

    brightness/contrast/saturation `a` draw a factor in [max(0, 1 - a), 1 + a]; hue `h` rotates
    the hue by a random fraction in [-h, h] of the colour wheel (h <= 0.5). Zero leaves that
    part out.

    Every step is affine in RGB (brightness scales; contrast blends with the mean gray level;
    saturation blends with each pixel's gray level; hue rotates the chroma plane of YIQ), so
    the four compose into one 3x3 matrix and offset applied in a single pass, clipped once at
    the end; several times cheaper than converting to HSV. Unlike torchvision, intermediate
    results are not clipped to 0..255.
    """
    dtype = image.dtype
    x = tf.cast(image, tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 4)
    gray = tf.constant(_GRAY, tf.float32)
    m = tf.eye(3)  # the colour transform so far: x' = m @ x + b per pixel
    b = tf.zeros([3])
    if brightness:
        f = _factor(seeds[0], brightness)
        m, b = f * m, f * b
    if contrast:
        f = _factor(seeds[1], contrast)
        mean_rgb = tf.linalg.matvec(m, tf.reduce_mean(x, axis=[0, 1])) + b
        mean_gray = tf.tensordot(gray, mean_rgb, 1)
        m, b = f * m, f * b + (1.0 - f) * mean_gray
    if saturation:
        f = _factor(seeds[2], saturation)
        s = f * tf.eye(3) + (1.0 - f) * tf.ones([3, 1]) * gray[None, :]
        m, b = s @ m, tf.linalg.matvec(s, b)
    if hue:
        angle = 2.0 * math.pi * tf.random.stateless_uniform([], seeds[3], -hue, hue)
        cos, sin = tf.cos(angle), tf.sin(angle)
        rotation = tf.stack([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
        yiq = tf.constant(_YIQ, tf.float32)
        h = tf.constant(np.linalg.inv(_YIQ), tf.float32) @ rotation @ yiq
        m, b = h @ m, tf.linalg.matvec(h, b)
    out = tf.tensordot(x, tf.transpose(m), 1) + b
    return _restore_dtype(out, dtype)
