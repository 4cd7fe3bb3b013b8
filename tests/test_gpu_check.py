"""bench/gpu_check.sh --cpu, the GPU check's dry run on 2 logical CPUs: the production model
(fused batch norm, both aux heads, loss weights 1/0.3/0.3) trained under {one device,
MirroredStrategy over 2 CPUs} x {float32, mixed_float16, mixed_bfloat16}, each mirrored cell
equal to one device at the same global batch within the check's stated tolerance; then the
training, scaling and input-pipeline rows of the same table.

XLA is off here: compiling GoogLeNet's training step with XLA on this CPU takes 1.5 to 3.5
minutes per cell. The XLA cells are tested elsewhere: mirrored + XLA is refused by the config
checks (tests/test_compile.py), one device + XLA gives the plain step's loss
(tests/test_compile.py); `bench/gpu_check.sh --cpu` runs all twelve (bench/README.md).
"""

from __future__ import annotations

import json
import math
import subprocess

import pytest
from helpers import REPO
from test_strategy import _env

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "report.json"
    proc = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), "--cpu", "--jit", "off", "--json", out],
        cwd=REPO,
        env={**_env(), "PYTHON": __import__("sys").executable},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.slow
def test_mirrored_equals_one_device_in_every_precision(report):
    report, _ = report
    cells = {(c["strategy"], c["policy"]): c for c in report["matrix"]}
    assert len(cells) == 6
    for policy in POLICIES:
        one, mirrored = cells[("one device", policy)], cells[("mirrored x2", policy)]
        for cell in (one, mirrored):
            assert cell["result"] == "ok", cell
            assert cell["finite"] and cell["refused"] is None
        assert mirrored["steps_applied"] == one["steps_applied"]
        assert mirrored["loss_scale"] == one["loss_scale"]
        limits, got = report["tolerance"][policy], mirrored["vs_one_device"]
        for key, limit in limits.items():
            # "noise": no further from one device than one device is from float32
            bound = (got["noise"] or 0.0) if limit == "noise" else limit
            assert got[key] <= bound, (policy, key, got)
        assert mirrored["within_tolerance"]
    # Only mixed_float16 scales its loss; its first step at Keras's initial scale is compared
    # whether it was applied or skipped.
    assert cells[("one device", "mixed_float16")]["loss_scale"] in (2.0**15, 2.0**14)
    assert cells[("one device", "float32")]["loss_scale"] is None
    # float32 applied its step: the update compared is a real one.
    assert cells[("mirrored x2", "float32")]["vs_one_device"]["update_norm"] > 0


@pytest.mark.slow
def test_the_dry_run_prints_every_section(report):
    report, stdout = report
    assert {(r["policy"], r["devices"]) for r in report["train"]} == {(p, 1) for p in POLICIES}
    assert [r["devices"] for r in report["scaling"]] == [1, 2]
    assert [r["variant"] for r in report["pipeline"]] == ["default", "cached"]
    for row in report["train"] + report["scaling"] + report["pipeline"]:
        assert math.isfinite(row["images_per_s"]) and row["images_per_s"] > 0, row
    lines = stdout.splitlines()
    assert sum(line.startswith("matrix ") for line in lines) == 6
    assert sum(line.startswith("train ") for line in lines) == 3
    assert sum(line.startswith("scaling ") for line in lines) == 2
    assert sum(line.startswith("pipeline ") for line in lines) == 2
    assert "OUT OF TOLERANCE" not in stdout and "within tolerance" in stdout
