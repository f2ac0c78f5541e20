"""The LSTM daily inputs and TCN hourly channels, checked against independent computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.daily import LSTM_FEATURES, build_daily_features
from features.hourly import TCN_CHANNELS, build_hourly_features

DAY = pd.Timestamp("2023-08-17", tz="UTC")


@pytest.fixture(scope="module")
def daily_bars(sample_daily):
    return sample_daily


@pytest.fixture(scope="module")
def lstm(daily_bars, sample_fear_greed):
    return pd.concat([daily_bars, build_daily_features(daily_bars, sample_fear_greed)], axis=1)


@pytest.fixture(scope="module")
def tcn(sample_grid):
    return pd.concat([sample_grid, build_hourly_features(sample_grid)], axis=1)


def test_lstm_has_twelve_inputs_none_constant(lstm):
    """SPEC §9: the seed system fed four constant placeholders; every input here varies per coin."""
    assert len(LSTM_FEATURES) == 12
    warm = lstm.groupby("symbol").apply(lambda f: f.iloc[40:], include_groups=False)
    assert list(warm.columns[-12:]) == list(LSTM_FEATURES)
    spread = warm.groupby(level=0)[list(LSTM_FEATURES)].std()
    assert (spread > 0).all().all(), spread
    assert np.isfinite(warm[list(LSTM_FEATURES)].to_numpy()).all()


def test_tcn_has_six_channels_none_constant(tcn):
    assert len(TCN_CHANNELS) == 6 and list(tcn.columns[-6:]) == list(TCN_CHANNELS)
    warm = tcn.groupby("symbol").apply(lambda f: f.iloc[200:], include_groups=False)
    assert (warm.groupby(level=0)[list(TCN_CHANNELS)].std() > 0).all().all()
    assert np.isfinite(warm[list(TCN_CHANNELS)].to_numpy()).all()


def test_residual_against_a_hand_built_market_return(daily_bars, lstm):
    """market = sum(w * r) / sum(w), w = mean quote volume over the 30 days before (excluded)."""
    frame = daily_bars.copy()
    frame["ret"] = np.log(frame["close"] / frame.groupby("symbol")["close"].shift(1))
    frame["qv"] = frame["close"] * frame["volume"]
    window = frame[(frame["ts"] >= DAY - pd.Timedelta(days=30)) & (frame["ts"] < DAY)]
    weights = window.groupby("symbol")["qv"].mean()
    today = frame[frame["ts"] == DAY].set_index("symbol")
    market = (today["ret"] * weights.reindex(today.index)).sum() / weights.reindex(today.index).sum()
    row = lstm[(lstm["ts"] == DAY) & (lstm["symbol"] == "SOLUSDT")].iloc[0]
    assert row["market_ret_1d"] == pytest.approx(market, rel=1e-12)
    assert row["residual_1d"] == pytest.approx(today.loc["SOLUSDT", "ret"] - market, rel=1e-10)


def test_daily_inputs_by_hand(lstm, sample_fear_greed):
    eth = lstm[lstm["symbol"] == "ETHUSDT"].reset_index(drop=True)
    i = int(np.flatnonzero(eth["ts"] == DAY)[0])
    row = eth.iloc[i]
    log_qv = np.log1p(eth["close"] * eth["volume"]).to_numpy()
    window = log_qv[i - 29 : i + 1]
    assert row["quote_volume_zscore_30d"] == pytest.approx((log_qv[i] - window.mean()) / window.std(ddof=1), rel=1e-9)
    assert row["daily_range"] == pytest.approx((row["high"] - row["low"]) / row["close"], rel=1e-15)
    assert row["close_location"] == pytest.approx((row["close"] - row["low"]) / (row["high"] - row["low"]))
    rets = np.log(eth["close"] / eth["close"].shift(1)).to_numpy()
    assert row["close_ret_vol_7d"] == pytest.approx(np.std(rets[i - 6 : i + 1], ddof=1), rel=1e-9)
    # Fear & Greed with the default one-day lag: the value dated the day before.
    fg = sample_fear_greed.set_index("date")["value"]
    assert row["fear_greed"] == fg[pd.Timestamp("2023-08-16")]
    assert row["fear_greed_change_7d"] == fg[pd.Timestamp("2023-08-16")] - fg[pd.Timestamp("2023-08-09")]


def test_hourly_channels_by_hand(tcn):
    btc = tcn[tcn["symbol"] == "BTCUSDT"].reset_index(drop=True)
    i = int(np.flatnonzero(btc["ts"] == DAY + pd.Timedelta(hours=15))[0])
    row = btc.iloc[i]
    assert row["close_open_dir"] == np.sign(row["close"] - row["open"])
    assert row["price_spread"] == pytest.approx((row["high"] - row["low"]) / row["close"], rel=1e-15)
    qv = (btc["close"] * btc["volume"]).to_numpy()
    window = qv[i - 167 : i + 1]
    assert row["volume_zscore_7d"] == pytest.approx((qv[i] - window.mean()) / window.std(ddof=1), rel=1e-9)
    log_qv = np.log1p(qv)
    assert row["volume_rel"] == pytest.approx(log_qv[i] - log_qv[i - 167 : i + 1].mean(), rel=1e-9)
    residual = btc["residual_1h"].to_numpy()
    assert row["residual_vol_24h"] == pytest.approx(np.std(residual[i - 23 : i + 1], ddof=1), rel=1e-9)


def test_filled_hour_is_a_no_trade_bar(tcn):
    filled = tcn[tcn["is_filled"]]
    assert len(filled) == 7
    assert (filled["price_spread"] == 0).all() and (filled["close_open_dir"] == 0).all()


def test_features_are_scale_free(daily_bars, sample_fear_greed, sample_grid):
    """A coin priced 1000x higher (or quoted in another unit) gives the same inputs."""
    scaled_daily = daily_bars.copy()
    scaled_grid = sample_grid.copy()
    for frame in (scaled_daily, scaled_grid):
        pepe = frame["symbol"] == "PEPEUSDT"
        frame.loc[pepe, ["open", "high", "low", "close"]] *= 1000.0
        frame.loc[pepe, "volume"] /= 1000.0  # the same quote volume
    a = build_daily_features(daily_bars, sample_fear_greed)
    b = build_daily_features(scaled_daily, sample_fear_greed)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9, atol=1e-12)
    a = build_hourly_features(sample_grid)
    b = build_hourly_features(scaled_grid)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9, atol=1e-12)


def test_names_follow_the_configured_windows(daily_bars, sample_fear_greed, sample_grid):
    daily = build_daily_features(daily_bars, sample_fear_greed, short_window=5, volume_window=20)
    assert {"residual_5d", "close_ret_vol_5d", "quote_volume_zscore_20d", "volume_ratio_5d",
            "fear_greed_change_5d"} <= set(daily.columns)
    hourly = build_hourly_features(sample_grid, volume_window_hours=72, residual_vol_hours=12)
    assert {"volume_zscore_3d", "residual_vol_12h"} <= set(hourly.columns)
