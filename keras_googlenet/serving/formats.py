"""Deployment formats besides the SavedModel: ONNX (onnxruntime) and LiteRT (`.tflite`).

    keras-googlenet export --run-dir runs/NAME --output exports/NAME-onnx --format onnx

Both files hold the float32 inference model alone (main head, softmax out), the same graph as
the SavedModel's `serve` endpoint: one input, float32 `[batch, input_size, input_size, 3]` RGB
pixels on the 0-255 scale, already resized and center-cropped; the training-set mean and std
are applied inside the model. The resize and crop that the SavedModel does in its graph are
left to the caller (image ops differ between runtimes); `export.json` beside the file states
them (the "contract"). The converted file is run once with its runtime at export time on a
seeded batch and its largest difference from Keras is recorded there too.

Converters and runtimes are optional dependencies (`pip install 'keras_googlenet[onnx]'`,
`'keras_googlenet[litert]'`); a missing one stops the export with one line naming it.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

from keras_googlenet.errors import UserError

FORMATS = ("savedmodel", "onnx", "litert")
FILE_NAMES = {"onnx": "model.onnx", "litert": "model.tflite"}
# Light on imports: cli.py reads FORMATS before TensorFlow is imported.
# What each format needs besides TensorFlow, as (module, pip package). TensorFlow's own
# TFLiteConverter writes LiteRT files; the interpreter comes from ai-edge-litert (TensorFlow's
# tf.lite.Interpreter is deprecated and due for deletion).
NEEDS = {
    "onnx": (("tf2onnx", "tf2onnx"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime")),
    "litert": (("ai_edge_litert", "ai-edge-litert"),),
}
ONNX_OPSET = 17
CHECK_IMAGES = 4  # the export-time comparison batch


def require(fmt: str) -> None:
    """Raises a one-line `UserError` if a converter or runtime of `fmt` is not installed."""
    needs = NEEDS.get(fmt, ())
    missing = [pkg for module, pkg in needs if importlib.util.find_spec(module) is None]
    if missing:
        raise UserError(
            f"--format {fmt}: {' and '.join(missing)} not installed "
            f"(pip install 'keras_googlenet[{fmt}]')"
        )


def convert(model, fmt: str, path: Path) -> None:
    """Writes the float32 inference `model` to `path` in format `fmt` (onnx or litert)."""
    if fmt == "onnx":
        _to_onnx(model, Path(path))
    elif fmt == "litert":
        # Keras's own exporter: SavedModel -> TFLiteConverter, builtin ops only for this model.
        model.export(str(path), format="litert", verbose=False)
    else:
        raise ValueError(f"no converter for {fmt!r}")


def _to_onnx(model, path: Path) -> None:
    """tf2onnx on a traced call of `model`, with the graph's captured constants folded in.

    Keras's `model.export(format="onnx")` leaves the Normalization layer's mean and variance
    (constants the traced function captures, not variables) as extra graph inputs that nobody
    feeds, so onnxruntime refuses the file. Here the same trace is converted and each such
    input becomes an initializer holding the captured value.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx
    from keras.src.export.tf2onnx_lib import patch_tf2onnx

    with warnings.catch_warnings():  # its probe of np.object warns under NumPy 2
        warnings.simplefilter("ignore", FutureWarning)
        patch_tf2onnx()  # Keras's fix-ups for tf2onnx under NumPy 2 (private; Keras pinned <3.16)
    size = model.inputs[0].shape[1:]
    signature = [tf.TensorSpec((None, *size), tf.float32, name="images")]
    fn = tf.function(lambda images: model(images, training=False), autograph=False)
    concrete = fn.get_concrete_function(*signature)  # cached: tf2onnx converts this trace
    proto, _ = tf2onnx.convert.from_function(
        fn, input_signature=signature, opset=ONNX_OPSET, output_path=None
    )
    captured = {
        internal.name: external.numpy()
        for external, internal in concrete.graph.captures
        if external.dtype != tf.resource
    }
    graph = proto.graph
    for item in [i for i in graph.input if i.name in captured]:
        graph.initializer.append(onnx.numpy_helper.from_array(captured[item.name], item.name))
        graph.input.remove(item)
    # Constants the converter folded away (the normalization's sqrt) stay as initializers no
    # node reads; onnxruntime warns about each when it loads the file.
    used = {name for node in graph.node for name in node.input}
    for item in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(item)
    if [i.name for i in graph.input] != ["images"]:
        raise RuntimeError(f"ONNX graph has unexpected inputs {[i.name for i in graph.input]}")
    graph.output[0].name = _rename_output(graph, graph.output[0].name, "probabilities")
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _rename_output(graph, old: str, new: str) -> str:
    for node in graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
    return new


def load_saved_model(folder: Path):
    """`tf.saved_model.load(folder)`; a folder TensorFlow cannot load is one `UserError` line.

    Keep the returned object alive while its functions are used: they reference its variables
    weakly.
    """
    import tensorflow as tf

    try:
        return tf.saved_model.load(str(folder))
    except (OSError, ValueError, tf.errors.OpError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{folder}: cannot load the SavedModel ({first})") from None


def load(path: Path, fmt: str):
    """The file at `path` loaded in the runtime of `fmt`, as a function: float32 pixels
    [batch, S, S, 3] -> probabilities [batch, classes]."""
    import numpy as np

    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda pixels: session.run(None, {"images": np.asarray(pixels, np.float32)})[0]
    if fmt == "litert":
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_path=str(path)).get_signature_runner()
        # One input, one output: the names are the converter's, whatever they are.
        (name,) = runner.get_input_details()
        return lambda pixels: next(iter(runner(**{name: np.asarray(pixels, np.float32)}).values()))
    raise ValueError(f"no runtime for {fmt!r}")


def check(model, path: Path, fmt: str, seed: int = 0) -> float:
    """Largest |runtime - Keras| probability on a seeded batch of random 0-255 pixels."""
    import numpy as np

    size = tuple(model.inputs[0].shape[1:])
    pixels = np.random.default_rng(seed).uniform(0, 255, (CHECK_IMAGES, *size)).astype(np.float32)
    expected = np.asarray(model.predict_on_batch(pixels))
    return float(np.max(np.abs(load(path, fmt)(pixels) - expected)))
