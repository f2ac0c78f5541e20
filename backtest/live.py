"""The ranked book live: the daily run's target book, orders and equity, from the backtest's own code.

A live run at day d's close knows the signals served so far (one file a day) and the bars up to d's
23:00 bar. `live_book` runs `run_ranked_book` on exactly that, so the book it keeps is the backtest's
by construction:

- the target: the book's weights held from d + 1's 00:00 open (the tranches of d, d - 1, ..., d - H + 1);
- the current book: the weights held from d's open, moved by each coin's price since then to the
  reference price (the close of d's 23:00 bar: the last price known at the decision);
- orders: target minus current, per coin, as a weight, a notional (x the equity marked at the reference
  price) and a quantity (/ the reference price), to fill at the open of d + 1's 00:00 bar;
- equity: the backtest's, through the last day whose returns the bars hold (d - 1: day d's return ends
  at d + 1's open), then marked to the reference price for sizing (before d + 1's costs).

The book starts flat on the first day the dataset is served, as a backtest started that day does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from backtest.config import RankedBookConfig
from backtest.ranked import run_ranked_book

DAY = pd.Timedelta(days=1)
HOUR = pd.Timedelta(hours=1)
BOOK_COLUMNS = ("symbol", "weight", "reference_price", "quantity")
ORDER_COLUMNS = ("symbol", "side", "fill_time", "fill", "target_weight", "current_weight", "delta_weight",
                 "reference_price", "notional", "quantity")


class BookMismatchError(ValueError):
    """The position book kept for a day differs from what the served signals give."""


@dataclass(frozen=True)
class LiveBook:
    day: pd.Timestamp  # the decision day (its 23:00 bar is the last bar)
    book: pd.DataFrame  # BOOK_COLUMNS: the target held from day + 1's open, nonzero weights
    orders: pd.DataFrame  # ORDER_COLUMNS, one row per coin whose weight changes
    equity: float  # marked at the reference prices
    backtest_equity: float  # the backtest's equity after `equity_through` (the capital on the first day)
    equity_through: pd.Timestamp | None  # the last day of the backtest's equity curve (None: the first day)
    held: pd.Series  # the weights held from day's open, by symbol: what yesterday's kept book must hold


def served_signals(signals_dir: Path, day: pd.Timestamp, today: pd.DataFrame) -> pd.DataFrame:
    """The signals served on the days before `day` (`signals_dir/<date>.parquet`) and `today`'s, one frame."""
    files = sorted(p for p in Path(signals_dir).glob("*.parquet") if p.stem < f"{day:%Y-%m-%d}")
    earlier = [pd.read_parquet(p, columns=list(today.columns)) for p in files]
    return pd.concat([*earlier, today], ignore_index=True)


def live_book(signals: pd.DataFrame, hourly: pd.DataFrame, config: RankedBookConfig, day: pd.Timestamp) -> LiveBook:
    """The book after deciding on `day`, from every served day's `signals` and the `hourly` bars to day's close."""
    if signals["date"].max() != day:
        raise ValueError(f"the served signals end on {signals['date'].max():%Y-%m-%d}, not on the day {day:%Y-%m-%d}")
    result = run_ranked_book(signals, hourly, config)
    weights = result.positions.pivot(index="date", columns="symbol", values="weight")
    target = _row(weights, day + DAY)
    held = held_today = _row(weights, day)
    last_bar = hourly[hourly["ts"] == day + 23 * HOUR].set_index("symbol")
    day_open = hourly[hourly["ts"] == day].set_index("symbol")["open"]
    symbols = target.index.union(held.index)
    reference = last_bar["close"].reindex(symbols)
    if reference.isna().any():
        missing = list(reference.index[reference.isna()])
        raise ValueError(f"no {day + 23 * HOUR} bar to price the book's coins {missing[:5]} at")
    move = (reference / day_open.reindex(symbols)).fillna(1.0)
    held, target = held.reindex(symbols, fill_value=0.0), target.reindex(symbols, fill_value=0.0)
    gross = float((held * (move - 1.0)).sum())
    current = held * move / (1.0 + gross)
    through = result.daily.index[result.daily.index < day]
    before = float(result.daily.loc[through[-1], "equity"]) if len(through) else config.capital
    equity = before * (1.0 + gross)
    delta = target - current
    trade = delta.abs() > 1e-12
    orders = pd.DataFrame({
        "symbol": symbols[trade], "side": np.where(delta[trade] > 0, "buy", "sell"),
        "fill_time": day + DAY, "fill": "open of the 00:00 bar", "target_weight": target[trade].to_numpy(),
        "current_weight": current[trade].to_numpy(), "delta_weight": delta[trade].to_numpy(),
        "reference_price": reference[trade].to_numpy(), "notional": (delta[trade].abs() * equity).to_numpy(),
        "quantity": (delta[trade] * equity / reference[trade]).to_numpy(),
    }, columns=list(ORDER_COLUMNS))
    kept = target != 0
    book = pd.DataFrame({"symbol": symbols[kept], "weight": target[kept].to_numpy(),
                         "reference_price": reference[kept].to_numpy(),
                         "quantity": (target[kept] * equity / reference[kept]).to_numpy()}, columns=list(BOOK_COLUMNS))
    return LiveBook(day=day, book=book.reset_index(drop=True), orders=orders.reset_index(drop=True), equity=equity,
                    backtest_equity=before, equity_through=through[-1] if len(through) else None, held=held_today)


def check_kept_book(kept: pd.DataFrame | None, live: LiveBook, kept_path: Path) -> None:
    """The book kept after the previous served day (`kept`, its target) equals the book the served signals
    give for today; a difference means the served history or the book's code changed under it."""
    if kept is None:
        return
    before = kept.set_index("symbol")["weight"]
    symbols = live.held.index.union(before.index)
    now = live.held.reindex(symbols, fill_value=0.0)
    diff = (now - before.reindex(symbols, fill_value=0.0)).abs()
    if (diff > 1e-9).any():
        symbol = diff.idxmax()
        raise BookMismatchError(
            f"the position book {kept_path} holds {symbol} at weight {before.get(symbol, 0.0):.6f}, but the served "
            f"signals and the current code give {now[symbol]:.6f} for {live.day:%Y-%m-%d}: the served history or "
            f"the book's code changed; nothing traded (move the book folder aside to start a new book)")


def _row(weights: pd.DataFrame, day: pd.Timestamp) -> pd.Series:
    """One day's nonzero weights by symbol (empty when the book holds nothing that day)."""
    if day not in weights.index:
        return pd.Series(dtype="float64")
    row = weights.loc[day].dropna()
    return row[row != 0]
