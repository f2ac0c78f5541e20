"""The LSTM's 12 daily input features (SPEC §4), one row per (symbol, UTC day).

News sentiment has no data here; its slots are taken by price/volume features. No input is a
placeholder constant (a test checks every column varies within every symbol).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.fear_greed import fear_greed_features
from features.market import residual_return
from features.rolling import trailing, trailing_zscore

# Names carry their windows; these are the names for the default windows (build_daily_features
# returns the names for the windows it is given).
LSTM_FEATURES = (
    "close_ret",                # log(close_d / close_{d-1})
    "residual_1d",              # close_ret minus the volume-weighted market log return
    "market_ret_1d",            # the market log return itself: the common factor the residual removes
    "residual_7d",              # sum of residual_1d over the short window: relative momentum
    "close_ret_vol_7d",         # std of close_ret over the short window
    "quote_volume_zscore_30d",  # z-score of log quote volume against its trailing volume window
    "daily_range",              # (high - low) / close
    "body",                     # log(close / open): the day's direction and size
    "close_location",           # (close - low) / (high - low): where the day closed in its range
    "volume_ratio_7d",          # log quote volume against its trailing short-window mean
    "fear_greed",               # market-wide Fear & Greed, lagged (features/fear_greed.py)
    "fear_greed_change_7d",     # its change over the short window
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
    """The 12 LSTM inputs aligned row for row with `daily` (sorted by symbol, ts, contiguous days)."""
    symbols = daily["symbol"]
    residual, market = residual_return(daily, market_weight_days)
    close_ret = residual + market
    log_quote_volume = np.log1p(daily["close"] * daily["volume"])
    day_range = daily["high"] - daily["low"]
    short = f"{short_window}d"
    features = {
        "close_ret": close_ret,
        "residual_1d": residual,
        "market_ret_1d": market,
        f"residual_{short}": trailing(residual, symbols, short_window, "sum"),
        f"close_ret_vol_{short}": trailing(close_ret, symbols, short_window, "std"),
        f"quote_volume_zscore_{volume_window}d": trailing_zscore(log_quote_volume, symbols, volume_window),
        "daily_range": day_range / daily["close"],
        "body": np.log(daily["close"] / daily["open"]),
        # A flat day (high == low) closed nowhere in particular: the middle.
        "close_location": ((daily["close"] - daily["low"]) / day_range.where(day_range > 0)).fillna(0.5),
        f"volume_ratio_{short}": log_quote_volume - np.log1p(
            trailing(daily["close"] * daily["volume"], symbols, short_window, "mean")
        ),
        **fear_greed_features(
            fear_greed, daily["ts"], fear_greed_lag_days, short_window, fear_greed_max_stale_days
        ),
    }
    return pd.DataFrame(features, index=daily.index)
