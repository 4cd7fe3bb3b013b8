"""keras_googlenet: GoogLeNet (Inception v1) training with Keras 3 and TensorFlow."""

import os

# TensorFlow's C++ start-up chatter (no CUDA on a CPU machine, oneDNN notes) buries the lines a
# user needs; errors only, unless the user asked for more (`--verbose` sets it before import).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_googlenet.cpu import choose_kernels  # noqa: E402  (after the line above, before TF)

# Which CPU kernels TensorFlow will use, chosen before it loads; `train` logs it.
CPU_KERNELS = choose_kernels()

__version__ = "0.2.0"
__all__ = ["build_googlenet", "inference_model", "min_input_size"]


def __getattr__(name):
    # Lazy, so the command line and the preprocessing tools do not pay for importing TensorFlow.
    if name in __all__:
        from keras_googlenet.model import googlenet

        return getattr(googlenet, name)
    raise AttributeError(f"module 'keras_googlenet' has no attribute {name!r}")
