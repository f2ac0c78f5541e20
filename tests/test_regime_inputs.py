"""Regime inputs on the shipped real sample, checked against hand computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.market import market_return
from features.regime import REGIME_FEATURES, build_regime_inputs

COMPONENTS = ["regime_momentum", "regime_volatility", "regime_fear_greed", "regime_breadth"]


@pytest.fixture(scope="module")
def daily(sample_daily) -> pd.DataFrame:
    return sample_daily


@pytest.fixture(scope="module")
def fear_greed(sample_fear_greed) -> pd.DataFrame:
    return sample_fear_greed


@pytest.fixture(scope="module")
def regime(daily, fear_greed) -> pd.DataFrame:
    return build_regime_inputs(daily, fear_greed)


@pytest.fixture(scope="module")
def market(daily) -> pd.Series:
    return market_return(daily, weight_window=30)


def test_one_row_per_day_and_named_columns(daily, regime):
    assert tuple(regime.columns) == REGIME_FEATURES
    days = pd.date_range(daily["ts"].min(), daily["ts"].max(), freq="D")
    assert regime.index.name == "ts"
    assert regime.index.equals(pd.DatetimeIndex(days, name="ts"))
    assert (regime.dtypes == "float64").all()


def test_components_are_within_unit_interval_and_defined_after_warmup(regime):
    values = regime[COMPONENTS]
    assert ((values >= -1) & (values <= 1) | values.isna()).all().all()
    late = regime.iloc[30:]
    assert late.notna().all().all()
    assert regime["vol_ratio_7d_30d"].dropna().gt(0).all()
    for column in COMPONENTS:  # every component actually moves
        assert late[column].nunique() > 10, column


def test_breadth_counts_symbols_above_their_sma_by_hand(daily, regime):
    day = pd.Timestamp("2023-08-15", tz="UTC")
    above = qualifying = 0
    for _, bars in daily[daily["ts"] <= day].groupby("symbol"):
        closes = bars.sort_values("ts")["close"].to_numpy()
        if len(closes) >= 20:
            qualifying += 1
            above += closes[-1] > closes[-20:].mean()
    assert qualifying == daily["symbol"].nunique()
    assert 0 < above < qualifying
    assert regime.loc[day, "regime_breadth"] == pytest.approx(2 * above / qualifying - 1)


def test_momentum_and_volatility_from_the_market_return(market, regime):
    day = pd.Timestamp("2023-10-20", tz="UTC")
    history = market[market.index <= day].to_numpy()
    momentum = np.tanh(history[-14:].sum() / 0.10)
    ratio = history[-7:].std(ddof=1) / history[-30:].std(ddof=1)
    assert regime.loc[day, "regime_momentum"] == pytest.approx(momentum, rel=1e-9)
    assert regime.loc[day, "vol_ratio_7d_30d"] == pytest.approx(ratio, rel=1e-9)
    assert regime.loc[day, "regime_volatility"] == pytest.approx(np.clip(1 - ratio, -1, 1), rel=1e-9)
    np.testing.assert_allclose(regime["regime_volatility"], (1 - regime["vol_ratio_7d_30d"]).clip(-1, 1))


def test_fear_greed_uses_the_previous_days_value(fear_greed, regime):
    source = fear_greed.set_index("date")["value"]
    for day in ("2023-01-15", "2023-07-04", "2023-12-31"):
        stamp = pd.Timestamp(day, tz="UTC")
        previous = source[pd.Timestamp(day) - pd.Timedelta(days=1)]
        assert regime.loc[stamp, "regime_fear_greed"] == pytest.approx((previous - 50) / 50)


def test_breadth_needs_enough_symbols(daily, fear_greed):
    regime = build_regime_inputs(daily, fear_greed, breadth_min_symbols=100)
    assert regime["regime_breadth"].isna().all()
