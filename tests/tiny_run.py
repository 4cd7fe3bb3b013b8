"""A tiny trained run folder shared by the evaluate, export and predict tests.

Built once per test session (the three test modules import the fixture; the run is cached here
so it is trained only once): 3 classes of 80x80 JPEGs, 72x72 input, a few SGD steps, saved in
the `RunDir` layout with best.keras, last.keras and epoch_NNN.keras.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers import write_processed_dataset

REPO = Path(__file__).resolve().parents[1]
_CACHE: dict[str, Path] = {}


def tiny_config(dataset: Path, **overrides):
    """configs/smoke.yaml on `dataset`: 72x72 input from 80x80 images, batch 8."""
    from keras_googlenet.config import load_config

    return load_config(
        REPO / "configs" / "smoke.yaml",
        {"data.input_dir": str(dataset), "training.seed": 0, **overrides},
    )


def _build_run(root: Path) -> Path:
    import keras

    from keras_googlenet.config import save_config
    from keras_googlenet.data import make_train_dataset, read_dataset_info
    from keras_googlenet.model import build_googlenet
    from keras_googlenet.run_dir import RunDir

    dataset = write_processed_dataset(root / "data", num_classes=3, size=80)
    config = tiny_config(dataset)
    info = read_dataset_info(config)
    keras.utils.set_random_seed(0)
    model = build_googlenet(
        info.num_classes,
        (config.model.input_size, config.model.input_size, 3),
        mean_rgb=info.mean_rgb,
        std_rgb=config.data.std_rgb,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss={h: "sparse_categorical_crossentropy" for h in model.output_names},
        loss_weights={"main": 1.0, "aux_4a": 0.3, "aux_4d": 0.3},
        run_eagerly=True,  # on 2 busy cores tracing the train step takes longer than 3 steps
    )
    run = RunDir(root / "run")
    run.checkpoints.mkdir(parents=True)
    save_config(config, run.config)
    train = make_train_dataset(config, info)
    model.fit(train, epochs=1, steps_per_epoch=2, verbose=0)
    model.save(run.epoch_checkpoint(1))
    shutil.copy(run.epoch_checkpoint(1), run.best)
    model.fit(train, epochs=1, steps_per_epoch=1, verbose=0)
    model.save(run.epoch_checkpoint(2))
    shutil.copy(run.epoch_checkpoint(2), run.last)
    return run.root


def get_tiny_run(tmp_path_factory) -> Path:
    """The run folder (read-only for tests: copy it before changing anything).

    Test modules wrap this in a session fixture; the cache makes it one run per session.
    """
    if "run" not in _CACHE:
        _CACHE["run"] = _build_run(tmp_path_factory.mktemp("tiny_run"))
    return _CACHE["run"]


def get_tiny_export(tmp_path_factory) -> Path:
    """The tiny run exported with the CLI (read-only for tests)."""
    if "export" not in _CACHE:
        from keras_googlenet.errors import run_cli
        from keras_googlenet.export import main

        run = get_tiny_run(tmp_path_factory)
        out = tmp_path_factory.mktemp("tiny_export") / "export"
        code = run_cli(main, ["--run", str(run), "--output", str(out)])
        assert code == 0
        _CACHE["export"] = out
    return _CACHE["export"]
