"""The period every modelling and trading choice is made on (issue 32's Decisions): the test folds from
2021-02-20 to 2023-12-31, all of ../shared/data. There is no separate confirmation year any more: the hidden
holdouts (later dates, unseen coins, independent code) confirm."""

from __future__ import annotations

import pandas as pd

DEVELOPMENT = "development"
PERIODS = {DEVELOPMENT: (pd.Timestamp("2021-02-20", tz="UTC"), pd.Timestamp("2024-01-01", tz="UTC"))}


def in_period(frame: pd.DataFrame, period: str = DEVELOPMENT, column: str = "date") -> pd.DataFrame:
    """The rows of `frame` whose `column` lies in [start, end) of `period`."""
    start, end = PERIODS[period]
    return frame[(frame[column] >= start) & (frame[column] < end)]
