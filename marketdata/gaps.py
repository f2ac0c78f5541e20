"""Missing hourly bars: a report per gap, and the explicit policy that handles them.

Policy (config `data.gaps`):
- `fill_flat` (default): each missing hour becomes a flat no-trade bar (open = high = low = close =
  the previous close, volume 0) flagged `is_filled`, so every symbol has a complete hourly grid from
  its first to its last bar and windows are plain strided views. Only gaps of at most
  `max_gap_hours` are filled. The default 23 is shorter than a day, so every UTC day keeps at least
  one real bar: a daily bar is never invented, nothing is carried across a missing day.
  A longer gap is an error naming the symbol and the time.
- `error`: any missing hour is an error.
Zero-volume bars that the exchange did record are real bars and are kept as they are.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pandas as pd

from marketdata.validate import DataValidationError

HOUR = pd.Timedelta(hours=1)


class GapPolicy(StrEnum):
    FILL_FLAT = "fill_flat"
    ERROR = "error"


def find_gaps(hourly: pd.DataFrame) -> pd.DataFrame:
    """One row per gap: symbol, last bar before it, first missing hour, number of missing bars.

    `hourly` is sorted by (symbol, ts); the index of each row is the position of the last bar
    before the gap.
    """
    step = hourly.groupby("symbol", sort=False)["ts"].diff()
    after = np.flatnonzero((step > HOUR).to_numpy())
    before = hourly.iloc[after - 1]
    gaps = pd.DataFrame(
        {
            "symbol": before["symbol"].to_numpy(),
            "last_bar_before": before["ts"].array,
            "first_missing": (before["ts"] + HOUR).dt.as_unit("ms").array,
            "missing_bars": (step.iloc[after] // HOUR - 1).astype("int64").to_numpy(),
        },
        index=pd.Index(after - 1, name="row_before"),
    )
    return gaps


def summarise_gaps(hourly: pd.DataFrame, gaps: pd.DataFrame) -> pd.DataFrame:
    """Per-symbol counts: bars present, gaps, missing bars, longest gap, zero-volume bars."""
    per_symbol = hourly.groupby("symbol", sort=True).agg(
        bars=("ts", "size"), zero_volume_bars=("volume", lambda v: int((v == 0).sum()))
    )
    by_gap = gaps.groupby("symbol").agg(
        gaps=("missing_bars", "size"), missing_bars=("missing_bars", "sum"), longest_gap=("missing_bars", "max")
    )
    out = per_symbol.join(by_gap).fillna(0).astype("int64")
    return out[["bars", "gaps", "missing_bars", "longest_gap", "zero_volume_bars"]]


def too_long_gaps(gaps: pd.DataFrame, policy: GapPolicy | str, max_gap_hours: int) -> pd.DataFrame:
    """The gaps the policy does not fill (all of them under `error`)."""
    return gaps if GapPolicy(policy) is GapPolicy.ERROR else gaps[gaps["missing_bars"] > max_gap_hours]


def apply_gap_policy(
    hourly: pd.DataFrame, policy: GapPolicy | str = GapPolicy.FILL_FLAT, max_gap_hours: int = 23
) -> pd.DataFrame:
    """Return the hourly frame on a complete per-symbol grid with a boolean `is_filled` column."""
    policy = GapPolicy(policy)
    gaps = find_gaps(hourly)
    too_long = too_long_gaps(gaps, policy, max_gap_hours)
    if not too_long.empty:
        first = too_long.iloc[0]
        limit = "no gap is allowed" if policy is GapPolicy.ERROR else f"max_gap_hours={max_gap_hours}"
        raise DataValidationError(
            f"gap of {first['missing_bars']} missing hourly bar(s) for {first['symbol']} from "
            f"{first['first_missing']} ({limit}, data.gaps={policy.value}; {len(too_long)} such gap(s))"
        )
    out = hourly.assign(is_filled=False)
    if gaps.empty:
        return out
    # One new row per missing hour, built from the gap table without looping over hours.
    repeats = gaps["missing_bars"].to_numpy()
    offsets = np.arange(repeats.sum()) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    price = np.repeat(hourly["close"].to_numpy()[gaps.index.to_numpy()], repeats)
    first_missing = gaps["first_missing"].repeat(repeats).array
    filled = pd.DataFrame(
        {
            "symbol": np.repeat(gaps["symbol"].to_numpy(), repeats),
            "ts": first_missing + pd.to_timedelta(offsets, unit="h"),
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "volume": 0.0,
            "is_filled": True,
        }
    )
    filled["ts"] = filled["ts"].dt.as_unit("ms")
    out = pd.concat([out, filled], ignore_index=True)
    return out.sort_values(["symbol", "ts"], kind="stable", ignore_index=True)
