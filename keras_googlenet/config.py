"""Experiment configuration: one YAML file per recipe, loaded into frozen dataclasses.

Unknown keys (with a did-you-mean), wrong types, missing required values and impossible values
raise `ConfigError`, a `UserError` naming the file and the dotted key. Command-line overrides are
dotted: `--set optimizer.lr=0.02` (the value is parsed as YAML, so `true`, `[1, 2]`, `null` work).

Where the seed's settings live:
    PROJECT_NAME -> project_name          NUM_CLASSES -> model.num_classes
    INPUT_DIR -> data.input_dir           EPOCHS -> training.epochs
    TRAIN_DIR -> data.train_dir           CHECKPOINT_INTERVAL -> training.checkpoint_interval
    VALID_DIR -> data.valid_dir           MULTI_GPU -> runtime.strategy (auto/mirrored/...)
    TRAIN_CSV -> data.train_csv           FP16_MIXED -> runtime.precision (mixed_float16)
    VALID_CSV -> data.valid_csv           LOGFILE -> logging.logfile, LOGLEVEL -> logging.level
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from keras_googlenet.errors import UserError


class ConfigError(UserError):
    """A bad config file or override; the message names the file and the dotted key."""


# --------------------------------------------------------------------------------------------
# The schema. Every field has a default so a recipe file only says what differs; `None` on a
# required field is caught by `validate`.


@dataclass(frozen=True)
class ModelConfig:
    """Architecture options of `build_googlenet`."""

    num_classes: int | None = None  # NUM_CLASSES; None: read from categories.csv
    input_size: int = 224
    batch_norm: bool = True
    aux_heads: bool = True
    dropout: float = 0.4
    aux_dropout: float = 0.7
    initializer: str = "glorot_normal"


@dataclass(frozen=True)
class PreprocessConfig:
    """Options of `python -m preprocessing.image_dir_preprocessor` (command-line flags win)."""

    source_dir: str | None = None  # the raw Caltech256-style folder of class folders
    val_split: float = 0.2
    size: int = 256
    center_crop: bool = True
    include_clutter: bool = False
    seed: int = 42
    workers: int | None = None  # None: all cores


@dataclass(frozen=True)
class DataConfig:
    """Where the processed dataset is and how the input pipeline reads it."""

    input_dir: str | None = None  # INPUT_DIR: a processed folder (train/, val/, CSVs, mean)
    train_dir: str = "train"  # TRAIN_DIR, relative to input_dir unless absolute
    valid_dir: str = "val"  # VALID_DIR
    train_csv: str = "train.csv"  # TRAIN_CSV
    valid_csv: str = "val.csv"  # VALID_CSV
    categories_csv: str = "categories.csv"
    mean_file: str | None = None  # None: rgb_val.json, else rgb_train.json
    std_rgb: float = 58.0  # divisor after mean subtraction (ImageNet's pixel std, rounded)
    batch_size: int = 128
    batch_size_is: Literal["global", "per_replica"] = "global"
    shuffle_buffer: int = 10_000  # decoded images shuffled after the cache (cache: true only);
    # without the cache the whole file list is shuffled each epoch
    cache: bool = False
    deterministic: bool = False  # reproducible order and augmentation (slower)
    seed: int = 42
    steps_per_epoch: int | None = None  # None: one pass over the train CSV
    validation_steps: int | None = None  # None: one pass over the val CSV
    on_bad_image: Literal["skip", "fail"] = "skip"
    # Ordered lists of {name: ..., p: ..., **params}; see keras_googlenet.augment.
    train_augment: list = field(
        default_factory=lambda: [
            {"name": "random_crop", "size": 224},
            {"name": "horizontal_flip", "p": 0.5},
            {"name": "rotate90", "p": 0.5},
        ]
    )
    val_augment: list = field(default_factory=lambda: [{"name": "center_crop", "size": 224}])
    # albumentations transforms, e.g. [{HorizontalFlip: {p: 0.5}}], run after train_augment.
    albumentations: list = field(default_factory=list)


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer (SGD with Nesterov momentum, Adam or AdamW) and its hyper-parameters."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 2e-4
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    clipnorm: float | None = None


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule, applied per epoch."""

    name: Literal["constant", "plateau", "cosine", "step"] = "plateau"
    warmup_epochs: int = 0  # linear warmup from lr / (warmup_epochs + 1)
    # plateau: ReduceLROnPlateau on validation top-1 of `main`
    factor: float = 0.5
    patience: int = 3
    min_lr: float = 1e-5  # also cosine's final learning rate
    # step: lr * decay_rate ** floor((1 + epoch) / decay_every) (the CIFAR-10 seed's rule)
    decay_rate: float = 0.96
    decay_every: int = 8


