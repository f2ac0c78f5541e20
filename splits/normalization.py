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


@dataclass
class Normalizer:
    """z = (x - mean_) / scale_ per column; scale_ is 1 where a column is constant on train rows."""

    columns: tuple[str, ...]
    mean_: np.ndarray | None = None
    scale_: np.ndarray | None = None

    def fit(self, frame: pd.DataFrame, train_mask: np.ndarray) -> Normalizer:
        values = frame.loc[train_mask, list(self.columns)].to_numpy(dtype="float64")
        if values.shape[0] == 0:
            raise ValueError("cannot fit normalisation statistics on an empty train window")
        empty = [c for c, n in zip(self.columns, np.isfinite(values).sum(axis=0), strict=True) if n == 0]
        if empty:
            raise ValueError(f"feature(s) {empty} have no finite value in the train window")
        self.mean_ = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.mean_ is None:
            raise RuntimeError("Normalizer.transform called before fit")
        values = (frame[list(self.columns)].to_numpy(dtype="float64") - self.mean_) / self.scale_
        return pd.DataFrame(values, index=frame.index, columns=list(self.columns))

    def to_dict(self) -> dict:
        return {
            "columns": list(self.columns),
            "mean": [float(v) for v in self.mean_],
            "scale": [float(v) for v in self.scale_],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Normalizer:
        return cls(tuple(data["columns"]), np.asarray(data["mean"]), np.asarray(data["scale"]))

    @classmethod
    def for_columns(cls, columns: Sequence[str]) -> Normalizer:
        return cls(tuple(columns))
