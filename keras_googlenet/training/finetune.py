"""Fine-tuning: start from imported weights (`training.init_weights`), freeze the lower blocks
(`training.freeze_until`), optionally in two phases (`training.finetune`).

Weights are copied layer by layer, by name, wherever every variable's shape fits: the whole
backbone of an imported file always fits; the classifier only when the class count is the same;
the auxiliary heads are never in an imported file, so they always start fresh.

The two phases (`training.finetune.head_epochs: N`): epochs 1..N train only what lies above
`freeze_until` (the head); epochs N+1.. train everything at the schedule's rate times
`lr_factor` (schedules.phase_lr). Each phase is its own `fit`; the switch unfreezes the layers
and recompiles with the same optimizer, which was built from the start over every variable
phase 2 trains. So the optimizer state (momenta of the head, step count) carries over, the
backbone's momenta start at zero, and every backup has one layout: a run killed in either phase
(or between them) resumes by building the model in the phase of its next epoch.
"""

from __future__ import annotations

import dataclasses
import logging

from keras_googlenet.config import Config, apply_overrides
from keras_googlenet.errors import ConfigError

log = logging.getLogger("keras_googlenet")

# The model keys an imported file's forward pass depends on; a run must agree with all three.
CONVENTION_KEYS = ("input_scaling", "padding", "pool4_size")


def check_convention(cfg: Config, info: dict, path: str) -> None:
    """Refuses a config whose input scaling or layout contradicts the weights file's.

    Keys left null are not checked (`adopt_convention` fills them in).

    Raises:
        ConfigError: naming the key and the value the file needs.
    """
    for key in CONVENTION_KEYS:
        needed, have = info["model"].get(key), getattr(cfg.model, key)
        if needed is not None and have is not None and needed != have:
            raise ConfigError(
                f"training.init_weights: {path} needs model.{key}: {needed}, but the config "
                f"has {have} (set --set model.{key}={needed}, or leave it unset)"
            )


def adopt_convention(cfg: Config) -> Config:
    """`cfg` with the model keys it left null filled in: from `training.init_weights`' JSON,
    else the paper's values (so a run's config.yaml records what was built).

    Raises:
        UserError / ConfigError: the file or its JSON is missing, or a key set in the config
            contradicts the file.
    """
    from keras_googlenet.model.import_weights import read_sidecar
    from keras_googlenet.model.table import PAPER_CONVENTION

    path = cfg.training.init_weights
    wanted = dict(PAPER_CONVENTION)
    if path:
        info = read_sidecar(path)
        check_convention(cfg, info, path)
        wanted.update({k: v for k, v in info["model"].items() if k in wanted and v is not None})
    adopted = {
        f"model.{key}": value for key, value in wanted.items() if getattr(cfg.model, key) is None
    }
    if adopted and path:
        log.info("from %s: %s", path, ", ".join(f"{k}={v}" for k, v in adopted.items()))
    source = f"training.init_weights {path}" if path else "the paper's model"
    return apply_overrides(cfg, adopted, source) if adopted else cfg


@dataclasses.dataclass(frozen=True)
class Phase:
    """A stretch of epochs trained with one set of frozen layers.

    Attributes:
        number: 1 or 2.
        start: its first epoch (0-based); `end`: the epoch after its last.
        freeze_until: the last frozen block, or None (everything trains).
    """

    number: int
    start: int
    end: int
    freeze_until: str | None


def phases(cfg: Config) -> list[Phase]:
    """The run's phases: one (freeze_until throughout), or two with `finetune.head_epochs`."""
    t = cfg.training
    head = t.finetune.head_epochs
    if not head:
        return [Phase(1, 0, t.epochs, t.freeze_until)]
    return [Phase(1, 0, head, t.freeze_until), Phase(2, head, t.epochs, None)]


def phase_at(cfg: Config, epoch: int) -> Phase:
    """The phase that trains 0-based `epoch` (the last phase once every epoch is done)."""
    return next((p for p in phases(cfg) if epoch < p.end), phases(cfg)[-1])


def enter_phase(model, cfg: Config, phase: Phase) -> None:
    """Freezes `phase`'s layers (unfreezing the others) and recompiles `model`, keeping its
    optimizer and the optimizer's state. Call in the strategy's scope."""
    from keras_googlenet.training.compile import compile_model

    for layer in model.layers:
        layer.trainable = True
    freeze(model, phase.freeze_until)
    compile_model(model, cfg, optimizer=model.optimizer)
    log.info(
        "phase %d of %d: epochs %d-%d, %s; %d trainable variables",
        phase.number,
        len(phases(cfg)),
        phase.start + 1,
        phase.end,
        f"frozen through {phase.freeze_until}" if phase.freeze_until else "everything trains",
        len(model.trainable_variables),
    )


def load_init_weights(model, cfg: Config) -> dict[str, list[str]]:
    """Copies into `model` every layer of `training.init_weights` whose shapes fit.

    Returns:
        `{"loaded": [layer names], "skipped": ["name (why)", ...]}`, also logged.

    Raises:
        UserError / ConfigError: the file or its JSON is missing or unreadable, or its input
            convention contradicts the config.
    """
    from keras_googlenet.model.import_weights import load_imported, read_sidecar

    path = cfg.training.init_weights
    check_convention(cfg, read_sidecar(path), path)  # a caller may not have adopted it
    source, info = load_imported(path)
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
