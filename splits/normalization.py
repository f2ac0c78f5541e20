"""Feature standardisation fit on a fold's train rows only and saved with the fold.

The statistics pool every symbol's train rows (the features are scale-free by construction), so a
coin first seen at inference is normalised like the rest. Fitting on validation, test or future
rows is what the seed system's backfill did wrong (SPEC §9); a test pins this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

# What a column's value is measured against before the affine standardisation (see Normalizer).
CROSS_SECTIONS = ("none", "demean")


@dataclass
class Normalizer:
    """z = (x - mean_) / scale_ per column; scale_ is 1 where a column is constant on train rows.

    cross_section="demean" first subtracts, at every timestamp, the mean over the symbols that have
    a row there: a coin's inputs then say how it differs from the other coins at that moment, which
    is what a relative label asks, instead of repeating the market's state in every sample. All the
    symbols' rows at a timestamp are known when it closes, so this is point in time; `transform`
    must see every symbol's row of a timestamp (the feature frames hold them all). Columns that are
    the same for every symbol (market-wide: the market return, Fear & Greed) would become zero; they
    are found on the train rows (`demeaned_` lists the others) and kept as they are.
    """

    columns: tuple[str, ...]
    cross_section: str = "none"
    mean_: np.ndarray | None = None
    scale_: np.ndarray | None = None
    demeaned_: tuple[str, ...] = ()

    def __post_init__(self):
        if self.cross_section not in CROSS_SECTIONS:
            raise ValueError(f"cross_section must be one of {CROSS_SECTIONS}, got {self.cross_section!r}")

    def fit(self, frame: pd.DataFrame, train_mask: np.ndarray) -> Normalizer:
        train = frame.loc[train_mask]
        if len(train) == 0:
            raise ValueError("cannot fit normalisation statistics on an empty train window")
        raw = train[list(self.columns)].to_numpy(dtype="float64")
        empty = [c for c, n in zip(self.columns, np.isfinite(raw).sum(axis=0), strict=True) if n == 0]
        if empty:
            raise ValueError(f"feature(s) {empty} have no finite value in the train window")
        values = raw
        if self.cross_section == "demean":
            relative = raw - _timestamp_means(raw, train["ts"])
            # Market-wide: nothing left once the timestamp's mean is taken away (rounding aside).
            varies = np.nanmax(np.abs(relative), axis=0) > 1e-9 * (np.nanmax(np.abs(raw), axis=0) + 1e-12)
            self.demeaned_ = tuple(c for c, v in zip(self.columns, varies, strict=True) if v)
            values = np.where(varies, relative, raw)  # what _relative gives on these rows
        self.mean_ = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def _relative(self, frame: pd.DataFrame) -> np.ndarray:
        """The columns' raw values, the `demeaned_` ones less their timestamp's cross-sectional mean."""
        values = frame[list(self.columns)].to_numpy(dtype="float64", copy=True)
        if self.demeaned_:
            at = [self.columns.index(c) for c in self.demeaned_]
            values[:, at] -= _timestamp_means(values[:, at], frame["ts"])
        return values

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.mean_ is None:
            raise RuntimeError("Normalizer.transform called before fit")
        values = (self._relative(frame) - self.mean_) / self.scale_
        return pd.DataFrame(values, index=frame.index, columns=list(self.columns))

    def to_dict(self) -> dict:
        return {
            "columns": list(self.columns),
            "cross_section": self.cross_section,
            "demeaned": list(self.demeaned_),
            "mean": [float(v) for v in self.mean_],
            "scale": [float(v) for v in self.scale_],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Normalizer:
        # Artifacts saved before cross-sectional inputs existed standardised the raw columns.
        return cls(tuple(data["columns"]), data.get("cross_section", "none"), np.asarray(data["mean"]),
                   np.asarray(data["scale"]), tuple(data.get("demeaned", ())))

    @classmethod
    def for_columns(cls, columns: Sequence[str], cross_section: str = "none") -> Normalizer:
        return cls(tuple(columns), cross_section)


def _timestamp_means(values: np.ndarray, ts: pd.Series) -> np.ndarray:
    """(rows, columns): each row's column means over the rows with the same timestamp (NaN skipped)."""
    group, groups = pd.factorize(ts)
    finite = np.isfinite(values)
    means = np.empty_like(values)
    for j in range(values.shape[1]):  # a handful of columns; the rows are summed by bincount
        sums = np.bincount(group, weights=np.where(finite[:, j], values[:, j], 0.0), minlength=len(groups))
        counts = np.bincount(group, weights=finite[:, j], minlength=len(groups))
        with np.errstate(invalid="ignore", divide="ignore"):
            means[:, j] = (sums / counts)[group]
    return means
