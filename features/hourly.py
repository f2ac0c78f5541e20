"""The TCN's 6 hourly input channels (SPEC §4), one row per (symbol, hour) on the gap-policy grid.

The SPEC's hour-of-day channels are left out: the meta-learner decides once a day, so every window
the TCN is trained on and served ends with the 23:00 bar and an hour-of-day channel would repeat
the same 168 values in every sample (a constant input, SPEC §9); position in the window says as much.

A row `ts = t` describes the bar [t, t+1h) and is known at t+1h. Filled no-trade bars (see
marketdata/gaps.py) enter as what they are: zero return, zero range, zero volume.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.market import residual_return
from features.rolling import trailing, trailing_zscore

# The names for the default windows; build_hourly_features names the windows it is given.
TCN_CHANNELS = (
    "residual_1h",        # coin log return minus the volume-weighted market log return
    "volume_rel",         # SPEC's "volume": log1p(quote volume) minus its trailing 7-day mean (scale-free)
    "price_spread",       # (high - low) / close
    "close_open_dir",     # sign(close - open): -1, 0, +1
    "volume_zscore_7d",   # z-score of quote volume against its trailing volume window (168 h)
    "residual_vol_24h",   # std of residual_1h over the trailing 24 hours
)


def _span(hours: int) -> str:
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


def build_hourly_features(
    hourly: pd.DataFrame,
    *,
    market_weight_hours: int = 720,
    volume_window_hours: int = 168,
    residual_vol_hours: int = 24,
) -> pd.DataFrame:
    """The TCN channels aligned row for row with `hourly` (sorted by symbol, ts, complete grid)."""
    symbols = hourly["symbol"]
    residual, _ = residual_return(hourly, market_weight_hours)
    quote_volume = hourly["close"] * hourly["volume"]
    log_quote_volume = np.log1p(quote_volume)
    channels = {
        "residual_1h": residual,
        "volume_rel": log_quote_volume - trailing(log_quote_volume, symbols, volume_window_hours, "mean"),
        "price_spread": (hourly["high"] - hourly["low"]) / hourly["close"],
        "close_open_dir": np.sign(hourly["close"] - hourly["open"]),
        f"volume_zscore_{_span(volume_window_hours)}": trailing_zscore(quote_volume, symbols, volume_window_hours),
        f"residual_vol_{residual_vol_hours}h": trailing(residual, symbols, residual_vol_hours, "std"),
    }
    return pd.DataFrame(channels, index=hourly.index)
