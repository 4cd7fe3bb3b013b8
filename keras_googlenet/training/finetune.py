"""Fine-tuning: start from imported weights (`training.init_weights`), freeze the lower blocks
(`training.freeze_until`).

Weights are copied layer by layer, by name, wherever every variable's shape fits: the whole
backbone of an imported file always fits; the classifier only when the class count is the same;
the auxiliary heads are never in an imported file, so they always start fresh.
"""

from __future__ import annotations

import logging

from keras_googlenet.config import Config
from keras_googlenet.errors import ConfigError, UserError

log = logging.getLogger("keras_googlenet")

# The model keys an imported file's forward pass depends on; a run must agree with all three.
CONVENTION_KEYS = ("input_scaling", "padding", "pool4_size")


def check_convention(cfg: Config, info: dict, path: str) -> None:
    """Refuses a config whose input scaling or layout contradicts the weights file's.

    Raises:
        ConfigError: naming the key and the value the file needs.
    """
    for key in CONVENTION_KEYS:
        needed, have = info["model"].get(key), getattr(cfg.model, key)
        if needed is not None and needed != have:
            raise ConfigError(
                f"training.init_weights: {path} needs model.{key}: {needed}, but the config "
                f"has {have} (set --set model.{key}={needed})"
            )


def load_init_weights(model, cfg: Config) -> dict[str, list[str]]:
    """Copies into `model` every layer of `training.init_weights` whose shapes fit.

    Returns:
        `{"loaded": [layer names], "skipped": ["name (why)", ...]}`, also logged.

    Raises:
        UserError / ConfigError: the file or its JSON is missing or unreadable, or its input
            convention contradicts the config.
    """
    from keras_googlenet.model import converters
    from keras_googlenet.model.import_weights import read_sidecar

    path = cfg.training.init_weights
    info = read_sidecar(path)
    check_convention(cfg, info, path)
    source = converters.build(info["model"])
    try:
        source.load_weights(path)
    except (ValueError, OSError, KeyError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path}: cannot load the weights ({first:.200})") from None
    loaded, skipped = [], []
    for layer in model.layers:
        if not layer.weights or layer.name == "normalize":  # its constants come from the config
            continue
        if layer.name.startswith("aux_"):
            skipped.append(f"{layer.name} (auxiliary head: fresh)")
            continue
        try:
            theirs = source.get_layer(layer.name)
        except ValueError:
            skipped.append(f"{layer.name} (not in the file)")
            continue
        ours = [tuple(w.shape) for w in layer.weights]
        if [tuple(w.shape) for w in theirs.weights] != ours:
            skipped.append(f"{layer.name} (shape {ours[0]} vs {tuple(theirs.weights[0].shape)})")
            continue
        layer.set_weights(theirs.get_weights())
        loaded.append(layer.name)
    log.info(
        "init weights %s (%s): loaded %d layers; fresh: %s",
        path,
        info.get("source"),
        len(loaded),
        ", ".join(skipped) or "none",
    )
    return {"loaded": loaded, "skipped": skipped}


def freeze(model, until: str | None) -> list[str]:
    """Makes every layer from the input through block `until` non-trainable.

    The auxiliary heads stay trainable (they are fresh). A frozen BatchNormalization runs in
    inference mode in Keras 3, so its moving statistics stay as imported.

    Returns:
        The names of the frozen layers that hold weights.
    """
    if until is None:
        return []
    prefix = f"{until}_"
    names = [layer.name for layer in model.layers]
    last = max(i for i, name in enumerate(names) if name.startswith(prefix))
    frozen = []
    for layer in model.layers[: last + 1]:
        if layer.name.startswith("aux_"):
            continue
        layer.trainable = False
        if layer.weights:
            frozen.append(layer.name)
    log.info("frozen through %s: %d layers with weights", until, len(frozen))
    return frozen
