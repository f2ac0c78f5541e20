"""Bring the hourly bar history up to the last closed hour from the exchange (marketdata/fetch.py).

    python fetch.py fetch.since=2024-01-01             # the first run: Binance, the sample's 8 pairs
    python fetch.py                                    # later: each pair from one hour after its last bar
    python fetch.py fetch.pairs=[BTC/USDT,ETH/USDT] fetch.out_path=/data/hourly.parquet
    python fetch.py fetch.since=2024-01-01 fetch.until=2024-07-01 fetch.out_path=/data/h1.parquet   # a fixed window

Then the day's signals on the live bars, the whole file or only this run's new bars:

    python fetch.py && python daily.py data.hourly_path=data/live/hourly.parquet
    python fetch.py fetch.new_only_path=data/live/new.parquet && \\
        python daily.py data.hourly_path=data/live/new.parquet daily.append=true

Only closed bars are written (closed by the exchange's clock, `fetch.close_margin_seconds` after the
hour), every row is checked, and the file (`fetch.out_path`) is rewritten in one atomic write once every
pair is fetched: a bad row (named by pair and time) or an exchange that keeps refusing writes nothing,
and the next run starts from the same place. Gaps in the new bars are listed, not filled, with those the
gap policy (`data.gaps`, `data.max_gap_hours`) will not fill. The run's log is kept like every command's.

Exit codes (cli/exits.py): 0 done (written, or nothing new); 1 an unexpected error (a bug); 2 a bad config
value or bad data from the exchange; 12 the exchange did not deliver; one line each, nothing written.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import hydra
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from cli import Exit, Stop, command, console
from marketdata.fetch import ConfigError, FetchError, Retry, make_exchange, pair_symbol, update_bars
from marketdata.validate import DataValidationError


def _hour(key: str, value) -> pd.Timestamp | None:
    """A configured time as a UTC timestamp on the hour (naive times are UTC)."""
    if value is None:
        return None
    try:
        ts = pd.Timestamp(str(value))
    except ValueError as err:
        raise ConfigError(f"fetch.{key}: {value!r} is not a time (e.g. 2024-01-01 or 2024-01-01T06:00)") from err
    ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
    if ts != ts.floor("h"):
        raise ConfigError(f"fetch.{key}: {value!r} is not on the hour (bars open on the hour)")
    return ts


def _checked(fetch: dict) -> dict:
    """The fetch config, each key checked before anything reaches the network."""
    pairs = fetch["pairs"]
    if not isinstance(pairs, list) or not pairs:
        raise ConfigError(f"fetch.pairs: expected a list of BASE/QUOTE pairs, got {pairs!r}")
    for pair in pairs:
        try:
            pair_symbol(str(pair))
        except ValueError as err:
            raise ConfigError(f"fetch.pairs: {err}") from err
    if len(set(pairs)) != len(pairs):
        raise ConfigError(f"fetch.pairs: a pair is listed twice: {pairs}")
    for key, low in (("limit", 1), ("max_retries", 1), ("retry_seconds", 0), ("close_margin_seconds", 0)):
        if not isinstance(fetch[key], int | float) or fetch[key] < low:
            raise ConfigError(f"fetch.{key}: expected a number >= {low}, got {fetch[key]!r}")
    if Path(fetch["out_path"]).is_dir():
        raise ConfigError(f"fetch.out_path: {fetch['out_path']} is a folder; name a long-format Parquet file")
    api_url = fetch["api_url"]
    if api_url is not None and (urlsplit(str(api_url)).scheme not in ("http", "https")
                                or not urlsplit(str(api_url)).netloc):
        raise ConfigError(f"fetch.api_url: expected scheme://host[:port], got {api_url!r}")
    return {**fetch, "since": _hour("since", fetch["since"]), "until": _hour("until", fetch["until"])}


def run_fetch(cfg: DictConfig) -> None:
    fetch = _checked(OmegaConf.to_container(cfg.fetch, resolve=True))
    exchange = make_exchange(fetch["exchange"], fetch["api_url"], fetch.get("options"))  # checks fetch.exchange
    console.print(f"fetch: {exchange.id}, {len(fetch['pairs'])} pair(s) -> {fetch['out_path']}")
    result = update_bars(
        exchange, fetch["pairs"], fetch["out_path"], new_only_path=fetch["new_only_path"], since=fetch["since"],
        until=fetch["until"], limit=int(fetch["limit"]),
        retry=Retry(attempts=int(fetch["max_retries"]), seconds=float(fetch["retry_seconds"])),
        gap_policy=cfg.data.gaps, max_gap_hours=int(cfg.data.max_gap_hours),
        close_margin_seconds=float(fetch["close_margin_seconds"]), console=console,
    )
    for gap in result.gaps.itertuples():
        refused = (f"; data.gaps={cfg.data.gaps} with max_gap_hours={cfg.data.max_gap_hours} does not fill it "
                   f"(loading stops, or drops the coin: data.on_bad_symbol)" if gap.refused else "")
        console.print(f"  [yellow]gap[/]: {gap.symbol} misses {gap.missing_bars} bar(s) from "
                      f"{gap.first_missing:%Y-%m-%d %H:%M}{refused}", soft_wrap=True)
    if result.new.empty:
        console.print(f"fetch: nothing new up to {result.end:%Y-%m-%d %H:%M} UTC; nothing written")
        return
    also = f"; the new bars alone in {fetch['new_only_path']}" if fetch["new_only_path"] else ""
    console.print(f"fetch: {len(result.new):,} new bar(s) up to {result.end:%Y-%m-%d %H:%M} UTC written to "
                  f"{fetch['out_path']}{also}", soft_wrap=True)


@hydra.main(version_base="1.3", config_path="conf", config_name="fetch")
@command
def main(cfg: DictConfig) -> None:
    try:
        run_fetch(cfg)
    except (ConfigError, DataValidationError) as err:
        raise Stop(Exit.BAD_INPUT, f"fetch: {err}; nothing written") from err
    except FetchError as err:
        raise Stop(Exit.EXCHANGE, f"fetch: {err}; nothing written") from err


if __name__ == "__main__":
    main()
