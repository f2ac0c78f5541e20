"""Walk-forward folds over calendar days, shared by every symbol.

Fold k (days inclusive, all in UTC):

    train [train_start, train_end]  purge  val [val_start, val_end]  purge  test [test_start, test_end]

A purge of P days lies strictly between train and val and between val and test, with P at least
the longest label horizon H: the label of the last train day d looks at close_{d+H}, and
d + H < val_start, so no train label window reaches into val (likewise val into test).
Test windows start at `anchor + k * step_days`, where the anchor leaves room for one full train
window, so fold numbers are stable whatever `first_test_date` / `last_test_date` select.
`rolling` keeps train at `train_days`; `expanding` starts every train window at the first day.
Folds are split by date only, never by position in an array, and nothing is shuffled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)


class WindowKind(StrEnum):
    ROLLING = "rolling"
    EXPANDING = "expanding"


@dataclass(frozen=True)
class Fold:
    index: int
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    val_start: pd.Timestamp
    val_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    purge_days: int

    def windows(self) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
        return {
            "train": (self.train_start, self.train_end),
            "val": (self.val_start, self.val_end),
            "test": (self.test_start, self.test_end),
        }

    def mask(self, days: pd.Series, part: str) -> np.ndarray:
        """Rows whose decision day (00:00 UTC of the daily bar) lies in the fold's `part` window."""
        start, end = self.windows()[part]
        return ((days >= start) & (days <= end)).to_numpy()

    def to_dict(self) -> dict:
        return {k: (v.date().isoformat() if isinstance(v, pd.Timestamp) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> Fold:
        days = {k: pd.Timestamp(v, tz="UTC") for k, v in data.items() if k.endswith(("_start", "_end"))}
        return cls(index=int(data["index"]), purge_days=int(data["purge_days"]), **days)


def _day(value) -> pd.Timestamp | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).normalize()


def make_folds(
    first_day,
    last_day,
    *,
    train_days: int = 152,
    val_days: int = 21,
    test_days: int = 14,
    step_days: int = 14,
    purge_days: int = 14,
    longest_horizon_days: int = 14,
    window: WindowKind | str = WindowKind.ROLLING,
    first_test_date=None,
    last_test_date=None,
    open_last_fold: bool = False,
) -> list[Fold]:
    """All folds whose test window fits inside [first_day, last_day], restricted by the test dates.

    open_last_fold: also the fold whose test window has begun but not ended by `last_day` (the days
    after the last full test window, which daily operation serves); its test_end lies after the data.
    """
    window = WindowKind(window)
    if min(train_days, val_days, test_days, step_days) < 1:
        raise ValueError("train_days, val_days, test_days and step_days must all be >= 1")
    if purge_days < longest_horizon_days:
        raise ValueError(
            f"split.purge_days={purge_days} is shorter than the longest label horizon "
            f"({longest_horizon_days} d): train labels would reach into validation"
        )
    first, last = _day(first_day), _day(last_day)
    lower, upper = _day(first_test_date), _day(last_test_date)
    anchor = first + (train_days + purge_days + val_days + purge_days) * DAY
    # Fold k's test window ends at anchor + k * step + test_days - 1, which must not pass `last`.
    n_folds = max(0, ((last - anchor) // DAY - (0 if open_last_fold else test_days - 1)) // step_days + 1)
    folds = []
    for k in range(n_folds):
        test_start = anchor + k * step_days * DAY
        test_end = test_start + (test_days - 1) * DAY
        if (lower is not None and test_start < lower) or (upper is not None and test_start > upper):
            continue
        val_end = test_start - (purge_days + 1) * DAY
        val_start = val_end - (val_days - 1) * DAY
        train_end = val_start - (purge_days + 1) * DAY
        train_start = first if window is WindowKind.EXPANDING else train_end - (train_days - 1) * DAY
        folds.append(Fold(k, train_start, train_end, val_start, val_end, test_start, test_end, purge_days))
    return folds
