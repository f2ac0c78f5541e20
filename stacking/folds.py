"""The meta-learner's walk-forward: the extractor folds' test windows, on stacked rows only.

A meta fold is a `splits.walkforward.Fold` with the same index and test window as its extractor
fold and train / validation windows over the stacked rows.

Meta fold k tests on extractor fold k's test window. Its validation window ends `purge` days
before the test starts and its train window ends `purge` days before validation starts (purge at
least the longest label horizon, as for the extractors). Train starts at the first day whose rows
hold out-of-sample extractor outputs (expanding), or `train_days` before its end (rolling). A fold
whose train window would be shorter than `min_train_days` is skipped, and the caller says so: on a
short history the first extractor folds only produce the stacked rows later folds train on.
"""

from __future__ import annotations

import pandas as pd

from splits.walkforward import Fold

DAY = pd.Timedelta(days=1)


def meta_folds(
    folds: list[Fold],
    first_stacked_day: pd.Timestamp,
    *,
    val_days: int,
    purge_days: int,
    min_train_days: int,
    train_days: int | None = None,
) -> tuple[list[Fold], list[int]]:
    """(the meta folds that fit, the indices of the extractor folds skipped for too short a train window)."""
    if val_days < 1 or min_train_days < 1:
        raise ValueError("stack.split.val_days and stack.split.min_train_days must be >= 1")
    made, skipped = [], []
    for fold in folds:
        val_end = fold.test_start - (purge_days + 1) * DAY
        val_start = val_end - (val_days - 1) * DAY
        train_end = val_start - (purge_days + 1) * DAY
        train_start = first_stacked_day if train_days is None else max(
            first_stacked_day, train_end - (train_days - 1) * DAY
        )
        if (train_end - train_start) // DAY + 1 < min_train_days:
            skipped.append(fold.index)
            continue
        made.append(Fold(fold.index, train_start, train_end, val_start, val_end, fold.test_start, fold.test_end,
                         purge_days))
    return made, skipped
