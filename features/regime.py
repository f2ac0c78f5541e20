"""Market-wide regime inputs, one row per day, for the regime composite of SPEC §7.

The composite R = 0.35·momentum + 0.20·volatility + 0.20·fear/greed + 0.25·breadth wants four
components in [-1, 1]; the high_vol regime wants σ7d / σ30d of the market return. This module gives
exactly those, point in time: the row of day d reads bars up to and including d, the market return up
to d and Fear & Greed as `fear_greed_for_days` releases it (with its lag). The composite and the regime
classes are computed elsewhere.

- momentum = tanh(market log return over `momentum_window` days / `momentum_scale`). The market
  return is `features.market.market_return` (volume-weighted log return); the sum over the window is the
  market's log return over it. tanh keeps the sign, is near linear for ordinary moves and saturates
  smoothly: with the default scale 0.10 a +10% fortnight gives 0.76, +20% gives 0.96.
- vol_ratio = std of the daily market return over `vol_short_window` days / over `vol_long_window` days
  (sample std, both windows ending at d); volatility = clip(1 - vol_ratio, -1, 1). Volatility rising
  above its recent level is risk-off (negative); calming below it is risk-on; a ratio of 2 or more,
  the high_vol threshold, gives -1.
- fear/greed = clip((value - 50) / 50, -1, 1) with the lagged index value (0 extreme fear, 100 extreme
  greed).
- breadth = 2 · (share of symbols whose close is above their own `breadth_sma_window`-day SMA) - 1,
  among the symbols with a full SMA window that day; NaN when fewer than `breadth_min_symbols` qualify,
  so one or two young coins cannot swing it to ±1.

The index is every calendar day from the first to the last day of `daily` (`ts`, UTC 00:00); rows in a
warm-up (or a day without enough data) are NaN, never filled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.fear_greed import fear_greed_for_days
from features.market import market_return

REGIME_FEATURES: tuple[str, ...] = (
    "regime_momentum", "regime_volatility", "regime_fear_greed", "regime_breadth", "vol_ratio_7d_30d",
)


def build_regime_inputs(
    daily: pd.DataFrame,
    fear_greed: pd.DataFrame,
    *,
    market_weight_window: int = 30,
    momentum_window: int = 14,
    momentum_scale: float = 0.10,
    vol_short_window: int = 7,
    vol_long_window: int = 30,
    breadth_sma_window: int = 20,
    breadth_min_symbols: int = 3,
    fear_greed_lag_days: int = 1,
) -> pd.DataFrame:
    """The four regime components in [-1, 1] and the raw volatility ratio, indexed by day `ts`.

    Columns: regime_momentum, regime_volatility, regime_fear_greed, regime_breadth and
    vol_ratio_{vol_short_window}d_{vol_long_window}d (`REGIME_FEATURES` for the defaults).
    """
    if momentum_scale <= 0:
        raise ValueError(f"momentum_scale must be > 0, got {momentum_scale}")
    days = pd.date_range(daily["ts"].min(), daily["ts"].max(), freq="D", name="ts")
    market = market_return(daily, weight_window=market_weight_window).reindex(days)

    momentum = np.tanh(market.rolling(momentum_window, min_periods=momentum_window).sum() / momentum_scale)
    vol_ratio = _vol_ratio(market, vol_short_window, vol_long_window)
    fg_value = fear_greed_for_days(fear_greed, days.to_series(index=days), lag_days=fear_greed_lag_days)
    frame = pd.DataFrame(
        {
            "regime_momentum": momentum,
            "regime_volatility": (1.0 - vol_ratio).clip(-1.0, 1.0),
            "regime_fear_greed": ((fg_value - 50.0) / 50.0).clip(-1.0, 1.0),
            "regime_breadth": _breadth(daily, breadth_sma_window, breadth_min_symbols).reindex(days),
            f"vol_ratio_{vol_short_window}d_{vol_long_window}d": vol_ratio,
        },
        index=days,
    )
    return frame.astype("float64")


def _vol_ratio(market: pd.Series, short: int, long: int) -> pd.Series:
    """σ(short) / σ(long) of the daily market return; NaN where the long σ is zero or unknown."""
    short_std = market.rolling(short, min_periods=short).std()
    long_std = market.rolling(long, min_periods=long).std()
    return short_std / long_std.where(long_std > 0)


def _breadth(daily: pd.DataFrame, window: int, min_symbols: int) -> pd.Series:
    """2 · share of qualifying symbols closing above their own trailing SMA - 1, per day."""
    sma = daily.groupby("symbol", sort=False)["close"].transform(
        lambda close: close.rolling(window, min_periods=window).mean()
    )
    qualifies = sma.notna()
    above = (daily["close"] > sma) & qualifies
    counts = pd.DataFrame({"ts": daily["ts"], "above": above, "qualifies": qualifies}).groupby("ts").sum()
    share = counts["above"] / counts["qualifies"].where(counts["qualifies"] >= max(min_symbols, 1))
    return 2.0 * share - 1.0
