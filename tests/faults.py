"""Fault injection for the resume tests: `python tests/faults.py JOB ARGS...` runs
`keras-googlenet JOB ARGS` with the faults that environment variables ask for.

The shipped code has no test hooks; this script patches it from outside, in its own process:

- `KILL_ENV` = "STEP" or "STEP:SIGTERM": a callback (train()'s `callbacks` argument) sends
  SIGKILL (a power cut: no cleanup, no flush) or SIGTERM (a cloud scheduler) to the process
  once the optimizer has run STEP steps.
- `KILL_DURING_ENV` = "KIND:N": SIGKILL the N-th time a write of KIND is under way: `backup`
  (the run state's file is written, not yet renamed), `checkpoint` (a .keras file, likewise),
  `history` (half a history.csv row appended, as a write cut short leaves it).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

KILL_ENV = "KG_TEST_KILL_AT_STEP"
KILL_DURING_ENV = "KG_TEST_KILL_DURING"
SCRIPT = Path(__file__).resolve()


def kill_at_step(step: int, signal_name: str = "SIGKILL"):
    """A callback that signals this process once the optimizer has run `step` steps."""
    import keras

    class KillAtStep(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.sent = False

        def on_train_batch_end(self, batch, logs=None):
            if self.sent:
                return
            if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) >= step:
                self.sent = True
                os.kill(os.getpid(), getattr(signal, signal_name))

    return KillAtStep()


def _install_kill_at_step(spec: str) -> None:
    from keras_googlenet.training import train as train_module

    step, _, name = spec.partition(":")
    real = train_module.train

    def train(*args, **kwargs):
        kwargs["callbacks"] = [
            *(kwargs.get("callbacks") or []),
            kill_at_step(int(step), name or "SIGKILL"),
        ]
        return real(*args, **kwargs)

    train_module.train = train


def _install_kill_during(spec: str) -> None:
    from keras_googlenet import atomic
    from keras_googlenet.training import history
    from keras_googlenet.training.state import STATE_FILE

    kind, _, nth = spec.partition(":")
    count = [0]

    def due() -> bool:
        count[0] += 1
        return count[0] == int(nth)

    if kind == "history":
        real_append = history.append_row

        def append_row(path, row):
            if due():
                with open(path, "a") as f:
                    f.write("9,0.12")
                    f.flush()
                    os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
            real_append(path, row)

        history.append_row = append_row
        return
    real_commit = atomic.commit

    def commit(tmp, path):
        name = Path(path).name
        mine = name == STATE_FILE if kind == "backup" else name.endswith(".keras")
        if mine and due():
            os.kill(os.getpid(), signal.SIGKILL)
        real_commit(tmp, path)

    atomic.commit = commit


def main(argv: list[str]) -> int:
    if os.environ.get(KILL_ENV):
        _install_kill_at_step(os.environ[KILL_ENV])
    if os.environ.get(KILL_DURING_ENV):
        _install_kill_during(os.environ[KILL_DURING_ENV])
    from keras_googlenet.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
