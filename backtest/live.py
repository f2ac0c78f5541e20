"""The ranked book live: the daily run's orders, held book and equity are the backtest's own values.

A live run at day d's close knows the signals served for the book so far (its first day on) and the bars
up to d's 23:00 bar. `live_book` runs `run_ranked_book` on exactly that and reads its account:

- orders: the backtest's trades decided on d (`trades[date == d]`): the held weight marked at the
  reference price (d's close), the target, the quantity at the reference price, the fill at the open of
  the bar `fill_delay_hours` after d + 1 00:00 (not reached yet: no fill price);
- the book held before the orders: the quantities the backtest holds after d - 1's fills
  (`holdings[date == d - 1]`), and their weights marked at the reference prices;
- the book after them: the target weights (`positions[date == d + 1]`) and quantities (`holdings[date == d]`);
- equity: the backtest's, marked at d's close (the equity the orders are sized on).

The book starts flat on its first day, as a backtest started that day does. `check_kept_book` compares the
book kept after the previous served day with what the backtest holds now; `account_orders` trades from an
account's real holdings instead of the book's, and `account_differences` says where they differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from backtest.config import RankedBookConfig
from backtest.ranked import RankedBookResult, run_ranked_book

DAY, HOUR = pd.Timedelta(days=1), pd.Timedelta(hours=1)
BOOK_COLUMNS = ("symbol", "weight", "quantity", "reference_price")
ORDER_COLUMNS = ("symbol", "side", "current_weight", "target_weight", "delta_weight", "reference_price", "equity",
                 "notional", "current_quantity", "target_quantity", "quantity", "fill_time")
DIFFERENCE_COLUMNS = ("symbol", "account_quantity", "book_quantity", "difference", "difference_weight",
                      "beyond_tolerance")
MATCH_RTOL = 1e-9


class BookMismatchError(ValueError):
    """The book kept for a day differs from what the backtest of the served signals holds."""


@dataclass(frozen=True)
class LiveBook:
    day: pd.Timestamp          # the decision day (its 23:00 bar is the last bar)
    equity: float              # the backtest's equity marked at day's close: what the orders are sized on
    orders: pd.DataFrame       # ORDER_COLUMNS: the backtest's trades of the day
    held: pd.DataFrame         # BOOK_COLUMNS: the book held before the orders (after day - 1's fills)
    book: pd.DataFrame         # BOOK_COLUMNS: the book held once the orders fill (the target)
    prices: pd.Series          # each coin's last close at the decision, by symbol
    backtest: RankedBookResult

    @property
    def fill_time(self) -> pd.Timestamp:
        return self.day + DAY + self.backtest.config.fill_delay_hours * HOUR


def live_book(signals: pd.DataFrame, hourly: pd.DataFrame, config: RankedBookConfig, day: pd.Timestamp) -> LiveBook:
    """The book decided on `day` from the book's served `signals` (its first day to `day`) and the `hourly`
    bars up to day's 23:00 bar."""
    if signals["date"].max() != day or hourly["ts"].max() != day + 23 * HOUR:
        raise ValueError(f"the live book of {day:%Y-%m-%d} needs its signals and bars to end with it: the signals "
                         f"end on {signals['date'].max():%Y-%m-%d}, the bars at {hourly['ts'].max()}")
    result = run_ranked_book(signals, hourly, config)
    prices = hourly.groupby("symbol", sort=True)["close"].last()  # the grid's last close: the reference price
    trades = result.trades[result.trades["date"] == day].set_index("symbol")
    # The equity the day's orders are sized on (the backtest's at day's close; the capital on the first day).
    equity = (float(trades["equity"].iloc[0]) if len(trades) else
              float(result.daily.loc[day, "equity"]) if day in result.daily.index else config.capital)
    before, after = _quantities(result.holdings, day - DAY), _quantities(result.holdings, day)
    target = _weights(result.positions, day + DAY)
    held_weight = trades["current_weight"].combine_first(target.drop(trades.index, errors="ignore"))
    orders = trades.assign(current_quantity=before.reindex(trades.index, fill_value=0.0),
                           target_quantity=after.reindex(trades.index, fill_value=0.0))
    return LiveBook(day=day, equity=equity, orders=orders.reset_index()[list(ORDER_COLUMNS)],
                    held=_book(held_weight.reindex(before.index), before, prices),
                    book=_book(target, after, prices), prices=prices, backtest=result)


