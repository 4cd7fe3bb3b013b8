"""Evaluate a run's checkpoint on the validation CSV (or any CSV of the same format).

    keras-googlenet evaluate --run-dir runs/NAME [--checkpoint best|last|PATH] [--csv CSV]
        [--calibrate] [--crops 1|10|144 [--originals DIR]] [--export DIR]

Uses the inference model (main head) of the checkpoint, in float32, on the deterministic
validation pipeline (center crop). Writes to `RUN/eval/<checkpoint>-<csv>/` (or `--output`):

    metrics.json          top-1, top-5, loss, mean per-class accuracy, macro and weighted
                          precision/recall/F1, calibration (ECE, NLL), most-confused pairs
    per_class.csv         id, label, count, correct, accuracy, top5_accuracy, precision,
                          recall, f1
    predictions.csv       per image: file, class, predicted class, its probability, the true
                          class's probability (sort it to find the worst mistakes)
    confusion.csv         counts, rows = true class, columns = predicted class
    confusion.png         the row-normalized matrix beside the list of most-confused pairs
    reliability.png       accuracy per confidence bin (before and after the temperature)
    worst.png             the most confidently wrong images (also in tensorboard/, as an image)
    confused_pairs.png    the most-confused pairs: mistakes beside right images of the class
                          they were taken for
    curves.png            the training curves from the run's history.csv
    report.html           one page of all of it (report.py)

`--calibrate` also fits a temperature on the validation set and saves it in
`RUN/calibration.json` (see calibration.py); a saved temperature of the same checkpoint is
applied to the "calibrated" numbers of every later evaluation. `--crops 10|144` averages the
softmax over the paper's test-time crops (crops.py) and writes to `...-<N>crop/`. `--export DIR`
runs an export of the checkpoint on the same images and reports where the two agree
(export_agreement.py).

Evaluating again overwrites these files (each is written atomically): they are a report of the
checkpoint, not a result to protect.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from pathlib import Path

import numpy as np

from keras_googlenet.atomic import atomic_write_bytes, atomic_write_text
from keras_googlenet.config import apply_overrides, require
from keras_googlenet.errors import UserError
from keras_googlenet.evaluation import calibration, crops, export_agreement, gallery
from keras_googlenet.evaluation.confusion_plot import plot_confusion
from keras_googlenet.evaluation.metrics import summarize
from keras_googlenet.evaluation.report import write_report
from keras_googlenet.serving import temperature as temperature_file
from keras_googlenet.training.checkpoints import (
    float32_inference_model,
    load_checkpoint,
    open_run,
    pick_checkpoint,
    run_config,
    run_dataset_facts,
)

log = logging.getLogger(__name__)


def predict_dataset(
    model, dataset, num_batches: int | None, also=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(outputs [N, C], labels [N], also's outputs [N, C] or None) over a dataset of
    (images, {"main": labels}[, weights]).

    `also`: another function of the same float32 pixels (an export, see export_agreement.py),
    run on the same batches. Rows of weight 0 (the validation pipeline's padding) are left out.
    """
    from tqdm import tqdm

    probs, labels, others = [], [], []
    for images, y, *weights in tqdm(dataset, total=num_batches, desc="evaluate", unit="batch"):
        real = np.asarray(weights[0]) > 0 if weights else slice(None)
        probs.append(np.asarray(model.predict_on_batch(images), dtype=np.float32)[real])
        labels.append(np.asarray(y["main"] if isinstance(y, dict) else y).reshape(-1)[real])
        if also is not None:
            others.append(np.asarray(also(np.asarray(images, np.float32)), np.float32)[real])
    if not probs:
        raise UserError("no image could be read from the CSV")
    labels = np.concatenate(labels).astype(np.int64)
    return np.concatenate(probs), labels, (np.concatenate(others) if others else None)


