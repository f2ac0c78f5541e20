"""Fixed-length windows over contiguous per-symbol arrays, as strided views.

All symbols' rows are stacked into one (rows, channels) tensor, one contiguous block per symbol.
`Tensor.unfold` turns it into a view of every window (no copy); a sample is the window that ends
at its decision row, and a batch gathers only its own windows. A window is usable when it lies
inside one symbol's block and holds no missing value.

Given each sample's forward return and decision-time group, a batch is a `WindowBatch`: what the
daily rank IC, a per-day listwise loss and mixing coins of one timestamp need besides (x, y), and
the classes of other horizons' labels where heads learn them.
Without them it is the plain (x, y) pair (the default training batches and the backfill's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

IGNORE = -100  # an aux class no loss counts (F.cross_entropy's ignore_index)


def window_end_mask(symbols: np.ndarray, values: np.ndarray, length: int) -> np.ndarray:
    """True at row i if rows [i - length + 1, i] belong to one symbol and are all finite.

    `symbols` must be grouped (one contiguous block per symbol), as the feature frames are.
    """
    n = len(symbols)
    new_block = np.ones(n, dtype=bool)
    new_block[1:] = symbols[1:] != symbols[:-1]
    block_start = np.maximum.accumulate(np.where(new_block, np.arange(n), 0))
    inside = np.arange(n) - block_start >= length - 1
    bad = np.concatenate([[0], np.cumsum(~np.isfinite(values).all(axis=1))])
    ends = np.arange(n) + 1
    starts = np.maximum(ends - length, 0)
    return inside & (bad[ends] - bad[starts] == 0)


class WindowBatch(NamedTuple):
    x: torch.Tensor  # (B, C, T) channels first (TCN) or (B, T, C) (LSTM)
    y: torch.Tensor  # (B,) int64 class of each window's own label
    ret: torch.Tensor  # (B,) float32 forward return over the label's horizon (NaN: none)
    group: torch.Tensor  # (B,) int64 decision-time id: windows with one id share a decision timestamp
    target: torch.Tensor | None = None  # (B, n_classes) soft class targets where coins were mixed
    aux: torch.Tensor | None = None  # (B, H) int64 classes of H other labels (IGNORE: unknown or purged)


def _stack(batch):
    """The dataset already returns whole batches (see `WindowDataset.__getitems__`)."""
    return batch


class WindowDataset(Dataset):
    """Samples (window, label) for the given window-end rows of `values`.

    values: (rows, channels) float32; ends: (samples,) int64 row of each window's last step;
    labels: (samples,) int64. `channels_first` gives (batch, channels, length) as Conv1d wants,
    otherwise (batch, length, channels) as a batch-first LSTM wants. With `ret` and `group`
    ((samples,) float32 and int64) a batch is a `WindowBatch`; `augment` (train only) transforms
    each batch's windows (datamodules.augment.Augment), drawing partners of the same group; `aux`
    ((samples, H) int64) adds other labels' classes.
    """

    collate_fn = staticmethod(_stack)

    def __init__(self, values: torch.Tensor, ends: torch.Tensor, labels: torch.Tensor, length: int,
                 channels_first: bool, ret: torch.Tensor | None = None, group: torch.Tensor | None = None,
                 augment: Callable | None = None, aux: torch.Tensor | None = None):
        if len(ends) and int(ends.min()) < length - 1:
            raise ValueError("a window would start before the first row")
        if (augment is not None or aux is not None) and group is None:
            raise ValueError("augmenting windows and other labels' classes need their decision-time groups")
        self.windows = values.unfold(0, length, 1)  # (rows - length + 1, channels, length), a view
        self.ends, self.labels, self.length, self.channels_first = ends, labels, length, channels_first
        self.ret, self.group, self.augment, self.aux = ret, group, augment, aux
        if group is not None:
            # Samples sorted by group: a group's members are order[start : start + size].
            self._order = torch.argsort(group, stable=True)  # (samples,)
            self._position = torch.empty_like(self._order)
            self._position[self._order] = torch.arange(len(group), device=group.device)  # place in `order`
            _, inverse, counts = torch.unique(group, return_inverse=True, return_counts=True)
            starts = torch.cumsum(counts, 0) - counts
            self._start, self._size = starts[inverse], counts[inverse]  # (samples,) each sample's group's

    def __len__(self) -> int:
        return len(self.ends)

    def _x(self, index: torch.Tensor) -> torch.Tensor:
        return self.windows[self.ends[index] - (self.length - 1)]  # (batch, channels, length), gathered

    def partners(self, index: torch.Tensor) -> torch.Tensor:
        """(batch,) for each sample, another sample of its group drawn at random (itself if alone)."""
        size = self._size[index]
        step = (torch.rand(len(index), device=index.device) * (size - 1)).long() + (size > 1).long()  # 1..size-1
        offset = (self._position[index] - self._start[index] + step) % size
        return self._order[self._start[index] + offset]

    def __getitems__(self, index) -> tuple[torch.Tensor, torch.Tensor] | WindowBatch:
        index = torch.as_tensor(index, device=self.ends.device)
        x, y = self._x(index), self.labels[index]  # (batch, channels, length), (batch,)
        if self.group is None:
            return (x if self.channels_first else x.transpose(1, 2)), y
        ret, target = self.ret[index], None
        if self.augment is not None:
            x, ret, target = self.augment(x, y, ret, lambda: self._partner_batch(index))
        aux = None if self.aux is None else self.aux[index]  # (batch, H)
        return WindowBatch(x if self.channels_first else x.transpose(1, 2), y, ret, self.group[index], target, aux)

    def _partner_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        other = self.partners(index)
        return self._x(other), self.labels[other], self.ret[other]

    def __getitem__(self, i: int):
        batch = self.__getitems__([i])
        fields = [None if field is None else field[0] for field in batch]
        return WindowBatch(*fields) if isinstance(batch, WindowBatch) else tuple(fields)
