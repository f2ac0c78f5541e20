"""One served day: from the bars a run at its close had to its signals, orders and book, committed whole.

Every day is served by this code, the latest one and each missed one alike:

1. the market as it was at the day's close (`Bars.market_through`), its features (point in time);
2. the champion for the day (stacking/champion.py: the scheduled retrain when due or stale);
3. the store's missing rows backfilled, the day's signals through the walk-forward's path;
4. the strategy's orders: the ranked book's are the backtest's trades of the day on the book's served
   signals (backtest/live.py), checked against the book kept the day before; with the account's holdings
   (`daily.holdings_path`, the latest day only: the file says what the account holds now), the orders move
   the account instead, and where it differs from the book is kept beside them; Trailing J's are a fresh
   book's entries for the next bar (backtest/orders.py);
5. the day committed whole (serving/days.py), or, when served already, compared: the same numbers are said
   to be so, other numbers are refused (exit 7) and nothing is overwritten.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console

from backtest.live import BookMismatchError, LiveBook, account_differences, account_orders, check_kept_book, live_book
from backtest.orders import next_bar_orders
from cli import Exit, Stop
from features.build import FeatureFrames, build_feature_frames
from marketdata.load import MarketData
from serving.account import read_holdings
from serving.bars import Bars
from serving.days import DATE, BookId, ServedDay, ServedDays
from serving.settings import DailySettings, Strategy
from serving.signals import SignalSettings, day_signals, serve_backfill
from stacking.champion import ChampionSettings, retrain, serving_champion
from stacking.serving import ServedRun
from store.extractors import file_fingerprint
from store.lineage import library_versions

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class DayServed:
    day: pd.Timestamp
    run_id: str
    retrained: bool
    signals: pd.DataFrame
    orders: pd.DataFrame
    live: LiveBook | None              # the ranked book's account of the day (None: Trailing J)
    differences: pd.DataFrame | None   # the account minus the book (with daily.holdings_path)
    reserved: bool                     # served already with the same numbers: nothing written
    folder: Path


@dataclass(frozen=True)
class DayInputs:
    """What serving a day reads, the same for each day of a run."""

    cfg: DictConfig             # the main job's config: a retrain and the backfill read it
    settings: DailySettings
    strategy: Strategy
    bars: Bars
    served: ServedDays
    book: BookId
    console: Console


@contextlib.contextmanager
def day_market(cfg: DictConfig, bars: Bars, day: pd.Timestamp) -> Iterator[tuple[DictConfig, MarketData,
                                                                                   FeatureFrames]]:
    """The config with the bar file of `day` (the stages that fingerprint their data read it: a retrain, the
    backfill), the market as it was at day's close and its features (point in time: each day's are the
    backtest's)."""
    market = bars.market_through(day)
    groups = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("features", "labels")}
    with bars.file_through(day) as hourly_path:
        day_cfg = copy.deepcopy(cfg)
        with open_dict(day_cfg):
            day_cfg.data.hourly_path = str(hourly_path)
        yield day_cfg, market, build_feature_frames(market.grid, market.fear_greed, groups["features"],
                                                    groups["labels"])


def day_champion(cfg: DictConfig, frames: FeatureFrames, dataset: str, day: pd.Timestamp, retrain_mode: str,
                 console: Console) -> tuple[ServedRun, bool]:
    """The champion of `dataset` that serves `day` (`cfg`: the day's), retrained first when due or stale."""
    settings = ChampionSettings.from_config(cfg, dataset, retrain_mode)
    return serving_champion(settings, dataset, day, lambda: retrain(cfg, frames, Path(cfg.paths.output_dir), console),
                            console)


def serve_day(inputs: DayInputs, day: pd.Timestamp, latest: bool) -> DayServed:
    """Serve `day` (see the module's steps); `latest`: the last day of the run (the account applies to it)."""
    with day_market(inputs.cfg, inputs.bars, day) as (cfg, market, frames):
        run, retrained = day_champion(cfg, frames, inputs.bars.dataset, day, inputs.settings.retrain, inputs.console)
        serve_backfill(cfg, frames, run, run.window_start(day), inputs.console)
        signals = day_signals(SignalSettings.from_config(cfg), frames, run, day, inputs.strategy.regime)
    signals.insert(0, "run_id", run.run_id)
    signals.insert(1, "dataset", inputs.bars.dataset)
    facts = {"run_id": run.run_id, "dataset": inputs.bars.dataset}
    if inputs.strategy.name == "ranked":
        live = ranked_live(inputs, day, signals, market.grid)
        tables, differences, more = ranked_tables(inputs, live, account=latest)
        tables, facts = {"signals": signals, **tables}, {**facts, **more}
    else:
        live = differences = None
        tables = {"signals": signals, "orders": next_bar_orders(signals, market.grid, inputs.strategy.trading,
                                                                inputs.strategy.signal_column)}
    served = ServedDay(day, inputs.book, tables, {**facts, "libraries": library_versions()})
    reserved = day in inputs.served.days()
    if reserved:
        difference = inputs.served.difference(served)
        if difference is not None:
            raise Stop(Exit.SERVED_ALREADY, f"{day:{DATE}} was served already ({inputs.served.path(day)}) and "
                                            f"{difference}; nothing written. Serve it under another daily.out_dir, "
                                            f"or move the served days aside to start a new book")
    else:
        inputs.served.commit(served)
    return DayServed(day, run.run_id, retrained, signals, tables["orders"], live, differences, reserved,
                     inputs.served.path(day))


def ranked_tables(inputs: DayInputs, live: LiveBook, account: bool) -> tuple[dict, pd.DataFrame | None, dict]:
    """(tables, the account's differences from the book, facts) of a ranked day: its orders (the backtest's
    trades, or with `account` and daily.holdings_path, those that move the account to the target) and book."""
    holdings = inputs.settings.holdings_path
    if holdings is None or not account:
        return {"orders": live.orders, "book": live.book}, None, {"equity": live.equity, "orders_from": "book"}
    held = read_holdings(holdings, live.prices.index)
    differences = account_differences(live, held, inputs.settings.holdings_tolerance)
    facts = {"equity": live.equity, "orders_from": "account",
             "holdings": {"path": str(holdings), "sha256": file_fingerprint([holdings])}}
    return {"orders": account_orders(live, held), "book": live.book, "account": differences}, differences, facts


def ranked_live(inputs: DayInputs, day: pd.Timestamp, signals: pd.DataFrame, grid: pd.DataFrame) -> LiveBook:
    """The ranked book decided on `day`: the backtest on the book's served signals (its first day to the day
    before, as committed) and today's, checked against the book kept after the day before."""
    served, book = inputs.served, inputs.book
    before = list(pd.date_range(book.start, day - DAY, freq="D"))
    history = [served.table(d, "signals")[list(signals.columns)] for d in before]
    live = live_book(pd.concat([*history, signals], ignore_index=True), grid, inputs.strategy.book, day)
    if before:
        kept = served.path(before[-1]) / "book.parquet"
        try:
            check_kept_book(served.table(before[-1], "book"), live, kept)
        except BookMismatchError as err:
            raise Stop(Exit.BOOK_MISMATCH, str(err)) from err
    return live
