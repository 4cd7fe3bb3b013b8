"""Loading recipes: YAML files (numbers by the YAML 1.2 rule), built-in names, `--set` overrides.

Unknown keys (with a did-you-mean), wrong types and missing files raise `ConfigError` naming the
file and the dotted key; `checks.validate` then refuses values that cannot work.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from keras_googlenet.atomic import atomic_write_text
from keras_googlenet.config.checks import validate as _validate
from keras_googlenet.config.schema import Config
from keras_googlenet.errors import ConfigError


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's float rule.

    PyYAML follows YAML 1.1, whose floats need a dot: `1e-3` and `5e-4`, which everyone writes
    for learning rates, would load as strings and be refused.
    """


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _is_int(text: str) -> bool:
    return re.fullmatch(r"[-+]?[0-9_]+|0x[0-9a-fA-F_]+|0o?[0-7_]+", text) is not None


def _construct_float(loader, node):
    text = loader.construct_scalar(node)
    if _is_int(text):  # "1", "42": the int resolver comes first, but keep ints ints anyway
        return int(text.replace("_", ""))
    return float(text.replace("_", "").lower().replace(".inf", "inf").replace(".nan", "nan"))


_Yaml12Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def load_yaml(text: str):
    """Parses YAML text, reading `1e-3`-style numbers as floats (YAML 1.2)."""
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader subclass)


# --------------------------------------------------------------------------------------------
# Built-in recipes.


def recipes_dir() -> Path:
    """The folder of built-in recipes: `configs/` of a checkout, or the copy a wheel carries."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "configs", package.parent / "configs"):
        if candidate.is_dir():
            return candidate
    return package / "configs"


def recipe_names() -> list[str]:
    """Names of the built-in recipes (`demo`, `caltech256_sgd`, ...)."""
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def find_recipe(name_or_path: str | os.PathLike) -> Path:
    """A recipe's file: an existing path as given, else the built-in recipe of that name.

    Raises:
        ConfigError: neither a file nor a built-in name (the message lists the names).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    looks_like_name = os.sep not in text and "/" not in text
    if looks_like_name:
        builtin = recipes_dir() / (path.stem + ".yaml")
        if path.suffix in ("", ".yaml") and builtin.is_file():
            return builtin
        if path.suffix in ("", ".yaml"):
            raise ConfigError(
                f"{text}: no such config file or built-in recipe; the built-in recipes are: "
                + ", ".join(recipe_names())
            )
    return path  # load_config names it as not found


# --------------------------------------------------------------------------------------------
# Dicts to dataclasses, and overrides.


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
        value = load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
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
    return _validate(config, source) if check_values else config


def load_config(
    path: str | os.PathLike | None = None, overrides=(), *, check_values: bool = True
) -> Config:
    """Loads a YAML recipe (or the defaults when `path` is None) and applies overrides.

    Args:
        path: a YAML file, a built-in recipe name (`demo`), or None for the defaults.
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
        path = find_recipe(path)
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{source}: config file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{source}: cannot read config file ({e})") from None
        try:
            tree = load_yaml(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{source}: not valid YAML{line}") from None
    config = _from_dict(Config, tree, source)
    if overrides:
        config = apply_overrides(config, overrides, f"{source} --set", check_values)
    return _validate(config, source) if check_values else config


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
    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def run(args) -> int:
    """Runs `keras-googlenet config`: check a recipe and print it resolved."""
    config = load_config(args.config, args.overrides)
    print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
    return 0
