"""albumentations transforms from the config, run inside the tf.data pipeline.

`data.albumentations: [{HorizontalFlip: {p: 0.5}}, {CLAHE: {clip_limit: 2}}]` (class names and
parameters are albumentations') is compiled into one `A.Compose` and run per image through
`tf.numpy_function`, after `data.train_augment`. It runs in Python under the GIL, so it is
slower than the TensorFlow transforms of `keras_googlenet.data.augment` (see bench/pipeline.py):
use it for what those lack.
"""

from __future__ import annotations

import difflib
import inspect
import threading

import numpy as np
import tensorflow as tf

from keras_googlenet.errors import ConfigError


class Albumentations:
    """An `A.Compose` built from `data.albumentations`, callable on an image tensor and a seed.

    albumentations keeps its random state in the Compose object. With `reseed` (reproducible
    runs) the Compose is re-seeded from the element's seed for each call, under a lock, so a
    given seed gives a given result; re-seeding costs ~100 us a call, so without `reseed` the
    Compose draws from its own generator and the seed is ignored.
    """

    def __init__(self, compose, names: tuple[str, ...], reseed: bool = True):
        self.compose = compose
        self.names = names
        self.reseed = reseed
        self._lock = threading.Lock()

    def __repr__(self):
        return f"Albumentations({list(self.names)})"

    def _run(self, image: np.ndarray, seed: np.ndarray) -> np.ndarray:
        if self.reseed:
            with self._lock:
                self.compose.set_random_seed(
                    (int(seed[0]) * 1_000_003 + int(seed[1])) % (2**31 - 1)
                )
                out = self.compose(image=image)["image"]
        else:
            out = self.compose(image=image)["image"]
        return np.ascontiguousarray(out, dtype=image.dtype)

    def __call__(self, image, seed, output_size: int | None = None):
        """Runs the Compose on one HxWx3 image; `output_size` sets the static shape."""
        out = tf.numpy_function(self._run, [image, seed], image.dtype, stateful=False)
        if output_size is not None:
            return tf.ensure_shape(out, [output_size, output_size, 3])
        out.set_shape([None, None, 3])
        return out


def compile_albumentations(
    entries, key: str = "data.albumentations", source: str = "config", *, reseed: bool = True
):
    """Builds an `Albumentations` from `[{ClassName: {param: value}}, ...]`, or None if empty.

    `reseed`: the same seed gives the same output (see `Albumentations`); the pipeline sets it
    from `data.deterministic`.

    Raises:
        ConfigError: not a list of one-key mappings, an unknown class or parameter, a bad value.
    """
    if not entries:
        return None
    if not isinstance(entries, (list, tuple)):
        raise ConfigError(f"{source}: '{key}' must be a list like [{{HorizontalFlip: {{p: 0.5}}}}]")
    import albumentations as A  # imported only when the config lists some

    transforms, names = [], []
    for i, entry in enumerate(entries):
        where = f"{source}: '{key}[{i}]'"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ConfigError(
                f"{where} must be a one-key mapping like {{HorizontalFlip: {{p: 0.5}}}}"
            )
        ((name, params),) = entry.items()
        params = params or {}
        cls = getattr(A, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
            known = [n for n in dir(A) if isinstance(getattr(A, n), type)]
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: unknown albumentations transform {name!r}{hint}")
        if not isinstance(params, dict):
            raise ConfigError(f"{where}: parameters of {name} must be a mapping, got {params!r}")
        accepted = inspect.signature(cls.__init__).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
        for param in params:
            if param not in accepted and not takes_any:
                close = difflib.get_close_matches(str(param), list(accepted), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(f"{where}: unknown parameter {param!r} for {name}{hint}")
        try:
            transforms.append(cls(**params))
        except Exception as e:  # albumentations raises ValueError/TypeError from pydantic
            first = " ".join(str(e).split())[:200]
            raise ConfigError(f"{where}: bad parameters for {name}: {first}") from None
        names.append(str(name))
    return Albumentations(A.Compose(transforms), tuple(names), reseed=reseed)
