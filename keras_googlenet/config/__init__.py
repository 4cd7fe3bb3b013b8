"""Experiment configuration: one YAML recipe per experiment, loaded into frozen dataclasses.

`schema` holds the dataclasses, `load` reads recipes (files or built-in names) and `--set`
overrides, `checks` refuses values that cannot work. Every mistake is a `ConfigError` naming the
file and the dotted key.
"""

from keras_googlenet.config.load import (
    apply_overrides,
    find_recipe,
    load_config,
    load_yaml,
    parse_override,
    recipe_names,
    recipes_dir,
    require,
    save_config,
)
from keras_googlenet.config.schema import (
    Config,
    DataConfig,
    LoggingConfig,
    ModelConfig,
    OptimizerConfig,
    PathsConfig,
    PreprocessConfig,
    RuntimeConfig,
    ScheduleConfig,
    TrainingConfig,
)
from keras_googlenet.errors import ConfigError

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "LoggingConfig",
    "ModelConfig",
    "OptimizerConfig",
    "PathsConfig",
    "PreprocessConfig",
    "RuntimeConfig",
    "ScheduleConfig",
    "TrainingConfig",
    "apply_overrides",
    "find_recipe",
    "load_config",
    "load_yaml",
    "parse_override",
    "recipe_names",
    "recipes_dir",
    "require",
    "save_config",
]
