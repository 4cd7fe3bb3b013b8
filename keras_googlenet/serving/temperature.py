"""A run's softmax temperature: kept in the run folder, applied where its checkpoint serves.

`evaluate --calibrate` (evaluation/calibration.py) fits one scalar T; it is saved as
`RUN/calibration.json` with the sha256 of the checkpoint it was fitted on, and `export` and
`predict --run-dir` divide that checkpoint's logits by T before the softmax, inside the graph,
so every format and the run folder give the same probabilities. A later `best.keras` is another
model: its bytes differ, and it keeps its own softmax.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from keras_googlenet.atomic import atomic_write_text
from keras_googlenet.errors import UserError

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"


def save_temperature(run_root: Path, temperature: float, checkpoint: Path, fitted: dict) -> Path:
    """Writes RUN/calibration.json (atomically): T, the checkpoint and its sha256, the fit."""
    from keras_googlenet.model.import_weights import sha256

    path = Path(run_root) / CALIBRATION_FILE
    record = {
        "temperature": temperature,
        "checkpoint": str(Path(checkpoint).resolve()),
        "checkpoint_sha256": sha256(Path(checkpoint)),
        **fitted,
    }
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def saved_temperature(run_root: Path, checkpoint: Path) -> float | None:
    """The temperature saved in RUN/calibration.json if it was fitted on this checkpoint's
    bytes (a later best.keras is another model), else None."""
    from keras_googlenet.model.import_weights import sha256

    path = Path(run_root) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        if record.get("checkpoint_sha256") != sha256(Path(checkpoint)):
            return None
        temperature = float(record["temperature"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(
            f"{path}: unreadable ({type(e).__name__}: {e}); delete it or run "
            "evaluate --calibrate again"
        ) from None
    if not temperature > 0:
        raise UserError(f"{path}: temperature must be above 0, got {temperature}")
    return temperature


def with_temperature(model, temperature: float):
    """The inference model with its logits divided by `temperature` before the softmax.

    A `Rescaling` layer: a plain multiply that every export format converts.
    """
    import keras

    logits = model.get_layer("main").input
    scaled = keras.layers.Rescaling(1.0 / temperature, name="temperature")(logits)
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="main")(scaled)
    return keras.Model(model.inputs[0], probabilities, name=f"{model.name}_calibrated")


def calibrated(model, run_root: Path, checkpoint: Path):
    """(`model` with the temperature saved for `checkpoint`, that temperature); `model` itself
    and None when none was fitted on this checkpoint."""
    temperature = saved_temperature(run_root, checkpoint)
    if temperature is None:
        return model, None
    log.info("softmax temperature %.4g (from %s)", temperature, CALIBRATION_FILE)
    return with_temperature(model, temperature), temperature
