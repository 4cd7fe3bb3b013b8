"""An exponential moving average of the weights (`optimizer.ema`), kept beside the model.

`ExponentialMovingAverage` holds one averaged copy of every variable the run ever trains (the
model's trainable variables in its last phase's layout; one still frozen in phase 1 does not
move, so its average is itself), created once, in the strategy's scope. So the set never
changes when a fine-tuning phase freezes or unfreezes layers, the run state saves and restores
it as one list (`state.py`), and it needs nothing of the optimizer's internals. Batch-norm
statistics are not averaged (as in Keras's `use_ema`).

After each step: `average = m * average + (1 - m) * weight` (m = `optimizer.ema_momentum`). The
update runs when the next step begins (and before validation), not at a step's end, so Keras
keeps its batch-end callbacks asynchronous; with `runtime.steps_per_execution` k > 1 it runs
once per k steps with momentum m**k. Validation and the checkpoints see the averages (swapped
in, exactly, and back); training and the run state keep the raw weights.
"""

from __future__ import annotations

import contextlib

import keras


class ExponentialMovingAverage(keras.callbacks.Callback):
    """The averaged weights of `model`; also the callback that updates and swaps them.

    Args:
        model: the training model, with the trainable set of the run's last phase (call in
            the strategy's scope: the averages are created now, as copies of the weights).
        momentum: in (0, 1); nearer 1 averages over more steps.
    """

    def __init__(self, model, momentum: float):
        super().__init__()
        import tensorflow as tf

        self.momentum = momentum
        self.variables = list(model.trainable_variables)
        self._averages = [
            # From a copy: a Keras variable made from another's value would share its storage.
            keras.Variable(keras.ops.convert_to_numpy(w), trainable=False, name=f"ema_{i}")
            for i, w in enumerate(self.variables)
        ]
        self._last = 0
        self._swapped = False

        @tf.function
        def update(decay):
            for average, weight in zip(self._averages, self.variables, strict=True):
                # m * a + (1 - m) * w, written so that a weight that did not move (a frozen
                # layer) leaves its average exactly as it is, rounding included.
                value = tf.cast(weight.value, average.dtype)
                average.assign_add((value - average) * (1.0 - decay))

        @tf.function
        def swap():
            for average, weight in zip(self._averages, self.variables, strict=True):
                held = tf.identity(weight.value)
                weight.assign(average.value)
                average.assign(held)

        self._update, self._swap = update, swap

    # The state file's view (state.py).
    def averages(self) -> list:
        """The averages now, as arrays (raw weights in the model)."""
        with self.raw_weights():
            return [keras.ops.convert_to_numpy(a) for a in self._averages]

    def set_averages(self, values) -> None:
        """Puts saved averages back; None: start them from the current weights."""
        if values is None:
            values = [keras.ops.convert_to_numpy(w) for w in self.variables]
        if len(values) != len(self._averages):
            raise ValueError(f"{len(values)} saved averages for {len(self._averages)} weights")
        for average, value in zip(self._averages, values, strict=True):
            average.assign(value)

    @contextlib.contextmanager
    def averaged_weights(self):
        """The averages in the model for the block (e.g. a checkpoint's save)."""
        was = self._swapped
        if not was:
            self._swap()
            self._swapped = True
        try:
            yield
        finally:
            if not was:
                self._swap()
                self._swapped = False

    @contextlib.contextmanager
    def raw_weights(self):
        """The raw weights in the model for the block (undoes a swap in progress)."""
        was = self._swapped
        if was:
            self._swap()
            self._swapped = False
        try:
            yield
        finally:
            if was:
                self._swap()
                self._swapped = True

    def _catch_up(self, step: int) -> None:
        if step > self._last:
            self._update(float(self.momentum ** (step - self._last)))
        self._last = step

    # Callback hooks.
    def on_epoch_begin(self, epoch, logs=None):
        self._last = 0

    def on_train_batch_begin(self, batch, logs=None):
        self._catch_up(batch)

    def on_test_begin(self, logs=None):
        if not self._swapped:
            self._catch_up(self.params.get("steps") or self._last)
            self._swap()
            self._swapped = True

    def on_test_end(self, logs=None):
        if self._swapped:
            self._swap()
            self._swapped = False

    def on_epoch_end(self, epoch, logs=None):
        self._catch_up(self.params.get("steps") or self._last)
