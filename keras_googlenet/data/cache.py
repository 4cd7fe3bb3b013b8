"""Whether the training pipeline keeps decoded images in memory (`data.cache`).

Decoding JPEGs is most of the input pipeline's work (bench/README.md): with the decoded images
in RAM, every epoch after the first only crops and flips them, several times faster. It costs
height x width x 3 bytes per image (about 200 KB at 256 x 256, 4.8 GB for Caltech256's training
split), so `data.cache: auto` (the default) caches only when that fits comfortably:

- the run is epoch-based (`data.steps_per_epoch` unset): a cache is filled by one whole pass,
  and a pipeline dropped before that pass ends would throw its partial cache away;
- the run is not `data.deterministic`: the order and augmentation draws differ between the two
  ways, so free memory would decide which batches a reproducible run sees;
- this pipeline's share of the decoded training images takes at most `_BUDGET_FRACTION` of the
  memory available now (the smaller of the system's MemAvailable and the cgroup's limit), so
  the model, the shuffle buffer and the rest of the machine keep the remainder. Under several
  workers training takes the decision once for all of them (`worker_sum`): their shards of the
  files differ between the two ways.

`true` caches whatever the size; `false` never does.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from keras_googlenet.config import Config

log = logging.getLogger(__name__)

# A quarter of what is free: training a 224 px GoogLeNet on the CPU itself takes 2-10 GB.
_BUDGET_FRACTION = 0.25
# Header sizes read to estimate the decoded size (processed folders hold one size anyway).
_SAMPLE = 64


def _cgroup_dirs() -> list[Path]:
    """This process's memory cgroup folders, from its own up to the root (v2, then v1)."""
    root = Path("/sys/fs/cgroup")
    dirs = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: "0::/path"
            base = root
        elif "memory" in controllers.split(","):
            base = root / "memory"
        else:
            continue
        here = base / path.lstrip("/")
        while True:
            dirs.append(here)
            if here == base:
                break
            here = here.parent
    return dirs or [root, root / "memory"]


def _cgroup_free(folder: Path) -> int | None:
    """What the limit of one cgroup folder leaves: limit - usage + reclaimable page cache
    (usage counts the page cache; Docker and the kubelet subtract its inactive part too)."""
    for limit_name, usage_name, inactive_key in (
        ("memory.max", "memory.current", "inactive_file"),  # v2
        ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),  # v1
    ):
        try:
            limit = (folder / limit_name).read_text().strip()
        except OSError:
            continue
        if not limit.isdigit() or int(limit) >= 1 << 60:  # "max", or v1's "no limit"
            return None
        try:
            usage = int((folder / usage_name).read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            stat = (folder / "memory.stat").read_text().split()
            inactive = int(dict(zip(stat[::2], stat[1::2], strict=False)).get(inactive_key, 0))
        except (OSError, ValueError):
            inactive = 0
        return max(0, int(limit) - usage + inactive)
    return None


def available_memory() -> int | None:
    """Bytes this process could still allocate: MemAvailable, capped by the tightest memory
    limit of its cgroups (a container or a batch job sees the host's MemAvailable). None where
    nothing can be read."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    found += [free for d in _cgroup_dirs() if (free := _cgroup_free(d)) is not None]
    if not found:
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return max(0, min(found))


def decoded_bytes(files: tuple[str, ...] | list[str]) -> int:
    """Estimated bytes of `files` decoded to RGB, from the header sizes of up to `_SAMPLE`
    evenly spaced files (a header that cannot be read counts as the mean of the others)."""
    from PIL import Image

    if not files:
        return 0
    step = max(1, len(files) // _SAMPLE)
    pixels = []
    for path in list(files)[::step][:_SAMPLE]:
        try:
            with Image.open(path) as im:
                pixels.append(im.size[0] * im.size[1])
        except Exception:  # noqa: BLE001 - a bad file is skipped by the pipeline, not here
            continue
    mean = sum(pixels) / len(pixels) if pixels else 256 * 256
    return int(mean * 3 * len(files))


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def use_cache(cfg: Config, files, pipelines: int = 1) -> bool:
    """Whether this training pipeline caches decoded images; `auto` decides and logs why.

    Args:
        cfg: the config (`data.cache`, `data.steps_per_epoch`).
        files: all training files (the pipeline reads `1 / pipelines` of them).
        pipelines: input pipelines sharing them (one per worker).
    """
    setting = cfg.data.cache
    if setting is True:
        need = decoded_bytes(files) / max(1, pipelines)
        log.info("data.cache: true: decoded training images take %s in memory", _size(need))
        return True
    if setting is False:
        return False
    if cfg.data.steps_per_epoch is not None:
        log.info("data.cache auto: off (data.steps_per_epoch is set; a cache needs whole passes)")
        return False
    if cfg.data.deterministic:
        # The batches differ between the two ways; free memory must not choose between them.
        log.info("data.cache auto: off (data.deterministic; set data.cache: true to cache)")
        return False
    need = decoded_bytes(files) / max(1, pipelines)
    free = available_memory()
    if free is None:
        log.info("data.cache auto: off (free memory unknown); set data.cache: true to cache")
        return False
    fits = need <= _BUDGET_FRACTION * free
    log.info(
        "data.cache auto: %s: decoded training images need %s, %s %d%% of the %s available%s",
        "on" if fits else "off",
        _size(need),
        "within" if fits else "over",
        round(100 * _BUDGET_FRACTION),
        _size(free),
        " (decoding happens in the first epoch only)" if fits else "; JPEGs decoded every epoch",
    )
    return fits
