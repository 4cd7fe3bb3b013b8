"""The CPU, read without TensorFlow: its flags, its vendor, and which kernels TensorFlow uses.

TensorFlow's Linux x86 package carries two sets of CPU kernels: Eigen's and oneDNN's. It turns
oneDNN's on by itself only on CPUs with neural-network instructions (AVX512_VNNI, AVX512_BF16,
AMX: Intel from Cascade Lake, AMD from Zen 4), and the switch, TF_ENABLE_ONEDNN_OPTS, is read
once, when TensorFlow loads. On an AVX2-only AMD EPYC (Zen 3) oneDNN's kernels trained GoogLeNet
1.6-1.7x faster than Eigen's (bench/README.md), so `choose_kernels` turns them on for every
x86 CPU with AVX2 unless the user set the switch; where TensorFlow would have anyway, that
changes nothing. It runs when `keras_googlenet` is imported, before TensorFlow is.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

ONEDNN_SWITCH = "TF_ENABLE_ONEDNN_OPTS"
# oneDNN's x86 kernels that were measured faster than Eigen's need at least AVX2.
ONEDNN_MIN_FLAG = "avx2"


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags listed in /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    return set(_cpuinfo_field(cpuinfo, "flags").split())


def cpu_vendor(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's vendor_id (GenuineIntel, AuthenticAMD; "" where /proc/cpuinfo has none)."""
    return _cpuinfo_field(cpuinfo, "vendor_id")


def _cpuinfo_field(cpuinfo: str | Path, key: str) -> str:
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith(key):
            return line.partition(":")[2].strip()
    return ""


def choose_kernels(environ: MutableMapping[str, str] | None = None, *, flags=None) -> str:
    """Turns TensorFlow's oneDNN kernels on for an AVX2 CPU, unless the user chose; says which.

    Must run before TensorFlow is imported: TensorFlow reads the switch once, as it loads.

    Args:
        environ: the environment to read and set (default: this process's, which the jobs'
            child processes inherit); for tests.
        flags: CPU flags (default: read /proc/cpuinfo); for tests.

    Returns:
        The line for the run's log: which kernels, and why.
    """
    environ = os.environ if environ is None else environ
    if ONEDNN_SWITCH in environ:
        return f"{ONEDNN_SWITCH}={environ[ONEDNN_SWITCH]}, as set in the environment"
    if environ is os.environ and "tensorflow" in sys.modules:
        return "TensorFlow's own choice: it was imported before keras_googlenet"
    flags = cpu_flags() if flags is None else set(flags)
    if ONEDNN_MIN_FLAG not in flags:
        return f"TensorFlow's own choice: this CPU lists no {ONEDNN_MIN_FLAG}"
    environ[ONEDNN_SWITCH] = "1"
    return (
        f"oneDNN's ({ONEDNN_SWITCH}=1: TensorFlow leaves them off on CPUs without "
        "AVX512_VNNI/AVX512_BF16/AMX, where Eigen's trained 1.6x slower)"
    )
