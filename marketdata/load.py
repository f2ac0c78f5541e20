"""Reading market data from configured paths into validated, canonical frames."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from marketdata import freqtrade
from marketdata.gaps import apply_gap_policy, find_gaps, too_long_gaps
from marketdata.validate import DataValidationError, bad_symbols, check_bars, check_columns

HOUR = pd.Timedelta(hours=1)
FEAR_GREED_COLUMNS = ("date", "value", "classification")
BAR_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume")
BAD_SYMBOL_POLICIES = ("error", "drop")
# The data config keys the loader reads (the others, e.g. data.restate, belong to other stages).
LOADER_KEYS = ("hourly_path", "fear_greed_path", "gaps", "max_gap_hours", "on_bad_symbol")
HOURLY_FORMATS = (f"a long-format Parquet file ({', '.join(BAR_COLUMNS)}) or a freqtrade data folder "
                  f"({freqtrade.FILES} files)")
FEAR_GREED_FORMATS = f"a Parquet file ({', '.join(FEAR_GREED_COLUMNS)})"
PARQUET_MAGIC = b"PAR1"


def dataset_id(hourly: pd.DataFrame) -> str:
    """The data lineage (store/lineage.py) of validated hourly bars: a hash of the bars at the first
    timestamp. Appending bars keeps it; other coins, another start or another source change it."""
    first = hourly[hourly["ts"] == hourly["ts"].min()].sort_values("symbol")
    digest = hashlib.sha256(pd.util.hash_pandas_object(first[list(BAR_COLUMNS)], index=False).to_numpy().tobytes())
    return f"{first['ts'].iloc[0]:%Y%m%d}-{digest.hexdigest()[:10]}"


def read_bars(path: str | Path) -> pd.DataFrame:
    """The hourly bars as stored, unvalidated: a long-format Parquet file, or a freqtrade data folder read
    into the long schema (marketdata/freqtrade.py)."""
    path = Path(path)
    return freqtrade.read_freqtrade(path) if path.is_dir() else _read_parquet(path, HOURLY_FORMATS)


def _read_parquet(path: str | Path, accepted: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (set the path in conf/data or on the command line)")
    if not _is_parquet(path):
        raise DataValidationError(f"{path}: not a Parquet file; expected {accepted}")
    return pd.read_parquet(path)


def _is_parquet(path: Path) -> bool:
    """Whether the file starts and ends with Parquet's magic bytes: another format (a CSV) gets the
    project's error naming the file and the accepted formats, not pyarrow's."""
    if path.stat().st_size < 3 * len(PARQUET_MAGIC):  # magic, footer length, magic
        return False
    with path.open("rb") as handle:
        head = handle.read(len(PARQUET_MAGIC))
        handle.seek(-len(PARQUET_MAGIC), os.SEEK_END)
        return head == PARQUET_MAGIC and handle.read() == PARQUET_MAGIC


def load_hourly(path: str | Path) -> pd.DataFrame:
    """Hourly OHLCV in the long schema, validated, sorted by (symbol, ts) with a fresh RangeIndex.

    path: a long-format Parquet file or a freqtrade data folder (the same bars give the same frame).
    `ts` is the bar open in UTC; a bar `ts=t` covers [t, t+1h) and is known at t+1h.
    """
    return _load_hourly(path, "error")[0]


def _load_hourly(path: str | Path, on_bad_symbol: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(validated bars sorted by (symbol, ts), the symbols dropped with their first problem)."""
    if on_bad_symbol not in BAD_SYMBOL_POLICIES:
        raise ValueError(f"data.on_bad_symbol must be one of {BAD_SYMBOL_POLICIES}, got {on_bad_symbol!r}")
    source = str(path)
    frame = check_columns(read_bars(path), source)
    if on_bad_symbol == "error":
        check_bars(frame, source, HOUR)
        dropped = bad_symbols(frame.iloc[:0], source, HOUR)
    else:
        dropped = bad_symbols(frame, source, HOUR)
        frame = frame[~frame["symbol"].isin(dropped["symbol"])]
    return frame.sort_values(["symbol", "ts"], kind="stable", ignore_index=True), dropped


