"""Numeric precision: which Keras mixed-precision policy a run uses.

`auto` picks the fastest policy the hardware runs natively: on GPUs, bfloat16 from compute
capability 8.0 (A100, H100: tensor cores as fast as float16's, float32's range, no loss
scaling), float16 with loss scaling on 7.x (V100, T4: tensor cores without bfloat16), float32
below; on CPUs, bfloat16 with AMX, or with AVX512_BF16 from AMD (1.7x float32's training step
on an AMD EPYC, bench/README.md); float32 everywhere else. With several GPUs the oldest
decides. Intel CPUs with AVX512_BF16 but no AMX trained slower in bfloat16 than in float32
(TensorFlow and torch alike), and float16 on a CPU is emulated.
"""

from __future__ import annotations

import contextlib

import keras

from keras_googlenet.cpu import cpu_flags, cpu_vendor

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
# /proc/cpuinfo flags that mean bfloat16 matrix maths runs in hardware: AMX's tiles are fast on
# every CPU that has them; AVX512_BF16 alone only where it was measured faster (AMD's).
# GPU compute capabilities: bfloat16 tensor cores from Ampere (8.0), float16 ones from Volta.
BF16_TENSOR_CORES = (8, 0)
FP16_TENSOR_CORES = (7, 0)
AMX_FLAGS = ("amx_bf16", "amx_tile")
AVX512_BF16 = "avx512_bf16"
BF16_FAST_WITHOUT_AMX = ("AuthenticAMD",)


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """(major, minor) compute capability of each visible GPU."""
    import tensorflow as tf

    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        if "compute_capability" in details:
            found.append(tuple(details["compute_capability"]))
    return found


def choose_policy(name: str, *, flags=None, capabilities=None, vendor=None) -> tuple[str, str]:
    """Resolves `runtime.precision` to a Keras policy name.

    Args:
        name: `auto`, `float32`, `mixed_float16` or `mixed_bfloat16`.
        flags: CPU flags (default: read /proc/cpuinfo); for tests.
        capabilities: GPU compute capabilities (default: ask TensorFlow); for tests.
        vendor: the CPU's vendor_id (default: read /proc/cpuinfo); for tests.

    Returns:
        (policy name, the reason, for the log).
    """
    if name != "auto":
        if name not in POLICIES:
            raise ValueError(f"unknown precision {name!r}; expected auto or one of {POLICIES}")
        return name, "set in the config"
    capabilities = gpu_compute_capabilities() if capabilities is None else capabilities
    if capabilities:
        oldest = min(tuple(cc) for cc in capabilities)
        cc = f"compute capability {'.'.join(map(str, oldest))}"
        if len(capabilities) > 1:
            cc = f"lowest {cc} of {len(capabilities)} GPUs"
        if oldest >= BF16_TENSOR_CORES:
            return "mixed_bfloat16", f"GPU {cc}: bfloat16 tensor cores, no loss scaling needed"
        if oldest >= FP16_TENSOR_CORES:
            return "mixed_float16", f"GPU {cc}: float16 tensor cores (no bfloat16), loss-scaled"
        return "float32", f"GPU {cc}: no tensor cores"
    flags = cpu_flags() if flags is None else set(flags)
    vendor = cpu_vendor() if vendor is None else vendor
    amx = sorted(flags & set(AMX_FLAGS))
    if amx:
        return "mixed_bfloat16", f"CPU with {', '.join(amx)}"
    if AVX512_BF16 in flags and vendor in BF16_FAST_WITHOUT_AMX:
        return "mixed_bfloat16", f"{vendor} CPU with {AVX512_BF16}"
    if AVX512_BF16 in flags:
        return "float32", f"{vendor or 'this'} CPU has {AVX512_BF16} but no AMX: bfloat16 is slower"
    return "float32", "CPU without bfloat16 instructions (avx512_bf16/amx)"


@contextlib.contextmanager
def precision_policy(policy: str):
    """Sets the global Keras dtype policy for the block, then puts the previous one back.

    The policy must be set before the model is built; resetting it keeps one run's choice from
    leaking into the next model built in the same process (tests, the demo).
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield keras.config.dtype_policy()
    finally:
        keras.config.set_dtype_policy(previous)
