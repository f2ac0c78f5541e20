"""Each epoch's train and validation loss of a fit, kept in its artifact: the learning curve that
shows whether a fit stopped early because validation got worse while training still improved
(over-fitting the fold), or because neither moved (nothing to learn)."""

import lightning as L


class LearningCurve(L.Callback):
    """`epochs`: one {"epoch", "train_loss", "val_loss"} per finished training epoch (0-based; the
    train loss is the epoch's mean in train mode, dropout on; the val loss is the epoch-end validation)."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logged = trainer.callback_metrics
        self.epochs.append({
            "epoch": trainer.current_epoch,
            "train_loss": _value(logged.get("train/loss")),
            "val_loss": _value(logged.get("val/loss")),
        })


def _value(tensor) -> float | None:
    return None if tensor is None else round(float(tensor), 5)
