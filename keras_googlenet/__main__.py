"""`python -m keras_googlenet JOB ...`, the same as the `keras-googlenet` command."""

from keras_googlenet.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
