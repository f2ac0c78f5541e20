"""Weight averaging of a fit (issue 33, item 3), on Lightning's WeightAveraging callback.

- `ema`: an exponential moving average of the weights (and BatchNorm statistics), decay per step;
- `swa`: the equal average of the weights after every step from `start` (a share of the fit's steps) on.
Lightning validates (and checkpoints) the averaged weights; train.py keeps the best checkpoint's, so the
artifact holds the averaged network. `none` (the default) adds no callback.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import WeightAveraging
from torch.optim.swa_utils import get_ema_avg_fn

KINDS = ("none", "ema", "swa")


class StepAveraging(WeightAveraging):
    def __init__(self, kind: str, decay: float = 0.99, start: float = 0.0) -> None:
        if kind not in ("ema", "swa") or not 0 < decay < 1 or not 0 <= start < 1:
            raise ValueError(f"averaging needs kind ema | swa, 0 < decay < 1 and 0 <= start < 1; got {kind}, "
                             f"{decay}, {start}")
        super().__init__(**({"avg_fn": get_ema_avg_fn(decay)} if kind == "ema" else {}))
        self.start = start
        self.first_step = 0

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self.first_step = int(self.start * trainer.estimated_stepping_batches)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and step_idx >= self.first_step


def averaging_callback(kind: str = "none", decay: float = 0.99, start: float = 0.0) -> StepAveraging | None:
    """The callback the model config's `averaging` names (None for `none`)."""
    if kind not in KINDS:
        raise ValueError(f"averaging.kind must be one of {KINDS}, got {kind!r}")
    return None if kind == "none" else StepAveraging(kind, decay, start)
