"""Shared fixtures: small processed datasets written to tmp_path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# pytest-xdist (`make test`: -n 2) runs one worker per core. Each worker's TensorFlow, and the
# processes its tests start, get their share of the cores for their kernels instead of a thread
# per core each, which ran 4 busy threads on 2 cores. Set before TensorFlow loads.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))

# Before anything imports TensorFlow: the package quiets its C++ start-up lines and picks its CPU
# kernels (keras_googlenet/cpu.py), so the suite runs on the kernels a user's run gets.
import keras_googlenet  # noqa: E402, F401

sys.path.insert(0, str(Path(__file__).parent))

from helpers import (  # noqa: E402
    get_tiny_export,
    get_tiny_run,
    write_processed_dataset,  # noqa: E402
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def processed_dataset(tmp_path):
    """A 3-class processed folder, 8 train and 4 val 80x80 JPEGs per class."""
    return write_processed_dataset(tmp_path / "processed")


@pytest.fixture(scope="session")
def shared_processed_dataset(tmp_path_factory):
    """The same, written once per session, for tests that only read it."""
    return write_processed_dataset(tmp_path_factory.mktemp("shared") / "processed")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny real training run (killed mid-epoch and resumed), trained once per session."""
    return get_tiny_run(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """The SavedModel export of `tiny_run`."""
    return get_tiny_export(tmp_path_factory)


# Under pytest-xdist (`make test` runs two processes): the tests that read the session's tiny
# run go to one process, so the run is trained once, not once per process.
SHARED_RUN = {"tiny_run", "tiny_export"}
# Module-scoped fixtures that cost seconds to minutes (the gpu_check dry run, a finished training
# run, converted weights, a 224 px GoogLeNet): the tests of a module that use one go to one
# process too, or each process builds it again (the 2-minute dry run ran twice in one CI run).
SHARED_IN_MODULE = {"report", "finished_run", "torch_files", "slim_weights", "model_224"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's hook reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if SHARED_RUN & names:
            item.add_marker(pytest.mark.xdist_group("tiny_run"))
        elif SHARED_IN_MODULE & names:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
