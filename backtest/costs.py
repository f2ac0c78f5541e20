"""What holding a position costs between its trades, one model for both strategies.

Trading costs are `fee_rate + slippage` a side on the traded value (each strategy books them at its
fills). Financing (`financing`) is what the account pays to hold the book:
- `borrow`: spot shorts pay `borrow_rate` a year on their value; longs pay nothing;
- `funding`: perpetual futures: every position pays the funding rate on its signed value (longs pay and
  shorts receive when the rate is positive): `funding_rate` a year, or, with `funding_path`, each coin's
  published rates (a CSV or Parquet file: symbol, ts (UTC, the funding time), rate (a fraction per
  funding event, e.g. Binance's 8-hourly rate)): a coin the file names pays its events (the file must
  cover the backtest's span for it); a coin it does not name pays `funding_rate`.

Rates a year are charged per calendar day (`annualisation_days`) or per hour (/ 24 of that).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

FINANCING = ("borrow", "funding")
HOUR_NS = 3_600_000_000_000


def check_costs(key: str, fee_rate: float, slippage: float, financing: str, borrow_rate: float,
                funding_rate: float) -> None:
    """Refuse cost settings outside their ranges, naming the config block `key` (e.g. backtest.book.)."""
    if financing not in FINANCING:
        raise ValueError(f"{key}financing must be one of {FINANCING}, got {financing!r}")
    costs = {"fee_rate": fee_rate, "slippage": slippage, "borrow_rate": borrow_rate}
    bad = {name: value for name, value in costs.items() if not 0 <= value < 1}
    if bad or not -1 < funding_rate < 1:
        raise ValueError(f"{key}: costs must lie in [0, 1) (funding_rate in (-1, 1)), got "
                         f"{bad or {'funding_rate': funding_rate}}")


def pro_rata(rate: float, hours, year: int):
    """A rate a year (`year` calendar days) charged over `hours` (a number or an array), as a fraction of the
    value held: a short's borrow, or the constant funding rate."""
    return rate / year * (hours / 24)  # a day's charge is rate / year exactly


@lru_cache(maxsize=4)
def load_funding(path: str) -> pd.DataFrame:
    """A funding-rate file (symbol, ts, rate), sorted by symbol and time; bad rows are refused by file,
    symbol and time."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"funding_path {file} does not exist")
    frame = pd.read_csv(file) if file.suffix.lower() == ".csv" else pd.read_parquet(file)
    missing = [c for c in ("symbol", "ts", "rate") if c not in frame.columns]
    if missing:
        raise ValueError(f"funding file {file} lacks column(s) {missing} (needs symbol, ts, rate)")
    ts = pd.to_datetime(frame["ts"], utc=True)
    out = pd.DataFrame({"symbol": frame["symbol"].astype("str"), "ts": ts,
                        "rate": pd.to_numeric(frame["rate"], errors="coerce")})
    bad = ~np.isfinite(out["rate"].to_numpy()) | (out["rate"].abs() >= 1).to_numpy()
    if bad.any():
        row = out[bad].iloc[0]
        raise ValueError(f"funding file {file}: {row['symbol']} at {row['ts']} has rate {row['rate']} "
                         f"(a fraction per funding event, |rate| < 1)")
    duplicated = out.duplicated(["symbol", "ts"])
    if duplicated.any():
        row = out[duplicated].iloc[0]
        raise ValueError(f"funding file {file}: two rates for {row['symbol']} at {row['ts']}")
    return out.sort_values(["symbol", "ts"], ignore_index=True)


def daily_funding(funding_rate: float, funding_path: str | None, days: pd.DatetimeIndex, symbols: pd.Index,
                  year_days: int) -> pd.DataFrame:
    """(days, symbols) the funding a unit of long value pays over each UTC day [t, t + 1 day)."""
    constant = pd.DataFrame(funding_rate / year_days, index=days, columns=symbols)
    if funding_path is None:
        return constant
    series = load_funding(str(funding_path))
    per_day = series["rate"].groupby([series["ts"].dt.floor("D").rename("date"), series["symbol"]]).sum()
    named = per_day.unstack("symbol").reindex(index=days).fillna(0.0)
    return named.reindex(columns=symbols).fillna(constant)


def funding_between(funding_rate: float, funding_path: str | None, symbols: np.ndarray, start_ns: np.ndarray,
                    end_ns: np.ndarray, year_days: int) -> np.ndarray:
    """Per row, the funding a unit of long value pays from start to end (int ns, UTC): the published
    events in [start, end) of a symbol the file names, else `funding_rate` pro rata of the hours."""
    hours = (end_ns - start_ns) / HOUR_NS
    constant = pro_rata(funding_rate, hours, year_days)
    if funding_path is None:
        return constant
    series = load_funding(str(funding_path))
    out = constant.copy()
    for symbol, events in series.groupby("symbol", sort=False):
        rows = np.flatnonzero(symbols == symbol)
        if rows.size == 0:
            continue
        ts = events["ts"].dt.tz_convert("UTC").to_numpy().astype("datetime64[ns]").astype("int64")
        cumulative = np.concatenate([[0.0], np.cumsum(events["rate"].to_numpy())])
        paid = (cumulative[np.searchsorted(ts, end_ns[rows], side="left")]
                - cumulative[np.searchsorted(ts, start_ns[rows], side="left")])
        out[rows] = paid
    return out
