"""`python -m keras_googlenet JOB ...`: one entry point for every job.

Jobs: demo, train, evaluate, export, predict, quickcheck, summary. Each is also its own module
(`python -m keras_googlenet.train ...`).
"""

from __future__ import annotations

import importlib
import sys

from keras_googlenet.errors import run_cli

JOBS = {
    "demo": "keras_googlenet.demo",
    "train": "keras_googlenet.train",
    "evaluate": "keras_googlenet.evaluate",
    "export": "keras_googlenet.export",
    "predict": "keras_googlenet.predict",
    "quickcheck": "keras_googlenet.quickcheck",
    "summary": "keras_googlenet.model",
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in JOBS:
        print(f"usage: python -m keras_googlenet {{{','.join(JOBS)}}} [args ...]", file=sys.stderr)
        return 2
    job, rest = argv[0], argv[1:]
    if job == "summary":
        rest = ["--summary", *rest]
    module = importlib.import_module(JOBS[job])
    return run_cli(module.main, rest)


if __name__ == "__main__":
    raise SystemExit(main())
