"""Opening a finished (or running) training run: its config, a checkpoint, the inference model.

Shared by evaluation, export and prediction. `--checkpoint` takes `best` (the default), `last`
or a path to a `.keras` file:

    best  -> checkpoints/best.keras, else last.keras, else the newest epoch_NNN.keras
    last  -> checkpoints/last.keras, else the newest epoch_NNN.keras
    PATH  -> that file (relative paths are tried from the working directory, then the run)
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

from keras_googlenet.config import Config, load_config
from keras_googlenet.errors import UserError
from keras_googlenet.training.run_dir import RunDir, read_dataset_facts

log = logging.getLogger(__name__)

CHECKPOINT_HELP = "best (default; else last, else the newest epoch_NNN), last, or a .keras file"


def open_run(path: str | Path) -> RunDir:
    """The run folder at `path`.

    Raises:
        UserError: the folder does not exist or holds no config.yaml (not a training run).
    """
    run = RunDir(Path(path))
    if not run.root.is_dir():
        raise UserError(f"{run.root}: run folder not found")
    if not run.config.is_file():
        raise UserError(f"{run.root}: not a training run (no config.yaml)")
    return run


def run_config(run: RunDir) -> Config:
    """The resolved config the run was trained with."""
    return load_config(run.config)


def run_dataset_facts(run: RunDir, config: Config) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """(class names, mean RGB) of the data the run trained on.

    From the run's dataset.json; a run trained before that file existed falls back to its
    dataset folder (data.input_dir), which must then still be there.
    """
    facts = read_dataset_facts(run)
    if facts is not None:
        return tuple(facts["class_names"]), tuple(facts["mean_rgb"])
    from keras_googlenet.data.dataset_info import read_dataset_info

    info = read_dataset_info(config, splits=())
    return info.class_names, info.mean_rgb


def pick_checkpoint(run: RunDir, choice: str = "best") -> Path:
    """Resolves `best`, `last` or a path to an existing checkpoint file.

    Raises:
        UserError: no checkpoint of that kind (or none at all) in the run, or a missing file.
    """
    epochs = run.epoch_checkpoints()
    if choice in ("best", "last"):
        order = [run.best, run.last] if choice == "best" else [run.last]
        order += list(reversed(epochs))
        for candidate in order:
            if candidate.is_file():
                if candidate.name != f"{choice}.keras":
                    log.warning(
                        "%s.keras not found in %s, using %s",
                        choice,
                        run.checkpoints,
                        candidate.name,
                    )
                return candidate
        raise UserError(f"{run.checkpoints}: no checkpoint yet (no best, last or epoch_NNN.keras)")
    path = Path(choice)
    for candidate in (path, run.root / path, run.checkpoints / path):
        if candidate.is_file():
            return candidate
    raise UserError(f"{choice}: checkpoint file not found (expected best, last or a .keras file)")


def load_checkpoint(path: str | Path):
    """Loads a `.keras` checkpoint without its optimizer state.

    Raises:
        UserError: the file is not a loadable Keras model (truncated, wrong format).
    """
    import keras

    path = Path(path)
    if path.suffix != ".keras":
        raise UserError(f"{path}: not a .keras checkpoint")
    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"{path}: cannot load checkpoint ({first}); choose another with --checkpoint "
            "(best, last or an epoch_NNN.keras file)"
        ) from None


def float32_inference_model(model):
    """The main head alone, computing in float32 whatever policy `model` was trained under.

    A model trained under mixed_float16 or mixed_bfloat16 keeps float32 variables; it is rebuilt
    from its config with every layer's policy set to float32 and gets the same weights, so the
    exported graph runs (and matches) in float32 on any device.
    """
    import keras

    from keras_googlenet.model.googlenet import inference_model

    main = inference_model(model)
    if all(layer.dtype_policy.name == "float32" for layer in main.layers):
        return main
    config = main.get_config()
    for layer in config["layers"]:
        if "dtype" in layer["config"]:
            layer["config"]["dtype"] = "float32"
    rebuilt = keras.Model.from_config(config)
    rebuilt.set_weights(main.get_weights())
    return rebuilt
