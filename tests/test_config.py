"""Config loading: recipes, defaults, overrides and every kind of bad config."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import cli

from keras_googlenet.config import (
    Config,
    ConfigError,
    load_config,
    require,
    save_config,
)

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "configs").glob("*.yaml"))


def write(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads_and_has_a_header(path):
    config = load_config(path)
    assert isinstance(config, Config)
    first = path.read_text().splitlines()[0]
    assert first.startswith("#"), "each recipe starts with a comment giving its command"
    assert "keras-googlenet " in path.read_text()


def test_recipes_reproduce_the_seeds():
    sgd = load_config(REPO / "configs/caltech256_sgd.yaml")
    assert (sgd.optimizer.name, sgd.optimizer.lr, sgd.optimizer.momentum) == ("sgd", 0.01, 0.9)
    assert sgd.optimizer.nesterov and sgd.optimizer.weight_decay == 2e-4
    assert (sgd.schedule.name, sgd.schedule.factor, sgd.schedule.patience) == ("plateau", 0.5, 3)
    assert (sgd.data.batch_size, sgd.training.epochs, sgd.model.num_classes) == (128, 70, 256)
    adam = load_config(REPO / "configs/caltech256_adam.yaml")
    assert (adam.optimizer.name, adam.optimizer.lr, adam.schedule.name) == ("adam", 1e-3, "cosine")
    assert (adam.schedule.min_lr, adam.training.epochs) == (1e-5, 90)
    cifar = load_config(REPO / "configs/cifar10.yaml")
    assert (cifar.schedule.name, cifar.schedule.decay_rate, cifar.schedule.decay_every) == (
        "step",
        0.96,
        8,
    )
    assert (cifar.data.batch_size, cifar.training.epochs, cifar.data.std_rgb) == (256, 25, 255.0)


def test_defaults_and_seed_settings_have_a_home():
    config = load_config(None)
    # PROJECT_NAME, INPUT_DIR, TRAIN_DIR, VALID_DIR, TRAIN_CSV, VALID_CSV, CHECKPOINT_INTERVAL,
    # NUM_CLASSES, EPOCHS, MULTI_GPU, FP16_MIXED, LOGFILE, LOGLEVEL
    assert config.project_name
    assert (config.data.train_dir, config.data.valid_dir) == ("train", "val")
    assert (config.data.train_csv, config.data.valid_csv) == ("train.csv", "val.csv")
    assert config.training.checkpoint_interval == 10
    assert config.runtime.strategy == "auto" and config.runtime.precision == "float32"
    assert (config.logging.logfile, config.logging.level) == ("output.log", "INFO")
    assert config.training.loss_weights == {"main": 1.0, "aux_4a": 0.3, "aux_4d": 0.3}
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.model.num_classes = 3


def test_dotted_overrides_are_typed():
    config = load_config(
        REPO / "configs/smoke.yaml",
        [
            "optimizer.lr=0.02",
            "optimizer.lr=1e-3",  # the later one wins; YAML 1.1 reads 1e-3 as a string
            "model.aux_heads=false",
            "runtime.devices=[/gpu:0, /gpu:1]",
            "training.loss_weights.aux_4a=0.5",
            "data.input_dir=/tmp/x",
        ],
    )
    assert config.optimizer.lr == 1e-3 and isinstance(config.optimizer.lr, float)
    assert config.model.aux_heads is False
    assert config.runtime.devices == ["/gpu:0", "/gpu:1"]
    assert config.training.loss_weights["aux_4a"] == 0.5
    assert config.data.input_dir == "/tmp/x"
    # An int where a float is expected is fine and becomes a float.
    assert load_config(None, ["optimizer.lr=1"]).optimizer.lr == 1.0


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        (
            "optimizer:\n  lrr: 0.1\n",
            [],
            "unknown key 'optimizer.lrr' (did you mean 'optimizer.lr'?)",
        ),
        ("modle:\n  num_classes: 3\n", [], "unknown key 'modle' (did you mean 'model'?)"),
        ("optimizer:\n  lr: fast\n", [], "'optimizer.lr' must be float"),
        ("training:\n  epochs: 2.5\n", [], "'training.epochs' must be int"),
        ("model:\n  aux_heads: 'yes'\n", [], "'model.aux_heads' must be bool"),
        ("runtime:\n  precision: fp16\n", [], "'runtime.precision' must be one of"),
        ("model: 3\n", [], "model: expected a mapping"),
        ("model:\n  num_classes: 1\n", [], "'model.num_classes' must be at least 2"),
        ("model:\n  input_size: 64\n", [], "'model.input_size' must be at least 65"),
        ("preprocess:\n  val_split: 1.0\n", [], "'preprocess.val_split' must be between 0 and 1"),
        ("preprocess:\n  val_split: 0\n", [], "'preprocess.val_split' must be between 0 and 1"),
        ("training:\n  epochs: -3\n", [], "'training.epochs' must be at least 1"),
        ("optimizer:\n  lr: -0.1\n", [], "'optimizer.lr' must be positive"),
        ("", ["optimizer.momentun=0.8"], "unknown key 'optimizer.momentun'"),
        ("", ["optimizer.lr"], "expected KEY=VALUE"),
        ("", ["training.loss_weights.aux4a=0.3"], "did you mean 'aux_4a'?"),
        ("a: [1, 2\n", [], "not valid YAML at line"),
        ("model:\n  pool4_size: 4\n", [], "'model.pool4_size' must be 3 (the paper) or 2"),
        ("model:\n  padding: valid\n", [], "'model.padding' must be one of"),
        ("training:\n  freeze_until: inception_4x\n", [], "did you mean 'inception_4e'?"),
        ("training:\n  init_weights: w.pth\n", [], "must be a .weights.h5 file of import"),
        ("", ["optimizer.ema_momentum=1.0"], "'optimizer.ema_momentum' must be between 0 and 1"),
        ("", ["optimizer.ema_momentum=0"], "'optimizer.ema_momentum' must be between 0 and 1"),
        ("", ["training.class_weight={a: -1}"], "'training.class_weight.a' must be a non-negative"),
        ("", ["training.early_stopping.patience=0"], "'training.early_stopping.patience'"),
        ("", ["training.early_stopping.monitor=val_top1"], "did you mean 'val_main_top1'?"),
        ("", ["logging.profile_batches=[5, 2]"], "'logging.profile_batches' must be [first, last]"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, overrides, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_and_missing_required_value(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    config = load_config(REPO / "configs/smoke.yaml")
    with pytest.raises(ConfigError, match="'data.input_dir' is required"):
        require(config, "data.input_dir", source="configs/smoke.yaml")


def test_cli_exit_code_and_one_line(tmp_path, capsys):
    path = write(tmp_path, "optimizer:\n  lrr: 0.1\n")
    assert cli("config", *[str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "lrr" in err
    assert cli("config", *[str(REPO / "configs/smoke.yaml"), "--set", "training.epochs=3"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["training"]["epochs"] == 3


def test_cli_in_a_real_process_prints_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "keras_googlenet", "config", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "missing.yaml: config file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_saved_config_round_trips(tmp_path):
    config = load_config(REPO / "configs/caltech256_sgd.yaml", ["optimizer.lr=0.05"])
    save_config(config, tmp_path / "run" / "config.yaml")
    assert load_config(tmp_path / "run" / "config.yaml") == config
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_yaml_1_2_numbers_in_files_and_overrides(tmp_path):
    """`1e-3` is a float in a recipe and in --set (YAML 1.1 would read a string)."""
    path = tmp_path / "r.yaml"
    path.write_text("optimizer:\n  lr: 1e-3\n  weight_decay: 5e-4\nschedule:\n  min_lr: 1E-6\n")
    config = load_config(path, ["optimizer.clipnorm=1E+2", "training.label_smoothing=.1"])
    assert config.optimizer.lr == 0.001 and isinstance(config.optimizer.lr, float)
    assert config.optimizer.weight_decay == 0.0005
    assert config.schedule.min_lr == 1e-6
    assert config.optimizer.clipnorm == 100.0
    assert config.training.label_smoothing == 0.1
    # Ints stay ints, and what is not a number stays a string.
    config = load_config(path, ["training.epochs=7", "project_name=1e3x", "logging.logfile=inf"])
    assert config.training.epochs == 7 and isinstance(config.training.epochs, int)
    assert config.project_name == "1e3x" and config.logging.logfile == "inf"
    with pytest.raises(ConfigError, match="'training.epochs' must be int"):
        load_config(path, ["training.epochs=1e2"])


def test_builtin_recipe_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the checkout: the name alone finds the recipe
    assert load_config("demo").project_name == "demo"
    assert load_config("demo.yaml").project_name == "demo"
    assert load_config("smoke", ["training.epochs=3"]).training.epochs == 3
    (tmp_path / "demo.yaml").write_text("project_name: mine\n")
    assert load_config("demo.yaml").project_name == "mine"  # an existing path wins
    with pytest.raises(ConfigError, match="built-in recipes are: caltech256_adam"):
        load_config("caltech")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "sub" / "missing.yaml")


def test_modern_recipe_combines_the_keras_tools():
    path = REPO / "configs/caltech256_modern.yaml"
    modern = load_config(path)
    assert modern.optimizer.ema and 0 < modern.optimizer.ema_momentum < 1
    assert [e["name"] for e in modern.data.batch_augment] == ["randaugment", "mixup"]
    assert modern.training.label_smoothing > 0 and modern.schedule.warmup_epochs > 0
    header = path.read_text().split("project_name")[0]
    assert "55.17%" in header and "61.51%" in header and "NOT measured" in header