@dataclass(frozen=True)
class TrainingConfig:
    """The fit loop: epochs, losses, checkpoints and resume."""

    epochs: int = 70  # EPOCHS
    loss_weights: dict = field(default_factory=lambda: {"main": 1.0, "aux_4a": 0.3, "aux_4d": 0.3})
    label_smoothing: float = 0.0
    checkpoint_interval: int = 10  # CHECKPOINT_INTERVAL: keep a checkpoint every N epochs
    backup_every: int | Literal["epoch"] = "epoch"  # resume backup: each epoch or every N steps
    seed: int | None = 42


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how it runs: distribution strategy and numeric precision."""

    strategy: Literal["auto", "default", "one_device", "mirrored", "multi_worker"] = "auto"
    devices: list = field(default_factory=list)  # mirrored/one_device: e.g. ["/gpu:0"]
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = "float32"
    jit_compile: bool = False  # XLA; slower on the CPUs we measured, off under a strategy anyway


@dataclass(frozen=True)
class LoggingConfig:
    """Console and file logging."""

    logfile: str = "output.log"  # LOGFILE, inside the run folder unless absolute
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"  # LOGLEVEL


@dataclass(frozen=True)
class PathsConfig:
    """Where runs are written."""

    runs_dir: str = "runs"
    run_dir: str | None = None  # None: runs_dir/project_name


@dataclass(frozen=True)
class Config:
    """A whole experiment."""

    project_name: str = "googlenet"  # PROJECT_NAME
    model: ModelConfig = field(default_factory=ModelConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)

    def replace(self, overrides: dict[str, Any] | list[str], source: str = "--set") -> Config:
        """A copy with dotted overrides applied (`{"optimizer.lr": 0.02}` or `["a.b=1"]`)."""
        return apply_overrides(self, overrides, source)

    def to_dict(self) -> dict:
        """Plain nested dict (what `save_config` writes)."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# Loading and checking.


