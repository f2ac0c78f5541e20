"""Gap report, the fill policy and daily aggregation, on real data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from marketdata import apply_gap_policy, daily_from_hourly, find_gaps, load_hourly
from marketdata.gaps import summarise_gaps

OUTAGE = pd.Timestamp("2023-03-24 13:00", tz="UTC")  # Binance-wide outage: one missing hour


def test_sample_gap_report_finds_the_real_outage(sample_hourly_raw):
    gaps = find_gaps(sample_hourly_raw)
    # Every coin listed on 2023-03-24 (all but PEPE) misses the 13:00 bar, and nothing else is missing.
    assert sorted(gaps["symbol"]) == sorted(set(sample_hourly_raw["symbol"]) - {"PEPEUSDT"})
    assert (gaps["first_missing"] == OUTAGE).all()
    assert (gaps["last_bar_before"] == OUTAGE - pd.Timedelta(hours=1)).all()
    assert (gaps["missing_bars"] == 1).all()
    summary = summarise_gaps(sample_hourly_raw, gaps)
    assert summary.loc["BTCUSDT"].to_dict() == {
        "bars": 9503, "gaps": 1, "missing_bars": 1, "longest_gap": 1, "zero_volume_bars": 1
    }


def test_fill_flat_makes_a_complete_grid_of_flagged_no_trade_bars(sample_hourly_raw, sample_grid):
    assert len(sample_grid) == len(sample_hourly_raw) + 7
    steps = sample_grid.groupby("symbol")["ts"].diff().dropna()
    assert (steps == pd.Timedelta(hours=1)).all()
    filled = sample_grid[sample_grid["is_filled"]]
    assert (filled["ts"] == OUTAGE).all() and len(filled) == 7
    before = sample_hourly_raw.set_index(["symbol", "ts"])["close"]
    expected = before.loc[list(zip(filled["symbol"], filled["ts"] - pd.Timedelta(hours=1), strict=True))]
    for column in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(filled[column].to_numpy(), expected.to_numpy())
    assert (filled["volume"] == 0).all()
    # Recorded bars are untouched, zero-volume ones included.
    real = sample_grid[~sample_grid["is_filled"]].drop(columns="is_filled").reset_index(drop=True)
    pd.testing.assert_frame_equal(real, sample_hourly_raw)


def test_daily_bars_match_the_exchange_daily_file(shared_data):
    hourly = apply_gap_policy(load_hourly(shared_data / "hourly.parquet"))
    expected = pd.read_parquet(shared_data / "daily.parquet")
    pd.testing.assert_frame_equal(daily_from_hourly(hourly), expected.reset_index(drop=True))


def test_gap_report_matches_the_data_readme_statistics(shared_data):
    hourly = load_hourly(shared_data / "hourly.parquet")
    gaps = find_gaps(hourly)
    assert len(gaps) == 293 and gaps["missing_bars"].sum() == 604 and gaps["missing_bars"].max() == 4
    stats = json.loads((shared_data / "dev_stats.json").read_text())
    quality = next(v["quality"] for k, v in stats.items() if k.endswith("hourly.parquet"))
    summary = summarise_gaps(hourly, gaps)
    for symbol, row in summary.iterrows():
        assert row["gaps"] == quality[symbol]["gaps"], symbol
        assert row["missing_bars"] == quality[symbol]["missing_bars"], symbol
        assert row["zero_volume_bars"] == quality[symbol]["zero_volume_bars"], symbol


def test_unfinished_last_day_is_dropped(sample_grid):
    """Data ending at 15:00 has no close for that day yet: no daily bar, no label, no feature."""
    cut = sample_grid[sample_grid["ts"] <= pd.Timestamp("2023-12-30 15:00", tz="UTC")]
    daily = daily_from_hourly(cut)
    assert daily["ts"].max() == pd.Timestamp("2023-12-29", tz="UTC")
    full = daily_from_hourly(sample_grid)
    assert full["ts"].max() == pd.Timestamp("2023-12-31", tz="UTC")
    # A listing day that starts mid-day is a whole day from the listing on, and is kept.
    arb = full[full["symbol"] == "ARBUSDT"].iloc[0]
    assert arb["ts"] == pd.Timestamp("2023-03-23", tz="UTC")


@pytest.mark.parametrize("symbol", ["BTCUSDT", "PEPEUSDT"])
def test_daily_aggregation_by_hand(sample_grid, symbol):
    day = pd.Timestamp("2023-08-17", tz="UTC")
    bars = sample_grid[(sample_grid["symbol"] == symbol) & (sample_grid["ts"].dt.floor("D") == day)]
    row = daily_from_hourly(sample_grid).set_index(["symbol", "ts"]).loc[(symbol, day)]
    assert len(bars) == 24
    assert row["open"] == bars["open"].iloc[0] and row["close"] == bars["close"].iloc[-1]
    assert row["high"] == bars["high"].max() and row["low"] == bars["low"].min()
    assert row["volume"] == pytest.approx(bars["volume"].sum(), rel=1e-12)


def test_the_daily_run_refuses_an_hour_a_trading_coin_has_not_reported(sample_hourly_raw):
    """serving.bars.check_complete_hour: a coin that traded in the last 24 h but lacks the latest hour stops the
    run (exit 9) naming it and its last bar; a coin gone for more than a day does not."""
    from cli import Exit, Stop
    from serving.bars import check_complete_hour

    check_complete_hour(sample_hourly_raw)  # the sample: every coin's last bar is 2023-12-31 23:00
    latest = sample_hourly_raw["ts"].max()
    late = sample_hourly_raw[~((sample_hourly_raw["symbol"] == "ETHUSDT") & (sample_hourly_raw["ts"] > latest
                                                                              - pd.Timedelta(hours=3)))]
    with pytest.raises(Stop, match=r"1 symbol\(s\).*ETHUSDT \(last bar 2023-12-31 20:00:00\+00:00\)") as stop:
        check_complete_hour(late)
    assert stop.value.code == Exit.STALE_DATA
    gone = sample_hourly_raw[~((sample_hourly_raw["symbol"] == "ETHUSDT")
                               & (sample_hourly_raw["ts"] > latest - pd.Timedelta(hours=30)))]
    check_complete_hour(gone)
