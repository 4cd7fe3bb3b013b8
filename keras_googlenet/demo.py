"""The main job end to end on a dataset generated on the spot: `make demo`.

    python -m keras_googlenet demo [--workdir runs/demo] [--quick] [--restart] [--set K=V ...]

No network and no download: it draws a Caltech256-style folder of shapes
(`keras_googlenet.data.shapes`), then runs the real pipeline with no shortcut:

1. generate    WORKDIR/shapes/001.circle/001_0001.jpg ... and WORKDIR/heldout/*.jpg
2. preprocess  WORKDIR/processed/ (train/, val/, CSVs, categories, RGB mean, skipped.csv)
3. train       WORKDIR/run/ (aux heads, checkpoints, resume backup, TensorBoard, log, plots)
4. export      WORKDIR/export/ (SavedModel + model.keras + labels.txt)
5. evaluate    WORKDIR/run/eval/best-val/ (metrics.json, per_class.csv, confusion.png,
               report.html: the page to open), the export run beside the checkpoint
6. predict     the held-out images, through the exported SavedModel

Run it again and each step that is already done is reused (a finished training run is
recognised, an interrupted one resumes); `--restart` trains again in a new run folder.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from keras_googlenet.atomic import atomic_write_text
from keras_googlenet.config import apply_overrides, load_config
from keras_googlenet.errors import UserError

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
TARGET_TOP1 = 0.70
PER_CLASS = 400  # generated images per class (8 classes); see configs/demo.yaml
HELDOUT_PER_CLASS = 1

# --quick: the whole chain on a tiny dataset, one short epoch (for CI; accuracy not expected).
QUICK_PER_CLASS = 6
QUICK = {
    "model.input_size": 65,
    "preprocess.size": 72,
    "data.batch_size": 4,
    "data.train_augment": [
        {"name": "random_crop", "size": 65},
        {"name": "horizontal_flip", "p": 0.5},
    ],
    "data.val_augment": [{"name": "center_crop", "size": 65}],
    "training.epochs": 1,
}
# Written last, beside (not inside) the folders they describe: the folder is complete.
GENERATED_STAMP = ".shapes.json"
PROCESSED_STAMP = ".processed.json"


def _step(number: int, text: str) -> float:
    print(f"\n[{number}/6] {text}", flush=True)
    return time.perf_counter()


def _done(start: float, text: str) -> None:
    print(f"      {text} ({time.perf_counter() - start:.0f} s)", flush=True)


def generate(workdir: Path, per_class: int, seed: int) -> tuple[Path, list[tuple[Path, str]]]:
    """The shapes folder and the held-out images, reused when a complete one is there.

    Returns:
        (dataset folder, [(held-out image, true class), ...]).
    """
    from keras_googlenet.data.shapes import write_shapes_dataset

    root, heldout = workdir / "shapes", workdir / "heldout"
    params = {"per_class": per_class, "heldout_per_class": HELDOUT_PER_CLASS, "seed": seed}
    stamp = workdir / GENERATED_STAMP
    if stamp.is_file() and root.is_dir():
        saved = json.loads(stamp.read_text())
        if saved.get("params") == params:
            print(f"      reusing {root} ({saved['images']} images)")
            return root, [(Path(p), label) for p, label in saved["heldout"]]
    # Ours and incomplete, or made with other settings: start again.
    stamp.unlink(missing_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(heldout, ignore_errors=True)
    ds = write_shapes_dataset(
        root,
        per_class=per_class,
        heldout_dir=heldout,
        heldout_per_class=HELDOUT_PER_CLASS,
        seed=seed,
        progress=True,
    )
    record = {
        "params": params,
        "images": ds.num_images,
        "heldout": [(str(p), label) for p, label in ds.heldout],
    }
    atomic_write_text(stamp, json.dumps(record, indent=2))
    print(
        f"      {ds.num_images} images of {len(ds.classes)} shapes ({', '.join(ds.classes)}) "
        f"in {root}, plus {len(ds.broken)} broken files and {len(ds.heldout)} held-out images"
    )
    return root, ds.heldout


def prepare(source: Path, output: Path, cfg) -> Path:
    """Runs the preprocessor, unless a complete output made from `source` with `cfg` is there."""
    from preprocessing.image_dir_preprocessor import MARKER, preprocess

    p = cfg.preprocess
    params = {"size": p.size, "val_split": p.val_split, "seed": p.seed, "crop": p.center_crop}
    stamp = output.parent / PROCESSED_STAMP
    complete = (output / "val.csv").is_file() and not (output / MARKER).exists()
    if complete and stamp.is_file() and json.loads(stamp.read_text()) == params:
        print(f"      reusing {output}")
        return output
    stamp.unlink(missing_ok=True)
    summary = preprocess(
        source,
        output,
        val_split=p.val_split,
        size=p.size,
        center_crop=p.center_crop,
        seed=p.seed,
        workers=p.workers,
        overwrite=True,  # the demo's own folder: a previous demo output or nothing
    )
    atomic_write_text(stamp, json.dumps(params))
    print(f"      {summary.line()}")
    return output


def run(args) -> int:
    """Runs `keras-googlenet demo`."""

    started = time.perf_counter()
    workdir = Path(args.output)
    per_class = args.per_class or (QUICK_PER_CLASS if args.quick else PER_CLASS)
    if per_class < 5:
        raise UserError(
            f"--per-class must be at least 5 (a train/val split per class), got {per_class}"
        )
    cfg = load_config(args.config)
    if args.quick:
        cfg = apply_overrides(cfg, QUICK, "--quick")
    if args.overrides:
        cfg = apply_overrides(cfg, args.overrides)

    t = _step(1, "generating the shapes dataset")
    source, heldout = generate(workdir, per_class, seed=cfg.preprocess.seed)
    _done(t, "dataset ready")

    t = _step(2, "preprocessing (the real preprocessor: split, crop, resize, RGB mean)")
    processed = prepare(source, workdir / "processed", cfg)
    _done(t, "processed dataset ready")

    from keras_googlenet.training.train import train

    t = _step(3, f"training GoogLeNet with aux heads, {cfg.training.epochs} epochs")
    cfg = apply_overrides(cfg, {"data.input_dir": str(processed)}, "demo")
    result = train(cfg, workdir / "run", restart=args.restart)
    run = Path(result["run_dir"])
    _done(t, f"training {result['status']}")

    from keras_googlenet.serving.export import export_run

    t = _step(4, "exporting a SavedModel")
    export = export_run(run, workdir / "export", checkpoint="best", overwrite=True)
    _done(t, f"exported to {export}")

    from keras_googlenet.evaluation.evaluate import evaluate_run

    t = _step(5, "evaluating the best checkpoint on the validation split, and the export")
    metrics = evaluate_run(run, checkpoint="best", export=str(export))
    agree = metrics["export"]
    _done(
        t,
        f"val top-1 {metrics['top1']:.3f}, top-5 {metrics['top5']:.3f}; the export gives the "
        f"same class on {agree['top1_agreement']:.1%} of the images",
    )

    from keras_googlenet.serving.predict import load_export, predict_files

    t = _step(6, "predicting the held-out images with the SavedModel")
    predictor = load_export(Path(export))
    results = predict_files(predictor, [str(p) for p, _ in heldout], top_k=3)
    right = 0
    for (path, truth), r in zip(heldout, results, strict=True):
        if "predictions" not in r:
            print(f"      {path}: {r['error']}")
            continue
        top = r["predictions"][0]
        right += top["label"] == truth
        mark = "ok" if top["label"] == truth else f"wrong (is {truth})"
        print(f"      {path.name:<16} -> {top['label']:<9} {top['probability']:6.1%}  {mark}")
    _done(t, f"{right} of {len(heldout)} held-out images right")

    top1 = metrics["top1"]
    total = time.perf_counter() - started
    eval_dir = Path(metrics["output"])
    print("\nArtifacts:")
    for what, path in (
        ("generated dataset", source),
        ("held-out images", workdir / "heldout"),
        ("processed dataset", processed),
        ("skipped files", processed / "skipped.csv"),
        ("run folder", run),
        ("resolved config", run / "config.yaml"),
        ("log file", run / cfg.logging.logfile),
        ("history", run / "history.csv"),
        ("checkpoints", run / "checkpoints"),
        ("plots", run / "plots"),
        ("TensorBoard logs", run / "tensorboard"),
        ("evaluation", eval_dir / "metrics.json"),
        ("confusion matrix", eval_dir / "confusion.png"),
        ("SavedModel", export),
    ):
        print(f"  {what:<18} {path}")
    print(f"\nOpen TensorBoard:  tensorboard --logdir {run / 'tensorboard'}")
    print(f"Evaluation report: {metrics['report']}")
    if args.quick:
        verdict = "(--quick: the chain only, accuracy not expected)"
    elif top1 >= TARGET_TOP1:
        verdict = f"(target >= {TARGET_TOP1:.2f}: reached)"
    else:
        verdict = f"(target >= {TARGET_TOP1:.2f}: NOT reached; try --set training.epochs=...)"
    print(
        f"demo: val top-1 {top1:.3f} on {metrics['num_images']} images "
        f"(chance {1 / len(predictor.class_names):.3f}) {verdict}; {total:.0f} s in all"
    )
    sys.stdout.flush()
    return 0
