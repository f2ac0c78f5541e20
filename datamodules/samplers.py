"""Training batch samplers beyond plain shuffling: whole decision timestamps per batch, and a bounded
share of the windows per epoch.

`DayBatchSampler` is what a cross-sectional (listwise) loss needs: every batch holds all the windows
of the decision timestamps it takes (a day's coins at the daily stride, an hour's at an hourly one),
so a per-timestamp ranking loss sees each timestamp's whole cross-section. Both samplers draw their
order from torch's global generator, as `RandomSampler` does, so a seeded fit is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def _draw_seed() -> int:
    return int(torch.empty((), dtype=torch.int64).random_().item())


class DayBatchSampler(Sampler[np.ndarray]):
    """Batches of whole decision timestamps, in a fresh random order each epoch, exactly `len(self)` of them.

    group: (samples,) decision-time id of each window. Timestamps are drawn in random order and packed in
    that order into ceil(windows / batch_size) batches: a timestamp joins the batch its first window's place
    falls in (the windows drawn before it, as a share of the epoch's), so a batch holds about `batch_size`
    windows and never splits a timestamp. Lightning validates after the epoch's last batch by its count, so
    the count is exact: every batch is reached as long as no timestamp outnumbers a batch's share, which is
    checked once. `fraction` < 1 takes that share of the windows per epoch (whole timestamps, a different draw
    each epoch), bounding the cost.
    """

    def __init__(self, group: np.ndarray, batch_size: int, fraction: float = 1.0):
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        group = np.asarray(group)
        self.order = np.argsort(group, kind="stable")  # (samples,) window numbers by timestamp
        _, self.starts, self.sizes = np.unique(group[self.order], return_index=True, return_counts=True)
        self.batch_size, self.fraction = int(batch_size), float(fraction)
        self.target = len(group) if fraction == 1 else round(fraction * len(group))  # windows an epoch, at most
        self.batches = max(1, math.ceil(self.target / self.batch_size))
        largest = int(self.sizes.max(initial=0))
        # The epoch draws more than target - largest windows; each batch's share of them must hold a timestamp.
        if largest * (self.batches + 1) > self.target:
            raise ValueError(f"a decision timestamp holds {largest} windows, too many for whole-timestamp batches of "
                             f"{self.batch_size} from {self.target} windows an epoch: raise the batch size")

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[np.ndarray]:
        generator = torch.Generator().manual_seed(_draw_seed())
        picks = torch.randperm(len(self.sizes), generator=generator).numpy()  # (timestamps,) in drawn order
        sizes = self.sizes[picks]
        before = np.cumsum(sizes) - sizes  # (timestamps,) windows drawn before each
        picks, sizes, before = (a[before + sizes <= self.target] for a in (picks, sizes, before))
        # Each drawn timestamp's windows, in drawn order: its start in `order` plus 0 .. size - 1.
        windows = self.order[np.repeat(self.starts[picks] - before, sizes) + np.arange(sizes.sum())]
        batch = np.repeat(before * self.batches // sizes.sum(), sizes)  # (windows,) batch number of each
        cuts = np.flatnonzero(np.diff(batch)) + 1
        yield from np.split(windows, cuts)


class FractionSampler(Sampler[int]):
    """A fresh random `fraction` of the windows each epoch, without replacement (cost bound for plain batches)."""

    def __init__(self, n: int, fraction: float):
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.n, self.count = int(n), max(1, round(fraction * n))

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(_draw_seed())
        yield from torch.randperm(self.n, generator=generator)[: self.count].tolist()
