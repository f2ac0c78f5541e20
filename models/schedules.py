"""Per-step learning-rate schedules (issue 33, item 3): warm-up, then cosine or linear decay.

`WarmupDecay` is what the model config's `scheduler` instantiates (`_target_`, not partial): the
module calls it with the optimizer and the fit's number of optimizer steps, and steps it every batch
(`interval = "step"`). Today's default, torch's CosineAnnealingLR over epochs (`_partial_`), keeps the
epoch interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

DECAYS = ("cosine", "linear")


@dataclass(frozen=True)
class WarmupDecay:
    """lr multiplier at step s of S: (s + 1) / W over the first W = warmup * S steps, then from 1 down to
    `min_ratio` at the last step, along a half cosine or a line."""

    warmup: float = 0.05
    decay: str = "cosine"
    min_ratio: float = 0.0
    interval = "step"  # a class attribute: what ExtractorModule.configure_optimizers reads

    def __post_init__(self) -> None:
        if self.decay not in DECAYS or not 0 <= self.warmup < 1 or not 0 <= self.min_ratio <= 1:
            raise ValueError(f"scheduler needs decay in {DECAYS}, 0 <= warmup < 1, 0 <= min_ratio <= 1: {self}")

    def factor(self, step: int, total: int) -> float:
        warm = int(self.warmup * total)
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm - 1))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if self.decay == "cosine" else 1 - progress
        return self.min_ratio + (1 - self.min_ratio) * shape

    def __call__(self, optimizer: Optimizer, total_steps: int) -> LambdaLR:
        return LambdaLR(optimizer, lambda step: self.factor(step, total_steps))
