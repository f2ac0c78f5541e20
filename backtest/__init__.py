"""The strategies a run trades: the "Trailing J" backtest of SPEC §7 with its regime gate, and the ranked book."""

from backtest.config import BacktestConfig, RankedBookConfig
from backtest.panel import DailyPanel, daily_panel
from backtest.ranked import RankedBookResult, run_ranked_book
from backtest.regime import (
    REGIMES,
    RegimeConfig,
    classify_regime,
    regime_composite,
    regime_for_decisions,
    size_multiplier,
)
from backtest.report import BacktestResult
from backtest.strategy import STRATEGIES, run_strategy, strategy_name, write_backtest
from backtest.trailing_j import EXIT_TYPES, TRADE_COLUMNS, run_backtest, trade_return

__all__ = [
    "EXIT_TYPES",
    "REGIMES",
    "STRATEGIES",
    "TRADE_COLUMNS",
    "BacktestConfig",
    "BacktestResult",
    "DailyPanel",
    "RankedBookConfig",
    "RankedBookResult",
    "RegimeConfig",
    "classify_regime",
    "daily_panel",
    "regime_composite",
    "regime_for_decisions",
    "run_backtest",
    "run_ranked_book",
    "run_strategy",
    "size_multiplier",
    "strategy_name",
    "trade_return",
    "write_backtest",
]
