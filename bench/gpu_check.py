"""The GPU check: is this machine's distribution x precision x XLA matrix sound, how fast does it
train, and can the input pipeline feed it. One table, in a few minutes.

    bench/gpu_check.sh            # on a machine with one or more GPUs
    bench/gpu_check.sh --cpu      # the same checks on 2 logical CPUs, tiny sizes (CI runs it)
    .venv/bin/python bench/gpu_check.py [--cpu] [--json FILE] [--sections matrix,train,...]

Sections:
    matrix    the production model (fused batch norm, both aux heads, loss weights 1/0.3/0.3,
              dropout off so two runs can agree) trained a few steps in each cell of
              {one device, MirroredStrategy over every device} x {float32, mixed_float16,
              mixed_bfloat16} x {jit_compile off, on}. Each mirrored cell gets the same global
              batch as the one-device cell, made of one per-replica batch repeated once per
              replica, so each replica's batch-norm statistics are the whole batch's and the
              two must agree: loss, weight update, moving statistics (TOLERANCE). A cell the
              config checks refuse (config/checks.py) is run anyway, to tell whether the
              refusal is still needed.
    train     training images/s of one device per precision (jit off and on), synthetic
              batches already in memory: the model's rate, not the input's.
    pipeline  the training input pipeline at 224 px (bench/pipeline.py): images/s and images
              per CPU-second, decoding every image (a first epoch) and from the decoded-image
              cache (later epochs).
    scaling   training images/s under MirroredStrategy over 1, 2, 4 ... devices at the same
              per-device batch: how far it is from linear.
With --cpu, train and scaling reuse the matrix's compiled models (same sizes), so the dry run
compiles each cell once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
SECTIONS = ("matrix", "train", "pipeline", "scaling")
# Mirrored against one device, per policy: the first step's loss (relative difference), the
# weight update (||update_mirrored - update_one|| / ||update_one|| over every trainable
# variable) and the batch-norm moving statistics (largest difference / largest change).
# float32 differs only by the order of float sums (amplified by batch norm's backward pass at
# the deep layers' 3x3 maps: 1.4e-2 seen in the update). A 16-bit step rounds differently at
# other batch shapes (one device's 16 images against each replica's 8), so its update is held
# to "noise": no further from one device's than one device's is from float32's update.
# A 16-bit loss is held to 4 units of its format's precision (float16 2^-10, bfloat16 2^-7):
# on an AMD EPYC, which emulates float16, the mirrored loss was 4.3e-5 away; on an Intel Xeon
# with AVX512_FP16, which computes it natively, 2.1e-3 (about 2 units).
TOLERANCE = {
    "float32": {"loss": 1e-5, "update": 0.05, "moving_stats": 1e-3},
    "mixed_float16": {"loss": 4 * 2.0**-10, "update": "noise", "moving_stats": 0.01},
    "mixed_bfloat16": {"loss": 4 * 2.0**-7, "update": "noise", "moving_stats": 0.05},
}


@dataclass(frozen=True)
class Sizes:
    """What each section runs at."""

    matrix_size: int  # the matrix: input px, per-replica batch, classes, compared steps
    matrix_batch: int
    classes: int
    steps: int
    train_size: int  # train / scaling: input px, per-device batch, timed and warm-up steps
    train_batch: int
    timed_steps: int
    warmup_steps: int
    pipeline_size: int  # pipeline: crop px, JPEGs generated, batch, timed batches
    pipeline_images: int
    pipeline_batch: int
    pipeline_batches: int


GPU = Sizes(65, 8, 3, 1, 224, 128, 20, 5, 224, 2048, 128, 12)
# --cpu: train and scaling run at the matrix's sizes (one device: its global batch of 16), so
# they reuse its compiled models; only scaling's 2 x 16 compiles again. One timed step: a CPU's
# rates only show the rows run (float16 trains at under 1 image/s on an AVX512_FP16 Xeon).
CPU = Sizes(65, 8, 3, 1, 65, 16, 1, 0, 224, 48, 8, 3)


def devices(cpu: bool) -> list[str]:
    """The devices the checks run on: every GPU, or 2 logical CPUs with --cpu (set up first)."""
    import tensorflow as tf

    if cpu:
        cpu0 = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu0, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        return ["/cpu:0", "/cpu:1"]
    return [f"/gpu:{i}" for i in range(len(tf.config.list_logical_devices("GPU")))]


class Info:
    """The dataset facts `build_model` needs, for a synthetic dataset."""

    def __init__(self, classes: int):
        self.class_names = tuple(f"class{i}" for i in range(classes))
        self.mean_rgb = (120.0, 110.0, 100.0)


class Models:
    """Compiled production models, keyed by what they were compiled for, so that sections at
    the same sizes share one compilation (the dry run's budget is compile time)."""

    def __init__(self, strategies):
        self.strategies = strategies  # devices tuple -> strategy: one object per device set
        self.cache = {}

    def strategy(self, devs: tuple[str, ...]):
        import tensorflow as tf

        if devs not in self.strategies:
            self.strategies[devs] = tf.distribute.MirroredStrategy(list(devs))
        return self.strategies[devs]

    def get(self, devs, policy, jit, size, classes, weights=None):
        """(model, refusal or None): the config checks' refusal is noted, not obeyed."""
        import keras

        from keras_googlenet.config import load_config
        from keras_googlenet.config.checks import runtime_refusal
        from keras_googlenet.training.compile import build_model, compile_model
        from keras_googlenet.training.precision import precision_policy

        key = (devs, policy, jit, size, classes)
        if key in self.cache:
            return self.cache[key]
        strategy = self.strategy(devs) if devs else None
        cfg = load_config(
            None,
            [
                f"model.input_size={size}",
                "model.dropout=0",
                "model.aux_dropout=0",
                f"runtime.precision={policy}",
                "optimizer.lr=0.01",
            ],
        )
        replicas = strategy.num_replicas_in_sync if strategy else 1
        kinds = [d.split(":")[0].strip("/").upper() for d in devs]
        refusal = runtime_refusal(policy, jit, "mirrored" if strategy else "default", kinds)
        with precision_policy(policy):
            keras.utils.set_random_seed(0)
            if strategy is None:
                model = compile_model(build_model(cfg, Info(classes)), cfg)
            else:
                with strategy.scope():
                    model = compile_model(build_model(cfg, Info(classes)), cfg)
            # jit set after compile: a refused cell still runs, to see whether it must be.
            model.jit_compile = jit
            if weights is not None:
                model.set_weights(weights)
        self.cache[key] = (model, refusal, replicas)
        return self.cache[key]


def synthetic(size: int, per_replica: int, replicas: int, classes: int, seed: int = 0):
    """(images, labels): one per-replica batch repeated `replicas` times (see `matrix`)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (per_replica, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, classes, per_replica).astype("int32")
    x, y = np.concatenate([x] * replicas), np.concatenate([y] * replicas)
    return x, {"main": y, "aux_4a": y, "aux_4d": y}


def run_steps(model, batch, steps: int, policy: str):
    """Trains `steps` steps on `batch`; (first step's loss, seconds of the steps after it: the
    first holds the compilation)."""
    import keras
    import tensorflow as tf

    from keras_googlenet.training.precision import precision_policy

    ends, losses = [], []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())
            losses.append(logs["loss"])

    with precision_policy(policy):
        model.fit(tf.data.Dataset.from_tensors(batch).repeat(steps), verbose=0, callbacks=[Clock()])
    return float(losses[0]), (ends[-1] - ends[0]) if len(ends) > 1 else None


def variables(model):
    """{path: numpy value} of the trainable variables and the batch-norm moving statistics."""
    return {v.path: np.array(v.numpy(), np.float64) for v in model.weights}


def update(before, after, trainable):
    """The step's change of every trainable variable, as one vector."""
    return np.concatenate([(after[k] - before[k]).ravel() for k in trainable])


def compare(one_before, one_after, mir_after, trainable, loss_one, loss_mir, ref) -> dict:
    """The mirrored cell against the one-device cell (see TOLERANCE); `ref`: float32's update
    on one device (None for float32 itself)."""
    update_one = update(one_before, one_after, trainable)
    update_mir = update(one_before, mir_after, trainable)
    moving = [k for k in one_before if "moving_" in k]
    change = max(float(np.max(np.abs(one_after[k] - one_before[k]))) for k in moving)
    diff = max(float(np.max(np.abs(mir_after[k] - one_after[k]))) for k in moving)
    norm = float(np.linalg.norm(update_one))
    gap = float(np.linalg.norm(update_mir - update_one))
    return {
        "loss": abs(loss_mir - loss_one) / abs(loss_one),
        # Both skipped (a float16 overflow at the initial scale): equal, no update to compare.
        "update": gap / norm if norm else (0.0 if gap == 0 else float("inf")),
        "update_norm": norm,
        "moving_stats": diff / change if change else None,
        "noise": (
            float(np.linalg.norm(update_one - ref) / np.linalg.norm(ref))
            if ref is not None and norm
            else None
        ),
    }


def matrix(models: Models, devs: list[str], s: Sizes, jits=(False, True)) -> list[dict]:
    """Every cell's result: ok / failed (with the error's first line), refused or not, and
    against one device where both ran."""
    cells = []
    mirrored = tuple(devs)
    replicas = models.strategy(mirrored).num_replicas_in_sync
    batch = synthetic(s.matrix_size, s.matrix_batch, replicas, s.classes)
    reference = {}  # jit -> float32's one-device update
    for policy in POLICIES:
        for jit in jits:
            one_cell = _cell(models, (), policy, jit, s, batch, None)
            cells.append(one_cell)
            mir_cell = _cell(models, mirrored, policy, jit, s, batch, one_cell.get("_weights"))
            cells.append(mir_cell)
            if one_cell["result"] == "ok" and policy == "float32":
                reference[jit] = update(
                    one_cell["_before"], one_cell["_after"], one_cell["_trainable"]
                )
            if one_cell["result"] == "ok" and mir_cell["result"] == "ok":
                got = compare(
                    one_cell["_before"],
                    one_cell["_after"],
                    mir_cell["_after"],
                    one_cell["_trainable"],
                    one_cell["loss"],
                    mir_cell["loss"],
                    reference.get(jit) if policy != "float32" else None,
                )
                mir_cell["vs_one_device"] = got
                mir_cell["within_tolerance"] = within_tolerance(got, TOLERANCE[policy])
            for cell in (one_cell, mir_cell):
                for key in ("_before", "_after", "_trainable", "_weights"):
                    cell.pop(key, None)
    return cells


def within_tolerance(got: dict, limits: dict) -> bool:
    """Whether a comparison is within `limits` ("noise": the policy's distance from float32;
    a step skipped on both sides has no update and passes that one)."""
    for key, limit in limits.items():
        if limit == "noise":
            limit = got["noise"] if got["noise"] is not None else 0.0
        if got[key] is None or got[key] > limit:
            return False
    return True


def _cell(models, devs, policy, jit, s, batch, weights) -> dict:
    cell = {
        "strategy": f"mirrored x{len(devs)}" if devs else "one device",
        "policy": policy,
        "jit_compile": jit,
    }
    start = time.perf_counter()
    try:
        model, refusal, _ = models.get(devs, policy, jit, s.matrix_size, s.classes, weights)
        cell["refused"] = refusal
        before, cell["_weights"] = variables(model), model.get_weights()
        loss, _ = run_steps(model, batch, s.steps, policy)
        after = variables(model)
        cell.update(result="ok", loss=loss, _before=before, _after=after)
        cell["_trainable"] = [v.path for v in model.trainable_variables]
        cell["steps_applied"] = int(np.array(model.optimizer.iterations.numpy()))
        scale = getattr(model.optimizer, "dynamic_scale", None)
        cell["loss_scale"] = float(np.array(scale.numpy())) if scale is not None else None
        cell["finite"] = bool(np.all([np.all(np.isfinite(v)) for v in after.values()]))
    except Exception as e:  # a cell that cannot run is a result, not the end of the check
        first = (str(e).strip().splitlines() or [""])[0]
        cell.update(result="failed", error=f"{type(e).__name__}: {first[:200]}")
        cell.setdefault("refused", None)
    cell["seconds"] = round(time.perf_counter() - start, 1)
    return cell


def train_rates(models: Models, s: Sizes, jits=(False, True)) -> list[dict]:
    """Images/s of one device per precision and jit setting."""
    rows = []
    for policy in POLICIES:
        for jit in jits:
            rows.append(_rate(models, (), policy, jit, s, 1))
    return rows


def scaling(models: Models, devs: list[str], s: Sizes, policy: str, jit: bool) -> list[dict]:
    """Images/s over 1, 2, 4 ... devices (and all of them), same per-device batch."""
    counts = sorted({n for n in (1, 2, 4, 8) if n <= len(devs)} | {len(devs)})
    rows = [_rate(models, tuple(devs[:n]) if n > 1 else (), policy, jit, s, n) for n in counts]
    base = rows[0].get("images_per_s")
    for row in rows:
        rate = row.get("images_per_s")
        row["per_device_vs_one"] = rate / row["devices"] / base if rate and base else None
    return rows


def _rate(models, devs, policy, jit, s, n) -> dict:
    row = {"policy": policy, "jit_compile": jit, "devices": n, "batch": s.train_batch * n}
    try:
        model, refusal, replicas = models.get(devs, policy, jit, s.train_size, s.classes)
        batch = synthetic(s.train_size, s.train_batch, replicas, s.classes, seed=1)
        steps = s.warmup_steps + s.timed_steps + 1
        _, seconds = run_steps(model, batch, steps, policy)
        row["images_per_s"] = (steps - 1) * s.train_batch * replicas / seconds
        row["refused"] = refusal
    except Exception as e:
        row["error"] = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
    return row


def pipeline_rates(s: Sizes) -> list[dict]:
    """bench/pipeline.py's decoding and cached variants at `s.pipeline_size`."""
    sys.path.insert(0, str(REPO / "bench"))
    import pipeline

    root = pipeline.make_dataset(
        pipeline.CACHE / f"pipeline_{s.pipeline_images}", s.pipeline_images
    )
    rows = []
    for variant in ("default", "cached"):
        rate, per_cpu = pipeline.measure(variant, root, s.pipeline_batches, 1, s.pipeline_batch)
        rows.append({"variant": variant, "images_per_s": rate, "images_per_cpu_s": per_cpu})
    return rows


def table(report: dict) -> str:
    """The report as one plain-text table."""
    lines = [f"{report['machine']}", f"{'section':<9} {'cell':<50} result"]
    for c in report.get("matrix", []):
        name = f"{c['strategy']}, {c['policy']}, jit {'on' if c['jit_compile'] else 'off'}"
        if c["result"] == "ok":
            text = f"ok, loss {c['loss']:.4f}, {c['steps_applied']}/{report['sizes']['steps']} "
            text += "steps applied"
            if c.get("loss_scale"):
                text += f", scale {c['loss_scale']:g}"
            v = c.get("vs_one_device")
            if v:
                text += "; vs one device: loss {:.1e}, update {}{}, moving stats {} -> {}".format(
                    v["loss"],
                    _num(v["update"]),
                    f" (float32's: {_num(v['noise'])})" if v["noise"] is not None else "",
                    _num(v["moving_stats"]),
                    "within tolerance" if c["within_tolerance"] else "OUT OF TOLERANCE",
                )
        else:
            text = c["error"]
        if c.get("refused"):
            still = "still needed" if c["result"] != "ok" else "NOT needed here: it ran"
            text += f" [refused by the config checks; the refusal is {still}]"
        lines.append(f"{'matrix':<9} {name:<50} {text}")
    for section in ("train", "scaling"):
        for r in report.get(section, []):
            jit = "on" if r["jit_compile"] else "off"
            name = f"{r['devices']} device(s), {r['policy']}, jit {jit}, batch {r['batch']}"
            if "error" in r:
                text = r["error"]
            else:
                text = f"{r['images_per_s']:,.0f} images/s"
                if r.get("per_device_vs_one") is not None:
                    text += f", {r['per_device_vs_one']:.0%} of one device's rate per device"
                if r.get("refused"):
                    text += " (a combination the config checks refuse)"
            lines.append(f"{section:<9} {name:<50} {text}")
    for r in report.get("pipeline", []):
        name = f"{r['variant']} ({'cache' if r['variant'] == 'cached' else 'decoding'}), 224 px"
        text = f"{r['images_per_s']:,.0f} images/s, {r['images_per_cpu_s']:,.0f} per CPU-second"
        lines.append(f"{'pipeline':<9} {name:<50} {text}")
    return "\n".join(lines)


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.1e}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="2 logical CPUs, tiny sizes")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=",".join(SECTIONS))
    parser.add_argument("--json", help="also write the report here")
    parser.add_argument(
        "--jit",
        choices=("both", "off", "on"),
        default="both",
        help="jit_compile settings to run (on a CPU, XLA compiles GoogLeNet's step for minutes)",
    )
    args = parser.parse_args(argv)
    sections = [x.strip() for x in args.sections.split(",") if x.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    devs = devices(args.cpu)
    import tensorflow as tf

    if not devs:
        print("error: no GPU visible to TensorFlow; --cpu runs the checks on CPUs", file=sys.stderr)
        return 2
    s = CPU if args.cpu else GPU
    jits = {"both": (False, True), "off": (False,), "on": (True,)}[args.jit]
    report = {"machine": _machine(devs), "sizes": s.__dict__, "devices": devs}
    report["tolerance"] = TOLERANCE
    models = Models({})
    start = time.perf_counter()
    if "matrix" in sections:
        report["matrix"] = matrix(models, devs, s, jits)
    policy = _fast_policy()
    if "train" in sections:
        report["train"] = train_rates(models, s, jits)
    if "scaling" in sections:
        report["scaling"] = scaling(models, devs, s, policy, jit=False)
    if "pipeline" in sections:
        report["pipeline"] = pipeline_rates(s)
    report["seconds"] = round(time.perf_counter() - start, 1)
    print(table(report))
    print(f"{report['seconds']:.0f} s; TensorFlow {tf.__version__}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


def _fast_policy() -> str:
    """The policy `precision: auto` picks here (what scaling is measured with)."""
    from keras_googlenet.training.precision import choose_policy

    return choose_policy("auto")[0]


def _machine(devs) -> str:
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(f"{details.get('device_name', gpu.name)} {details.get('compute_capability')}")
    where = ", ".join(names) if names else f"{len(devs)} logical CPUs"
    return f"devices: {where}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}"


if __name__ == "__main__":
    raise SystemExit(main())
