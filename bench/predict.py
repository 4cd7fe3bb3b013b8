"""Export size and per-image prediction latency of the SavedModel at 224x224 (256 classes).

    .venv/bin/python bench/predict.py [--runs 30] [--warmup 5] [--threads 0]

Builds a 256-class GoogLeNet at 224 (random weights: latency does not depend on them), exports
it with `keras_googlenet.serving.export.export_model` to bench/.cache/, reloads it with
`tf.saved_model.load` and times batch-1 calls after warm-up:

    serve_images  a 256x256 uint8 image (a processed dataset file: crop only)
    serve_images  a 640x480 uint8 photo (center square, resize to 256, crop)
    serve_bytes   the same photo as JPEG bytes (decode in the graph)
    predict CLI   predict_files() on the JPEG file (Pillow decode + serve_images)

Then, per deployment format (`--formats savedmodel onnx litert`), batch-1 latency on the same
cropped float32 224x224 pixels (the SavedModel's `serve` endpoint, onnxruntime, the LiteRT
interpreter), the file's size and the largest difference from the SavedModel's probabilities.

Prints the median and 90th percentile in milliseconds, images/s from the median, the export's
size on disk and the peak resident memory of this process.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def timed(fn, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="TF intra-op threads (0: all)")
    parser.add_argument(
        "--formats", nargs="*", default=["savedmodel", "onnx", "litert"], help="formats to compare"
    )
    args = parser.parse_args()

    import tensorflow as tf
    from PIL import Image

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    from keras_googlenet.model.googlenet import build_googlenet, inference_model
    from keras_googlenet.serving.export import export_model, folder_size
    from keras_googlenet.serving.graph import ServingSpec
    from keras_googlenet.serving.predict import load_predictor, predict_files

    cache = REPO / "bench" / ".cache" / "predict"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    names = tuple(f"category-{i:03d}" for i in range(256))
    model = build_googlenet(256, (224, 224, 3), mean_rgb=(138.0, 133.0, 125.0), std_rgb=58.0)

    start = time.perf_counter()
    export = export_model(inference_model(model), ServingSpec(224, 256, True, names), cache / "e")
    export_s = time.perf_counter() - start
    size = folder_size(export)
    saved_model = size - (export / "model.keras").stat().st_size

    loaded = tf.saved_model.load(str(export))
    rng = np.random.default_rng(0)
    square = tf.constant(rng.integers(0, 256, (1, 256, 256, 3), dtype=np.uint8))
    photo = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=90)
    jpeg = buffer.getvalue()
    (cache / "photo.jpg").write_bytes(jpeg)
    photo_t = tf.constant(photo[None])
    jpeg_t = tf.constant([jpeg])
    predictor = load_predictor(str(export))

    cases = {
        "serve_images 256x256": lambda: loaded.serve_images(square)["probabilities"].numpy(),
        "serve_images 640x480": lambda: loaded.serve_images(photo_t)["probabilities"].numpy(),
        "serve_bytes JPEG 640x480": lambda: loaded.serve_bytes(jpeg_t)["probabilities"].numpy(),
        "predict_files JPEG 640x480": lambda: predict_files(predictor, [cache / "photo.jpg"]),
    }
    print(
        f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, batch 1, {args.runs} runs after "
        f"{args.warmup} warm-up, GoogLeNet 224x224, 256 classes"
    )
    print(
        f"export: {size / 2**20:.1f} MiB on disk ({saved_model / 2**20:.1f} MiB SavedModel + "
        f"{(size - saved_model) / 2**20:.1f} MiB model.keras), written in {export_s:.1f} s"
    )
    print(f"{'case':<28} {'median ms':>10} {'p90 ms':>8} {'images/s':>9}")
    for name, fn in cases.items():
        times = sorted(timed(fn, args.runs, args.warmup))
        median = statistics.median(times)
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        print(f"{name:<28} {median * 1e3:>10.1f} {p90 * 1e3:>8.1f} {1 / median:>9.1f}")
    compare_formats(args, inference_model(model), names, loaded, cache)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"peak memory (RSS): {peak:.0f} MiB; load average (1, 5, 15 min): {load}")


def compare_formats(args, model, names, loaded, cache: Path) -> None:
    """Latency, size and largest difference from the SavedModel of each deployment format."""
    import tensorflow as tf

    from keras_googlenet.serving import formats
    from keras_googlenet.serving.export import export_model, folder_size
    from keras_googlenet.serving.graph import ServingSpec

    pixels = np.random.default_rng(1).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    reference = loaded.serve(tf.constant(pixels))["probabilities"].numpy()
    print(
        f"\n{'format (batch 1, 224 px)':<28} {'median ms':>10} {'p90 ms':>8} {'MiB':>7} "
        f"{'max diff':>9}"
    )
    for fmt in args.formats:
        if fmt == "savedmodel":
            size = folder_size(cache / "e") - (cache / "e" / "model.keras").stat().st_size

            def call():
                return loaded.serve(tf.constant(pixels))["probabilities"].numpy()
        else:
            out = export_model(model, ServingSpec(224, 256, True, names), cache / fmt, fmt=fmt)
            path = out / formats.FILE_NAMES[fmt]
            size = path.stat().st_size
            run = formats.load(path, fmt)

            def call(run=run):
                return run(pixels)

        diff = float(np.max(np.abs(call() - reference)))
        times = sorted(timed(call, args.runs, args.warmup))
        median = statistics.median(times)
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        print(
            f"{fmt:<28} {median * 1e3:>10.1f} {p90 * 1e3:>8.1f} {size / 2**20:>7.1f} {diff:>9.2g}"
        )


if __name__ == "__main__":
    main()