def _type_ok(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # an int is a fine float (lr: 1)
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (list, dict):
        return isinstance(value, hint)
    return isinstance(value, origin or hint)


def _describe(hint) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def _from_dict(cls, data: dict, source: str, prefix: str = ""):
    """Builds dataclass `cls` from a nested dict, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(f"{source}: {where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown key '{dotted}'{hint}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _from_dict(hint, value or {}, source, f"{dotted}.")
            continue
        if not _type_ok(value, hint):
            raise ConfigError(
                f"{source}: '{dotted}' must be {_describe(hint)}, got {value!r} "
                f"({type(value).__name__})"
            )
        wants_float = hint is float or float in typing.get_args(hint)
        if wants_float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        kwargs[key] = value
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value, source: str) -> None:
    keys = dotted.split(".")
    node = tree
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: '{'.'.join(keys[: i + 1])}' is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str, source: str = "--set") -> tuple[str, Any]:
    """`"optimizer.lr=0.02"` -> `("optimizer.lr", 0.02)`; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{source}: expected KEY=VALUE (e.g. optimizer.lr=0.02), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    # YAML 1.1 reads "1e-3" as a string; users mean a number.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    return key.strip(), value


def apply_overrides(
    config: Config, overrides, source: str = "--set", check_values: bool = True
) -> Config:
    """A copy of `config` with dotted overrides applied and checked like a file."""
    if isinstance(overrides, (list, tuple)):
        overrides = dict(parse_override(o, source) for o in overrides)
    tree = config.to_dict()
    for dotted, value in overrides.items():
        _set_dotted(tree, dotted, value, source)
    config = _from_dict(Config, tree, source)
    return validate(config, source) if check_values else config


def validate(config: Config, source: str) -> Config:
    """Checks values that have the right type but cannot work; returns `config`."""
    from keras_googlenet.model import min_input_size  # imports keras only when validating

    def bad(key, why):
        raise ConfigError(f"{source}: '{key}' {why}")

    m, p, d, o, s, t = (
        config.model,
        config.preprocess,
        config.data,
        config.optimizer,
        config.schedule,
        config.training,
    )
    if m.num_classes is not None and m.num_classes < 2:
        bad("model.num_classes", f"must be at least 2, got {m.num_classes}")
    smallest = min_input_size(m.aux_heads)
    if m.input_size < smallest:
        why = " with aux_heads on" if m.aux_heads else ""
        bad("model.input_size", f"must be at least {smallest}{why}, got {m.input_size}")
    for key, rate in (("model.dropout", m.dropout), ("model.aux_dropout", m.aux_dropout)):
        if not 0 <= rate < 1:
            bad(key, f"must be in [0, 1), got {rate}")
    if not 0 < p.val_split < 1:
        bad("preprocess.val_split", f"must be between 0 and 1 (exclusive), got {p.val_split}")
    if p.size < 1:
        bad("preprocess.size", f"must be positive, got {p.size}")
    if p.workers is not None and p.workers < 1:
        bad("preprocess.workers", f"must be at least 1, got {p.workers}")
    if d.batch_size < 1:
        bad("data.batch_size", f"must be at least 1, got {d.batch_size}")
    if d.std_rgb <= 0:
        bad("data.std_rgb", f"must be positive, got {d.std_rgb}")
    for key in ("steps_per_epoch", "validation_steps"):
        value = getattr(d, key)
        if value is not None and value < 1:
            bad(f"data.{key}", f"must be at least 1 or null, got {value}")
    from keras_googlenet.augment import check_data_config  # imports TensorFlow, like model

    check_data_config(d, source)  # unknown transforms or parameters, named by list index
    if o.lr <= 0:
        bad("optimizer.lr", f"must be positive, got {o.lr}")
    if o.weight_decay < 0:
        bad("optimizer.weight_decay", f"must not be negative, got {o.weight_decay}")
    if not 0 <= o.momentum < 1:
        bad("optimizer.momentum", f"must be in [0, 1), got {o.momentum}")
    if not 0 < s.factor < 1:
        bad("schedule.factor", f"must be between 0 and 1, got {s.factor}")
    for key in ("warmup_epochs", "patience"):
        if getattr(s, key) < 0:
            bad(f"schedule.{key}", f"must not be negative, got {getattr(s, key)}")
    if s.decay_every < 1:
        bad("schedule.decay_every", f"must be at least 1, got {s.decay_every}")
    if t.epochs < 1:
        bad("training.epochs", f"must be at least 1, got {t.epochs}")
    if t.checkpoint_interval < 1:
        bad("training.checkpoint_interval", f"must be at least 1, got {t.checkpoint_interval}")
    if isinstance(t.backup_every, int) and t.backup_every < 1:
        bad("training.backup_every", f"must be 'epoch' or at least 1, got {t.backup_every}")
    if not 0 <= t.label_smoothing < 1:
        bad("training.label_smoothing", f"must be in [0, 1), got {t.label_smoothing}")
    for head, weight in t.loss_weights.items():
        if head not in ("main", "aux_4a", "aux_4d"):
            close = difflib.get_close_matches(str(head), ["main", "aux_4a", "aux_4d"], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            bad(f"training.loss_weights.{head}", f"is not an output of the model{hint}")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
            bad(f"training.loss_weights.{head}", f"must be a non-negative number, got {weight!r}")
    return config


def load_config(
    path: str | os.PathLike | None = None, overrides=(), *, check_values: bool = True
) -> Config:
    """Loads a YAML recipe (or the defaults when `path` is None) and applies overrides.

    Args:
        path: the YAML file, or None for the defaults.
        overrides: dotted `KEY=VALUE` strings or a `{dotted key: value}` dict.
        check_values: also run `validate` (value ranges, augmentation lists). It imports
            TensorFlow; tools that only need the schema check (the preprocessor) turn it off.

    Raises:
        ConfigError: missing or unreadable file, bad YAML, unknown key, wrong type or
            impossible value; the message names the file and the key.
    """
    source = "defaults"
    tree: dict = {}
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{source}: config file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{source}: cannot read config file ({e})") from None
        try:
            tree = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{source}: not valid YAML{line}") from None
    config = _from_dict(Config, tree, source)
    if overrides:
        config = apply_overrides(config, overrides, f"{source} --set", check_values)
    return validate(config, source) if check_values else config


def require(config: Config, *keys: str, source: str = "config") -> None:
    """Raises `ConfigError` for the first dotted key whose value is still None."""
    for dotted in keys:
        value: Any = config
        for part in dotted.split("."):
            value = getattr(value, part)
        if value is None:
            raise ConfigError(f"{source}: '{dotted}' is required (set it in the file or --set)")


def save_config(config: Config, path: str | os.PathLike) -> None:
    """Writes the resolved config as YAML, atomically."""
    from keras_googlenet.atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def add_config_args(parser, default_config: str | None = None) -> None:
    """Adds `--config FILE` and repeatable `--set KEY=VALUE` to an argparse parser."""
    parser.add_argument(
        "--config", default=default_config, help="YAML recipe (see configs/)", metavar="FILE"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optimizer.lr=0.02 (repeatable)",
    )


def main(argv=None) -> int:
    """`python -m keras_googlenet.config FILE [--set KEY=VALUE ...]`: check and print a recipe."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m keras_googlenet.config",
        description="Check a config file and print it resolved (defaults filled in).",
    )
    parser.add_argument("config", nargs="?", help="YAML recipe; omitted: the defaults")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    from keras_googlenet.errors import run_cli

    raise SystemExit(run_cli(main))
