"""Backtest report: the metrics of SPEC §7 from a trade list and a daily equity curve, as JSON.

Definitions (undefined ratios are None, JSON null, never inf or NaN):
- daily returns: equity_D / equity_{D-1} - 1 on the daily marked-to-market curve (non-overlapping);
- sharpe = mean / std (ddof 1) · √annualisation_days; sortino = mean / downside deviation · √annualisation_days,
  downside deviation = √mean(min(r, 0)²) over all days;
- return = net P&L / capital; annualised = (1 + return)^(annualisation_days / days) - 1, days = the
  curve's length - 1; calmar = annualised / |max drawdown|; max_drawdown <= 0, a fraction of the peak;
- win rate = share of trades with pnl > 0; profit factor = Σ winning pnl / |Σ losing pnl|;
  payoff = mean winning pnl / |mean losing pnl|;
- exits and per_symbol: trades, pnl, win rate per group; per_month: trades EXITED in the month (UTC,
  by the equity day of their exit), their pnl, and return = pnl / realised equity at the month's start
  (capital + pnl of earlier exits), so the monthly returns compound to the total return;
- performance: what a quant reads first (`backtest.performance`, the ranked book's definitions), from the
  daily net returns of the equity curve against the volume-weighted market. Costs and turnover are booked
  on the day of the entry's first mark (each mark values a trade net of both sides' costs); the legs are
  each side's gross P&L on its trades' exit days; `borrow` is the trades' financing (borrow or funding,
  `backtest.costs`) on their exit days.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from backtest.config import BacktestConfig
from backtest.performance import annualised, performance, ratio, sharpe, sortino

if TYPE_CHECKING:
    from backtest.regime import RegimeConfig

EXIT_ORDER: tuple[str, ...] = ("take_profit", "stop_loss", "trailing_stop", "expiry")


@dataclass(frozen=True)
class BacktestResult:
    """trades: one row per trade (`backtest.trailing_j.TRADE_COLUMNS`); equity: daily date (UTC midnight,
    marked at that day's close), equity, drawdown, btc_equity; daily: the equity curve's days after the
    first as `backtest.performance` returns (index date)."""

    config: BacktestConfig
    regime: RegimeConfig  # the gate and sizes the trades ran under
    trades: pd.DataFrame
    equity: pd.DataFrame
    daily: pd.DataFrame

    def summary(self) -> dict[str, Any]:
        """The "summary" block of `to_json_dict`."""
        trades, equity, cfg = self.trades, self.equity, self.config
        curve = equity["equity"].to_numpy()
        days = len(curve) - 1
        net_pnl = float(trades["pnl"].sum())
        total_return = net_pnl / cfg.capital
        annual = annualised(total_return, days, cfg.annualisation_days)
        max_drawdown = float(equity["drawdown"].min())
        pnl = trades["pnl"].to_numpy()
        wins, losses = pnl[pnl > 0], pnl[pnl < 0]
        return {
            "start": _day(equity["date"].iloc[0]),
            "end": _day(equity["date"].iloc[-1]),
            "days": days,
            "net_pnl": net_pnl,
            "return": total_return,
            "annualised_return": annual,
            "sharpe": _sharpe(curve, cfg.annualisation_days),
            "sortino": _sortino(curve, cfg.annualisation_days),
            "calmar": ratio(annual, abs(max_drawdown)),
            "max_drawdown": max_drawdown,
            "win_rate": ratio(float(wins.size), float(pnl.size)),
            "profit_factor": ratio(float(wins.sum()), float(-losses.sum())),
            "payoff": ratio(_mean(wins), _mean(-losses)),
            "trades": int(len(trades)),
            "trades_long": int((trades["side"] == "long").sum()),
            "trades_short": int((trades["side"] == "short").sum()),
            "fees": float(trades["fees"].sum()),
        }

    def _benchmark(self, btc: np.ndarray) -> dict[str, Any]:
        """Buy & hold of the benchmark symbol over the backtest's days; its figures are None (undefined)
        when the data holds no such symbol."""
        cfg = self.config
        available = bool(np.isfinite(btc).all())
        btc_return = float(btc[-1] / cfg.capital - 1.0) if available else None
        return {
            "symbol": cfg.benchmark_symbol,
            "in_data": available,
            "return": btc_return,
            "annualised_return": annualised(btc_return, len(btc) - 1, cfg.annualisation_days) if available else None,
            "sharpe": _sharpe(btc, cfg.annualisation_days) if available else None,
            "max_drawdown": float((btc / np.maximum.accumulate(btc) - 1.0).min()) if available else None,
        }

    def to_json_dict(self) -> dict[str, Any]:
        """strategy, config, regime, summary, performance, benchmark, exits, per_symbol, per_month and
        equity_curve; JSON-serialisable."""
        btc = self.equity["btc_equity"].to_numpy()
        # The first row is the start (capital); each later one moves with its day's market return.
        market = self.config.capital * np.cumprod(np.r_[1.0, 1.0 + self.daily["market"].fillna(0.0).to_numpy()])
        return {
            "strategy": "trailing_j",
            "config": asdict(self.config),
            "regime": asdict(self.regime),
            "summary": self.summary(),
            "performance": performance(self.daily, self.config.annualisation_days),
            "benchmark": self._benchmark(btc),
            "exits": _groups(self.trades, "exit_type", EXIT_ORDER),
            "per_symbol": _groups(self.trades, "symbol", sorted(self.trades["symbol"].unique())),
            "per_month": self._per_month(),
            "equity_curve": [
                {"date": _day(date), "equity": float(e), "drawdown": float(d),
                 "btc_equity": float(b) if np.isfinite(b) else None, "market_equity": float(m)}
                for (date, e, d, b), m in zip(self.equity[["date", "equity", "drawdown", "btc_equity"]].itertuples(
                    index=False), market, strict=True)
            ],
        }

    def _per_month(self) -> dict[str, dict[str, Any]]:
        months = self.equity["date"].dt.strftime("%Y-%m")
        exit_day = (self.trades["exit_time"] - pd.Timedelta(1, "ns")).dt.floor("D")  # its equity row's date
        by_month = self.trades["pnl"].groupby(exit_day.dt.strftime("%Y-%m")).agg(["size", "sum"])
        by_month = by_month.reindex(months.unique(), fill_value=0)
        start_equity = self.config.capital + by_month["sum"].cumsum() - by_month["sum"]
        return {
            month: {"trades": int(row["size"]), "pnl": float(row["sum"]), "return": float(row["sum"] / start)}
            for (month, row), start in zip(by_month.iterrows(), start_equity, strict=True)
        }


def _groups(trades: pd.DataFrame, column: str, keys: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """trades, pnl and win rate per value of `column`, for every key (empty groups included)."""
    grouped = trades.groupby(column)["pnl"]
    stats = pd.DataFrame({"trades": grouped.size(), "pnl": grouped.sum(), "wins": grouped.agg(lambda p: (p > 0).sum())})
    stats = stats.reindex(list(keys), fill_value=0)
    return {
        str(key): {
            "trades": int(row["trades"]),
            "pnl": float(row["pnl"]),
            "win_rate": ratio(float(row["wins"]), float(row["trades"])),
        }
        for key, row in stats.iterrows()
    }


def _day(timestamp: pd.Timestamp) -> str:
    return timestamp.strftime("%Y-%m-%d")


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _sharpe(curve: np.ndarray, year: int) -> float | None:
    return sharpe(curve[1:] / curve[:-1] - 1.0, year)


def _sortino(curve: np.ndarray, year: int) -> float | None:
    return sortino(curve[1:] / curve[:-1] - 1.0, year)


def trailing_daily(trades: pd.DataFrame, equity: pd.DataFrame, market: pd.Series) -> pd.DataFrame:
    """Trailing J's daily performance columns (`backtest.performance`) from its trades and equity curve.

    `market`: the market's close-to-close return per day (`backtest.panel`); the equity row of day D is
    marked at D's close (D + 1 00:00), so its return spans D - 1's close to D's, the market's day D.
    """
    dates = pd.DatetimeIndex(equity["date"])
    start = equity["equity"].to_numpy()[:-1]  # (days - 1,) equity at each day's start
    net = equity["equity"].to_numpy()[1:] / start - 1.0
    days = dates[1:]
    ratio_ = trades["exit_price"] / trades["entry_price"]
    sign = np.where(trades["side"] == "long", 1.0, -1.0)
    gross_pnl = trades["notional"] * sign * (ratio_ - 1.0)
    entry_day = (trades["entry_time"] - pd.Timedelta(1, "ns")).dt.floor("D")  # its first mark's row
    exit_day = (trades["exit_time"] - pd.Timedelta(1, "ns")).dt.floor("D")
    traded = (trades["notional"] * (1.0 + ratio_)).groupby(entry_day).sum().reindex(days, fill_value=0.0)
    cost = (gross_pnl - trades["pnl"] - trades["financing"]).groupby(entry_day).sum().reindex(days, fill_value=0.0)
    financing = trades["financing"].groupby(exit_day).sum().reindex(days, fill_value=0.0)
    legs = {side: gross_pnl[trades["side"] == side].groupby(exit_day).sum().reindex(days, fill_value=0.0)
            for side in ("long", "short")}
    cost_share, financing_share = cost.to_numpy() / start, financing.to_numpy() / start
    return pd.DataFrame({
        "gross": net + cost_share + financing_share, "long": legs["long"].to_numpy() / start,
        "short": legs["short"].to_numpy() / start, "turnover": traded.to_numpy() / start, "cost": cost_share,
        "borrow": financing_share, "net": net,
        "market": market.reindex(days).to_numpy(),
    }, index=days.rename("date"))
