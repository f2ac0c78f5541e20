"""LightningModule that trains either extractor as a BUY/HOLD/SELL classifier.

The net, optimizer, scheduler and objective are constructor arguments so Hydra can instantiate each
from config (`_target_`, with `_partial_: true` for the optimizer and an epoch scheduler; a per-step
schedule such as models.schedules.WarmupDecay is called with the fit's step count). The loss is the
(class-weighted) cross-entropy, against soft targets where coins were mixed, optionally mixed with a
per-timestamp listwise ranking loss (models.objectives.Objective) and with the cross-entropies of heads that
learn other horizons' labels from the embedding (the objective's `aux_labels`; trained here, never saved in
the artifact, which keeps the network alone). Validation and test batches that
carry forward returns (datamodules.windows.WindowBatch) also log the daily rank IC (`val/ic`).
"""

from collections.abc import Callable, Iterable, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from torchmetrics.classification import BinaryAUROC, MulticlassAccuracy, MulticlassF1Score

from datamodules.windows import IGNORE, WindowBatch
from features.labels import BUY, CLASS_NAMES, SELL
from models.objectives import Objective
from models.outputs import ExtractorOutput, bottleneck
from models.rank_ic import DailyRankIC


class ExtractorModule(L.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[[Iterable[nn.Parameter]], Optimizer] | None = None,
        scheduler: Callable[[Optimizer], LRScheduler | ReduceLROnPlateau] | None = None,
        class_weights: Sequence[float] | torch.Tensor | None = None,
        n_classes: int = 3,
        scheduler_monitor: str = "val/loss",
        objective: Objective | None = None,
        aux_class_weights: Sequence[Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.objective = objective
        weight = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        if weight is not None and weight.shape != (n_classes,):
            raise ValueError(f"class_weights needs {n_classes} values, got shape {tuple(weight.shape)}")
        # A buffer follows the module across devices; non-persistent because the hparams keep it.
        self.register_buffer("class_weights", weight, persistent=False)
        # One 3-class head per aux label on the embedding the class head reads (as the class head does, through
        # the bottleneck), with that label's class weights.
        aux_labels = () if objective is None else objective.aux_labels
        embedding_dim = getattr(net, "_orig_mod", net).class_head.in_features if aux_labels else 0
        self.aux_heads = nn.ModuleList(nn.Linear(embedding_dim, n_classes) for _ in aux_labels)
        aux_weight = torch.ones(len(aux_labels), n_classes) if aux_class_weights is None else (
            torch.as_tensor(aux_class_weights, dtype=torch.float32))
        if aux_weight.shape != (len(aux_labels), n_classes):
            raise ValueError(f"aux_class_weights needs {len(aux_labels)} x {n_classes} values, "
                             f"got shape {tuple(aux_weight.shape)}")
        self.register_buffer("aux_class_weights", aux_weight, persistent=False)
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

        # One metric object per logged scalar, handed to self.log: Lightning then computes, syncs
        # and resets them at epoch end in the same order on every rank. (Computing a collection in
        # on_*_epoch_end while rank 0's progress bar reduces the loss deadlocks DDP.)
        # Keyed "<part>_metrics": a ModuleDict key may not shadow nn.Module.train.
        self.metrics = nn.ModuleDict(
            {f"{part}_metrics": self._make_metrics(n_classes) for part in ("train", "val", "test")}
        )
        self.rank_ic = nn.ModuleDict({part: DailyRankIC() for part in ("val", "test")})

    @staticmethod
    def _make_metrics(n_classes: int) -> nn.ModuleDict:
        metrics = {
            # average="micro" is plain accuracy; torchmetrics defaults to macro (balanced) accuracy.
            "acc": MulticlassAccuracy(n_classes, average="micro"),
            "f1_macro": MulticlassF1Score(n_classes, average="macro"),
        }
        # One-vs-rest AUC per class: class c's probability against (label == c).
        for name in CLASS_NAMES[:n_classes]:
            metrics[f"auroc_{name.lower()}"] = BinaryAUROC()
        return nn.ModuleDict(metrics)

    def forward(self, x: torch.Tensor) -> ExtractorOutput:
        return self.net(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy, class-weighted when weights were given (weighted mean over the batch).

        y: (B,) classes, or (B, n_classes) soft targets t (coins mixed): sum_i sum_c w_c t_ic (-log p_ic) /
        sum_i sum_c w_c t_ic, which is the weighted mean above when t is one-hot."""
        if not y.dtype.is_floating_point:
            return F.cross_entropy(logits, y, weight=self.class_weights)
        weighted = y if self.class_weights is None else y * self.class_weights  # (B, n_classes)
        return -(weighted * logits.log_softmax(-1)).sum() / weighted.sum()

    def aux_loss(self, embedding: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        """The mean over the aux heads of each one's class-weighted cross-entropy on its label (aux: (B, H) classes,
        IGNORE not counted; a head with no known class in the batch adds 0)."""
        features = bottleneck(embedding)  # (B, embedding_dim)
        losses = []
        for k, head in enumerate(self.aux_heads):
            known = aux[:, k] != IGNORE
            if not known.any():
                losses.append(head(features).sum() * 0.0)  # keeps the graph
                continue
            losses.append(F.cross_entropy(head(features[known]), aux[known, k], weight=self.aux_class_weights[k]))
        return torch.stack(losses).mean()

    def _shared_step(self, batch: Sequence[torch.Tensor] | WindowBatch, part: str) -> torch.Tensor:
        x, y = batch[0], batch[1]  # (B, ...) windows, (B,) classes
        extra = batch if isinstance(batch, WindowBatch) else None
        out = self.net(x)
        logits = out.logits  # (B, n_classes)
        mixed = part == "train" and extra is not None and extra.target is not None
        loss = self.loss(logits, extra.target if mixed else y)
        log = {"on_step": False, "on_epoch": True, "batch_size": y.shape[0]}
        if part == "train" and len(self.aux_heads):
            if extra is None or extra.aux is None:
                raise ValueError("heads for other horizons need train batches with those labels (aux_labels)")
            aux = self.aux_loss(out.embedding, extra.aux)
            self.log("train/cross_entropy_primary", loss, **log)
            self.log("train/cross_entropy_aux", aux, **log)
            loss = self.objective.with_aux(loss, aux)
        if part == "train" and self.objective is not None and self.objective.ranks:
            if extra is None:
                raise ValueError("a listwise loss needs batches with forward returns and timestamps (day_batches)")
            ranking = self.objective.ranking_loss(logits, extra.ret, extra.group)
            self.log("train/cross_entropy", loss, **log)
            self.log("train/listwise", ranking, **log)
            loss = self.objective.combine(loss, ranking)
        self.log(f"{part}/loss", loss, prog_bar=True, sync_dist=True, **log)
        # The metrics get probabilities explicitly (AUROC would softmax only values outside [0, 1]).
        probs = logits.detach().softmax(dim=-1)
        for name, metric in self.metrics[f"{part}_metrics"].items():
            if name.startswith("auroc_"):
                c = CLASS_NAMES.index(name.removeprefix("auroc_").upper())
                metric.update(probs[:, c], (y == c).long())
            else:
                metric.update(probs, y)
            self.log(f"{part}/{name}", metric, **log)
        if extra is not None and part in self.rank_ic:
            self.rank_ic[part].update(probs[:, BUY] - probs[:, SELL], extra.ret, extra.group)
            self.log(f"{part}/ic", self.rank_ic[part], **log)
        return loss

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    def predict_step(self, batch: torch.Tensor | Sequence[torch.Tensor], batch_idx: int) -> ExtractorOutput:
        # The backfill stores RAW logits: softmax happens once, when the store is read.
        x = batch if isinstance(batch, torch.Tensor) else batch[0]  # labels, if any, are unused
        return self.net(x)

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise ValueError("ExtractorModule was built without an optimizer: it can predict, not train")
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        # A per-step schedule (warm-up and decay) is built for this fit's optimizer steps.
        interval = getattr(self.scheduler_factory, "interval", "epoch")
        if interval == "step":
            scheduler = self.scheduler_factory(optimizer, int(self.trainer.estimated_stepping_batches))
        else:
            scheduler = self.scheduler_factory(optimizer)
        # "monitor" matters for ReduceLROnPlateau only; epoch steps suit both it and cosine-over-epochs.
        monitor = self.hparams.scheduler_monitor
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": monitor, "interval": interval},
        }
