"""Fear & Greed aligned to daily rows, point in time.

The daily row of day d (known at the close of d) reads the value dated d - `lag_days`. The default
lag of 1 treats a value as known only once its own day has ended, as the data README advises.
Missing source days are bridged by the latest earlier value for at most `max_stale_days`; past
that the feature is NaN, never a guess.
"""

from __future__ import annotations

import pandas as pd


def fear_greed_for_days(
    fear_greed: pd.DataFrame, days: pd.Series, lag_days: int = 1, max_stale_days: int = 3
) -> pd.Series:
    """The Fear & Greed value each daily row may use; aligned to `days` (UTC 00:00 timestamps)."""
    if lag_days < 0:
        raise ValueError(f"fear_greed lag_days must be >= 0, got {lag_days}")
    wanted = (days.dt.tz_convert("UTC").dt.tz_localize(None) - pd.Timedelta(days=lag_days)).dt.as_unit("ms")
    query = pd.DataFrame({"wanted": wanted.to_numpy(), "row": range(len(days))}).sort_values("wanted")
    source = fear_greed[["date", "value"]].sort_values("date")
    joined = pd.merge_asof(
        query, source, left_on="wanted", right_on="date", direction="backward",
        tolerance=pd.Timedelta(days=max_stale_days),
    )
    return pd.Series(joined.sort_values("row")["value"].to_numpy(), index=days.index, name="fear_greed")


def fear_greed_features(
    fear_greed: pd.DataFrame, days: pd.Series, lag_days: int = 1, change_days: int = 7, max_stale_days: int = 3
) -> dict[str, pd.Series]:
    """The index (0..100, already scale-free) and its change over `change_days`, for daily rows.

    The change reads the value `change_days` earlier straight from the index (lag + change_days),
    so neither depends on which symbol's rows exist.
    """
    value = fear_greed_for_days(fear_greed, days, lag_days=lag_days, max_stale_days=max_stale_days)
    earlier = fear_greed_for_days(fear_greed, days, lag_days=lag_days + change_days, max_stale_days=max_stale_days)
    return {"fear_greed": value, f"fear_greed_change_{change_days}d": value - earlier}
