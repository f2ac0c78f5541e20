"""What a listwise loss ranks a timestamp's train windows by, besides the forward return itself (issue 33).

Both read each window's coin's trailing daily residual volatility (datamodules.fold_windows), known at the
window's end, and work per group (a decision timestamp) on long arrays, with no loop over groups:
- `scaled`: the return less its group's mean, over that volatility x sqrt(horizon days): the move in the coin's
  own units, as the label classes it;
- `volatility_neutral`: the return's percentile rank in its group less its least-squares fit on the
  volatility's rank, what the return holds beyond the low-volatility factor (the long-format twin of the book's
  `neutralize: volatility`, backtest.ranked, which does the same to the score on a days x coins frame).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TRAIN_TARGETS = ("return", "scaled", "volatility_neutral")


def scaled(ret: np.ndarray, group: np.ndarray, volatility: np.ndarray, days: int) -> np.ndarray:
    """(samples,) float32: each return less its group's mean, over its daily volatility x sqrt(days)."""
    mean = pd.Series(ret, dtype="float64").groupby(group).transform("mean").to_numpy()
    return ((ret - mean) / (volatility * np.sqrt(days))).astype("float32")


def volatility_neutral(ret: np.ndarray, group: np.ndarray, volatility: np.ndarray) -> np.ndarray:
    """(samples,) float32: per group, the returns' percentile ranks less their least-squares fit on the volatilities'
    ranks, over the samples with both (NaN otherwise): the long-format twin of backtest.ranked's residual ranks."""
    both = np.isfinite(ret) & np.isfinite(volatility)
    rows = pd.DataFrame({"ret": ret[both], "vol": volatility[both]})
    by = rows.groupby(group[both])
    y, x = by["ret"].rank(pct=True), by["vol"].rank(pct=True)
    y, x = y - y.groupby(group[both]).transform("mean"), x - x.groupby(group[both]).transform("mean")
    slope = (x * y).groupby(group[both]).transform("sum") / (x**2).groupby(group[both]).transform("sum")
    out = np.full(len(ret), np.nan, dtype="float32")
    out[both] = (y - slope.fillna(0.0) * x).to_numpy()
    return out
