"""Validation of long-format OHLCV frames.

Every check stops with a `DataValidationError` that names the file, the symbol and the bar time of
the first offending row, and how many rows share the problem. Nothing is repaired silently.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

OHLCV_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
VALUE_COLUMNS = (*PRICE_COLUMNS, "volume")


class DataValidationError(ValueError):
    """Bad input data; the message names the file, the symbol and the time."""


def _fail(source: str, problem: str, frame: pd.DataFrame, bad: np.ndarray) -> None:
    rows = np.flatnonzero(bad)
    first = frame.iloc[rows[0]]
    raise DataValidationError(
        f"{source}: {problem} for {first['symbol']} at {first['ts']} ({rows.size} row(s) affected)"
    )


def check_columns(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check names and dtypes; return the frame in canonical dtypes (float64 values, UTC ms times)."""
    if frame.empty:
        raise DataValidationError(f"{source}: the file holds no rows")
    missing = [c for c in OHLCV_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{source}: missing column(s) {missing}; expected {list(OHLCV_COLUMNS)}")
    unknown = [c for c in frame.columns if c not in OHLCV_COLUMNS]
    if unknown:
        raise DataValidationError(f"{source}: unknown column(s) {unknown}; expected {list(OHLCV_COLUMNS)}")
    if not (pd.api.types.is_string_dtype(frame["symbol"]) or pd.api.types.is_object_dtype(frame["symbol"])):
        raise DataValidationError(f"{source}: column 'symbol' must be strings, got {frame['symbol'].dtype}")
    if not frame["symbol"].map(lambda s: isinstance(s, str) and s != "").all():
        raise DataValidationError(f"{source}: column 'symbol' holds empty or non-string values")
    ts = frame["ts"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype) or str(ts.dtype.tz) != "UTC":
        raise DataValidationError(f"{source}: column 'ts' must be a UTC timestamp, got {ts.dtype}")
    for column in VALUE_COLUMNS:
        dtype = frame[column].dtype
        if not (pd.api.types.is_float_dtype(dtype) or pd.api.types.is_integer_dtype(dtype)):
            raise DataValidationError(f"{source}: column '{column}' must be numeric (float64), got {dtype}")
    out = frame.loc[:, list(OHLCV_COLUMNS)].copy()
    out["symbol"] = out["symbol"].astype(str)
    out["ts"] = out["ts"].dt.as_unit("ms")
    for column in VALUE_COLUMNS:
        out[column] = out[column].astype("float64")
    return out


def check_bars(frame: pd.DataFrame, source: str, bar: pd.Timedelta) -> None:
    """Value and ordering checks on a canonical frame, in file order (before any sorting)."""
    values = frame[list(VALUE_COLUMNS)].to_numpy()
    _check(source, "missing value (NaN or inf) in OHLCV", frame, ~np.isfinite(values).all(axis=1))
    ts = frame["ts"]
    _check(source, f"bar time not aligned to the {bar} grid", frame, (ts.dt.floor(bar) != ts).to_numpy())
    _check(source, "duplicate bar", frame, frame.duplicated(["symbol", "ts"], keep="first").to_numpy())
    previous = frame.groupby("symbol", sort=False)["ts"].shift(1)
    _check(source, "non-monotonic time (bar earlier than the one before it)", frame, (ts < previous).to_numpy())
    o, h, lo, c, v = (frame[col].to_numpy() for col in VALUE_COLUMNS)
    _check(source, "non-positive price", frame, (np.minimum(np.minimum(o, h), np.minimum(lo, c)) <= 0))
    _check(source, "high < low", frame, h < lo)
    _check(source, "close outside [low, high]", frame, (c < lo) | (c > h))
    _check(source, "open outside [low, high]", frame, (o < lo) | (o > h))
    _check(source, "negative volume", frame, v < 0)


def _check(source: str, problem: str, frame: pd.DataFrame, bad: np.ndarray) -> None:
    if bad.any():
        _fail(source, problem, frame, bad)
