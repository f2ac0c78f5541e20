"""LightningModule that trains either extractor as a BUY/HOLD/SELL classifier.

The net, optimizer and scheduler are constructor arguments so Hydra can instantiate each from
config (`_target_`, with `_partial_: true` for the optimizer and scheduler).
"""

from collections.abc import Callable, Iterable, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score

from features.labels import CLASS_NAMES
from models.outputs import ExtractorOutput


class ExtractorModule(L.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[[Iterable[nn.Parameter]], Optimizer],
        scheduler: Callable[[Optimizer], LRScheduler | ReduceLROnPlateau] | None = None,
        class_weights: Sequence[float] | torch.Tensor | None = None,
        n_classes: int = 3,
        scheduler_monitor: str = "val/loss",
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        weight = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        if weight is not None and weight.shape != (n_classes,):
            raise ValueError(f"class_weights needs {n_classes} values, got shape {tuple(weight.shape)}")
        # A buffer follows the module across devices; non-persistent because the hparams keep it.
        self.register_buffer("class_weights", weight, persistent=False)
        # Plain values only: a pickled net, partial or OmegaConf list in the checkpoint would make
        # torch.load(weights_only=True), the default since torch 2.6, refuse it, so resuming and
        # load_from_checkpoint would fail. The net's weights are in the state dict; loading takes
        # the objects again: load_from_checkpoint(path, net=..., optimizer=...).
        self.save_hyperparameters(
            {
                "class_weights": None if weight is None else weight.tolist(),
                "n_classes": n_classes,
                "scheduler_monitor": scheduler_monitor,
            }
        )

        metrics = MetricCollection(
            {
                # average="micro" is plain accuracy; torchmetrics defaults to macro (balanced) accuracy.
                "acc": MulticlassAccuracy(n_classes, average="micro"),
                "f1_macro": MulticlassF1Score(n_classes, average="macro"),
                "auroc": MulticlassAUROC(n_classes, average=None),  # one-vs-rest, one value per class
            }
        )
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def forward(self, x: torch.Tensor) -> ExtractorOutput:
        return self.net(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy, class-weighted when weights were given (weighted mean over the batch)."""
        return F.cross_entropy(logits, y, weight=self.class_weights)

    def _shared_step(self, batch: Sequence[torch.Tensor], metrics: MetricCollection) -> torch.Tensor:
        x, y = batch
        logits = self.net(x).logits  # (B, n_classes)
        loss = self.loss(logits, y)
        # AUROC would softmax its input only when some value lies outside [0, 1], so raw logits
        # could be ranked inconsistently; give every metric probabilities explicitly.
        metrics.update(logits.detach().softmax(dim=-1), y)
        self.log(f"{metrics.prefix}loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 sync_dist=True, batch_size=y.shape[0])
        return loss

    def _log_epoch_metrics(self, metrics: MetricCollection) -> None:
        values = metrics.compute()
        auroc = values.pop(f"{metrics.prefix}auroc")  # (n_classes,): self.log takes scalars only
        for name, value in zip(CLASS_NAMES, auroc, strict=True):
            values[f"{metrics.prefix}auroc_{name.lower()}"] = value
        self.log_dict(values)
        metrics.reset()

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, self.train_metrics)

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, self.val_metrics)

    def test_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, self.test_metrics)

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics(self.train_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics(self.test_metrics)

    def predict_step(self, batch: torch.Tensor | Sequence[torch.Tensor], batch_idx: int) -> ExtractorOutput:
        # The backfill stores RAW logits: softmax happens once, when the store is read.
        x = batch if isinstance(batch, torch.Tensor) else batch[0]  # labels, if any, are unused
        return self.net(x)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        # "monitor" matters for ReduceLROnPlateau only; epoch steps suit both it and cosine-over-epochs.
        monitor = self.hparams.scheduler_monitor
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": monitor, "interval": "epoch"},
        }
