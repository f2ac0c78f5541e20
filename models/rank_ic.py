"""The validation daily rank IC of a fit: per decision timestamp, the Spearman correlation between the
part's score (p(BUY) - p(SELL), as the evaluation scores every part) and the forward return across the
coins, averaged over the timestamps. The definition is `evaluation.daily_rank_ic`'s (average
ranks for ties; timestamps with fewer than 3 coins or a constant side dropped), recomputed here so the
extractors' training code does not read the evaluation package.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def rank_ic_by_group(score: np.ndarray, ret: np.ndarray, group: np.ndarray, min_names: int = 3) -> np.ndarray:
    """(groups kept,) Spearman of score with ret inside each group, in group order."""
    data = pd.DataFrame({"group": group, "score": score, "ret": ret}).dropna()
    data = data[np.isfinite(data["score"]) & np.isfinite(data["ret"])]
    by = data.groupby("group", sort=True)
    centre = (by["score"].transform("size") + 1) / 2
    x = by["score"].rank(method="average") - centre
    y = by["ret"].rank(method="average") - centre
    sums = pd.DataFrame({"n": 1, "xy": x * y, "xx": x * x, "yy": y * y}).groupby(data["group"], sort=True).sum()
    valid = (sums["n"] >= min_names) & (sums["xx"] > 0) & (sums["yy"] > 0)
    return (sums.loc[valid, "xy"] / np.sqrt(sums.loc[valid, "xx"] * sums.loc[valid, "yy"])).to_numpy()


class DailyRankIC(Metric):
    """Collects (score, forward return, timestamp id) over an epoch; `compute` is the mean per-timestamp IC
    (NaN when no timestamp qualifies). States concatenate across processes, so DDP sees every coin."""

    full_state_update = False

    def __init__(self, min_names: int = 3) -> None:
        super().__init__()
        self.min_names = min_names
        for name in ("score", "ret", "group"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, score: torch.Tensor, ret: torch.Tensor, group: torch.Tensor) -> None:
        # score, ret: (B,) floats; group: (B,) int64 timestamp ids of the part
        self.score.append(score.detach().double())
        self.ret.append(ret.detach().double())
        self.group.append(group.detach())

    def compute(self) -> torch.Tensor:
        score, ret, group = (dim_zero_cat(s).cpu().numpy() for s in (self.score, self.ret, self.group))
        ic = rank_ic_by_group(score, ret, group, self.min_names)
        return torch.tensor(float(ic.mean()) if len(ic) else float("nan"), dtype=torch.float32)
