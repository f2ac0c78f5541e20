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


def bar_problems(frame: pd.DataFrame, bar: pd.Timedelta) -> list[tuple[str, np.ndarray]]:
    """(problem, boolean mask of offending rows) for each value and ordering check, in file order."""
    values = frame[list(VALUE_COLUMNS)].to_numpy()
    ts = frame["ts"]
    previous = frame.groupby("symbol", sort=False)["ts"].shift(1)
    o, h, lo, c, v = (frame[col].to_numpy() for col in VALUE_COLUMNS)
    return [
        ("missing value (NaN or inf) in OHLCV", ~np.isfinite(values).all(axis=1)),
        (f"bar time not aligned to the {bar} grid", (ts.dt.floor(bar) != ts).to_numpy()),
        ("duplicate bar", frame.duplicated(["symbol", "ts"], keep="first").to_numpy()),
        ("non-monotonic time (bar earlier than the one before it)", (ts < previous).to_numpy()),
        ("non-positive price", np.minimum(np.minimum(o, h), np.minimum(lo, c)) <= 0),
        ("high < low", h < lo),
        ("close outside [low, high]", (c < lo) | (c > h)),
        ("open outside [low, high]", (o < lo) | (o > h)),
        ("negative volume", v < 0),
    ]


def check_bars(frame: pd.DataFrame, source: str, bar: pd.Timedelta) -> None:
    """Value and ordering checks on a canonical frame, in file order (before any sorting)."""
    for problem, bad in bar_problems(frame, bar):
        if bad.any():
            _fail(source, problem, frame, bad)


def bad_symbols(frame: pd.DataFrame, source: str, bar: pd.Timedelta) -> pd.DataFrame:
    """One row per symbol failing a check (its first problem): symbol, ts, problem, rows, message."""
    found = []
    for problem, bad in bar_problems(frame, bar):
        if bad.any():
            rows = frame.loc[bad, ["symbol", "ts"]].assign(problem=problem)
            counts = rows.groupby("symbol")["ts"].transform("size")
            found.append(rows.assign(rows=counts).drop_duplicates("symbol"))
    if not found:
        return pd.DataFrame(columns=["symbol", "ts", "problem", "rows", "message"])
    out = pd.concat(found, ignore_index=True).drop_duplicates("symbol", ignore_index=True)
    out["message"] = [f"{source}: {p} for {s} at {t} ({n} row(s) affected)"
                      for s, t, p, n in zip(out["symbol"], out["ts"], out["problem"], out["rows"], strict=True)]
    return out
