"""Fixed-length windows over contiguous per-symbol arrays, as strided views.

All symbols' rows are stacked into one (rows, channels) tensor, one contiguous block per symbol.
`Tensor.unfold` turns it into a view of every window (no copy); a sample is the window that ends
at its decision row, and a batch gathers only its own windows. A window is usable when it lies
inside one symbol's block and holds no missing value.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


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


def _stack(batch):
    """The dataset already returns whole batches (see `WindowDataset.__getitems__`)."""
    return batch


class WindowDataset(Dataset):
    """Samples (window, label) for the given window-end rows of `values`.

    values: (rows, channels) float32; ends: (samples,) int64 row of each window's last step;
    labels: (samples,) int64. `channels_first` gives (batch, channels, length) as Conv1d wants,
    otherwise (batch, length, channels) as a batch-first LSTM wants.
    """

    collate_fn = staticmethod(_stack)

    def __init__(self, values: torch.Tensor, ends: torch.Tensor, labels: torch.Tensor, length: int,
                 channels_first: bool):
        if len(ends) and int(ends.min()) < length - 1:
            raise ValueError("a window would start before the first row")
        self.windows = values.unfold(0, length, 1)  # (rows - length + 1, channels, length), a view
        self.ends, self.labels, self.length, self.channels_first = ends, labels, length, channels_first

    def __len__(self) -> int:
        return len(self.ends)

    def __getitems__(self, index) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(index, device=self.ends.device)
        x = self.windows[self.ends[index] - (self.length - 1)]  # (batch, channels, length)
        return (x if self.channels_first else x.transpose(1, 2)), self.labels[index]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([i])
        return x[0], y[0]
