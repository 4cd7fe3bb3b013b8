"""Preemption: SIGTERM (a cloud scheduler) or SIGINT (Ctrl-C) stops training at a step
boundary, with a resume backup of that step, on every worker at the same step.

The signal handler only sets a flag: saving inside the handler could interrupt a half-done
step. At each step boundary `StopOnSignal` asks whether to stop. With one worker that is its own
flag. With several (MultiWorkerMirroredStrategy) every worker's flags are summed by an
all-reduce (`strategy.worker_sum`), so all of them stop after the same step even when only one
was signalled, or the signals arrive at different steps: each then saves its backup of that step
(the chief's in `backup/`, the others' in `workers/NAME/backup/`) and exits.
The flags are checked when a step begins, never at a step's end, so Keras's batch-end
callbacks stay asynchronous; several workers agree every `every` steps. A worker that
stopped alone would leave the others waiting in their next collective. This plays the part of
`tf.distribute.experimental.PreemptionCheckpointHandler`, which saves `tf.train.Checkpoint`s
rather than this project's backup.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import keras

from keras_googlenet.errors import UserError

log = logging.getLogger("keras_googlenet")

# Exit codes of a stopped run: 128 + the signal number, as a shell reports a process it killed.
CODES = {"SIGTERM": 143, "SIGINT": 130}


class Preempted(UserError):
    """Training stopped by SIGTERM or SIGINT after saving a backup (exit 143 or 130)."""


def stopped_message(signal_name: str, step: int, epoch: int, backup_dir: Path, where="") -> str:
    """The one line a run stopped by SIGTERM/SIGINT ends with (`where`: ' on another worker')."""
    return (
        f"stopped by {signal_name}{where} after step {step} (in epoch {epoch + 1}); the backup "
        f"in {backup_dir} holds it: run the same command (without --restart) to resume"
    )


class StopOnSignal(keras.callbacks.Callback):
    """SIGTERM or SIGINT during `fit`: before the next step, save the run state and stop with
    `Preempted` (exit 143 / 130, one line).

    The state holds the weights and optimizer state of that step, the step within the epoch
    and the epoch's metric accumulators: the resumed run trains the rest of the epoch with the
    batches it would have had. Raising (not `stop_training`) keeps Keras from closing the
    epoch: no history row or TensorBoard summary for the half epoch. A signal during
    validation takes effect when it ends (the epoch is then saved whole).

    Args:
        keeper: the run's `state.StateKeeper` (its `save` writes the state).
        stop_together: for several workers, a function from this worker's flags
            `[SIGTERM seen, SIGINT seen]` to the sums over all workers (`worker_sum`); called
            by every worker at the same steps. None: this worker alone decides.
        every: with `stop_together`, agree every N steps (an all-reduce each time).
    """

    def __init__(self, keeper, stop_together=None, every: int = 1):
        super().__init__()
        self.keeper = keeper
        self.stop_together = stop_together
        self.every = max(1, int(every))
        self._received: set[str] = set()
        self._previous = {}

    def _handle(self, signum, frame):
        self._received.add(signal.Signals(signum).name)

    def on_train_begin(self, logs=None):
        if threading.current_thread() is not threading.main_thread():
            return  # handlers can only be installed from the main thread
        for name in CODES:
            sig = getattr(signal, name)
            self._previous[sig] = signal.signal(sig, self._handle)

    def _restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _agreed(self) -> tuple[str | None, str]:
        """(the signal to stop for or None, '' or ' on another worker')."""
        mine = [float(name in self._received) for name in CODES]
        if self.stop_together is None:
            totals = mine
        elif self.keeper.state.stream_step % self.every == 0:
            totals = self.stop_together(mine)
        else:
            return None, ""
        for name, own, total in zip(CODES, mine, totals, strict=True):
            if total > 0:
                return name, "" if own else " on another worker"
        return None, ""

    def on_train_batch_begin(self, batch, logs=None):
        name, where = self._agreed()
        if name is None:
            return
        self.keeper.save()
        self._restore()
        state = self.keeper.state
        message = stopped_message(name, state.stream_step, state.epoch, self.keeper.dir, where)
        log.warning("%s", message)
        raise Preempted(message, exit_code=CODES[name])

    def on_train_end(self, logs=None):
        self._restore()
