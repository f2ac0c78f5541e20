"""Daily bars as the UTC-day aggregation of hourly bars."""

from __future__ import annotations

import pandas as pd

DAY = pd.Timedelta(days=1)


def daily_from_hourly(hourly: pd.DataFrame) -> pd.DataFrame:
    """Aggregate hourly bars into UTC days: first open, max high, min low, last close, summed volume.

    Only recorded bars take part (`is_filled` ones are skipped when the column is present), so the
    result equals the exchange's own daily bars. A symbol's last day is kept only if its 23:00 bar
    is there: a day still running has no close yet. `ts` is the day's 00:00 UTC; the bar is known
    at `ts + 1 day`.
    """
    real = hourly[~hourly["is_filled"]] if "is_filled" in hourly.columns else hourly
    day = real["ts"].dt.floor(DAY)
    daily = (
        real.groupby([real["symbol"], day], sort=True)
        .agg(open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"),
             volume=("volume", "sum"))
        .reset_index()
    )
    last_bar = hourly.groupby("symbol", sort=True)["ts"].max()
    unfinished = last_bar[last_bar.dt.hour != 23].dt.floor(DAY)
    if not unfinished.empty:
        key = pd.MultiIndex.from_frame(daily[["symbol", "ts"]])
        drop = key.isin(list(zip(unfinished.index, unfinished, strict=True)))
        daily = daily[~drop].reset_index(drop=True)
    return daily
