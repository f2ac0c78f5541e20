"""Folds as saved artifacts: window dates, row counts and the train-only normalisation statistics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from splits.normalization import Normalizer
from splits.walkforward import Fold, make_folds

DAY = pd.Timedelta(days=1)


def folds_from_config(daily: pd.DataFrame, split_cfg: Mapping, longest_horizon_days: int,
                      trained_horizon_days: int | None = None) -> list[Fold]:
    """The folds `split_cfg` asks for over the days `daily` covers; a null `purge_days` purges the
    longest label horizon. trained_horizon_days: the horizon of the only label the folds' user trains
    on (an extractor), the shortest purge it may set instead (default: the longest)."""
    purge = split_cfg.get("purge_days")
    return make_folds(
        daily["ts"].min(),
        daily["ts"].max(),
        train_days=split_cfg["train_days"],
        val_days=split_cfg["val_days"],
        test_days=split_cfg["test_days"],
        step_days=split_cfg["step_days"],
        purge_days=longest_horizon_days if purge is None else purge,
        longest_horizon_days=longest_horizon_days if trained_horizon_days is None else trained_horizon_days,
        window=split_cfg["window"],
        first_test_date=split_cfg.get("first_test_date"),
        last_test_date=split_cfg.get("last_test_date"),
        open_last_fold=bool(split_cfg.get("open_last_fold", False)),
    )


def fold_record(
    fold: Fold,
    daily: pd.DataFrame,
    hourly: pd.DataFrame,
    daily_columns: Sequence[str],
    hourly_columns: Sequence[str],
) -> dict:
    """The fold's dates, its row counts and normalisation fit on its train rows only.

    Hourly rows belong to the day they fall in: the train window's hours are those of its days.
    """
    hourly_days = hourly["ts"].dt.floor(DAY)
    return {
        **fold.to_dict(),
        "rows": {part: int(fold.mask(daily["ts"], part).sum()) for part in ("train", "val", "test")},
        "normalization": {
            "daily": Normalizer.for_columns(daily_columns).fit(daily, fold.mask(daily["ts"], "train")).to_dict(),
            "hourly": Normalizer.for_columns(hourly_columns)
            .fit(hourly, fold.mask(hourly_days, "train"))
            .to_dict(),
        },
    }
