"""Each epoch's train and validation loss and validation daily rank IC of a fit, kept in its artifact: the
learning curve that shows whether a fit stopped early because validation got worse while training still
improved (over-fitting the fold), or because neither moved (nothing to learn), and whether what it learns
ranks the coins (the IC) when the loss cannot tell."""

import lightning as L
import torch


class LearningCurve(L.Callback):
    """`epochs`: one {"epoch", "train_loss", "val_loss", "val_ic"} per finished training epoch (0-based; the
    train loss is the epoch's mean in train mode, dropout on; the val loss and IC are the epoch-end
    validation's, of the averaged weights where weight averaging is on)."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logged = trainer.callback_metrics
        self.epochs.append({
            "epoch": trainer.current_epoch,
            "train_loss": _value(logged.get("train/loss")),
            "val_loss": _value(logged.get("val/loss")),
            "val_ic": _value(logged.get("val/ic")),
        })


def _value(tensor) -> float | None:
    """Rounded to 5 places; None when not logged or not a number (an IC with no scorable day)."""
    if tensor is None or not torch.isfinite(torch.as_tensor(tensor)):
        return None
    return round(float(tensor), 5)
