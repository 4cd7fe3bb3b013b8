"""`keras-googlenet preprocess`: flags and a recipe's `preprocess:` section to `preprocess()`."""

from __future__ import annotations

import logging
import sys

from keras_googlenet.errors import UserError
from preprocessing.image_dir_preprocessor import check_options, preprocess


def _read_config(path: str):
    """The `preprocess:` section and `data.input_dir` of a recipe, without importing Keras.

    The schema check (unknown keys, wrong types) is `load_config`'s; its value checks import
    TensorFlow (seconds), so they are skipped here and the preprocess values are checked below.
    """
    from keras_googlenet.config import load_config

    config = load_config(path, check_values=False)
    return config.preprocess, config.data.input_dir


def run(args) -> int:
    """Runs `keras-googlenet preprocess` with the parsed flags; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)

    from keras_googlenet.config import PreprocessConfig

    config, data_dir, source = PreprocessConfig(), None, ""
    if args.config:
        config, data_dir = _read_config(args.config)
        source = f"{args.config}: preprocess."
    values, names = {}, {}
    flags = {"size": "image_size"}  # config key -> flag, where they differ
    for key in ("val_split", "size", "center_crop", "include_clutter", "seed", "workers"):
        flag = getattr(args, flags.get(key, key))
        values[key] = getattr(config, key) if flag is None else flag
        # Name the value where the user wrote it: the flag, or the key in the file.
        names[key] = (
            f"--{flags.get(key, key).replace('_', '-')}" if flag is not None else f"{source}{key}"
        )
    check_options(values["val_split"], values["size"], values["workers"], names)
    input_dir = args.input or config.source_dir
    output_dir = args.output or data_dir
    if not input_dir:
        raise UserError("--input is required (or preprocess.source_dir in --config)")
    if not output_dir:
        raise UserError("--output is required (or data.input_dir in --config)")
    summary = preprocess(
        input_dir,
        output_dir,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        audit=not args.no_audit,
        dedupe=args.dedupe,
        drop_conflicts=args.drop_conflicts,
        **values,
    )
    print(summary.line())
    return 0
