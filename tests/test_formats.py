"""ONNX and LiteRT exports: each file, run in a fresh process with only its runtime, gives the
SavedModel's probabilities; the contract beside it; a missing runtime is one line, exit 2."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from helpers import cli, run_isolated
from PIL import Image

from keras_googlenet.serving import formats

# Each runs in an isolated interpreter (-I: no PYTHONPATH, no current folder) started outside
# the repository, and proves at the end that TensorFlow was never imported.
FRESH = {
    "onnx": r"""
import sys
import numpy as np
import onnxruntime

session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
print("inputs:", [i.name for i in session.get_inputs()])
out = session.run(None, {"images": np.load(sys.argv[2])})[0]
""",
    "litert": r"""
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter

runner = Interpreter(model_path=sys.argv[1]).get_signature_runner()
(name,) = runner.get_input_details()
out = next(iter(runner(**{name: np.load(sys.argv[2])}).values()))
""",
}
TAIL = r"""
np.save(sys.argv[3], out)
heavy = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "keras_googlenet")]
print("heavy modules:", heavy)
"""


def _val_pixels(run, count: int = 6) -> np.ndarray:
    """float32 [N, 72, 72, 3]: the run's first validation images, center-cropped as validation
    does (the 72 of 80): the contract's input."""
    data = run.parent / "data"
    with open(data / "val.csv") as f:
        names = [row["image"] for row in csv.DictReader(f)][:count]
    images = np.stack([np.asarray(Image.open(data / "val" / n).convert("RGB")) for n in names])
    return images[:, 4:76, 4:76, :].astype(np.float32)


@pytest.fixture(scope="module")
def saved_model_probabilities(tiny_run, tiny_export, tmp_path_factory):
    """(pixels file, the SavedModel's `serve` probabilities on them)."""
    import tensorflow as tf

    pixels = _val_pixels(tiny_run)
    path = tmp_path_factory.mktemp("pixels") / "pixels.npy"
    np.save(path, pixels)
    loaded = tf.saved_model.load(str(tiny_export))  # kept: its functions need its variables
    return path, loaded.serve(tf.constant(pixels))["probabilities"].numpy()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "litert"])
def test_format_matches_saved_model_in_fresh_process(
    fmt, tiny_run, saved_model_probabilities, tmp_path
):
    out = tmp_path / fmt
    assert cli("export", "--run-dir", tiny_run, "--output", out, "--format", fmt) == 0
    name = formats.FILE_NAMES[fmt]
    assert sorted(p.name for p in out.iterdir()) == sorted(["export.json", "labels.txt", name])

    pixels, expected = saved_model_probabilities
    result = tmp_path / "out.npy"
    done = run_isolated(FRESH[fmt] + TAIL, out / name, pixels, result, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "heavy modules: []" in done.stdout
    got = np.load(result)
    assert got.shape == expected.shape == (6, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    # Shown with `pytest -s`: the number the README quotes.
    print(f"{fmt}: largest difference from the SavedModel {np.abs(got - expected).max():.2g}")

    # The contract beside the file: what to feed it, and the classes.
    info = json.loads((out / "export.json").read_text())
    facts = json.loads((tiny_run / "dataset.json").read_text())
    contract = info["input_contract"]
    assert contract["input"].startswith("float32 [batch, 72, 72, 3]")
    assert contract["mean_rgb"] == pytest.approx(facts["mean_rgb"])
    assert contract["std_rgb"] == 58.0
    assert any("center crop 72x72" in step for step in contract["steps"])
    assert info["class_names"] == ["class0", "class1", "class2"]
    assert (out / "labels.txt").read_text().split() == info["class_names"]
    assert info["file"] == name and info["max_abs_difference_from_keras"] <= 1e-4

    # The file itself on every validation image, beside its checkpoint: the report's section.
    report = tmp_path / "eval"
    assert cli("evaluate", "--run-dir", tiny_run, "--export", out, "--output", report) == 0
    e = json.loads((report / "metrics.json").read_text())["export"]
    assert e["format"] == fmt and e["same_checkpoint"] and e["temperature"] is None
    assert e["images"] == 12 and e["max_abs_difference"] <= 1e-4
    assert e["disagreements"] == e["disagreements_at_ties"]  # only a near-tie may flip
    assert f"{out.resolve()}" in (report / "report.html").read_text()


def test_missing_runtime_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    real = formats.importlib.util.find_spec
    monkeypatch.setattr(
        formats.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime" else real(name, *a),
    )
    code = cli("export", "--run-dir", tmp_path, "--output", tmp_path / "e", "--format", "onnx")
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "onnxruntime" in err and "--format onnx" in err
    assert not (tmp_path / "e").exists()


def test_unknown_format_is_refused(tmp_path, capsys):
    assert (
        cli("export", "--run-dir", tmp_path, "--output", tmp_path / "e", "--format", "coreml") == 2
    )
    assert "--format" in capsys.readouterr().err


def test_contract_states_the_models_normalization():
    from keras_googlenet.config import load_config
    from keras_googlenet.serving.export import input_contract
    from keras_googlenet.serving.graph import ServingSpec
    from keras_googlenet.training.compile import input_normalization

    for overrides, mean, std in (
        ([], [120.0, 110.0, 100.0], 58.0),
        (["model.input_scaling=minus_one_one"], [127.5] * 3, 127.5),  # imported ImageNet weights
    ):
        config = load_config(None, overrides)
        spec = ServingSpec.from_config(config, ["a", "b"])
        contract = input_contract(spec, *input_normalization(config, (120.0, 110.0, 100.0)))
        assert contract["mean_rgb"] == mean and contract["std_rgb"] == std
        assert contract["steps"][-1] == "center crop 224x224"
        assert contract["output"].startswith("float32 [batch, 2]")
