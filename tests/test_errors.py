"""Atomic writes and the command-line error wrapper: a full disk, a user mistake, Ctrl-C."""

from __future__ import annotations

import errno
import os

import pytest

from keras_googlenet import atomic
from keras_googlenet.atomic import atomic_write_bytes, atomic_write_text
from keras_googlenet.errors import UserError, run_cli


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "train.csv"
    atomic_write_text(path, "image,class\na.jpg,0\n")
    atomic_write_bytes(path, b"image,class\nb.jpg,1\n")
    assert path.read_text() == "image,class\nb.jpg,1\n"
    assert [p.name for p in path.parent.iterdir()] == ["train.csv"]


def test_full_disk_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "val.csv"
    path.write_text("the old content\n")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(OSError) as info:
        atomic_write_text(path, "half of the new content")
    assert info.value.errno == errno.ENOSPC
    assert path.read_text() == "the old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["val.csv"]


def test_run_cli_turns_errors_into_one_line(capsys, tmp_path):
    def user_mistake(argv):
        raise UserError("configs/x.yaml: unknown key 'optimizer.lrr'")

    def disk_full(argv):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "out.jpg"))

    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_cli(user_mistake, []) == 2
    assert capsys.readouterr().err == "error: configs/x.yaml: unknown key 'optimizer.lrr'\n"
    assert run_cli(disk_full, []) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out.jpg" in err and "No space left" in err
    assert run_cli(interrupted, []) == 130
    assert run_cli(lambda argv: None, []) == 0
