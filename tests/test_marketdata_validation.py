"""Bad input stops with a clear error naming the file, the symbol and the time.

Each case corrupts a copy of the real shipped sample in one way and checks the message.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from marketdata import DataValidationError, apply_gap_policy, load_fear_greed, load_hourly, load_market_data
from tests.conftest import SAMPLE

ROW = 5000  # a row inside the sample: ADAUSDT in 2023-06, far from any symbol boundary


@pytest.fixture()
def raw() -> pd.DataFrame:
    return pd.read_parquet(SAMPLE / "hourly.parquet")


def _load(frame: pd.DataFrame, tmp_path) -> None:
    path = tmp_path / "hourly.parquet"
    frame.to_parquet(path, index=False)
    load_hourly(path)


def _expect(frame, tmp_path, problem: str, symbol: str | None = None, ts=None):
    with pytest.raises(DataValidationError) as info:
        _load(frame, tmp_path)
    message = str(info.value)
    assert str(tmp_path / "hourly.parquet") in message
    assert re.search(problem, message), message
    if symbol is not None:
        assert f"for {symbol} at {ts}" in message, message
    return message


def _at(raw, row=ROW):
    return raw.loc[row, "symbol"], raw.loc[row, "ts"]


def test_clean_sample_loads(raw, tmp_path):
    _load(raw, tmp_path)


def test_duplicate_bar(raw, tmp_path):
    bad = pd.concat([raw.iloc[: ROW + 1], raw.iloc[[ROW]], raw.iloc[ROW + 1 :]], ignore_index=True)
    _expect(bad, tmp_path, "duplicate bar", *_at(raw))


def test_non_monotonic_time(raw, tmp_path):
    bad = raw.copy()
    bad.iloc[[ROW, ROW + 1]] = bad.iloc[[ROW + 1, ROW]].to_numpy()
    symbol, _ = _at(raw)
    _expect(bad, tmp_path, "non-monotonic time", symbol, raw.loc[ROW, "ts"])


@pytest.mark.parametrize("column", ["open", "high", "low", "close"])
def test_non_positive_price(raw, tmp_path, column):
    bad = raw.copy()
    bad.loc[ROW, ["open", "high", "low", "close"]] = [1.0, 1.0, 1.0, 1.0]
    bad.loc[ROW, column] = 0.0 if column != "high" else -1.0
    _expect(bad, tmp_path, "non-positive price", *_at(raw))


def test_high_below_low(raw, tmp_path):
    bad = raw.copy()
    bad.loc[ROW, ["high", "low"]] = [raw.loc[ROW, "low"], raw.loc[ROW, "high"] * 1.01]
    _expect(bad, tmp_path, r"high < low", *_at(raw))


@pytest.mark.parametrize("factor", [1.5, 0.5])
def test_close_outside_range(raw, tmp_path, factor):
    bad = raw.copy()
    bad.loc[ROW, "close"] = raw.loc[ROW, "high" if factor > 1 else "low"] * factor
    _expect(bad, tmp_path, r"close outside \[low, high\]", *_at(raw))


def test_negative_volume(raw, tmp_path):
    bad = raw.copy()
    bad.loc[ROW, "volume"] = -3.0
    _expect(bad, tmp_path, "negative volume", *_at(raw))


def test_missing_value(raw, tmp_path):
    bad = raw.copy()
    bad.loc[ROW, "close"] = np.nan
    _expect(bad, tmp_path, "missing value", *_at(raw))


def test_bar_not_on_the_hour(raw, tmp_path):
    bad = raw.copy()
    bad.loc[ROW, "ts"] = raw.loc[ROW, "ts"] + pd.Timedelta(minutes=30)
    _expect(bad, tmp_path, "not aligned", raw.loc[ROW, "symbol"], bad.loc[ROW, "ts"])


def test_missing_column(raw, tmp_path):
    message = _expect(raw.drop(columns="volume"), tmp_path, r"missing column\(s\) \['volume'\]")
    assert "expected" in message


def test_unknown_column(raw, tmp_path):
    _expect(raw.assign(trades=1), tmp_path, r"unknown column\(s\) \['trades'\]")


def test_mistyped_price_column(raw, tmp_path):
    _expect(raw.assign(close=raw["close"].astype(str)), tmp_path, "column 'close' must be numeric")


def test_naive_timestamps(raw, tmp_path):
    _expect(raw.assign(ts=raw["ts"].dt.tz_localize(None)), tmp_path, "column 'ts' must be a UTC timestamp")


def test_empty_file(raw, tmp_path):
    _expect(raw.iloc[:0], tmp_path, "no rows")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        load_hourly(tmp_path / "nope.parquet")


def test_gap_longer_than_the_policy_allows(sample_hourly_raw, tmp_path):
    """Removing 30 hours of one coin exceeds max_gap_hours=23: the error names symbol and time."""
    btc = sample_hourly_raw["symbol"] == "BTCUSDT"
    start = pd.Timestamp("2023-07-10 05:00", tz="UTC")
    cut = btc & sample_hourly_raw["ts"].between(start, start + pd.Timedelta(hours=29))
    path = tmp_path / "hourly.parquet"
    sample_hourly_raw[~cut].to_parquet(path, index=False)
    expected = r"gap of 30 missing hourly bar\(s\) for BTCUSDT from 2023-07-10 05:00"
    with pytest.raises(DataValidationError, match=expected):
        load_market_data(path, SAMPLE / "fear_greed.parquet", "fill_flat", 23)
    # The same data passes once the policy allows the gap, and the hours are flagged as filled.
    grid, gaps, _ = load_market_data(path, SAMPLE / "fear_greed.parquet", "fill_flat", 30)
    assert int(grid.loc[grid["symbol"] == "BTCUSDT", "is_filled"].sum()) == 31  # 30 cut + the 2023-03-24 outage
    assert gaps["missing_bars"].max() == 30


def test_error_policy_rejects_the_real_outage(sample_hourly_raw):
    expected = r"gap of 1 missing hourly bar\(s\) for ADAUSDT from 2023-03-24 13:00"
    with pytest.raises(DataValidationError, match=expected):
        apply_gap_policy(sample_hourly_raw, "error")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda f: f.assign(value=f["value"].where(f.index != 40, 140)), r"value outside \[0, 100\] at 2022-12-11"),
        (lambda f: pd.concat([f.iloc[:41], f.iloc[[40]], f.iloc[41:]]), "duplicate date at 2022-12-11"),
        (lambda f: f.drop(columns="value"), r"missing column\(s\) \['value'\]"),
        (lambda f: f.iloc[:0], "no rows"),
    ],
)
def test_bad_fear_greed(tmp_path, change, problem):
    path = tmp_path / "fear_greed.parquet"
    change(pd.read_parquet(SAMPLE / "fear_greed.parquet")).to_parquet(path, index=False)
    with pytest.raises(DataValidationError, match=problem):
        load_fear_greed(path)