def _csv_rows(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _resolve_csv(csv_arg: str | None, config) -> tuple[Path, Path]:
    """The CSV to evaluate and the folder its images are in."""
    d = config.data
    if csv_arg is None:
        require(config, "data.input_dir", source="the run's config (give --csv)")
    root = Path(d.input_dir or ".").expanduser()  # a quick-check run has no dataset folder
    if csv_arg is None:
        return root / d.valid_csv, root / d.valid_dir  # absolute config paths stay absolute
    path = Path(csv_arg)
    if not path.is_file():
        path = root / csv_arg
    if not path.is_file():
        raise UserError(f"{csv_arg}: CSV not found (looked here and in {root})")
    # train.csv's images are in train/, val.csv's in val/: the folder named like the CSV beside
    # it, if there is one, else data.valid_dir.
    beside = path.with_suffix("")
    image_dir = beside if beside.is_dir() else root / d.valid_dir
    return path, image_dir


def _prediction_rows(files, labels, probabilities, class_names) -> list[dict]:
    """One row per image: what it is, what the model said, how sure it was."""
    rows = []
    for file, label, p in zip(files, labels, probabilities, strict=True):
        predicted = int(p.argmax())
        rows.append(
            {
                "image": Path(file).name,
                "class": int(label),
                "label": class_names[label],
                "predicted": predicted,
                "predicted_label": class_names[predicted],
                "probability": float(f"{p[predicted]:.6g}"),
                "true_probability": float(f"{p[label]:.6g}"),
            }
        )
    return rows


def evaluate_run(
    run,
    *,
    checkpoint: str = "best",
    csv_path: str | None = None,
    images_dir: str | None = None,
    output: str | None = None,
    batch_size: int | None = None,
    calibrate: bool = False,
    num_crops: int = 1,
    originals: str | None = None,
    export: str | None = None,
) -> dict:
    """Evaluates a checkpoint of a run and writes the report files.

    Args:
        run: the run folder.
        checkpoint: `best`, `last` or a `.keras` path.
        csv_path: a CSV (`image,class`) to evaluate instead of the run's validation CSV.
        images_dir: the folder of that CSV's images (default: the folder named like the CSV
            beside it, else `data.valid_dir`).
        output: where to write the report (default `RUN/eval/<checkpoint>-<csv>/`).
        batch_size: overrides `data.batch_size`.
        calibrate: fit a temperature on the validation set and save it in the run folder.
        num_crops: 1 (the centre crop), 10 or 144 test-time crops (see crops.py).
        originals: the folder of the original photos (144 crops; default
            `preprocess.source_dir`).
        export: an export folder of this checkpoint, run on the same images and compared
            (export_agreement.py).

    Returns:
        The metrics written to metrics.json, plus `output` (the report folder) and `report`
        (its report.html).
    """
    from keras_googlenet.data.dataset_info import read_dataset_info
    from keras_googlenet.data.pipeline import make_val_dataset, val_layout

    started = time.time()
    run = open_run(run)
    config = run_config(run)
    if num_crops not in crops.CROPS:
        raise UserError(
            f"--crops must be one of {', '.join(map(str, crops.CROPS))}, got {num_crops}"
        )
    if calibrate and num_crops != 1:
        raise UserError("--calibrate fits the single-crop model that export writes: drop --crops")
    if export is not None and num_crops != 1:
        raise UserError("--export compares the single-crop model that export writes: drop --crops")
    if calibrate and csv_path is not None:
        raise UserError("--calibrate fits the temperature on the run's validation set: drop --csv")
    csv_file, image_dir = _resolve_csv(csv_path, config)
    if calibrate and not csv_file.is_file():
        raise UserError(f"{csv_file}: --calibrate needs the run's validation set; it is not there")
    path = pick_checkpoint(run, checkpoint)
    exported = None if export is None else export_agreement.load_export(export)
    if images_dir is not None:
        image_dir = Path(images_dir)
        if not image_dir.is_dir():
            raise UserError(f"{images_dir}: image folder not found")
    # The CSV to evaluate takes the validation CSV's place, so the dataset check lists its files
    # (in order, bad ones left out) and the validation pipeline reads them.
    overrides = {
        "data.input_dir": str(Path(config.data.input_dir or csv_file.parent).expanduser()),
        "data.valid_csv": str(csv_file.resolve()),
        "data.valid_dir": str(image_dir.resolve()),
    }
    if batch_size is not None:
        overrides["data.batch_size"] = batch_size
    config = apply_overrides(config, overrides, "evaluate")
    # Class names and mean from the run folder: only the CSV and its images need to exist.
    class_names, mean_rgb = run_dataset_facts(run, config)
    info = read_dataset_info(config, class_names=class_names, mean_rgb=mean_rgb, splits=("val",))

    model = float32_inference_model(load_checkpoint(path))
    classes = model.output.shape[-1]
    if classes != info.num_classes:
        raise UserError(
            f"{path}: the model has {classes} classes but {info.input_dir} has {info.num_classes}"
        )
    if tuple(model.input.shape[1:3]) != (config.model.input_size,) * 2:
        raise UserError(
            f"{path}: the model takes {tuple(model.input.shape[1:3])} images but the run's "
            f"model.input_size is {config.model.input_size}"
        )
    size = config.model.input_size
    sources = None
    if num_crops == 144:  # before the slow part: the originals must all be there
        source_dir = originals or config.preprocess.source_dir
        sources = crops.original_photos(info.input_dir, info.val_files, source_dir)
    log.info("evaluating %s on %s", path, csv_file)
    n_rows = _count_rows(csv_file)
    if num_crops == 1:
        dataset = make_val_dataset(config, info)
        batches = val_layout(info.val_size, 1, config.data.batch_size).batches
        logits, labels, export_probabilities = predict_dataset(
            calibration.logits_model(model),
            dataset,
            batches,
            also=None if exported is None else exported.probabilities,
        )
    else:
        averaged = crops.predict_crops(model, info.val_files, num_crops, size, sources)
        labels = np.asarray(info.val_labels, dtype=np.int64)
        # log of the averaged softmax: logits whose softmax is that average
        logits = np.log(np.maximum(averaged, 1e-30))
    probabilities = calibration.softmax(logits).astype(np.float32)
    result = summarize(probabilities, labels, info.class_names)
    if calibrate:
        temperature = calibration.fit_temperature(logits, labels)
        fitted = calibration.summary(logits, labels, temperature)
        temperature_file.save_temperature(
            run.root, temperature, path, {"fitted_on": str(csv_file), **fitted}
        )
    elif num_crops == 1:
        temperature = temperature_file.saved_temperature(run.root, path)
    else:
        temperature = None  # fitted on single-crop logits: not those of an average of crops
    result["calibration"] = calibration.summary(logits, labels, temperature)
    if exported is not None:
        result["export"] = _export_agreement(exported, path, logits, export_probabilities)
    # Files that passed the dataset check but failed to decode are dropped by the pipeline;
    # then the rows can no longer be matched to file names.
    aligned = len(labels) == len(info.val_files) and list(labels) == list(info.val_labels)

    suffix = "" if num_crops == 1 else f"-{num_crops}crop"
    out = Path(output) if output else run.root / "eval" / f"{path.stem}-{csv_file.stem}{suffix}"
    out.mkdir(parents=True, exist_ok=True)
    title = f"{run.root.name} {path.name} on {csv_file.name}: top-1 {result['top1']:.1%}"
    confusion = result.pop("confusion")
    per_class = result.pop("per_class")
    png = plot_confusion(confusion, info.class_names, result["most_confused"][:40], title)
    atomic_write_bytes(out / "confusion.png", png)
    scaled = None if temperature is None else calibration.softmax(logits, temperature)
    png = calibration.plot_reliability(probabilities, labels, title, calibrated=scaled)
    atomic_write_bytes(out / "reliability.png", png)
    header = ",".join(["true\\predicted", *map(str, range(len(confusion)))])
    body = "\n".join(f"{i}," + ",".join(map(str, row)) for i, row in enumerate(confusion))
    atomic_write_text(out / "confusion.csv", f"{header}\n{body}\n")
    atomic_write_text(out / "per_class.csv", _csv_rows(per_class))
    if aligned:
        rows = _prediction_rows(info.val_files, labels, probabilities, info.class_names)
        atomic_write_text(out / "predictions.csv", _csv_rows(rows))
        _write_galleries(out, info, probabilities, labels, result["most_confused"])
    else:
        log.warning(
            "some images failed to decode: predictions.csv and the galleries are not written"
        )
    metrics = {
        "run": str(run.root.resolve()),
        "checkpoint": str(path.resolve()),
        "csv": str(csv_file.resolve()),
        "images_dir": str(image_dir.resolve()),
        "csv_rows": n_rows,
        "crops": num_crops,
        "protocol": crops.protocol(num_crops, size, config.preprocess.size),
        **result,
        "seconds": round(time.time() - started, 2),
    }
    if n_rows != result["num_images"]:
        log.warning(
            "%s: %d of %d images could not be read and were left out",
            csv_file,
            n_rows - result["num_images"],
            n_rows,
        )
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    report = write_report(out, metrics, per_class, run.history)
    return {**metrics, "output": str(out), "report": str(report)}


def _export_agreement(exported, checkpoint: Path, logits, probabilities) -> dict:
    """metrics.json's `export` entry: which export, and how closely it follows the checkpoint
    at the export's own temperature."""
    same = export_agreement.same_checkpoint(exported, checkpoint)
    if not same:
        log.warning(
            "%s was exported from %s, not from %s: the comparison is between two models",
            exported.folder,
            exported.info["checkpoint"],
            checkpoint,
        )
    reference = calibration.softmax(logits, exported.temperature or 1.0)
    return {
        "folder": str(exported.folder.resolve()),
        "format": exported.fmt,
        "temperature": exported.temperature,
        "same_checkpoint": same,
        **export_agreement.agreement(reference, probabilities),
    }


def _write_galleries(out: Path, info, probabilities, labels, pairs) -> None:
    """worst.png (and its TensorBoard image) and confused_pairs.png."""
    files, names = info.val_files, info.class_names
    worst = gallery.worst_mistakes(probabilities, labels, gallery.GALLERY_SIZE)
    png = gallery.plot_worst(files, probabilities, labels, worst, names)
    atomic_write_bytes(out / "worst.png", png)
    gallery.write_tensorboard_image(out / "tensorboard", "worst_mistakes", png)
    rows = gallery.pair_examples(
        probabilities, labels, pairs[: gallery.PAIR_ROWS], gallery.PAIR_EXAMPLES
    )
    atomic_write_bytes(out / "confused_pairs.png", gallery.plot_pairs(files, names, rows))


def _count_rows(csv_file: Path) -> int:
    with open(csv_file, newline="", encoding="utf-8") as f:
        return max(sum(1 for _ in csv.reader(f)) - 1, 0)


def run(args) -> int:
    """Runs `keras-googlenet evaluate` and prints the headline numbers."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    m = evaluate_run(
        args.run_dir,
        checkpoint=args.checkpoint,
        csv_path=args.csv,
        images_dir=args.images,
        output=args.output,
        batch_size=args.batch_size,
        calibrate=args.calibrate,
        num_crops=args.crops,
        originals=args.originals,
        export=args.export,
    )
    print(
        f"top-1 {m['top1']:.4f}  top-{m['top_k']} {m['top5']:.4f}  loss {m['loss']:.4f}  "
        f"mean per-class {m['mean_per_class_accuracy']:.4f}  ({m['num_images']} images)"
    )
    c = m["calibration"]
    line = f"ECE {c['ece']:.4f} ({c['ece_bins']} bins)  NLL {c['nll']:.4f}"
    if c["temperature"] is not None:
        line += (
            f"  -> at temperature {c['temperature']:.3f}: ECE {c['ece_calibrated']:.4f}  "
            f"NLL {c['nll_calibrated']:.4f}"
        )
    print(line)
    if "export" in m:
        e = m["export"]
        print(
            f"export ({e['format']}): same top-1 class on {e['top1_agreement']:.2%} of "
            f"{e['images']} images, largest probability difference {e['max_abs_difference']:.2g}"
        )
    print(f"report: {m['report']}")
    return 0
