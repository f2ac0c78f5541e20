"""Trailing J's orders for the bar after a decision, as the backtest would enter them (`backtest=trailing_j`).

Sized as the backtest sizes a fresh book: slot = capital x deploy_rate / (max_long + max_short), times the
regime's size multiplier of the signal's side; at most max_long longs and max_short shorts, the highest
|z| first. The exit levels are the backtest's (`backtest.trailing_j.exit_levels`), set at the reference
price (the decision day's close); the fill is the next bar's open, so the levels move with it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from backtest.config import BacktestConfig
from backtest.panel import daily_panel
from backtest.trailing_j import exit_levels

HOUR, DAY = pd.Timedelta(hours=1), pd.Timedelta(days=1)
SIDE = {"BUY": "long", "SELL": "short"}


def next_bar_orders(signals: pd.DataFrame, grid: pd.DataFrame, trading: BacktestConfig,
                    signal_column: str = "signal") -> pd.DataFrame:
    """One order per fired signal of `signals` (one decision day's, with z and size_multiplier), priced from
    `grid` (the hourly bars up to the day's close)."""
    fired = signals[signals[signal_column].isin(list(SIDE)) & (signals["size_multiplier"] > 0)].copy()
    fired["side"] = fired[signal_column].map(SIDE)
    fired = fired.assign(strength=fired["z"].abs()).sort_values(["strength", "symbol"], ascending=[False, True])
    limit = np.where(fired["side"] == "long", trading.max_long, trading.max_short)
    fired = fired[fired.groupby("side").cumcount().to_numpy() < limit].sort_values(["side", "symbol"])
    slot = trading.capital * trading.deploy_rate / (trading.max_long + trading.max_short)
    sign = pd.Series(np.where(fired["side"] == "long", 1.0, -1.0), index=fired.index)
    day = fired["decision_time"] - DAY
    closes = grid[grid["ts"] == day.max() + 23 * HOUR].set_index("symbol")["close"]
    price = fired["symbol"].map(closes).to_numpy()
    levels = exit_levels(fired["symbol"], day, sign, trading, daily_panel(grid))
    sign = sign.to_numpy()
    return pd.DataFrame({
        "symbol": fired["symbol"].to_numpy(), "side": fired["side"].to_numpy(),
        "entry_time": fired["decision_time"].to_numpy(), "entry": "open of the next bar",
        "notional": slot * fired["size_multiplier"].to_numpy(), "reference_price": price,
        "take_profit": price * (1 + sign * levels["take_profit"]),
        "stop_loss": price * (1 - sign * levels["stop_loss"]),
        "trail_activation": price * (1 + sign * levels["trail_activation"]),
        "trail_pct": levels["trail"],
        "expires_after_hours": trading.max_hold_hours, "z": fired["z"].to_numpy(),
        "regime": fired["regime"].to_numpy(), "size_multiplier": fired["size_multiplier"].to_numpy(),
    })
