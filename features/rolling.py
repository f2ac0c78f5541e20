"""Trailing per-symbol window statistics.

Each symbol is rolled on its own (pandas groupby-rolling), never as one long column masked at the
boundaries: a rolling sum carried across a boundary would let one symbol's later bars change
another symbol's earlier values in the last bits, and the leakage test demands bit-identity.
"""

from __future__ import annotations

import pandas as pd


def trailing(values: pd.Series, symbols: pd.Series, window: int, stat: str) -> pd.Series:
    """`stat` ('mean', 'std', 'sum', ...) over the `window` bars ending at each row, per symbol.

    NaN until a symbol has `window` bars. std is the sample std (ddof=1), as pandas defines it.
    """
    rolled = getattr(values.groupby(symbols, sort=False).rolling(window, min_periods=window), stat)()
    return rolled.reset_index(level=0, drop=True).reindex(values.index)


def trailing_zscore(values: pd.Series, symbols: pd.Series, window: int) -> pd.Series:
    """(x_t - mean) / std over the trailing `window` bars including t; NaN where std is 0."""
    mean = trailing(values, symbols, window, "mean")
    std = trailing(values, symbols, window, "std")
    return (values - mean) / std.where(std > 0)
