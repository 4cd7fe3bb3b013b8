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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from keras_googlenet.data.transforms import (
    center_crop,
    center_crop_window,
    color_jitter,
    horizontal_flip,
    random_crop,
    random_crop_window,
    random_resized_crop,
    random_resized_crop_window,
    resize,
    resize_to,
    rotate90,
    vertical_flip,
)
from keras_googlenet.errors import ConfigError

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
    gated: bool = False  # takes the `p` draw as `active` and does its own cheapest branching


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
            return resize_to(window_pixels, size, size)
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
