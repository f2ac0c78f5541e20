"""Tabular features on the shipped real sample: shape, independent recomputation, scale-freeness.

The reference values are computed here with plain numpy/pandas, not TA-Lib and not the module's
helpers, so a wrong window, an off-by-one lag or a wrong formula in `features.tabular` shows up.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.market import market_return
from features.tabular import MARKET_RELATIVE_FEATURES, TABULAR_FEATURES, build_tabular_features

WARMUP = 120  # days of history after which every feature must be defined


@pytest.fixture(scope="module")
def daily(sample_daily) -> pd.DataFrame:
    return sample_daily


@pytest.fixture(scope="module")
def fear_greed(sample_fear_greed) -> pd.DataFrame:
    return sample_fear_greed


@pytest.fixture(scope="module")
def features(daily, fear_greed) -> pd.DataFrame:
    return build_tabular_features(daily, fear_greed)


def _history(daily: pd.DataFrame) -> pd.Series:
    """Days of history before each row within its symbol (0 on the first bar)."""
    return daily.groupby("symbol", sort=False).cumcount()


def _coin(daily: pd.DataFrame, features: pd.DataFrame, symbol: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    mask = (daily["symbol"] == symbol).to_numpy()
    return daily[mask].reset_index(drop=True), features[mask].reset_index(drop=True)


# --- shape and naming -------------------------------------------------------------------------------


def test_columns_index_and_dtypes(daily, features):
    assert 35 <= len(TABULAR_FEATURES) <= 45
    assert tuple(features.columns) == TABULAR_FEATURES
    assert len(set(TABULAR_FEATURES)) == len(TABULAR_FEATURES)
    assert all(name == name.lower() and " " not in name for name in TABULAR_FEATURES)
    assert set(MARKET_RELATIVE_FEATURES) <= set(TABULAR_FEATURES)
    assert features.index.equals(daily.index)
    assert (features.dtypes == "float64").all()


def test_no_inf_anywhere(features):
    assert not np.isinf(features.to_numpy()).any()


def test_every_column_is_defined_after_warmup(daily, features):
    late = features[(_history(daily) >= WARMUP).to_numpy()]
    assert len(late) > 1000
    missing = late.isna().sum()
    assert missing.sum() == 0, missing[missing > 0].to_dict()


def test_warmup_rows_are_nan_not_filled(daily, features):
    history = _history(daily).to_numpy()
    assert features.loc[history < 7, "ret_7d"].isna().all()
    assert features.loc[history == 7, "ret_7d"].notna().all()
    assert features.loc[history < 30, "beta_30d"].isna().all()
    assert features.loc[history < 107, "sma21_sma108"].isna().all()


def test_no_column_is_constant_within_a_symbol(daily, features):
    late = (_history(daily) >= WARMUP).to_numpy()
    distinct = features[late].groupby(daily.loc[late, "symbol"].to_numpy()).nunique()
    assert len(distinct) == daily["symbol"].nunique()
    constant = distinct.columns[(distinct <= 1).any()].tolist()
    assert not constant, constant


def test_non_default_windows_rename_columns(daily, fear_greed):
    built = build_tabular_features(daily, fear_greed, rsi_period=7, ratio_window=20, return_windows=(2,))
    assert {"rsi_7", "beta_20d", "ret_2d"} <= set(built.columns)
    assert "rsi_14" not in built.columns and "ret_1d" not in built.columns


def test_rejects_bars_that_are_not_consecutive_days(daily, fear_greed):
    holed = daily.drop(index=daily.index[(daily["symbol"] == "ETHUSDT").to_numpy()][50])
    with pytest.raises(ValueError, match="ETHUSDT"):
        build_tabular_features(holed, fear_greed)


def test_a_symbol_alone_gets_the_same_own_features(daily, fear_greed, features):
    """Nothing crosses a symbol boundary: BTC built alone equals its rows in the full build."""
    mask = (daily["symbol"] == "BTCUSDT").to_numpy()
    alone = build_tabular_features(daily[mask], fear_greed)
    own = [name for name in TABULAR_FEATURES if name not in MARKET_RELATIVE_FEATURES]
    assert alone.index.equals(daily.index[mask])
    np.testing.assert_array_equal(alone[own].to_numpy(), features.loc[mask, own].to_numpy())


# --- independent recomputation on real data ---------------------------------------------------------


def test_ret_7d_is_the_seven_day_log_return(daily, features):
    bars, feats = _coin(daily, features, "SOLUSDT")
    close = bars["close"].to_numpy()
    expected = np.full(len(close), np.nan)
    expected[7:] = np.log(close[7:] / close[:-7])
    np.testing.assert_allclose(feats["ret_7d"].to_numpy(), expected, rtol=1e-12, equal_nan=True)


def test_rsi_14_matches_wilder_smoothing(daily, features):
    bars, feats = _coin(daily, features, "BTCUSDT")
    change = bars["close"].diff()
    # Wilder's smoothing is an exponential average with alpha = 1/14. Seeded differently from TA-Lib
    # (which starts from a simple mean), so compare once the seed has decayed: (13/14)^200 ~ 4e-7.
    gain = change.clip(lower=0).iloc[1:].ewm(alpha=1 / 14, adjust=False).mean()
    loss = (-change).clip(lower=0).iloc[1:].ewm(alpha=1 / 14, adjust=False).mean()
    rsi = 100 * gain / (gain + loss)
    late = rsi.index >= 200
    assert late.sum() > 150
    np.testing.assert_allclose(feats["rsi_14"].to_numpy()[rsi.index[late]], rsi[late].to_numpy(), atol=1e-3)


def test_beta_and_alpha_30d_on_one_window(daily, features):
    bars, feats = _coin(daily, features, "ETHUSDT")
    market = market_return(daily, weight_window=30)
    row = int(np.flatnonzero(bars["ts"] == pd.Timestamp("2023-09-30", tz="UTC"))[0])
    window = slice(row - 29, row + 1)
    coin = np.log(bars["close"] / bars["close"].shift(1)).to_numpy()[window]
    mkt = market.reindex(bars["ts"]).to_numpy()[window]
    cov = np.cov(coin, mkt, ddof=1)
    beta = cov[0, 1] / cov[1, 1]
    assert feats.loc[row, "beta_30d"] == pytest.approx(beta, rel=1e-9)
    assert feats.loc[row, "alpha_30d"] == pytest.approx(coin.mean() - beta * mkt.mean(), rel=1e-9, abs=1e-15)
    assert feats.loc[row, "sharpe_30d"] == pytest.approx(coin.mean() / coin.std(ddof=1), rel=1e-9)
    assert feats.loc[row, "win_rate_30d"] == pytest.approx((coin > 0).mean())


def test_cmf_20_matches_money_flow_formula(daily, features):
    bars, feats = _coin(daily, features, "XRPUSDT")
    high, low, close, volume = (bars[c] for c in ("high", "low", "close", "volume"))
    spread = high - low
    multiplier = ((close - low) - (high - close)) / spread.where(spread > 0)
    flow = (multiplier.fillna(0.0) * volume).rolling(20).sum()
    expected = (flow / volume.rolling(20).sum()).to_numpy()
    got = feats["cmf_20"].to_numpy()
    both = ~np.isnan(got) & ~np.isnan(expected)
    assert both.sum() > 300
    np.testing.assert_allclose(got[both], expected[both], rtol=1e-8, atol=1e-10)


def test_volatility_var_and_cvar_30d(daily, features):
    bars, feats = _coin(daily, features, "ADAUSDT")
    ret = np.log(bars["close"] / bars["close"].shift(1)).to_numpy()
    for row in (60, 200, len(bars) - 1):
        window = ret[row - 29: row + 1]
        var = np.quantile(window, 0.05)
        assert feats.loc[row, "volatility_30d"] == pytest.approx(window.std(ddof=1), rel=1e-10)
        assert feats.loc[row, "var_5pct_30d"] == pytest.approx(var, rel=1e-10)
        assert feats.loc[row, "cvar_5pct_30d"] == pytest.approx(window[window <= var].mean(), rel=1e-10)


def test_obv_flow_7d_is_signed_volume_share(daily, features):
    bars, feats = _coin(daily, features, "BNBUSDT")
    signed = np.sign(bars["close"].diff()) * bars["volume"]
    expected = (signed.rolling(7).sum() / bars["volume"].rolling(7).sum()).to_numpy()
    np.testing.assert_allclose(feats["obv_flow_7d"].to_numpy()[7:], expected[7:], rtol=1e-8, atol=1e-10)


# --- scale-freeness --------------------------------------------------------------------------------


def _rescaled(daily: pd.DataFrame, symbol: str, price: float, volume: float) -> pd.DataFrame:
    out = daily.copy()
    mask = out["symbol"] == symbol
    out.loc[mask, ["open", "high", "low", "close"]] *= price
    out.loc[mask, "volume"] *= volume
    return out


@pytest.mark.parametrize(("symbol", "factor"), [("BTCUSDT", 1000.0), ("PEPEUSDT", 2.0**-20), ("PEPEUSDT", 2.0**-30)])
def test_price_scale_leaves_own_features_unchanged(daily, fear_greed, features, symbol, factor):
    """A coin's own features ignore its price unit, down to prices of ~1e-15 (PEPE x 2^-30), which an
    indicator library with an absolute near-zero threshold would fail.

    PEPE uses powers of two because multiplying by them is exact: a decimal factor rounds each price,
    which can break an exact tie between an up-move and a down-move (PEPE has one, in its 195th day)
    and so flip ADX's directional movement; that is the indicator's own discontinuity, not a scale effect.
    """
    rescaled = build_tabular_features(_rescaled(daily, symbol, factor, 1.0), fear_greed)
    mask = (daily["symbol"] == symbol).to_numpy()
    own = [name for name in TABULAR_FEATURES if name not in MARKET_RELATIVE_FEATURES]
    np.testing.assert_allclose(rescaled.loc[mask, own].to_numpy(), features.loc[mask, own].to_numpy(),
                               rtol=1e-7, atol=1e-9, equal_nan=True)
    # The market return weighs coins by quote volume, so the market-relative ratios move, but stay defined.
    market = list(MARKET_RELATIVE_FEATURES)
    assert rescaled[market].notna().sum().equals(features[market].notna().sum())
    assert np.isfinite(rescaled[market].to_numpy()[~np.isnan(rescaled[market].to_numpy())]).all()


def test_redenomination_leaves_every_feature_unchanged(daily, fear_greed, features):
    """Price x1000 with volume /1000 (same quote volume): nothing may change, for any coin."""
    rescaled = build_tabular_features(_rescaled(daily, "ETHUSDT", 1000.0, 1e-3), fear_greed)
    np.testing.assert_allclose(rescaled.to_numpy(), features.to_numpy(), rtol=1e-7, atol=1e-9, equal_nan=True)


def test_volume_units_do_not_matter(daily, fear_greed, features):
    rescaled = build_tabular_features(_rescaled(daily, "ARBUSDT", 1.0, 1e6), fear_greed)
    mask = (daily["symbol"] == "ARBUSDT").to_numpy()
    own = [name for name in TABULAR_FEATURES if name not in MARKET_RELATIVE_FEATURES]
    np.testing.assert_allclose(rescaled.loc[mask, own].to_numpy(), features.loc[mask, own].to_numpy(),
                               rtol=1e-7, atol=1e-9, equal_nan=True)
