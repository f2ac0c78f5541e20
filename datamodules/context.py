"""Market-context inputs: at each row's timestamp, the cross-sectional mean and dispersion (the
population std over the coins with a value there) of each input, and one reference coin's own value
(BTC's by default). Every coin's bar of a timestamp is known when it closes, so these are point in
time exactly like the coin's own inputs; they are the same for every coin of a timestamp, so the
cross-sectional normaliser (`splits.Normalizer`, demean) keeps them as they are.

Only coin-specific inputs get context (a market-wide input, e.g. the market return or Fear & Greed,
is its own mean): which ones is decided on the fold's train rows and saved with the artifact, so the
backfill builds the very same columns (`input_frame`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

STATS = ("xs_mean", "xs_std", "ref")


def context_names(columns: Sequence[str]) -> list[str]:
    return [f"{column}:{stat}" for column in columns for stat in STATS]


def market_context(frame: pd.DataFrame, columns: Sequence[str], symbol: str) -> pd.DataFrame:
    """(rows, 3 * columns) `<column>:xs_mean`, `:xs_std` and `:ref` (`symbol`'s value at the row's timestamp)."""
    if not (frame["symbol"] == symbol).any():
        raise ValueError(f"market context needs the reference coin {symbol} in the data")
    group, stamps = pd.factorize(frame["ts"])  # (rows,) timestamp number of each row
    is_ref = (frame["symbol"] == symbol).to_numpy()
    out = {}
    for column in columns:  # a handful of columns; the rows are summed by bincount
        values = frame[column].to_numpy(dtype="float64")
        finite = np.isfinite(values)
        counts = np.bincount(group, weights=finite, minlength=len(stamps))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(group, weights=np.where(finite, values, 0.0), minlength=len(stamps)) / counts
            deviation = np.where(finite, values - mean[group], 0.0)
            std = np.sqrt(np.bincount(group, weights=deviation**2, minlength=len(stamps)) / counts)
        reference = np.full(len(stamps), np.nan)
        reference[group[is_ref]] = values[is_ref]
        out[f"{column}:xs_mean"], out[f"{column}:xs_std"], out[f"{column}:ref"] = (
            mean[group], std[group], reference[group])
    return pd.DataFrame(out, index=frame.index)


def coin_specific(frame: pd.DataFrame, columns: Sequence[str], rows: np.ndarray) -> list[str]:
    """The columns whose values differ across the coins of some timestamp among `rows` (the train rows)."""
    train = frame.loc[rows, ["ts", *columns]]
    spread = train.groupby("ts")[list(columns)].std(ddof=0).max()
    return [c for c in columns if spread[c] > 1e-12]


def input_frame(frame: pd.DataFrame, columns: Sequence[str], context: Mapping | None) -> pd.DataFrame:
    """The frame an extractor reads: `ts` and its input `columns`, plus the market-context columns that
    `context` ({"symbol", "columns"}, saved in the artifact's inputs) names; None: the frame itself."""
    if not context:
        return frame
    added = market_context(frame, context["columns"], context["symbol"])
    return pd.concat([frame[["symbol", "ts", *columns]], added], axis=1)
