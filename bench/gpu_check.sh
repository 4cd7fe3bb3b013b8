#!/usr/bin/env bash
# The GPU check: on a machine with one or more GPUs, one table in a few minutes (the
# distribution x precision x XLA matrix, training images/s per precision, the input pipeline's
# rate, per-GPU scaling). `--cpu`: the same checks on 2 logical CPUs at tiny sizes.
#   bench/gpu_check.sh [--cpu] [--jit both|off|on] [--sections matrix,train,pipeline,scaling]
#                      [--json FILE]
# PYTHON: the interpreter (default .venv/bin/python, the README's install).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" bench/gpu_check.py "$@"
