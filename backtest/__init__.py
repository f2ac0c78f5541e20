"""Regime gate and the "Trailing J" backtest of SPEC §7."""

from backtest.regime import (
    REGIMES,
    RegimeConfig,
    classify_regime,
    regime_composite,
    regime_for_decisions,
    size_multiplier,
)
from backtest.report import BacktestResult, write_backtest
from backtest.trailing_j import EXIT_TYPES, TRADE_COLUMNS, BacktestConfig, run_backtest, trade_return

__all__ = [
    "EXIT_TYPES",
    "REGIMES",
    "TRADE_COLUMNS",
    "BacktestConfig",
    "BacktestResult",
    "RegimeConfig",
    "classify_regime",
    "regime_composite",
    "regime_for_decisions",
    "run_backtest",
    "size_multiplier",
    "trade_return",
    "write_backtest",
]
