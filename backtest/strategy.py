"""The configured strategy (`backtest.strategy`) on a run's signals: one entry for the main job, the
quality benchmark and the daily run, so each trades the same book the same way."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from backtest.config import BacktestConfig, RankedBookConfig
from backtest.panel import DailyPanel
from backtest.ranked import RankedBookResult, run_ranked_book
from backtest.regime import RegimeConfig, classify_regime, regime_for_decisions
from backtest.report import BacktestResult
from backtest.trailing_j import run_backtest
from store.files import write_json_atomic, write_parquet_atomic

STRATEGIES = ("ranked", "trailing_j")
DIRECTION = {"BUY": 1, "HOLD": 0, "SELL": -1}


def strategy_name(backtest_cfg: Mapping) -> str:
    """The validated `backtest.strategy`."""
    name = backtest_cfg.get("strategy")
    if name not in STRATEGIES:
        raise ValueError(f"backtest.strategy must be one of {STRATEGIES}, got {name!r} (pick a config: "
                         f"backtest=ranked or backtest=trailing_j)")
    return name


def run_strategy(
    backtest_cfg: Mapping, signals: pd.DataFrame, hourly: pd.DataFrame, regime_inputs: pd.DataFrame,
    panel: DailyPanel | None = None,
) -> BacktestResult | RankedBookResult:
    """Trade `signals` (the stack's: symbol, date, decision_time, score, z, signal, ...) on `hourly` bars.

    ranked: the book ranks `book.score_column` each day (`backtest.ranked`). trailing_j: the rows whose
    `signal_column` is BUY / SELL, each sized by the regime known at its decision (`regime_inputs`: the
    daily regime columns per day; `gate: false` sizes every trade at 1) under the Trailing J rules.
    """
    name = strategy_name(backtest_cfg)
    if name == "ranked":  # without a panel, the book builds its own with its volume and risk windows
        return run_ranked_book(signals, hourly, RankedBookConfig(**backtest_cfg["book"]), panel=panel)
    regime_cfg = RegimeConfig(**backtest_cfg["regime"])
    orders = pd.DataFrame({
        "symbol": signals["symbol"],
        "decision_time": signals["decision_time"],
        "direction": signals[backtest_cfg["signal_column"]].map(DIRECTION).astype("int8"),
        "score": signals["z"],
    })
    if backtest_cfg.get("gate", True):
        orders["regime"] = regime_for_decisions(classify_regime(regime_inputs, regime_cfg), signals["decision_time"])
    return run_backtest(orders, hourly, BacktestConfig(**backtest_cfg["trading"]), regime_cfg, panel=panel)


def write_backtest(result: BacktestResult | RankedBookResult, out_dir: str | Path) -> tuple[Path, Path]:
    """`backtest.json` and the strategy's table (Trailing J: `trades.parquet`, one row per trade; the
    ranked book: `positions.parquet`, its target weight per held day and coin) into `out_dir`, each atomically."""
    out_dir = Path(out_dir)
    json_path = write_json_atomic(result.to_json_dict(), out_dir / "backtest.json")
    if isinstance(result, RankedBookResult):
        return json_path, write_parquet_atomic(result.positions, out_dir / "positions.parquet")
    return json_path, write_parquet_atomic(result.trades, out_dir / "trades.parquet")
