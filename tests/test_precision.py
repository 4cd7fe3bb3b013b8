"""`runtime.precision: auto` on GPUs, with the device capabilities TensorFlow reports faked:
bfloat16 from compute capability 8.0, float16 (loss-scaled) on 7.x, float32 below; the oldest
GPU decides; the reason is what the run's log line prints after the policy."""

from __future__ import annotations

import pytest

from keras_googlenet.training import precision


@pytest.fixture
def fake_gpus(monkeypatch):
    """Makes TensorFlow list GPUs of the given compute capabilities."""
    import tensorflow as tf

    def install(*capabilities):
        gpus = [
            tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU")
            for i in range(len(capabilities))
        ]
        details = {
            gpu.name: {"compute_capability": cc} for gpu, cc in zip(gpus, capabilities, strict=True)
        }
        real = tf.config.list_physical_devices
        monkeypatch.setattr(
            tf.config,
            "list_physical_devices",
            lambda kind=None: gpus if kind == "GPU" else real(kind),
        )
        monkeypatch.setattr(
            tf.config.experimental, "get_device_details", lambda device: details[device.name]
        )

    return install


@pytest.mark.parametrize(
    "capabilities, policy, why",
    [
        ([(9, 0)], "mixed_bfloat16", "GPU compute capability 9.0: bfloat16 tensor cores"),  # H100
        ([(8, 0)], "mixed_bfloat16", "compute capability 8.0"),  # A100
        ([(8, 6), (8, 9)], "mixed_bfloat16", "lowest compute capability 8.6 of 2 GPUs"),
        ([(7, 0)], "mixed_float16", "float16 tensor cores (no bfloat16), loss-scaled"),  # V100
        ([(7, 5)], "mixed_float16", "compute capability 7.5"),  # T4
        ([(9, 0), (7, 0)], "mixed_float16", "lowest compute capability 7.0 of 2 GPUs"),
        ([(6, 1)], "float32", "GPU compute capability 6.1: no tensor cores"),  # P100/1080 Ti
    ],
)
def test_auto_on_gpus(fake_gpus, capabilities, policy, why):
    fake_gpus(*capabilities)
    assert precision.gpu_compute_capabilities() == capabilities
    chosen, reason = precision.choose_policy("auto")
    assert chosen == policy
    assert why in reason
