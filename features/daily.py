"""The LSTM's 12 daily input features (SPEC §4), one row per (symbol, UTC day).

News sentiment has no data here; its slots are taken by price/volume features. No input is a
placeholder constant (a test checks every column varies within every symbol).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.fear_greed import fear_greed_for_days
from features.market import residual_return
from features.rolling import trailing, trailing_zscore

LSTM_FEATURES = (
    "close_ret",          # log(close_d / close_{d-1})
    "residual_1d",        # close_ret minus the volume-weighted market log return
    "market_ret_1d",      # the market log return itself: the common factor the residual removes
    "residual_7d",        # sum of residual_1d over 7 days: relative momentum
    "close_ret_vol_7d",   # std of close_ret over 7 days
    "volume_zscore_30d",  # z-score of log quote volume against its trailing 30 days
    "daily_range",        # (high - low) / close
    "body",               # log(close / open): the day's direction and size
    "close_location",     # (close - low) / (high - low): where the day closed in its range
    "volume_ratio_7d",    # log(quote volume / its trailing 7-day mean)
    "fear_greed_index",   # market-wide Fear & Greed, lagged (features/fear_greed.py)
    "fear_greed_change_7d",
)


def build_daily_features(
    daily: pd.DataFrame,
    fear_greed: pd.DataFrame,
    *,
    market_weight_days: int = 30,
    volume_window: int = 30,
    short_window: int = 7,
    fear_greed_lag_days: int = 1,
    fear_greed_max_stale_days: int = 3,
) -> pd.DataFrame:
    """The LSTM inputs aligned row for row with `daily` (bars sorted by symbol, ts, contiguous days)."""
    symbols = daily["symbol"]
    residual, market = residual_return(daily, market_weight_days)
    close_ret = residual + market
    log_quote_volume = np.log1p(daily["close"] * daily["volume"])
    day_range = daily["high"] - daily["low"]
    fear_greed_value = fear_greed_for_days(
        fear_greed, daily["ts"], lag_days=fear_greed_lag_days, max_stale_days=fear_greed_max_stale_days
    )
    features = {
        "close_ret": close_ret,
        "residual_1d": residual,
        "market_ret_1d": market,
        "residual_7d": trailing(residual, symbols, short_window, "sum"),
        "close_ret_vol_7d": trailing(close_ret, symbols, short_window, "std"),
        "volume_zscore_30d": trailing_zscore(log_quote_volume, symbols, volume_window),
        "daily_range": day_range / daily["close"],
        "body": np.log(daily["close"] / daily["open"]),
        # A flat day (high == low) closed nowhere in particular: the middle.
        "close_location": ((daily["close"] - daily["low"]) / day_range.where(day_range > 0)).fillna(0.5),
        "volume_ratio_7d": log_quote_volume - np.log1p(
            trailing(daily["close"] * daily["volume"], symbols, short_window, "mean")
        ),
        "fear_greed_index": fear_greed_value,
        "fear_greed_change_7d": fear_greed_value - fear_greed_value.groupby(symbols, sort=False).shift(7),
    }
    return pd.DataFrame(features, index=daily.index)[list(LSTM_FEATURES)]
