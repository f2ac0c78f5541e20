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
  (capital + pnl of earlier exits), so the monthly returns compound to the total return.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from store.files import write_json_atomic, write_parquet_atomic

if TYPE_CHECKING:
    from backtest.regime import RegimeConfig
    from backtest.trailing_j import BacktestConfig

EXIT_ORDER: tuple[str, ...] = ("take_profit", "stop_loss", "trailing_stop", "expiry")


@dataclass(frozen=True)
class BacktestResult:
    """trades: one row per trade (`backtest.trailing_j.TRADE_COLUMNS`); equity: daily date (UTC midnight,
    marked at that day's close), equity, drawdown, btc_equity."""

    config: BacktestConfig
    regime: RegimeConfig  # the gate and sizes the trades ran under
    trades: pd.DataFrame
    equity: pd.DataFrame

    def summary(self) -> dict[str, Any]:
        """The "summary" block of `to_json_dict`."""
        trades, equity, cfg = self.trades, self.equity, self.config
        curve = equity["equity"].to_numpy()
        days = len(curve) - 1
        net_pnl = float(trades["pnl"].sum())
        total_return = net_pnl / cfg.capital
        annualised = _annualised(total_return, days, cfg.annualisation_days)
        max_drawdown = float(equity["drawdown"].min())
        pnl = trades["pnl"].to_numpy()
        wins, losses = pnl[pnl > 0], pnl[pnl < 0]
        return {
            "start": _day(equity["date"].iloc[0]),
            "end": _day(equity["date"].iloc[-1]),
            "days": days,
            "net_pnl": net_pnl,
            "return": total_return,
            "annualised_return": annualised,
            "sharpe": _sharpe(curve, cfg.annualisation_days),
            "sortino": _sortino(curve, cfg.annualisation_days),
            "calmar": _ratio(annualised, abs(max_drawdown)),
            "max_drawdown": max_drawdown,
            "win_rate": _ratio(float(wins.size), float(pnl.size)),
            "profit_factor": _ratio(float(wins.sum()), float(-losses.sum())),
            "payoff": _ratio(_mean(wins), _mean(-losses)),
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
            "annualised_return": _annualised(btc_return, len(btc) - 1, cfg.annualisation_days) if available else None,
            "sharpe": _sharpe(btc, cfg.annualisation_days) if available else None,
            "max_drawdown": float((btc / np.maximum.accumulate(btc) - 1.0).min()) if available else None,
        }

    def to_json_dict(self) -> dict[str, Any]:
        """config, regime, summary, benchmark, exits, per_symbol, per_month and equity_curve; JSON-serialisable."""
        btc = self.equity["btc_equity"].to_numpy()
        return {
            "config": asdict(self.config),
            "regime": asdict(self.regime),
            "summary": self.summary(),
            "benchmark": self._benchmark(btc),
            "exits": _groups(self.trades, "exit_type", EXIT_ORDER),
            "per_symbol": _groups(self.trades, "symbol", sorted(self.trades["symbol"].unique())),
            "per_month": self._per_month(),
            "equity_curve": [
                {"date": _day(date), "equity": float(e), "drawdown": float(d),
                 "btc_equity": float(b) if np.isfinite(b) else None}
                for date, e, d, b in self.equity[["date", "equity", "drawdown", "btc_equity"]].itertuples(
                    index=False
                )
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


def write_backtest(result: BacktestResult, out_dir: str | Path) -> tuple[Path, Path]:
    """Write `backtest.json` and `trades.parquet` into `out_dir`, each atomically; returns both paths."""
    out_dir = Path(out_dir)
    json_path = write_json_atomic(result.to_json_dict(), out_dir / "backtest.json")
    return json_path, write_parquet_atomic(result.trades, out_dir / "trades.parquet")


def _groups(trades: pd.DataFrame, column: str, keys: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """trades, pnl and win rate per value of `column`, for every key (empty groups included)."""
    grouped = trades.groupby(column)["pnl"]
    stats = pd.DataFrame({"trades": grouped.size(), "pnl": grouped.sum(), "wins": grouped.agg(lambda p: (p > 0).sum())})
    stats = stats.reindex(list(keys), fill_value=0)
    return {
        str(key): {
            "trades": int(row["trades"]),
            "pnl": float(row["pnl"]),
            "win_rate": _ratio(float(row["wins"]), float(row["trades"])),
        }
        for key, row in stats.iterrows()
    }


def _day(timestamp: pd.Timestamp) -> str:
    return timestamp.strftime("%Y-%m-%d")


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None where it is undefined (missing parts, zero or non-finite)."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    value = numerator / denominator
    return float(value) if math.isfinite(value) else None


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _annualised(total_return: float, days: int, year: int) -> float | None:
    if days <= 0:
        return None
    return float(max(1.0 + total_return, 0.0) ** (year / days) - 1.0)


def _daily_returns(curve: np.ndarray) -> np.ndarray:
    return curve[1:] / curve[:-1] - 1.0


def _sharpe(curve: np.ndarray, year: int) -> float | None:
    returns = _daily_returns(curve)
    if returns.size < 2:
        return None
    return _ratio(float(returns.mean()) * math.sqrt(year), float(returns.std(ddof=1)))


def _sortino(curve: np.ndarray, year: int) -> float | None:
    returns = _daily_returns(curve)
    if returns.size < 2:
        return None
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    return _ratio(float(returns.mean()) * math.sqrt(year), downside)
