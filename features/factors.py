"""One-line factor baselines: the bars a learned model must clear on the same rows.

Each factor is a score per (symbol, UTC day d), known at d's close (its decision time), built
from the daily log returns `close_ret` up to and including day d only. Higher score = expected to
outperform the other coins over the next days, so the daily rank IC of a factor is read like a
model's.

- `reversal_3d`: minus the 3-day log return, -log(close_d / close_{d-3}): short-term reversal.
- `lowvol_30d`: minus the sample std of the last 30 daily log returns: the low-volatility anomaly.
- `mom_30d`: the 30-day log return, log(close_d / close_{d-30}): time-series momentum.

They are evaluation baselines, never model inputs (`stacking.frame.feature_sets` does not list
them).
"""

from __future__ import annotations

import pandas as pd

from features.rolling import trailing

FACTORS = ("reversal_3d", "lowvol_30d", "mom_30d")


def build_factor_scores(daily: pd.DataFrame, log_returns: pd.Series) -> pd.DataFrame:
    """The factor scores aligned row for row with `daily` (sorted by symbol, ts, contiguous days).

    `log_returns` is the daily close-to-close log return of each row (the LSTM input `close_ret`);
    a factor is NaN until its symbol has the window's returns.
    """
    symbols = daily["symbol"]
    return pd.DataFrame(
        {
            "reversal_3d": -trailing(log_returns, symbols, 3, "sum"),
            "lowvol_30d": -trailing(log_returns, symbols, 30, "std"),
            "mom_30d": trailing(log_returns, symbols, 30, "sum"),
        },
        index=daily.index,
    )
