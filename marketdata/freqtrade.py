"""A freqtrade data folder read into the long schema (symbol, ts, open, high, low, close, volume).

`freqtrade download-data` writes one file a pair and timeframe, `<BASE>_<QUOTE>-<timeframe>.<format>`
(BTC/USDT at 1h: `BTC_USDT-1h.feather`), in feather (columns `date`, a UTC timestamp, and open, high,
low, close, volume) or json / json.gz (a list of `[ms since epoch, open, high, low, close, volume]`
rows). The project trades spot pairs on hourly bars, so only the `*-1h.feather|json|json.gz` files
are read, each pair under its exchange symbol (BTC_USDT -> BTCUSDT). Futures candles (pairs with a
settle currency, `BTC/USDT:USDT`, stored as `BTC_USDT_USDT-1h-futures.feather`) are refused rather
than mixed in. Values pass through unchanged: the bar checks are the loader's, as for a Parquet file.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.feather as feather

from marketdata.validate import DataValidationError, check_columns

TIMEFRAME = "1h"
CANDLE_COLUMNS = ("date", "open", "high", "low", "close", "volume")
FILES = f"<BASE>_<QUOTE>-{TIMEFRAME}.feather, .json or .json.gz"
# <pair>-1h[-<candle type>].<format>; only futures candles carry a candle type (futures, mark, funding_rate, ...).
_NAME = re.compile(rf"^(?P<pair>[^-]+)-{TIMEFRAME}(?:-(?P<candle_type>\w+))?\.(?P<format>feather|json|json\.gz)$")
_SPOT_PAIR = re.compile(r"^(?P<base>[A-Za-z0-9]+)_(?P<quote>[A-Za-z0-9]+)$")


def read_freqtrade(folder: str | Path) -> pd.DataFrame:
    """Every spot pair's 1h candles in the folder, in the long schema: pairs by symbol, rows in file order
    (the loader checks the order, so it must see the files' own)."""
    frames = [_read_candles(path, symbol) for symbol, path in candle_files(Path(folder)).items()]
    return pd.concat(frames, ignore_index=True)


def candle_files(folder: Path) -> dict[str, Path]:
    """symbol -> the folder's 1h candle file of that spot pair, by symbol. One file a pair: two formats of
    the same pair may hold different candles, and silently picking one would hide that."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        match = _NAME.match(path.name)
        if match is None or not path.is_file():
            continue
        symbol = _symbol(path, match)
        if symbol in found:
            raise DataValidationError(f"{folder}: {found[symbol].name} and {path.name} both hold {symbol}; "
                                      f"keep one file a pair")
        found[symbol] = path
    if not found:
        raise DataValidationError(f"{folder}: no freqtrade {TIMEFRAME} candle files in the folder; expected {FILES}")
    return dict(sorted(found.items()))


def _symbol(path: Path, match: re.Match) -> str:
    """The exchange symbol of a spot pair's file name (BTC_USDT -> BTCUSDT)."""
    if match["candle_type"] is not None or match["pair"].count("_") > 1:
        raise DataValidationError(f"{path}: futures candles (a settle currency or candle type in the name) are out "
                                  f"of scope; only spot pairs are read ({FILES})")
    spot = _SPOT_PAIR.match(match["pair"])
    if spot is None:
        raise DataValidationError(f"{path}: {match['pair']!r} is not a <BASE>_<QUOTE> pair name; expected {FILES}")
    return spot["base"] + spot["quote"]


def _read_candles(path: Path, symbol: str) -> pd.DataFrame:
    """One file's candles in the long schema, checked per file so that a wrong column names the file."""
    candles = _read_feather(path) if path.name.endswith(".feather") else _read_json(path)
    return check_columns(candles.rename(columns={"date": "ts"}).assign(symbol=symbol), str(path))


def _read_feather(path: Path) -> pd.DataFrame:
    frame = feather.read_table(path).to_pandas()
    if sorted(frame.columns) != sorted(CANDLE_COLUMNS):
        raise DataValidationError(f"{path}: columns {list(frame.columns)}; expected {list(CANDLE_COLUMNS)}")
    date = frame["date"]
    if not isinstance(date.dtype, pd.DatetimeTZDtype):
        raise DataValidationError(f"{path}: column 'date' must be a UTC timestamp, got {date.dtype}")
    missing = np.flatnonzero(date.isna().to_numpy())
    if missing.size:
        raise DataValidationError(f"{path}: row {missing[0]} has no date ({missing.size} row(s) affected)")
    return frame.assign(date=date.dt.tz_convert("UTC"))


def _read_json(path: Path) -> pd.DataFrame:
    raw = path.read_bytes()
    try:
        rows = json.loads(gzip.decompress(raw) if path.name.endswith(".gz") else raw)
    except (OSError, ValueError) as err:  # a bad gzip stream is an OSError, bad JSON a ValueError
        raise DataValidationError(f"{path}: not a freqtrade json candle file: {err}") from err
    values = _candle_rows(path, rows)
    ms = values[:, 0]
    bad = np.flatnonzero(~np.isfinite(ms) | (ms != np.floor(ms)))
    if bad.size:
        raise DataValidationError(f"{path}: row {bad[0]} has no time in whole ms since epoch: {ms[bad[0]]} "
                                  f"({bad.size} row(s) affected)")
    frame = pd.DataFrame(values[:, 1:], columns=list(CANDLE_COLUMNS[1:]))
    frame.insert(0, "date", pd.to_datetime(ms.astype("int64"), unit="ms", utc=True))
    return frame


def _candle_rows(path: Path, rows: object) -> np.ndarray:
    """The rows as an (n, 6) float64 array in one conversion; when that fails, the first row that is not
    six numbers is named (rows convert one by one exactly when they convert together)."""
    if not isinstance(rows, list):
        raise DataValidationError(f"{path}: not a list of [ms since epoch, open, high, low, close, volume] rows")
    if not rows:
        return np.empty((0, len(CANDLE_COLUMNS)))
    try:
        values = np.array(rows, dtype="float64")
    except (TypeError, ValueError, OverflowError):
        values = np.empty(0)
    if values.shape == (len(rows), len(CANDLE_COLUMNS)):
        return values
    bad = next(i for i, row in enumerate(rows) if not _is_candle(row))
    raise DataValidationError(f"{path}: row {bad} is not [ms since epoch, open, high, low, close, volume]: "
                              f"{rows[bad]!r:.100}")


def _is_candle(row: object) -> bool:
    try:
        return np.asarray(row, dtype="float64").shape == (len(CANDLE_COLUMNS),)
    except (TypeError, ValueError, OverflowError):
        return False
