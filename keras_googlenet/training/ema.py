"""The EMA weights (`optimizer.ema`) in validation and checkpoints, the raw ones in the backup.

With `use_ema` Keras's optimizer keeps a moving average of every trainable variable beside it
(an optimizer variable, so the resume backup saves and restores it with the momenta) and,
after the last epoch of `fit`, copies the averages into the model. `SwapEMAWeights` swaps them
in for each validation. What it cannot do alone is put the averages in the checkpoints and
keep the raw weights in the backup, both written at the epoch's end; so the swap is split in
two callbacks around the checkpoint callbacks:

    ... EmaWeightsIn -> checkpoints, history, TensorBoard ... -> EmaWeightsOut -> backup

`last.keras`, `best.keras` and `epoch_NNN.keras` then hold the EMA weights as the model's
weights (what evaluate and export load), and the backup holds the training state exactly.
"""

from __future__ import annotations

import keras


class EmaWeightsIn(keras.callbacks.SwapEMAWeights):
    """Swaps the EMA weights in for validation (Keras's behaviour) and at each epoch's end, for
    the callbacks after it."""

    def _tf_swap_variables(self, optimizer):
        # Keras's TensorFlow path swaps in place by adding and subtracting, which rounds: the
        # raw weights and the averages would drift by an ulp at every swap (four per epoch).
        # Through a host copy, as on the other backends, the swap is exact.
        self._backend_swap_variables(optimizer)

    def on_epoch_end(self, epoch, logs=None):
        if not self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = True


class EmaWeightsOut(keras.callbacks.Callback):
    """Swaps the raw weights back at the epoch's end (place it just before the backup).

    At the end of `fit` Keras copies the averages into the model's weights; they are put back
    to the raw ones, so that a next `fit` on the same model (the second fine-tuning phase)
    starts where a run resumed from the backup would. The checkpoints already hold the averages.
    """

    def __init__(self, swap_in: EmaWeightsIn):
        super().__init__()
        self.swap_in = swap_in
        self._raw = None

    def on_epoch_end(self, epoch, logs=None):
        if self.swap_in._ema_weights_in_model:
            self.swap_in._swap_variables()
            self.swap_in._ema_weights_in_model = False
        self._raw = [v.numpy() for v in self.model.trainable_variables]

    def on_train_end(self, logs=None):
        if self._raw is not None:
            for variable, value in zip(self.model.trainable_variables, self._raw, strict=True):
                variable.assign(value)
