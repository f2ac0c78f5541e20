"""What the daily run prints: the book's decisions first (what to trade), the class signals beside them as
information, and one line for each day caught up, re-served or differing in the account.

The ranked book trades the score's rank across the coins, not the classifier's BUY / HOLD / SELL: the
table says which column to act on (`order`), and names the class column `class (not traded)`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from backtest.live import LiveBook
from serving.days import DATE
from serving.plan import Plan

DAY = pd.Timedelta(days=1)


def show_plan(console: Console, plan: Plan, has_account: bool) -> None:
    if plan.starts_book:
        console.print(f"daily: a new book: {plan.book.describe()}; it starts flat and its first orders open it",
                      soft_wrap=True)
    if plan.caught_up:
        console.print(f"daily: catching up: {len(plan.caught_up)} missed day(s) "
                      f"({', '.join(f'{d:{DATE}}' for d in plan.caught_up)}) served in order before "
                      f"{plan.days[-1]:{DATE}}, each as it would have been served on its own", soft_wrap=True)
        if not has_account:
            console.print("[yellow]daily: the book now assumes the missed days' orders filled; if they were not "
                          "placed, give the account's holdings (daily.holdings_path) to trade from what it "
                          "holds[/]", soft_wrap=True)


def show_caught_up(console: Console, day: pd.Timestamp, orders: pd.DataFrame, folder) -> None:
    console.print(f"daily: {day:{DATE}} served (missed): {len(orders)} order(s), due {day + DAY:{DATE}}, "
                  f"now past -> {folder}", soft_wrap=True)


def show_reserved(console: Console, day: pd.Timestamp, folder) -> None:
    console.print(f"daily: {day:{DATE}} was served already ({folder}): this run gives the same numbers; "
                  f"no new orders (the committed day stands)", soft_wrap=True)


def show_ranked(console: Console, signals: pd.DataFrame, live: LiveBook, orders: pd.DataFrame, run_id: str,
                from_account: bool) -> None:
    """The book's decisions for the day, one row per coin, the class signals beside them."""
    marked = f"{live.day:{DATE}} 23:00 close"
    console.print(f"ranked book: equity {live.equity:,.2f} (the backtest's, marked at the {marked}); "
                  f"{len(live.book)} coin(s) held once the orders fill at {live.fill_time:%Y-%m-%d %H:%M} UTC; "
                  f"orders from {'the account' if from_account else 'the book'}'s holdings", soft_wrap=True)
    table = Table(title=f"{live.day:{DATE}}: the ranked book's decisions (champion {run_id})", title_justify="left",
                  caption="act on `order`: the book trades the score's rank across the coins; `class (not traded)` "
                          "is the classifier's BUY / HOLD / SELL, for information", caption_justify="left")
    columns = ("symbol", "book", "target_weight", "held_weight", "order", "quantity", "notional", "score",
               "class (not traded)")
    for column in columns:
        table.add_column(column, justify="left" if column in ("symbol", "book", "order", "class (not traded)")
                         else "right")
    for row in decisions(signals, live, orders).itertuples(index=False):
        table.add_row(row.symbol, row.book, f"{row.target_weight:+.4f}", f"{row.held_weight:+.4f}", row.order,
                      "" if np.isnan(row.quantity) else f"{row.quantity:+.6g}",
                      "" if np.isnan(row.notional) else f"{row.notional:,.2f}",
                      "" if np.isnan(row.score) else f"{row.score:.4f}", row.signal)
    console.print(table)
    if orders.empty:
        console.print("orders: none (the target book equals the book held)")


def decisions(signals: pd.DataFrame, live: LiveBook, orders: pd.DataFrame) -> pd.DataFrame:
    """Per coin: the book's side once the orders fill (long / short / flat), its target weight and the weight held
    now (the orders' current weight: the book's, or the account's; a coin not traded holds its target), the order
    (buy / sell / none) with its quantity and notional, the score it is ranked by and the class signal."""
    target = live.book.set_index("symbol")["weight"]
    placed = orders.set_index("symbol")
    symbols = pd.Index(signals["symbol"]).union(target.index).union(placed.index)
    out = pd.DataFrame(index=symbols.rename("symbol"))
    out["target_weight"] = target.reindex(symbols, fill_value=0.0)
    out["held_weight"] = placed["current_weight"].reindex(symbols).fillna(out["target_weight"])
    out["book"] = np.select([out["target_weight"] > 0, out["target_weight"] < 0], ["long", "short"], "flat")
    out["order"] = placed["side"].reindex(symbols).fillna("none")
    out["quantity"] = placed["quantity"].reindex(symbols)
    out["notional"] = placed["notional"].reindex(symbols)
    by_symbol = signals.set_index("symbol")
    out["score"] = by_symbol["score"].reindex(symbols)
    out["signal"] = by_symbol["signal"].reindex(symbols).fillna("-")
    return out.sort_values(["target_weight", "score"], ascending=False).reset_index()


def show_account(console: Console, differences: pd.DataFrame, tolerance: float) -> None:
    beyond = differences[differences["beyond_tolerance"]]
    if beyond.empty:
        console.print(f"account: holds the book's coins within {tolerance:.2%} of equity each")
        return
    for row in beyond.itertuples(index=False):
        console.print(f"[yellow]account differs from the book[/]: {row.symbol} holds {row.account_quantity:.8g} "
                      f"(the book {row.book_quantity:.8g}): {row.difference:+.8g} coins, "
                      f"{row.difference_weight:+.2%} of equity (tolerance {tolerance:.2%}); the orders trade from "
                      f"the account", soft_wrap=True)


def show_trailing(console: Console, signals: pd.DataFrame, orders: pd.DataFrame, day: pd.Timestamp,
                  run_id: str) -> None:
    """Trailing J trades the class signals: its orders, then the signals they come from."""
    if orders.empty:
        console.print("orders: none (no confident BUY / SELL, or the regime blocks it)")
    else:
        table = Table(title=f"{day:{DATE}}: Trailing J orders for the next bar (levels at the reference price). "
                            f"Act on these", title_justify="left")
        columns = ("symbol", "side", "notional", "reference_price", "take_profit", "stop_loss", "trail_activation",
                   "trail_pct", "expires_after_hours")
        for column in columns:
            table.add_column(column, justify="left" if column in ("symbol", "side") else "right")
        for row in orders[list(columns)].itertuples(index=False):
            table.add_row(*(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row))
        console.print(table)
    table = Table(title=f"The class signals they come from (champion {run_id}; BUY / SELL open a trade when the "
                        f"regime allows)", title_justify="left")
    columns = ("symbol", "p_sell", "p_hold", "p_buy", "z", "signal", "regime", "size_multiplier")
    for column in columns:
        table.add_column(column, justify="left" if column in ("symbol", "signal", "regime") else "right")
    for row in signals[list(columns)].itertuples(index=False):
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
