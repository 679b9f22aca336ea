"""A Keras callback that draws a ``fit`` as one progress line on ``tfcompress.console``.

The recipe runner fits with ``verbose=0`` and this callback when the command's console is on
(``console.current().for_people``); ``tfcompress.callbacks.ProgressBar`` is the same class.
"""

from typing import Optional

from tfcompress import console
from tfcompress._compat.keras import keras


class ProgressBar(keras.callbacks.Callback):
    """One redrawn line for a whole ``fit``: epochs done, time left, the latest validation
    figure (``tfcompress.console``), erased when training ends.

    Args:
        label: what is being trained, e.g. ``"prune: fine-tune"``.
        out: the console to draw on (``tfcompress.console.current()`` when None).
        monitor: the ``logs`` key shown after the bar (the first of ``val_accuracy``,
            ``val_loss``, ``loss`` present when None).
    """

    def __init__(self, label: str = "fine-tune", out: Optional[console.Console] = None,
                 monitor: Optional[str] = None):
        super().__init__()
        self.label, self.out, self.monitor = label, out, monitor
        self.bar = None

    def on_train_begin(self, logs=None):
        out = self.out or console.current()
        self.bar = out.progress(self.label, int(self.params.get("epochs") or 1), unit="epoch")

    def on_train_batch_end(self, batch, logs=None):
        steps = self.params.get("steps")
        if self.bar is not None and steps:
            self.bar.note = f"(step {batch + 1}/{steps})"
            self.bar.draw()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        key = self.monitor or next((k for k in ("val_accuracy", "val_loss", "loss") if k in logs),
                                   None)
        note = f"{key} {logs[key]:.4f}" if key in logs else ""
        if self.bar is not None:
            self.bar.update(note=note)

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
