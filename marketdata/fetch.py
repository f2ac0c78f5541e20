"""New hourly bars from an exchange through ccxt, added to a long-format bar file.

One job: bring a bar file (marketdata/load.py's long schema) up to the last closed hour. Per pair the
fetch resumes one hour after the file's last bar of that symbol (a pair the file lacks starts at a
given time) and pages through ccxt's `fetch_ohlcv`, each page starting one hour after the previous
page's last bar, until the last closed hour: the bar opening at t is closed from t + 1h on by the
exchange's clock (ccxt's `fetch_time`; this machine's clock may be off), once a margin has passed as
well (the exchange may still amend a bar just after its close); the bar still forming (which the
exchange returns too) is dropped, since its values would still change. An exchange that does not
report its time is timed by the local clock, and the run says so.
Requests go through ccxt's own rate limiter; one the exchange refuses for now (HTTP 429 or 418, a
timeout, a lost connection: ccxt's NetworkError) is retried a bounded number of times, waiting as
long as the exchange's Retry-After asks when it asks more than the doubling backoff.

Every row is checked as it arrives (six numbers, on the hour, then the loader's bar checks), and all
pairs are fetched and checked before anything is written, in one atomic write: a bad row or an
exchange that keeps refusing leaves the file as it was, and the next run starts from the same place.
Gaps in the new bars are reported against the data config's gap policy (marketdata/gaps.py), not
filled: filling is the loader's job, when the bars are read.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import ccxt
import numpy as np
import pandas as pd
from rich.console import Console

from marketdata.gaps import find_gaps, too_long_gaps
from marketdata.load import BAR_COLUMNS, load_hourly
from marketdata.validate import VALUE_COLUMNS, DataValidationError, check_bars
from store.files import write_parquet_atomic

TIMEFRAME = "1h"
HOUR = pd.Timedelta(hours=1)
HOUR_MS = 3_600_000
ROW_FIELDS = ("ts", *VALUE_COLUMNS)
_PAIR = re.compile(r"^(?P<base>[A-Z0-9]+)/(?P<quote>[A-Z0-9]+)$")


class ConfigError(ValueError):
    """A setting the fetch cannot work with; the message starts with its config key (fetch.<key>)."""


class FetchError(RuntimeError):
    """The exchange did not deliver: it lacks a pair, refused past the retries, or answered an error."""


@dataclass(frozen=True)
class Retry:
    """How a request the exchange refused for now is retried: `attempts` in all, waiting `seconds`
    after the first failure and twice as long after each next one (or the Retry-After, if longer)."""

    attempts: int = 5
    seconds: float = 1.0
    sleep: Callable[[float], None] = time.sleep


@dataclass
class FetchResult:
    new: pd.DataFrame     # the new bars in the long schema, sorted by (symbol, ts)
    pairs: pd.DataFrame   # per pair: pair, symbol, start, bars, first, last, requests
    gaps: pd.DataFrame    # find_gaps of the new bars (after each symbol's last stored bar), plus `refused`
    end: pd.Timestamp     # the open of the last bar asked for (the last closed hour, or before `until`)


def pair_symbol(pair: str) -> str:
    """The exchange symbol of a spot pair, as the bar files name it (BTC/USDT -> BTCUSDT)."""
    match = _PAIR.match(pair)
    if match is None:
        raise ValueError(f"{pair!r} is not a BASE/QUOTE spot pair (e.g. BTC/USDT)")
    return match["base"] + match["quote"]


def make_exchange(exchange_id: str, api_url: str | None = None, options: Mapping | None = None) -> ccxt.Exchange:
    """A ccxt client with its rate limiter on. `options` are the exchange's ccxt options; `api_url`
    (scheme://host:port) sends every REST call to another host, each URL keeping its path."""
    if exchange_id not in ccxt.exchanges:
        raise ConfigError(f"fetch.exchange: {exchange_id!r} is not an exchange ccxt knows (ccxt.exchanges)")
    exchange = getattr(ccxt, exchange_id)({"enableRateLimit": True, "options": dict(options or {})})
    if api_url:
        exchange.urls["api"] = redirect(exchange.urls["api"], api_url)
    return exchange


def redirect(urls, api_url: str):
    """ccxt's `urls['api']` (a URL, or URLs by API, nested for some exchanges) with scheme and host
    replaced by `api_url`'s: Binance's spot `public` https://api.binance.com/api/v3 becomes
    <api_url>/api/v3, so the klines request goes to <api_url>/api/v3/klines."""
    if isinstance(urls, dict):
        return {key: redirect(value, api_url) for key, value in urls.items()}
    if not isinstance(urls, str):
        return urls
    target = urlsplit(api_url)
    return urlunsplit(urlsplit(urls)._replace(scheme=target.scheme, netloc=target.netloc))


def last_bar(now_ms: int, until: pd.Timestamp | None = None, margin_seconds: float = 0.0) -> pd.Timestamp:
    """The open of the last bar to fetch: the last one closed at least `margin_seconds` before `now_ms` (the
    exchange's time), or the last opening before `until`."""
    end = (pd.Timestamp(now_ms, unit="ms", tz="UTC") - pd.Timedelta(seconds=margin_seconds)).floor("h") - HOUR
    return end if until is None else min(end, until.ceil("h") - HOUR)


def exchange_time(exchange: ccxt.Exchange, retry: Retry, console: Console | None = None) -> int:
    """The exchange's clock in ms (ccxt's fetch_time: Binance's GET /api/v3/time); the local clock, said so,
    for an exchange that does not report its time."""
    if not exchange.has.get("fetchTime"):
        if console is not None:
            console.print(f"  {exchange.id} does not report its time: bars are judged closed by the local clock")
        return exchange.milliseconds()
    return int(_call(exchange, "time", exchange.fetch_time, retry, console))


def read_history(path: str | Path) -> pd.DataFrame:
    """The bar file, validated, or no bars when it does not exist yet (the first run)."""
    return load_hourly(path) if Path(path).exists() else _bars("", [])


def start_times(history: pd.DataFrame, pairs: Sequence[str], since: pd.Timestamp | None) -> dict[str, pd.Timestamp]:
    """Where each pair resumes: one hour after its symbol's last stored bar, else at `since`."""
    last = history.groupby("symbol")["ts"].max()
    starts = {}
    for pair in pairs:
        symbol = pair_symbol(pair)
        if symbol in last.index:
            starts[pair] = last[symbol] + HOUR
        elif since is None:
            raise ConfigError(f"fetch.since: {pair} has no {symbol} bars in the bar file to continue from; "
                              f"give the time its first bar opens (e.g. fetch.since=2024-01-01)")
        else:
            starts[pair] = since
    return starts


def update_bars(
    exchange: ccxt.Exchange, pairs: Sequence[str], out_path: str | Path, *, new_only_path: str | Path | None = None,
    since: pd.Timestamp | None = None, until: pd.Timestamp | None = None, limit: int = 1000, retry: Retry = Retry(),
    gap_policy: str = "fill_flat", max_gap_hours: int = 23, close_margin_seconds: float = 0.0,
    now_ms: int | None = None, console: Console | None = None,
) -> FetchResult:
    """Fetch every pair's closed bars after `out_path`'s, then rewrite it as its rows plus the new ones.

    new_only_path: also write the new bars alone there (an append file for `daily.py daily.append=true`);
    `out_path` is written either way, since the next run resumes from it. Nothing is written when
    nothing is new. now_ms: the clock (the exchange's by default); a bar counts as closed once
    `close_margin_seconds` have passed after its close.
    """
    history = read_history(out_path)
    now_ms = exchange_time(exchange, retry, console) if now_ms is None else now_ms
    end = last_bar(now_ms, until, close_margin_seconds)
    starts = start_times(history, pairs, since)
    check_markets(exchange, pairs, retry, console)
    limit = min(limit, _max_limit(exchange))
    frames, summary = [], []
    for pair, start in starts.items():
        bars, requests = fetch_pair(exchange, pair, start, end, limit, retry, console)
        frames.append(bars)
        summary.append(_pair_summary(pair, start, bars, requests))
        if console is not None:
            console.print(_progress_line(summary[-1], end))
    new = pd.concat(frames, ignore_index=True).sort_values(["symbol", "ts"], kind="stable", ignore_index=True)
    if not new.empty:
        write_bars(history, new, out_path, new_only_path)
    return FetchResult(new, pd.DataFrame(summary), gap_report(history, new, gap_policy, max_gap_hours), end)


def check_markets(exchange: ccxt.Exchange, pairs: Sequence[str], retry: Retry, console: Console | None = None) -> None:
    """Each pair must be a spot market of the exchange (a pair it lacks would fail on every page)."""
    _call(exchange, "markets", exchange.load_markets, retry, console)
    for pair in pairs:
        market = exchange.markets.get(pair)
        if market is None or not market.get("spot"):
            raise FetchError(f"{exchange.id} has no spot market {pair}")


def _max_limit(exchange: ccxt.Exchange) -> int:
    """The most bars one request returns (ccxt's `features`; Binance spot: 1000), so that a shorter page
    means the exchange has no more, not that it capped a larger `limit`."""
    known = ((getattr(exchange, "features", None) or {}).get("spot") or {}).get("fetchOHLCV") or {}
    return known.get("limit") or 10**9


def fetch_pair(
    exchange: ccxt.Exchange, pair: str, start: pd.Timestamp, end: pd.Timestamp, limit: int, retry: Retry,
    console: Console | None = None,
) -> tuple[pd.DataFrame, int]:
    """(the pair's checked bars opening from `start` to `end`, the number of requests). A page shorter
    than `limit` is the exchange's last: it has no bar after it yet."""
    symbol, source = pair_symbol(pair), f"{exchange.id} {pair}"
    rows, requests, since = [], 0, int(start.timestamp() * 1000)
    end_ms = int(end.timestamp() * 1000)
    while since <= end_ms:
        page = _page(exchange, pair, since, limit, retry, console)
        requests += 1
        checked = [check_row(source, row, since, i) for i, row in enumerate(page)]
        if checked:
            check_bars(_bars(symbol, checked), source, HOUR)
        rows += [row for row in checked if row[0] <= end_ms]
        if len(page) < limit:
            break
        since = checked[-1][0] + HOUR_MS
    bars = _bars(symbol, rows)
    if not bars.empty:  # the order across pages
        check_bars(bars, source, HOUR)
    return bars, requests


def _page(exchange: ccxt.Exchange, pair: str, since: int, limit: int, retry: Retry, console: Console | None) -> list:
    """One request: up to `limit` bars opening at `since` or later, as ccxt parses them."""
    return _call(exchange, f"{pair} bars from {_time(since)}",
                 lambda: exchange.fetch_ohlcv(pair, TIMEFRAME, since=since, limit=limit), retry, console)


def check_row(source: str, row, since: int, index: int) -> list:
    """One ccxt OHLCV row, [ms, open, high, low, close, volume], as six finite numbers on the hour.
    ccxt parses what it cannot read (a missing field, "abc") to None, so the check sees those too."""
    if not isinstance(row, list | tuple) or len(row) != len(ROW_FIELDS):
        raise DataValidationError(f"{source}: row {index} of the page from {_time(since)} is not "
                                  f"[time, open, high, low, close, volume]: {row!r:.200}")
    ms = row[0]
    if not isinstance(ms, int | np.integer) or isinstance(ms, bool):
        raise DataValidationError(f"{source}: row {index} of the page from {_time(since)} has no bar time in ms: "
                                  f"{row!r:.200}")
    for field, value in zip(ROW_FIELDS[1:], row[1:], strict=True):
        if not isinstance(value, int | float) or isinstance(value, bool) or not np.isfinite(value):
            raise DataValidationError(f"{source}: malformed bar at {_time(ms)}: {field} is missing or not a number "
                                      f"(the row as ccxt parsed it: {row!r:.200})")
    if ms % HOUR_MS:
        raise DataValidationError(f"{source}: bar time {_time(ms)} is not on the hour")
    return [int(ms), *(float(v) for v in row[1:])]


def _call(exchange: ccxt.Exchange, what: str, request: Callable, retry: Retry, console: Console | None = None):
    """`request()`, retried while the exchange refuses for now; any ccxt error past that is a FetchError."""
    for attempt in range(1, retry.attempts + 1):
        exchange.last_response_headers = None  # a Retry-After must be this answer's, not an earlier one's
        try:
            return request()
        except ccxt.NetworkError as err:  # RateLimitExceeded, DDoSProtection (Binance's 429 / 418), timeouts
            if attempt == retry.attempts:
                raise FetchError(f"{exchange.id} {what}: gave up after {attempt} attempt(s): "
                                 f"{type(err).__name__}: {err}"[:400]) from err
            wait = max(retry.seconds * 2 ** (attempt - 1), _retry_after(exchange))
            if console is not None:
                console.print(f"  {exchange.id} {what}: {type(err).__name__}, retrying in {wait:g} s "
                              f"(attempt {attempt + 1} of {retry.attempts})")
            retry.sleep(wait)
        except ccxt.BaseError as err:
            raise FetchError(f"{exchange.id} {what}: {type(err).__name__}: {err}"[:400]) from err
    raise AssertionError("unreachable: the last attempt returns or raises")


def _retry_after(exchange: ccxt.Exchange) -> float:
    """The refusal's Retry-After in seconds (0 when it gave none)."""
    value = (exchange.last_response_headers or {}).get("Retry-After")
    try:
        return max(float(value), 0.0)
    except (TypeError, ValueError):
        return 0.0


def _bars(symbol: str, rows: list[list]) -> pd.DataFrame:
    """Checked rows in the long schema's dtypes (the loader's, so old and new rows concatenate as read)."""
    values = np.array([row[1:] for row in rows], dtype="float64").reshape(-1, len(VALUE_COLUMNS))
    frame = pd.DataFrame(values, columns=list(VALUE_COLUMNS))
    ms = np.array([row[0] for row in rows], dtype="int64")
    frame.insert(0, "ts", pd.to_datetime(ms, unit="ms", utc=True).as_unit("ms"))
    frame.insert(0, "symbol", pd.Series(symbol, index=frame.index, dtype=object).astype(str))
    return frame


def _pair_summary(pair: str, start: pd.Timestamp, bars: pd.DataFrame, requests: int) -> dict:
    return {"pair": pair, "symbol": pair_symbol(pair), "start": start, "bars": len(bars),
            "first": bars["ts"].min() if len(bars) else pd.NaT, "last": bars["ts"].max() if len(bars) else pd.NaT,
            "requests": requests}


def _progress_line(row: dict, end: pd.Timestamp) -> str:
    if row["start"] > end:
        return f"  {row['pair']}: up to date (last bar {row['start'] - HOUR:%Y-%m-%d %H:%M})"
    if not row["bars"]:
        return f"  {row['pair']}: the exchange has no bar from {row['start']:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"
    short = "" if row["last"] == end else f" (none after it up to {end:%Y-%m-%d %H:%M})"
    return (f"  {row['pair']}: {row['bars']:,} new bar(s) {row['first']:%Y-%m-%d %H:%M} -> "
            f"{row['last']:%Y-%m-%d %H:%M}{short}, {row['requests']} request(s)")


def gap_report(history: pd.DataFrame, new: pd.DataFrame, policy: str, max_gap_hours: int) -> pd.DataFrame:
    """find_gaps over each fetched symbol's last stored bar and its new bars (so a hole between the file
    and the first new bar shows too); `refused`: a gap the policy does not fill (too_long_gaps), which
    stops the loader or drops the coin (data.on_bad_symbol)."""
    last_stored = history[history["symbol"].isin(new["symbol"].unique())].groupby("symbol").tail(1)
    bars = new if last_stored.empty else pd.concat([last_stored, new], ignore_index=True)
    gaps = find_gaps(bars.sort_values(["symbol", "ts"], kind="stable", ignore_index=True))
    refused = too_long_gaps(gaps, policy, max_gap_hours)
    return gaps.assign(refused=gaps.index.isin(refused.index)).reset_index(drop=True)


def write_bars(history: pd.DataFrame, new: pd.DataFrame, out_path: str | Path,
               new_only_path: str | Path | None = None) -> None:
    """The new bars alone first (if asked), then the whole file: each write atomic, and a crash between
    them leaves the old file, so the next run fetches and writes the same bars again."""
    if new_only_path:
        write_parquet_atomic(new[list(BAR_COLUMNS)], new_only_path)
    merged = new if history.empty else pd.concat([history, new], ignore_index=True)
    write_parquet_atomic(merged.sort_values(["symbol", "ts"], kind="stable", ignore_index=True)[list(BAR_COLUMNS)],
                         out_path)


def _time(ms: int) -> pd.Timestamp:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC")
