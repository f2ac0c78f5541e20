"""Reading market data from configured paths into validated, canonical frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from marketdata.gaps import apply_gap_policy, find_gaps
from marketdata.validate import DataValidationError, check_bars, check_columns

HOUR = pd.Timedelta(hours=1)
FEAR_GREED_COLUMNS = ("date", "value", "classification")


def _read_parquet(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (set the path in conf/data or on the command line)")
    return pd.read_parquet(path)


def load_hourly(path: str | Path) -> pd.DataFrame:
    """Hourly OHLCV in the long schema, validated, sorted by (symbol, ts) with a fresh RangeIndex.

    `ts` is the bar open in UTC; a bar `ts=t` covers [t, t+1h) and is known at t+1h.
    """
    source = str(path)
    frame = check_columns(_read_parquet(path), source)
    check_bars(frame, source, HOUR)
    return frame.sort_values(["symbol", "ts"], kind="stable", ignore_index=True)


def load_fear_greed(path: str | Path) -> pd.DataFrame:
    """The market-wide Fear & Greed index: columns `date` (UTC day, datetime64) and `value` (0..100).

    The value dated d is stamped 00:00 UTC of d by the source; how it is lagged before use is the
    feature builders' documented config choice, not this loader's.
    """
    source = str(path)
    frame = _read_parquet(path)
    if frame.empty:
        raise DataValidationError(f"{source}: the file holds no rows")
    missing = [c for c in ("date", "value") if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{source}: missing column(s) {missing}; expected {list(FEAR_GREED_COLUMNS)}")
    unknown = [c for c in frame.columns if c not in FEAR_GREED_COLUMNS]
    if unknown:
        raise DataValidationError(f"{source}: unknown column(s) {unknown}; expected {list(FEAR_GREED_COLUMNS)}")
    if not pd.api.types.is_numeric_dtype(frame["value"]):
        raise DataValidationError(f"{source}: column 'value' must be numeric, got {frame['value'].dtype}")
    try:
        date = pd.to_datetime(frame["date"]).dt.as_unit("ms")
    except (TypeError, ValueError) as err:
        raise DataValidationError(f"{source}: column 'date' is not a date: {err}") from err
    if date.dt.tz is not None:
        date = date.dt.tz_convert("UTC").dt.tz_localize(None)
    out = pd.DataFrame({"date": date, "value": frame["value"].astype("float64")})
    bad = [
        ("missing value", ~np.isfinite(out["value"].to_numpy())),
        ("value outside [0, 100]", ((out["value"] < 0) | (out["value"] > 100)).to_numpy()),
        ("date is not a whole day", (out["date"].dt.normalize() != out["date"]).to_numpy()),
        ("duplicate date", out["date"].duplicated().to_numpy()),
        ("non-monotonic date", (out["date"] < out["date"].shift(1)).to_numpy()),
    ]
    for problem, mask in bad:
        if mask.any():
            rows = np.flatnonzero(mask)
            raise DataValidationError(
                f"{source}: {problem} at {out['date'].iloc[rows[0]].date()} ({rows.size} row(s) affected)"
            )
    return out


def load_market_data(
    hourly_path: str | Path, fear_greed_path: str | Path, gaps: str = "fill_flat", max_gap_hours: int = 23
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(hourly bars on the gap-policy grid, the gap report, Fear & Greed) from the configured files."""
    hourly = load_hourly(hourly_path)
    gap_report = find_gaps(hourly)
    try:
        grid = apply_gap_policy(hourly, gaps, max_gap_hours)
    except DataValidationError as err:
        raise DataValidationError(f"{hourly_path}: {err}") from err
    return grid, gap_report, load_fear_greed(fear_greed_path)
