"""Train-only window augmentations that keep the label's meaning, each off at 0 (the default).

- `scale`: the magnitude of return-like channels (`scale_channels`) times exp(scale * N(0, 1)), one
  factor a window. The labels are volatility-scaled (a move counts in the coin's own units), so a
  window scaled as a whole still earns its class. The factor applies to the raw (cross-sectionally
  relative) values: about each channel's normalised zero, -mean / scale.
- `warp`: the time axis stretched or compressed by a factor drawn in [1 - warp, 1 + warp] about the
  window's LAST step, which stays exactly as it was (the label is measured from it): step t reads
  position (T - 1) - (T - 1 - t) * factor, linearly interpolated, clamped to the window.
- `mix`: that share of the windows is mixed with another coin's window of the same decision time
  (mixup inside the cross-section): x = lam x + (1 - lam) x', lam ~ Beta(a, a) folded to >= 0.5 so
  the window's own coin dominates; its class target becomes lam onehot(y) + (1 - lam) onehot(y')
  and its forward return lam r + (1 - lam) r'.
Point in time: each reads only its own window (and the partner's, which ends at the same hour).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

Partner = Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass
class Augment:
    scale: float = 0.0
    scale_channels: Sequence[str] = ()
    warp: float = 0.0
    mix: float = 0.0
    mix_alpha: float = 0.4
    n_classes: int = 3

    def __post_init__(self) -> None:
        if self.scale < 0 or not 0 <= self.warp < 1 or not 0 <= self.mix <= 1 or self.mix_alpha <= 0:
            raise ValueError(f"augment needs scale >= 0, 0 <= warp < 1, 0 <= mix <= 1, mix_alpha > 0: {self}")
        if self.scale > 0 and not self.scale_channels:
            raise ValueError("augment.scale > 0 needs scale_channels (the return-like input channels)")
        self._channels: torch.Tensor | None = None
        self._zero: torch.Tensor | None = None

    @property
    def enabled(self) -> bool:
        return self.scale > 0 or self.warp > 0 or self.mix > 0

    def bind(self, columns: Sequence[str], mean: np.ndarray, scale: np.ndarray, device: torch.device) -> Augment:
        """Learn where the scaled channels are and their normalised zero (the normaliser's train statistics)."""
        missing = [c for c in self.scale_channels if c not in columns]
        if self.scale > 0 and missing:
            raise ValueError(f"augment.scale_channels {missing} are not among the inputs {list(columns)}")
        at = [list(columns).index(c) for c in self.scale_channels if c in columns]
        self._channels = torch.tensor(at, dtype=torch.long, device=device)
        self._zero = torch.tensor(-mean[at] / scale[at], dtype=torch.float32, device=device)[:, None]  # (C', 1)
        return self

    def __call__(self, x: torch.Tensor, y: torch.Tensor, ret: torch.Tensor, partner: Partner
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        # x: (B, C, T) gathered windows (a copy), y: (B,) classes, ret: (B,) forward returns
        target = None
        if self.mix > 0:
            x, ret, target = self._mix(x, y, ret, partner)
        if self.scale > 0:
            x = self._scale(x)
        if self.warp > 0:
            x = time_warp(x, 1 + self.warp * (2 * torch.rand(len(x), device=x.device) - 1))
        return x, ret, target

    def _mix(self, x, y, ret, partner: Partner):
        x2, y2, ret2 = partner()
        beta = torch.distributions.Beta(torch.tensor(self.mix_alpha), torch.tensor(self.mix_alpha))
        lam = beta.sample((len(x),)).to(x.device)
        lam = torch.maximum(lam, 1 - lam)  # (B,) the window's own coin dominates
        lam = torch.where(torch.rand(len(x), device=x.device) < self.mix, lam, torch.ones_like(lam))
        mixed = lam[:, None, None] * x + (1 - lam[:, None, None]) * x2  # (B, C, T)
        target = (lam[:, None] * F.one_hot(y, self.n_classes) + (1 - lam[:, None]) * F.one_hot(y2, self.n_classes))
        return mixed, lam * ret + (1 - lam) * ret2, target.float()  # target: (B, n_classes)

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        factor = torch.exp(self.scale * torch.randn(len(x), 1, 1, device=x.device))  # (B, 1, 1)
        x = x.clone()
        x[:, self._channels] = self._zero + factor * (x[:, self._channels] - self._zero)
        return x


def time_warp(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """x: (B, C, T), factor: (B,) -> (B, C, T); step t reads x at (T-1) - (T-1-t) * factor (last step fixed)."""
    steps = x.shape[-1]
    if steps < 2:
        return x
    back = torch.arange(steps - 1, -1, -1, device=x.device, dtype=x.dtype)  # (T,) steps before the last
    position = ((steps - 1) - back[None, :] * factor[:, None].to(x.dtype)).clamp(0, steps - 1)  # (B, T)
    low = position.floor().long().clamp(max=steps - 2)  # (B, T)
    frac = (position - low)[:, None, :]  # (B, 1, T)
    index = low[:, None, :].expand(-1, x.shape[1], -1)  # (B, C, T)
    return x.gather(-1, index) * (1 - frac) + x.gather(-1, index + 1) * frac
