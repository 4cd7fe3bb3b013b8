"""The `keras-googlenet` command: jobs, help without TensorFlow, one-line errors, the installed
console script."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, cli

from keras_googlenet import __version__
from keras_googlenet.cli import JOBS

# --help of every job in one fresh interpreter; prints whether TensorFlow got imported.
HELP_WITHOUT_TF = r"""
import contextlib, io, sys
from keras_googlenet.cli import JOBS, main
for job in JOBS:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            main([job, "--help"])
        except SystemExit as e:
            assert e.code == 0, (job, e.code)
    assert "usage: keras-googlenet " + job in out.getvalue(), job
print("tensorflow" in sys.modules, "keras" in sys.modules)
"""


def _run(args, cwd=None, **kw):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, **kw)


def test_help_lists_every_job_one_line_each(capsys):
    with pytest.raises(SystemExit) as e:
        cli("--help")
    assert e.value.code == 0
    out = capsys.readouterr().out
    for job, (_, description) in JOBS.items():
        assert any(job in line and description in line for line in out.splitlines()), job
        # The name stands apart from its text, however long the name (import-weights was not).
        assert [job, description] in [line.split(None, 1) for line in out.splitlines()], job
    assert set(JOBS) >= {"preprocess", "train", "evaluate", "export", "predict"}
    assert set(JOBS) >= {"quickcheck", "demo", "summary"}


def test_job_help_does_not_import_tensorflow():
    started = time.perf_counter()
    proc = _run([sys.executable, "-c", HELP_WITHOUT_TF], cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]
    assert proc.stderr == ""  # no log noise
    assert time.perf_counter() - started < 20  # all nine; one alone is well under a second


def test_unknown_job_is_one_line_listing_the_jobs(capsys):
    assert cli("trian") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown job 'trian'" in err
    assert all(job in err for job in JOBS)


def test_bad_flag_is_one_line(capsys):
    assert cli("evaluate", "--run", "x") == 2  # the old flag name: one line, not a traceback
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--run-dir" in err


def test_unknown_recipe_lists_the_builtin_ones(capsys):
    assert cli("config", "caltech") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "caltech: no such config file or built-in recipe" in err
    assert "caltech256_sgd" in err and "demo" in err


def test_run_as_a_module_is_the_same_command():
    proc = _run([sys.executable, "-m", "keras_googlenet", "--version"], cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.strip() == f"keras-googlenet {__version__}"


def _console_script() -> Path:
    return Path(sys.executable).parent / "keras-googlenet"


def test_installed_command_runs_from_another_folder(tmp_path):
    """The console script the package installs, run outside the checkout: a built-in recipe by
    name, a model job (TensorFlow imported, its start-up lines silenced)."""
    script = _console_script()
    assert script.is_file(), "install the package first: pip install -e . (see README)"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}
    proc = _run([str(script), "config", "demo"], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "project_name: demo" in proc.stdout and "lr: 0.001" in proc.stdout
    proc = _run([str(script), "summary", "--image-size", "96"], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "inception_5b" in proc.stdout and proc.stderr == ""
    verbose = _run([str(script), "summary", "--verbose"], cwd=tmp_path, env=env)
    assert verbose.returncode == 0 and verbose.stderr != ""  # TensorFlow's own lines are back
