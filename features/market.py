"""Per-bar log returns and the market return the residual features are measured against.

The market return at a bar is the mean log return across the symbols trading at that bar, each
weighted by its trailing mean quote volume (close x volume) over the previous `weight_window` bars,
excluding the bar itself, so a volume spike at t cannot tilt the market return at t. Symbols
without a previous bar or without trailing volume weigh zero; when every weight is zero (an
exchange-wide outage) the plain mean is used. The universe is whatever symbols the data holds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def log_return(bars: pd.DataFrame) -> pd.Series:
    """log(close_t / close_{t-1}) within each symbol; NaN on a symbol's first bar."""
    previous = bars.groupby("symbol", sort=False)["close"].shift(1)
    return np.log(bars["close"] / previous)


def market_weights(bars: pd.DataFrame, weight_window: int) -> pd.Series:
    """Trailing mean quote volume over the `weight_window` bars before each bar (0 where unknown)."""
    quote_volume = bars["close"] * bars["volume"]
    trailing = (
        quote_volume.groupby(bars["symbol"], sort=False)
        .transform(lambda v: v.shift(1).rolling(weight_window, min_periods=1).mean())
    )
    return trailing.fillna(0.0)


def market_return(bars: pd.DataFrame, weight_window: int) -> pd.Series:
    """The volume-weighted market log return per `ts` (a Series indexed by ts, sorted)."""
    ret = log_return(bars)
    weight = market_weights(bars, weight_window).where(ret.notna(), 0.0)
    valid = ret.notna()
    frame = pd.DataFrame(
        {
            "ts": bars["ts"],
            "weighted": (ret.fillna(0.0) * weight),
            "weight": weight,
            "ret": ret.where(valid, 0.0),
            "count": valid.astype("float64"),
        }
    )
    sums = frame.groupby("ts", sort=True)[["weighted", "weight", "ret", "count"]].sum()
    equal = sums["ret"] / sums["count"].where(sums["count"] > 0)
    weighted = sums["weighted"] / sums["weight"].where(sums["weight"] > 0)
    return weighted.fillna(equal).rename("market_ret")


def residual_return(bars: pd.DataFrame, weight_window: int) -> tuple[pd.Series, pd.Series]:
    """(coin log return minus market log return, market log return), both aligned to `bars`."""
    ret = log_return(bars)
    market = market_return(bars, weight_window)
    market_aligned = pd.Series(market.reindex(bars["ts"]).to_numpy(), index=bars.index, name="market_ret")
    return (ret - market_aligned).rename("residual"), market_aligned
