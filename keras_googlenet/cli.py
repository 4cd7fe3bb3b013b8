"""`keras-googlenet JOB ...` (also `python -m keras_googlenet JOB ...`): every job, one vocabulary.

The parsers of all jobs live here, so that one thing has one flag name everywhere and `--help`
answers without importing TensorFlow. Each job's code is imported only once its arguments parse;
it receives the parsed `argparse.Namespace`.

    --config NAME|FILE   a recipe: a built-in name (`demo`, `caltech256_sgd`, ...) or a YAML path
    --set KEY=VALUE      a dotted config override (repeatable)
    --run-dir DIR        a training run folder
    --export-dir DIR     an export folder (written by `export`)
    --input DIR          a folder to read;  --output DIR  a folder to write
    --image-size N       an image side in pixels
    --checkpoint WHICH   best, last, or a .keras file of the run
    --overwrite          replace an existing output
    --verbose            TensorFlow's own start-up and C++ log lines too
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from collections.abc import Sequence

from keras_googlenet.errors import UserError, run_cli
from keras_googlenet.serving.formats import FORMATS

PROG = "keras-googlenet"
CHECKPOINT_HELP = "best (default; else last, else the newest epoch_NNN), last, or a .keras file"
WEIGHTS_HELP = "a .weights.h5 file of import-weights (ImageNet classes, no run folder)"

# job -> (module, one-line description). The module's `run(args)` does the work.
JOBS: dict[str, tuple[str, str]] = {
    "preprocess": (
        "preprocessing.job",
        "class folders of images -> train/val JPEGs, CSVs, class names, mean",
    ),
    "audit": (
        "preprocessing.audit_job",
        "duplicates, train/val leakage, label conflicts and balance of a processed folder",
    ),
    "train": ("keras_googlenet.training.train", "train GoogLeNet; the same command resumes"),
    "evaluate": (
        "keras_googlenet.evaluation.evaluate",
        "a run's checkpoint: top-1/top-5, per-class P/R/F1, calibration, worst mistakes, "
        "report.html",
    ),
    "export": (
        "keras_googlenet.serving.export",
        "write a SavedModel that needs only TensorFlow, or an ONNX or LiteRT file",
    ),
    "predict": ("keras_googlenet.serving.predict", "top-k classes of image files"),
    "quickcheck": ("keras_googlenet.quickcheck", "CIFAR-10 check of the training recipe"),
    "demo": ("keras_googlenet.demo", "the whole chain offline on a generated dataset"),
    "summary": ("keras_googlenet.model.summary", "GoogLeNet's layer sizes in Table 1 order"),
    "config": ("keras_googlenet.config.load", "check a recipe and print it resolved"),
    "import-weights": (
        "keras_googlenet.model.import_weights",
        "torchvision's or TF-slim's ImageNet GoogLeNet -> a Keras weights file",
    ),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other user mistake
        raise UserError(f"{self.prog}: {message} (see --help)")


def _add_config(p, default: str | None = None) -> None:
    p.add_argument(
        "--config",
        default=default,
        metavar="NAME|FILE",
        help="a built-in recipe name (see configs/) or a YAML file"
        + (f" (default: {default})" if default else ""),
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optimizer.lr=0.02 (repeatable)",
    )


def _add_run_dir(p, required: bool, help: str = "the training run folder") -> None:
    p.add_argument("--run-dir", required=required, metavar="DIR", help=help)


def _add_checkpoint(p, prefix: str = "") -> None:
    p.add_argument("--checkpoint", default="best", metavar="WHICH", help=prefix + CHECKPOINT_HELP)


def _top_k(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _job_parsers(sub) -> None:
    common = _Parser(add_help=False)
    common.add_argument(
        "--verbose", action="store_true", help="also show TensorFlow's own log lines"
    )

    def job(name, **kw):
        return sub.add_parser(
            name,
            description=JOBS[name][1],
            parents=[common],
            allow_abbrev=False,  # --run must not pass for --run-dir
            **kw,
        )

    p = job("preprocess")
    p.add_argument("--input", metavar="DIR", help="folder of class folders (NNN.label/)")
    p.add_argument("--output", metavar="DIR", help="where the processed dataset goes")
    p.add_argument("--val-split", type=float, help="validation fraction (default 0.2)")
    p.add_argument("--image-size", type=int, help="output side in pixels (default 256)")
    p.add_argument(
        "--center-crop",
        action=argparse.BooleanOptionalAction,
        help="crop the centred square before resizing (default); --no-center-crop stretches "
        "the whole image to the square",
    )
    p.add_argument(
        "--include-clutter",
        action=argparse.BooleanOptionalAction,
        help="use 257.clutter as a class (left out by default)",
    )
    p.add_argument("--seed", type=int, help="split and file-name seed (default 42)")
    p.add_argument("--workers", type=int, help="processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-audit",
        action="store_true",
        help="skip the duplicate audit (and its group-aware split and report)",
    )
    p.add_argument(
        "--dedupe", action="store_true", help="keep one file of each group of copies (the largest)"
    )
    p.add_argument(
        "--drop-conflicts",
        action="store_true",
        help="leave out groups of copies filed under two or more classes",
    )
    p.add_argument(
        "--config",
        metavar="NAME|FILE",
        help="recipe; its preprocess: section gives defaults (flags win), data.input_dir the "
        "output folder",
    )

    p = job("audit")
    p.add_argument(
        "--input", required=True, metavar="DIR", help="a processed folder (train/, val/, CSVs)"
    )
    p.add_argument("--output", metavar="DIR", help="where the report goes (default: --input)")
    p.add_argument("--workers", type=int, help="processes (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = job("train")
    _add_config(p)
    _add_run_dir(p, False, "run folder (default: paths.runs_dir/project_name)")
    p.add_argument("--restart", action="store_true", help="start afresh in a new folder (NAME-2)")

    p = job("evaluate")
    _add_run_dir(p, True)
    _add_checkpoint(p)
    p.add_argument("--csv", help="CSV (image,class) to evaluate; default: the run's validation CSV")
    p.add_argument("--images", metavar="DIR", help="folder of the CSV's images")
    p.add_argument("--output", metavar="DIR", help="report folder (default: RUN/eval/...)")
    p.add_argument("--batch-size", type=int, help="default: the run's data.batch_size")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="fit a softmax temperature on the validation set (saved as RUN/calibration.json; "
        "export applies it)",
    )
    p.add_argument(
        "--crops",
        type=int,
        choices=(1, 10, 144),
        default=1,
        help="test-time crops per image, softmax averaged (the paper's section 7): 1 centre "
        "crop (default), 10 (corners, centre, mirrors), 144 (4 scales of the original photos)",
    )
    p.add_argument(
        "--originals",
        metavar="DIR",
        help="--crops 144: the folder preprocess read (default: preprocess.source_dir)",
    )
    p.add_argument(
        "--export",
        metavar="DIR",
        help="an export of this checkpoint (any format): run it on the same images and report "
        "where it agrees with the checkpoint",
    )

    p = job("export")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", metavar="DIR", help="the training run folder")
    source.add_argument("--weights", metavar="FILE", help=WEIGHTS_HELP)
    p.add_argument("--output", required=True, metavar="DIR", help="the export folder to write")
    p.add_argument(
        "--version",
        type=int,
        metavar="N",
        help="write DIR/N/, the versioned layout TensorFlow Serving loads",
    )
    _add_checkpoint(p)
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="savedmodel",
        help="savedmodel (default: preprocessing in the graph), onnx (model.onnx, onnxruntime) or "
        "litert (model.tflite); the last two take cropped 0-255 pixels, see export.json",
    )
    p.add_argument("--top-k", type=_top_k, default=5, help="classes in the SavedModel's top-k")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export")

    p = job("predict")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--export-dir", metavar="DIR", help="an export folder")
    source.add_argument("--run-dir", metavar="DIR", help="a training run folder")
    source.add_argument("--weights", metavar="FILE", help=WEIGHTS_HELP)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--top-k", type=_top_k, default=5, help="classes to list per image")
    p.add_argument("--json", action="store_true", help="print one JSON list")
    _add_checkpoint(p, "with --run-dir: ")

    p = job("quickcheck")
    p.add_argument(
        "--input",
        metavar="DIR",
        help="a local CIFAR-10 copy: cifar-10-python.tar.gz, cifar-10-batches-py/, or an image "
        "folder train/<class>/*, test/<class>/* (default: data/cifar10/, else download)",
    )
    p.add_argument("--fast", action="store_true", help="CPU-sized subset, size and epochs")
    p.add_argument("--epochs", type=int, help="epochs (default: the config's, or --fast's)")
    p.add_argument("--image-size", type=int, help="input size in pixels (at least 65)")
    p.add_argument("--train-per-class", type=int, help="class-balanced training subset")
    p.add_argument("--test-per-class", type=int, help="class-balanced validation subset")
    _add_run_dir(p, False, "run folder (default: runs/quickcheck[-fast])")
    p.add_argument("--restart", action="store_true", help="train again in a new folder")
    p.add_argument("--offline", action="store_true", help="never try to download")
    _add_config(p, "cifar10")

    p = job("demo")
    p.add_argument("--output", default="runs/demo", metavar="DIR", help="where everything goes")
    p.add_argument("--quick", action="store_true", help="tiny dataset, one epoch (the chain only)")
    p.add_argument("--per-class", type=int, help="images per class (default 400)")
    p.add_argument("--restart", action="store_true", help="train again in a new run folder")
    _add_config(p, "demo")

    p = job("summary")
    p.add_argument("--image-size", type=int, default=224, help="input side (default 224)")
    p.add_argument("--num-classes", type=int, default=256)
    p.add_argument("--no-aux", action="store_true", help="without the auxiliary heads")
    p.add_argument("--no-batch-norm", action="store_true")

    p = job("import-weights")
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        choices=("torchvision", "slim"),
        help="torchvision: a .pth state dict (googlenet-1378be20.pth); slim: a checkpoint "
        "prefix (inception_v1.ckpt)",
    )
    p.add_argument("path", metavar="FILE", help="the .pth file or the checkpoint prefix")
    p.add_argument("--output", required=True, metavar="DIR", help="folder for the two files")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier import")

    p = job("config")
    p.add_argument("config", nargs="?", metavar="NAME|FILE", help="recipe; omitted: defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


def make_parser() -> argparse.ArgumentParser:
    """The `keras-googlenet` parser with one sub-parser per job."""
    from keras_googlenet import __version__

    width = max(map(len, JOBS)) + 2  # the longest job name still gets a gap before its text
    parser = _Parser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="jobs:\n" + "\n".join(f"  {job:<{width}}{text}" for job, (_, text) in JOBS.items()),
        description="GoogLeNet (Inception v1) with Keras 3 and TensorFlow: prepare images, "
        "train, evaluate, export, predict. `keras-googlenet JOB --help` for a job's flags.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="job", metavar="JOB", help="one of the jobs below")
    _job_parsers(sub)
    return parser


def import_tensorflow(verbose: bool) -> None:
    """Imports TensorFlow, without its C++ start-up lines (CUDA probing, oneDNN notes) unless
    `verbose`.

    TF_CPP_MIN_LOG_LEVEL must be set before the import, and still does not reach the lines
    logged while the libraries load (absl writes those to stderr before its logger starts), so
    stderr is parked in a file during the import and shown only if the import fails.
    """
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else "3"
    if verbose or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as parked:
        os.dup2(parked.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            parked.seek(0)
            sys.stderr.buffer.write(parked.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _dispatch(argv: Sequence[str]) -> int:
    argv = list(argv)
    if argv and not argv[0].startswith("-") and argv[0] not in JOBS:
        raise UserError(f"unknown job '{argv[0]}'; the jobs are: {', '.join(JOBS)}")
    args = make_parser().parse_args(argv)
    if args.job is None:
        make_parser().print_help()
        return 0
    if args.job not in ("preprocess", "audit"):  # these never import TensorFlow
        import_tensorflow(args.verbose)
    module = importlib.import_module(JOBS[args.job][0])
    return module.run(args) or 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `keras-googlenet`; returns the exit code (errors as one line)."""
    return run_cli(_dispatch, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    raise SystemExit(main())