def load_fear_greed(path: str | Path) -> pd.DataFrame:
    """The market-wide Fear & Greed index: columns `date` (UTC day, datetime64) and `value` (0..100).

    The value dated d is stamped 00:00 UTC of d by the source; how it is lagged before use is the
    feature builders' documented config choice, not this loader's.
    """
    source = str(path)
    frame = _read_parquet(path, FEAR_GREED_FORMATS)
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


@dataclass
class MarketData:
    grid: pd.DataFrame        # hourly bars on the gap-policy grid (`is_filled` marks the filled ones)
    gaps: pd.DataFrame        # the gap report of the kept symbols
    fear_greed: pd.DataFrame
    dropped: pd.DataFrame     # symbol, ts, problem, rows, message: coins left out (data.on_bad_symbol=drop)

    @property
    def bars(self) -> pd.DataFrame:
        """The recorded bars (the file's, validated), without the gap fills."""
        return self.grid.loc[~self.grid["is_filled"], list(self.grid.columns.drop("is_filled"))]


def load_market(
    hourly_path: str | Path, fear_greed_path: str | Path, gaps: str = "fill_flat", max_gap_hours: int = 23,
    on_bad_symbol: str = "error", hourly: pd.DataFrame | None = None,
) -> MarketData:
    """The configured files, validated, with the gap policy applied.

    on_bad_symbol: `error` stops at the first bad bar or too long gap (naming file, symbol and time);
    `drop` leaves each such coin out and reports it (one bad coin does not stop the fleet).
    hourly: bars already loaded and validated (e.g. a bar history) instead of reading `hourly_path`.
    """
    if hourly is None:
        hourly, dropped = _load_hourly(hourly_path, on_bad_symbol)
    else:
        dropped = bad_symbols(hourly.iloc[:0], str(hourly_path), HOUR)
    gap_report = find_gaps(hourly)
    if on_bad_symbol == "drop":
        long_gaps = too_long_gaps(gap_report, gaps, max_gap_hours).drop_duplicates("symbol")
        if not long_gaps.empty:
            more = pd.DataFrame({
                "symbol": long_gaps["symbol"].to_numpy(), "ts": long_gaps["first_missing"].to_numpy(),
                "problem": "gap too long", "rows": long_gaps["missing_bars"].to_numpy(),
            })
            more["message"] = [f"{hourly_path}: gap of {n} missing hourly bar(s) for {s} from {t} (data.gaps={gaps}, "
                               f"max_gap_hours={max_gap_hours})" for s, t, n in
                               zip(more["symbol"], more["ts"], more["rows"], strict=True)]
            dropped = pd.concat([dropped, more], ignore_index=True)
            hourly = hourly[~hourly["symbol"].isin(more["symbol"])].reset_index(drop=True)
            gap_report = find_gaps(hourly)
    if hourly.empty:
        raise DataValidationError(f"{hourly_path}: no symbol left after dropping the bad ones: "
                                  f"{list(dropped['message'])}")
    try:
        grid = apply_gap_policy(hourly, gaps, max_gap_hours)
    except DataValidationError as err:
        raise DataValidationError(f"{hourly_path}: {err}") from err
    return MarketData(grid, gap_report, load_fear_greed(fear_greed_path), dropped)


def market_data_from_config(data_cfg: Mapping, hourly: pd.DataFrame | None = None) -> MarketData:
    return load_market(**{k: data_cfg[k] for k in LOADER_KEYS if k in data_cfg}, hourly=hourly)


def load_market_data(
    hourly_path: str | Path, fear_greed_path: str | Path, gaps: str = "fill_flat", max_gap_hours: int = 23,
    on_bad_symbol: str = "error", **_other_stages,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(hourly bars on the gap-policy grid, the gap report, Fear & Greed) from the configured files.

    Takes the whole `data` config group; keys of other stages (data.restate) are ignored here.
    """
    data = load_market(hourly_path, fear_greed_path, gaps, max_gap_hours, on_bad_symbol)
    return data.grid, data.gaps, data.fear_greed