def check_kept_book(kept: pd.DataFrame, live: LiveBook, kept_path: Path) -> None:
    """The book kept after the previous served day (`kept`, BOOK_COLUMNS) equals what the backtest holds
    after that day now: a difference means the served history or the book's code changed under it."""
    now = pd.DataFrame({"weight": _weights(live.backtest.positions, live.day),
                        "quantity": _quantities(live.backtest.holdings, live.day - DAY)})
    before = kept.set_index("symbol")[["weight", "quantity"]]
    symbols = now.index.union(before.index)
    now, before = now.reindex(symbols, fill_value=0.0), before.reindex(symbols, fill_value=0.0)
    off = ~np.isclose(now.to_numpy(), before.to_numpy(), rtol=MATCH_RTOL, atol=1e-12).all(axis=1)
    if off.any():
        symbol = symbols[off][0]
        raise BookMismatchError(
            f"the book {kept_path} holds {symbol} at weight {before.loc[symbol, 'weight']:.6f} (quantity "
            f"{before.loc[symbol, 'quantity']:.8g}), but the backtest of the served signals holds weight "
            f"{now.loc[symbol, 'weight']:.6f} (quantity {now.loc[symbol, 'quantity']:.8g}) from "
            f"{live.day:%Y-%m-%d}: the served history or the book's code changed; nothing traded "
            f"(daily.new_book=true starts a new book, flat)")


def account_orders(live: LiveBook, account: pd.Series) -> pd.DataFrame:
    """ORDER_COLUMNS that move `account` (quantity by symbol: what the exchange account holds) to the book's
    target quantities at the reference prices, sized on the book's equity."""
    target = live.book.set_index("symbol")["quantity"]
    symbols = target.index.union(account.index)
    current, target = account.reindex(symbols, fill_value=0.0), target.reindex(symbols, fill_value=0.0)
    price = _priced(live, symbols)
    quantity = target - current
    trade = (quantity.abs() * price > 1e-9 * live.equity).to_numpy()
    symbols, current, target, quantity, price = (x[trade] for x in (symbols, current, target, quantity, price))
    return pd.DataFrame({
        "symbol": symbols, "side": np.where(quantity > 0, "buy", "sell"),
        "current_weight": (current * price / live.equity).to_numpy(),
        "target_weight": (target * price / live.equity).to_numpy(),
        "delta_weight": (quantity * price / live.equity).to_numpy(), "reference_price": price.to_numpy(),
        "equity": live.equity, "notional": (quantity.abs() * price).to_numpy(),
        "current_quantity": current.to_numpy(), "target_quantity": target.to_numpy(), "quantity": quantity.to_numpy(),
        "fill_time": live.fill_time}, columns=list(ORDER_COLUMNS))


def account_differences(live: LiveBook, account: pd.Series, tolerance: float) -> pd.DataFrame:
    """DIFFERENCE_COLUMNS per coin the account or the held book holds: account minus book, in coins and as a
    share of the book's equity at the reference price; `beyond_tolerance` where that share exceeds it."""
    book = live.held.set_index("symbol")["quantity"]
    symbols = book.index.union(account.index)
    account, book = account.reindex(symbols, fill_value=0.0), book.reindex(symbols, fill_value=0.0)
    difference = account - book
    weight = difference * _priced(live, symbols) / live.equity
    return pd.DataFrame({"symbol": symbols, "account_quantity": account.to_numpy(), "book_quantity": book.to_numpy(),
                         "difference": difference.to_numpy(), "difference_weight": weight.to_numpy(),
                         "beyond_tolerance": (weight.abs() > tolerance).to_numpy()}, columns=list(DIFFERENCE_COLUMNS))


def _priced(live: LiveBook, symbols: pd.Index) -> pd.Series:
    price = live.prices.reindex(symbols)
    if price.isna().any():
        raise ValueError(f"no bars of {list(price.index[price.isna()])[:5]} up to {live.day + 23 * HOUR} to price "
                         f"them at")
    return price


def _book(weight: pd.Series, quantity: pd.Series, prices: pd.Series) -> pd.DataFrame:
    symbols = quantity.index
    return pd.DataFrame({"symbol": symbols, "weight": weight.reindex(symbols).to_numpy(),
                         "quantity": quantity.to_numpy(), "reference_price": prices.reindex(symbols).to_numpy()},
                        columns=list(BOOK_COLUMNS))


def _weights(positions: pd.DataFrame, date: pd.Timestamp) -> pd.Series:
    """The target weights held from `date`'s fill, by symbol (nonzero only)."""
    return positions.loc[positions["date"] == date].set_index("symbol")["weight"].sort_index()


def _quantities(holdings: pd.DataFrame, date: pd.Timestamp) -> pd.Series:
    """The coins held once `date`'s orders filled, by symbol."""
    return holdings.loc[holdings["date"] == date].set_index("symbol")["quantity"].sort_index()
