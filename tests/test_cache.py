"""`data.cache`: when `auto` keeps decoded training images in memory, and what it estimates."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from helpers import in_order
from PIL import Image

from keras_googlenet.config import load_config
from keras_googlenet.data import cache as cache_mod
from keras_googlenet.data import pipeline as data
from keras_googlenet.data.dataset_info import read_dataset_info
from keras_googlenet.errors import ConfigError

SMALL = [
    "model.input_size=72",
    "data.batch_size=4",
    "data.train_augment=[{name: random_crop, size: 72}, {name: horizontal_flip}]",
    "data.val_augment=[{name: center_crop, size: 72}]",
]


def config(root, *overrides):
    return load_config(None, [f"data.input_dir={root}", *SMALL, *overrides])


def test_decoded_bytes_reads_header_sizes(tmp_path):
    files = []
    for i, (w, h) in enumerate([(100, 50)] * 3 + [(40, 40)]):
        path = tmp_path / f"{i}.jpg"
        Image.new("RGB", (w, h), (i, 0, 0)).save(path)
        files.append(str(path))
    assert cache_mod.decoded_bytes(files) == (3 * 100 * 50 + 40 * 40) * 3
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    # an unreadable header counts as the mean of the readable ones
    assert cache_mod.decoded_bytes([*files, str(tmp_path / "bad.jpg")]) == pytest.approx(
        (3 * 100 * 50 + 40 * 40) * 3 * 5 / 4, rel=1e-6
    )


def _cgroup(folder, files: dict):
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_cgroup_limit_leaves_page_cache_as_free(tmp_path, monkeypatch):
    stat_v2 = "anon 400000\ninactive_file 250000\nactive_file 50000\n"
    v2 = _cgroup(tmp_path / "v2", {"memory.current": "700000\n", "memory.stat": stat_v2})
    for limit, free in (("max\n", None), ("1000000\n", 1000000 - 700000 + 250000)):
        _cgroup(v2, {"memory.max": limit})  # "max": no limit at this level
        assert cache_mod._cgroup_free(v2) == free
    stat_v1 = "cache 600000\ntotal_inactive_file 300000\n"
    v1 = _cgroup(tmp_path / "v1", {"memory.usage_in_bytes": "1500000", "memory.stat": stat_v1})
    for limit, free in ((str(2**63 - 4096), None), ("2000000", 2000000 - 1500000 + 300000)):
        _cgroup(v1, {"memory.limit_in_bytes": limit})  # 2**63 - 4096: v1's "no limit"
        assert cache_mod._cgroup_free(v1) == free
    # the tightest limit on the way up to the root wins over MemAvailable
    monkeypatch.setattr(cache_mod, "_cgroup_dirs", lambda: [tmp_path / "none", v2, v1])
    assert cache_mod.available_memory() == 550000


def test_available_memory_is_a_plausible_byte_count():
    free = cache_mod.available_memory()
    assert free is not None and 2**20 < free < 2**50


@pytest.mark.parametrize(
    "free, overrides, expected",
    [
        (10 * 2**30, [], True),  # 24 small images: far within a quarter of 10 GB
        (1000, [], False),  # nowhere near
        (None, [], False),  # unknown: do not risk it
        (10 * 2**30, ["data.steps_per_epoch=3"], False),  # no whole passes
        (10 * 2**30, ["data.deterministic=true"], False),  # memory must not pick the batches
        (1000, ["data.cache=true"], True),  # forced
        (10 * 2**30, ["data.cache=false"], False),
    ],
)
def test_auto_decides_from_free_memory(
    shared_processed_dataset, monkeypatch, caplog, free, overrides, expected
):
    monkeypatch.setattr(cache_mod, "available_memory", lambda: free)
    cfg = config(shared_processed_dataset, *overrides)
    info = read_dataset_info(cfg)
    with caplog.at_level(logging.INFO, logger=cache_mod.__name__):
        assert cache_mod.use_cache(cfg, info.train_files) is expected
    if cfg.data.cache == "auto":
        assert f"data.cache auto: {'on' if expected else 'off'}" in caplog.text


def test_budget_is_per_pipeline(shared_processed_dataset, monkeypatch):
    cfg = config(shared_processed_dataset)
    info = read_dataset_info(cfg)
    need = cache_mod.decoded_bytes(info.train_files)
    # just too much for one pipeline, enough for each of two (each caches its half)
    monkeypatch.setattr(cache_mod, "available_memory", lambda: int(need / 0.25 * 0.75))
    assert not cache_mod.use_cache(cfg, info.train_files, pipelines=1)
    assert cache_mod.use_cache(cfg, info.train_files, pipelines=2)


def test_auto_cached_pipeline_gives_full_reshuffled_epochs(shared_processed_dataset, monkeypatch):
    calls = []
    real = cache_mod.use_cache

    def spy(*args, **kwargs):
        calls.append(real(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(cache_mod, "available_memory", lambda: 10 * 2**30)
    monkeypatch.setattr(data, "use_cache", spy)
    cfg = config(shared_processed_dataset)
    assert cfg.data.cache == "auto"  # the default
    ds = data.make_train_dataset(cfg, read_dataset_info(cfg), passes=3)
    assert calls == [True]
    ds = in_order(ds)
    stream = np.concatenate([y["main"].numpy() for _, y in ds])
    epochs = [stream[24 * k : 24 * (k + 1)] for k in range(3)]
    for labels in epochs:  # every file once per epoch: 8 per class
        assert sorted(np.bincount(labels)) == [8, 8, 8]
    assert not np.array_equal(epochs[1], epochs[2])  # reshuffled after the cache


@pytest.mark.parametrize("value", ["maybe", "1", "[auto]"])
def test_cache_key_refuses_other_values(value):
    with pytest.raises(ConfigError, match="data.cache"):
        load_config(None, [f"data.cache={value}"])
