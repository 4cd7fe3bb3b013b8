"""Augmentation declared in the config: an ordered list of named transforms over image tensors.

Each entry of `data.train_augment` / `data.val_augment` is a mapping with a `name`, an optional
probability `p` and the transform's parameters:

    train_augment:
      - {name: random_crop, size: 224}
      - {name: horizontal_flip, p: 0.5}
      - {name: rotate90, p: 0.5}          # leave it out for no rotation

Every transform is a small pure function `fn(image, seed, **params) -> image` over one
HxWx3 image. `seed` is a shape-[2] integer tensor for TensorFlow's stateless random ops, so the
same seed gives the same result (reproducible runs) and the pipeline decides where seeds come
from. The output has the input's dtype: uint8 in, uint8 out (results of resizing and colour
changes are rounded and clipped to 0..255); the pipeline ships raw pixels and the model
normalizes them.

`data.albumentations` (e.g. `[{HorizontalFlip: {p: 0.5}}]`) runs after these transforms; see
`keras_googlenet.data.albumentations_ops`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from keras_googlenet.errors import ConfigError

# --------------------------------------------------------------------------------------------
# Helpers.


def _restore_dtype(image: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """Float pixels on the 0-255 scale back to `dtype` (rounded and clipped for uint8)."""
    if dtype == tf.uint8:
        return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
    return tf.cast(tf.clip_by_value(image, 0.0, 255.0), dtype)


def _resize(image: tf.Tensor, height, width) -> tf.Tensor:
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
        return _resize(image, new_h, new_w)

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
    return _resize(image, size, size)


def random_resized_crop(image, seed, *, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """A window of random area and aspect ratio, resized to size x size (Inception-style)."""
    window = random_resized_crop_window(tf.shape(image), seed, size=size, scale=scale, ratio=ratio)
    return _resize(_cut(image, window), size, size)


# Flips and rotations take `active` (a boolean tensor: the entry's `p` draw) instead of running
# under tf.cond: a cond in a tf.data map function is a function call per image, costlier than
# the flip itself. Reversing along a dynamic, possibly empty, list of axes is branch-free.


def _reverse(image, flags):
    """Reverses the axes (0: rows, 1: columns) whose flag is true."""
    return tf.reverse(image, tf.boolean_mask(tf.constant([0, 1]), tf.stack(flags)))


def horizontal_flip(image, seed=None, active=True):
    """Mirror left-right (the probability is the entry's `p`)."""
    del seed
    return _reverse(image, [tf.constant(False), tf.convert_to_tensor(active)])


def vertical_flip(image, seed=None, active=True):
    """Mirror top-bottom (the probability is the entry's `p`)."""
    del seed
    return _reverse(image, [tf.convert_to_tensor(active), tf.constant(False)])


def rotate90(image, seed, active=True):
    """Rotate by k * 90 degrees counter-clockwise, k uniform in {0, 1, 2, 3} (like
    albumentations' RandomRotate90; the same result as `tf.image.rot90(image, k)`).

    Non-square images swap height and width for odd k.
    """
    k = tf.random.stateless_uniform([], seed, 0, 4, dtype=tf.int32)
    k = tf.where(tf.convert_to_tensor(active), k, 0)
    # rot90 by k = transpose (k odd), then reverse rows (k = 1, 2) and columns (k = 2, 3).
    perm = tf.where(k % 2 == 1, tf.constant([1, 0, 2]), tf.constant([0, 1, 2]))
    square = image.shape[0] is not None and image.shape[0] == image.shape[1]
    out = _reverse(tf.transpose(image, perm), [(k == 1) | (k == 2), (k == 2) | (k == 3)])
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


# --------------------------------------------------------------------------------------------
# The registry: what each name accepts. A parameter is (checker, default); `_REQUIRED` marks
# one without a default.

_REQUIRED = object()


def _positive_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer"


def _non_negative(v):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
    return ok, "a non-negative number"


def _hue(v):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 0.5
    return ok, "a number in [0, 0.5]"


def _range(low_ok: Callable[[float], bool], high_ok: Callable[[float], bool], what: str):
    def check(v):
        ok = (
            isinstance(v, (list, tuple))
            and len(v) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
            and low_ok(v[0])
            and high_ok(v[1])
            and v[0] <= v[1]
        )
        return ok, what

    return check


@dataclass(frozen=True)
class _Kind:
    fn: Callable
    params: dict[str, tuple[Callable, Any]]
    default_p: float = 1.0
    sets_size: bool = False  # output is size x size: p must be 1 (else batch shapes differ)
    window: Callable | None = None  # crop window from the shape, for decoding only the window
    random: bool = True  # uses its seed beyond the `p` draw
    gated: bool = False  # takes the `p` draw as `active` (branch-free) instead of a tf.cond


TRANSFORMS: dict[str, _Kind] = {
    "random_crop": _Kind(
        random_crop, {"size": (_positive_int, _REQUIRED)}, sets_size=True, window=random_crop_window
    ),
    "center_crop": _Kind(
        center_crop,
        {"size": (_positive_int, _REQUIRED)},
        sets_size=True,
        window=center_crop_window,
        random=False,
    ),
    "resize": _Kind(resize, {"size": (_positive_int, _REQUIRED)}, sets_size=True, random=False),
    "random_resized_crop": _Kind(
        random_resized_crop,
        {
            "size": (_positive_int, _REQUIRED),
            "scale": (
                _range(lambda x: x > 0, lambda x: x <= 1, "[low, high], 0 < low <= high <= 1"),
                (0.08, 1.0),
            ),
            "ratio": (
                _range(lambda x: x > 0, lambda x: True, "[low, high], 0 < low <= high"),
                (3 / 4, 4 / 3),
            ),
        },
        sets_size=True,
        window=random_resized_crop_window,
    ),
    "horizontal_flip": _Kind(horizontal_flip, {}, default_p=0.5, random=False, gated=True),
    "vertical_flip": _Kind(vertical_flip, {}, default_p=0.5, random=False, gated=True),
    "rotate90": _Kind(rotate90, {}, gated=True),
    "color_jitter": _Kind(
        color_jitter,
        {
            "brightness": (_non_negative, 0.0),
            "contrast": (_non_negative, 0.0),
            "saturation": (_non_negative, 0.0),
            "hue": (_hue, 0.0),
        },
    ),
}


@dataclass(frozen=True)
class Step:
    """One compiled entry: the transform, its probability and its checked parameters."""

    name: str
    p: float
    params: tuple[tuple[str, Any], ...]

    @property
    def kind(self) -> _Kind:
        return TRANSFORMS[self.name]

    def apply(self, image, seed, **kwargs):
        return self.kind.fn(image, seed, **dict(self.params), **kwargs)

    def window(self, shape, seed):
        return self.kind.window(shape, seed, **dict(self.params))


def _parse_step(entry, key: str, source: str) -> Step:
    def bad(why):
        raise ConfigError(f"{source}: '{key}' {why}")

    if not isinstance(entry, dict) or "name" not in entry:
        bad(
            f"must be a mapping with a 'name' (e.g. {{name: random_crop, size: 224}}), "
            f"got {entry!r}"
        )
    name = entry["name"]
    if name not in TRANSFORMS:
        close = difflib.get_close_matches(str(name), TRANSFORMS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        bad(f"unknown transform {name!r}{hint}; known: {', '.join(TRANSFORMS)}")
    kind = TRANSFORMS[name]
    p = entry.get("p", kind.default_p)
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p <= 1:
        bad(f"p must be a number in [0, 1], got {p!r}")
    if kind.sets_size and p != 1:
        bad(f"{name} changes the image size, so its p must be 1 (got {p})")
    params = {}
    for param, value in entry.items():
        if param in ("name", "p"):
            continue
        if param not in kind.params:
            close = difflib.get_close_matches(str(param), kind.params, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            known = ", ".join(["p", *kind.params])
            bad(f"unknown parameter {param!r} for {name}{hint}; it takes: {known}")
        ok, what = kind.params[param][0](value)
        if not ok:
            bad(f"{name} {param} must be {what}, got {value!r}")
        params[param] = tuple(value) if isinstance(value, list) else value
    for param, (_, default) in kind.params.items():
        if param not in params:
            if default is _REQUIRED:
                bad(f"{name} needs '{param}'")
            params[param] = default
    return Step(name, float(p), tuple(params.items()))


class Augment:
    """A compiled, ordered list of transforms; call it as `augment(image, seed)`.

    `seed` is a shape-[2] integer tensor; transform i gets its own seeds split from it, so adding
    a transform at the end does not change what the earlier ones draw.
    """

    def __init__(self, steps: tuple[Step, ...]):
        self.steps = steps

    def __repr__(self):
        return f"Augment({[s.name for s in self.steps]})"

    @property
    def output_size(self) -> int | None:
        """The size set by the last size-setting transform, or None if none sets one."""
        sizes = [dict(s.params)["size"] for s in self.steps if s.kind.sets_size]
        return sizes[-1] if sizes else None

    @property
    def crops_first(self) -> bool:
        """Whether the first transform is a crop whose window can be decoded alone."""
        return bool(self.steps) and self.steps[0].kind.window is not None

    def _seeds(self, seed):
        n = max(1, 2 * len(self.steps))
        return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), n)

    def _apply_step(self, i, image, seeds):
        step = self.steps[i]
        if step.p <= 0:
            return image
        if step.p >= 1:
            return step.apply(image, seeds[2 * i + 1])
        draw = tf.random.stateless_uniform([], seeds[2 * i]) < step.p
        if step.kind.gated:
            return step.apply(image, seeds[2 * i + 1], active=draw)
        return tf.cond(draw, lambda: step.apply(image, seeds[2 * i + 1]), lambda: image)

    def __call__(self, image, seed, start: int = 0, stop: int | None = None):
        """Applies transforms `start` to `stop` (exclusive; None: to the end) to one image."""
        seeds = self._seeds(seed)
        for i in range(start, len(self.steps) if stop is None else stop):
            image = self._apply_step(i, image, seeds)
        return image

    def first_window(self, shape, seed):
        """The crop window of the first transform (see `crops_first`) for this image shape.

        Meaningful only where `fits_window(shape)`; elsewhere a placeholder (never an error).
        """
        params = dict(self.steps[0].params)
        if "size" in params and self.steps[0].name != "random_resized_crop":
            shape = tf.maximum(shape[:2], params["size"])
        return self.steps[0].window(shape, self._seeds(seed)[1])

    def finish_first(self, window_pixels):
        """What the first transform does after cutting its window (resize, for resized crops)."""
        step = self.steps[0]
        if step.name == "random_resized_crop":
            size = dict(step.params)["size"]
            return _resize(window_pixels, size, size)
        return window_pixels

    def fits_window(self, shape):
        """Whether the first crop's window fits in an image of this shape without upscaling."""
        size = dict(self.steps[0].params)["size"]
        if self.steps[0].name == "random_resized_crop":
            return tf.constant(True)
        return tf.logical_and(shape[0] >= size, shape[1] >= size)


def compile_augment(entries, key: str = "data.train_augment", source: str = "config") -> Augment:
    """Checks and compiles a list of transform entries.

    Args:
        entries: the config list, e.g. `[{"name": "random_crop", "size": 224}]`.
        key: its dotted config key, for messages (`data.train_augment[1]`).
        source: where the config came from, for messages.

    Returns:
        An `Augment`.

    Raises:
        ConfigError: not a list, an unknown transform or parameter, a bad value.
    """
    if not isinstance(entries, (list, tuple)):
        raise ConfigError(f"{source}: '{key}' must be a list of transforms, got {entries!r}")
    return Augment(tuple(_parse_step(e, f"{key}[{i}]", source) for i, e in enumerate(entries)))


def check_data_config(data, source: str = "config") -> None:
    """Compiles the augmentation lists of a `DataConfig` so mistakes surface at load time."""
    from keras_googlenet.data.albumentations_ops import compile_albumentations

    compile_augment(data.train_augment, "data.train_augment", source)
    compile_augment(data.val_augment, "data.val_augment", source)
    compile_albumentations(data.albumentations, "data.albumentations", source)


__all__ = [
    "TRANSFORMS",
    "Augment",
    "Step",
    "center_crop",
    "check_data_config",
    "color_jitter",
    "compile_augment",
    "horizontal_flip",
    "random_crop",
    "random_resized_crop",
    "resize",
    "rotate90",
    "vertical_flip",
]
