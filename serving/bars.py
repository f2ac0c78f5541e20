"""The bars a daily run serves from: taken into the dataset's bar history, checked, and cut at a day.

- the file (or an append of new bars) must end with a day's 23:00 bar: a partial day is refused before
  any bar is taken (the day served is always the one that closed);
- it is merged into the bar history beside the store (`store.lineage.checked_market_data`): a past bar
  that changed, vanished or arrived late stops the run (`data.restate=true` takes it);
- the latest bar must be fresh against the clock (`data.max_data_age_hours`), and every coin that traded
  in the last 24 hours must have the latest hour's bar (`daily.require_complete_hour`);
- `Bars.through(day)`: the market as a run at `day`'s close had it (the history's bars up to day's 23:00
  bar, the gap policy applied to them), and a bar file of exactly those bars for the stages that
  fingerprint their data (a retrain, the backfill's plans): a missed day is served from what it would
  have been served from.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console

from cli import Exit, Stop
from marketdata.load import MarketData, market_data_from_config, read_bars
from serving.settings import DailySettings
from store.files import write_parquet_atomic
from store.lineage import BarHistory, HistoryChangedError, checked_market_data

HOUR, DAY = pd.Timedelta(hours=1), pd.Timedelta(days=1)


@dataclass(frozen=True)
class Bars:
    dataset: str
    history: BarHistory
    used: pd.DataFrame        # every bar used so far, this run's included (the history after the merge)
    market: MarketData        # the market of the whole merge (the latest day's, when the history ends there)
    data_cfg: Mapping         # the data config (gap policy, Fear & Greed file)

    @property
    def last_day(self) -> pd.Timestamp:
        """The day whose 23:00 bar is the last one."""
        return self.market.bars["ts"].max().floor("D")

    def market_through(self, day: pd.Timestamp) -> MarketData:
        """The market a run at `day`'s close had: the used bars up to its 23:00 bar, the gap policy applied."""
        cut = self.used[self.used["ts"] <= day + 23 * HOUR]
        if day == self.last_day and len(cut) == len(self.market.bars):  # the merge's market is that one
            return self.market
        return market_data_from_config({**self.data_cfg, "hourly_path": str(self.history.path)}, hourly=cut)

    @contextlib.contextmanager
    def file_through(self, day: pd.Timestamp) -> Iterator[Path]:
        """A bar file of the used bars up to `day`'s 23:00 bar: the history itself when it ends there, else a
        temporary cut of it (removed afterwards)."""
        if self.used["ts"].max() <= day + 23 * HOUR:
            yield self.history.path
            return
        with tempfile.TemporaryDirectory(prefix=f".through-{day.date()}-", dir=self.history.path.parent) as tmp:
            path = write_parquet_atomic(self.used[self.used["ts"] <= day + 23 * HOUR], Path(tmp) / "bars.parquet")
            yield path


def take_bars(settings: DailySettings, data_cfg: Mapping, store_root: str | Path, console: Console) -> Bars:
    """The configured bars checked and merged into the dataset's history (see the module's rules)."""
    check_complete_day(read_bars(settings.hourly_path), settings.hourly_path)
    try:
        market, dataset = checked_market_data(data_cfg, store_root, append_to=_append_target(settings, store_root),
                                              console=console)
    except HistoryChangedError as err:
        raise Stop(Exit.CHANGED_PAST, str(err)) from err
    check_fresh(market.bars, settings.max_data_age_hours)
    if settings.require_complete_hour:
        check_complete_hour(market.bars)
    history = BarHistory.of(store_root, dataset)
    return Bars(dataset, history, history.read(), market, data_cfg)


def _append_target(settings: DailySettings, store_root: str | Path) -> str | None:
    """The dataset an append file extends (None: the file is the whole history)."""
    if not settings.append:
        return None
    if settings.dataset:
        return settings.dataset
    known = BarHistory.datasets(store_root)
    if len(known) != 1:
        raise ValueError(f"daily.append=true: the store at {store_root} holds {len(known)} bar histories {known}; "
                         f"name the one to extend with daily.dataset=<id>")
    return known[0]


def check_complete_day(bars: pd.DataFrame, source: str) -> None:
    """The bars end with a 23:00 bar: the day served is the one that closed. A file that ends inside a day
    would serve its partial day, or re-serve the day before with orders for a bar already hours past;
    refused before any bar enters the history."""
    latest = bars["ts"].max()
    if latest.hour != 23:
        day = latest.floor("D")
        raise Stop(Exit.STALE_DATA, f"partial day: the latest bar in {source} is {latest}; {day.date()} closes with "
                                    f"its 23:00 bar (known at {day + DAY}); the day before was the last to close. "
                                    f"Run once the day has closed; no bar taken, no signal served")


def check_fresh(bars: pd.DataFrame, max_age_hours: float | None) -> None:
    """The latest bar closed at most `max_age_hours` ago by the clock (None: history, not checked)."""
    if max_age_hours is None:
        return
    latest = bars["ts"].max()
    age = (pd.Timestamp.now(tz="UTC") - (latest + HOUR)) / HOUR
    if age > max_age_hours:
        stale = bars.groupby("symbol")["ts"].max().sort_values().index[0]
        raise Stop(Exit.STALE_DATA, f"stale data: the latest bar closed {age:.1f} h ago ({latest + HOUR}, e.g. "
                                    f"{stale}), more than data.max_data_age_hours={max_age_hours:g}; no signal served")


def check_complete_hour(bars: pd.DataFrame) -> None:
    """Every symbol that traded in the last 24 hours has its bar of the latest hour. Each hour's market
    return and the extractors' cross-sectional inputs average the coins present at that hour: served
    without a late coin's bars, the other coins' inputs would differ from what the backfill computes
    once the bars are in, and the day would not be the backtest's."""
    latest = bars["ts"].max()
    last_bar = bars.groupby("symbol", sort=True)["ts"].max()
    late = last_bar[(last_bar < latest) & (last_bar > latest - DAY)].sort_values()
    if not late.empty:
        named = ", ".join(f"{symbol} (last bar {ts})" for symbol, ts in late.head(5).items())
        raise Stop(Exit.STALE_DATA, f"incomplete data: {len(late)} symbol(s) that traded in the last 24 h have no "
                                    f"bar at {latest}: {named}{' ...' if len(late) > 5 else ''}; every hour's "
                                    f"market and cross-sectional inputs need all of them; no signal served "
                                    f"(daily.require_complete_hour=false serves without them)")
