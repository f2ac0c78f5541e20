"""Market data: loading, validation, gap policy and daily aggregation of long-format OHLCV."""

from marketdata.daily import daily_from_hourly
from marketdata.gaps import GapPolicy, apply_gap_policy, find_gaps
from marketdata.load import load_fear_greed, load_hourly, load_market_data
from marketdata.validate import DataValidationError

__all__ = [
    "DataValidationError",
    "GapPolicy",
    "apply_gap_policy",
    "daily_from_hourly",
    "find_gaps",
    "load_fear_greed",
    "load_hourly",
    "load_market_data",
]
