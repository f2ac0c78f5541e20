"""The daily run: the bars in, the days to serve planned, each served in order, the latest shown.

    bars (serving/bars.py) -> plan (serving/plan.py) -> each day (serving/day.py) -> what it shows (serving/show.py)

`daily.retrain=only` runs the scheduled retrain for the latest day when it is due and serves nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from cli import console
from serving.bars import HOUR, Bars, take_bars
from serving.day import DayInputs, DayServed, day_champion, day_market, serve_day
from serving.days import DATE, ServedDays
from serving.plan import plan_days
from serving.settings import DailySettings, Strategy
from serving.show import show_account, show_caught_up, show_plan, show_ranked, show_reserved, show_trailing

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class DailyResult:
    dataset: str
    days: list[DayServed]      # in order: the missed days caught up, then the latest (empty: retrain only)
    retrained: bool
    run_id: str

    @property
    def last(self) -> DayServed | None:
        return self.days[-1] if self.days else None


def run_daily(cfg: DictConfig, console: Console = console) -> DailyResult:
    from pipeline import quiet_lightning

    quiet_lightning()
    started = time.perf_counter()
    settings, strategy = DailySettings.from_config(cfg), Strategy.from_config(cfg.backtest)
    bars = take_bars(settings, OmegaConf.to_container(cfg.data, resolve=True), cfg.store.root, console)
    latest = bars.last_day
    console.print(f"daily: dataset {bars.dataset}, {bars.market.bars['symbol'].nunique()} symbols, bars up to "
                  f"{bars.market.bars['ts'].max() + HOUR:%Y-%m-%d %H:%M} UTC: serving {latest:{DATE}} (decided at "
                  f"{latest + DAY:%Y-%m-%d %H:%M} UTC)", soft_wrap=True)
    if settings.retrain == "only":
        return _retrain_only(cfg, settings, bars, latest, console)
    served = ServedDays(settings.out_dir / bars.dataset)
    served.clear_staging()
    plan = plan_days(served, latest, strategy, settings)
    show_plan(console, plan, settings.holdings_path is not None)
    inputs = DayInputs(cfg, settings, strategy, bars, served, plan.book, console)
    days = []
    for day in plan.days:
        days.append(serve_day(inputs, day, latest=day == latest))
        if day != latest:
            show_caught_up(console, day, days[-1].orders, days[-1].folder)
    last = days[-1]
    if last.reserved:
        show_reserved(console, last.day, last.folder)
    elif last.live is not None:
        show_ranked(console, last.signals, last.live, last.orders, last.run_id, last.differences is not None)
        if last.differences is not None:
            show_account(console, last.differences, settings.holdings_tolerance)
    else:
        show_trailing(console, last.signals, last.orders, last.day, last.run_id)
    console.print(f"daily: {len(last.signals)} signal rows and {0 if last.reserved else len(last.orders)} new "
                  f"order(s) in {last.folder} ({time.perf_counter() - started:.1f} s)", soft_wrap=True)
    return DailyResult(bars.dataset, days, any(d.retrained for d in days), last.run_id)


def _retrain_only(cfg: DictConfig, settings: DailySettings, bars: Bars, latest: pd.Timestamp,
                  console: Console) -> DailyResult:
    with day_market(cfg, bars, latest) as (day_cfg, _, frames):
        run, retrained = day_champion(day_cfg, frames, bars.dataset, latest, settings.retrain, console)
    console.print(f"daily: retrain {'done' if retrained else 'not due'}; nothing served (daily.retrain=only)")
    return DailyResult(bars.dataset, [], retrained, run.run_id)
