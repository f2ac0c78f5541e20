"""labels.target (absolute / relative) and labels.threshold_scale (fixed / volatility), SPEC §3."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from features.build import build_feature_frames
from features.labels import BUY, HOLD, SELL, LabelSpec, build_label_frames, build_labels, market_forward_returns
from features.market import market_return
from marketdata import daily_from_hourly
from tests.conftest import ABSOLUTE_LABELS, compose

DAY = pd.Timedelta(days=1)
RELATIVE = LabelSpec(target="relative")
# A real day of the sample whose next three days lift every coin by more than 5 %: the market's
# forward 3-day log return is +15 % (BTC +17 %, SOL +48 %, XRP +6 %).
BIG_MOVE_DAY = pd.Timestamp("2023-01-11", tz="UTC")


@pytest.fixture(scope="module")
def cfg():
    """These tests contrast the SPEC's absolute ±thresholds with relative classes at the same bounds."""
    return compose(*ABSOLUTE_LABELS)


@pytest.fixture(scope="module")
def horizons(cfg):
    return {int(k.removeprefix("label_").removesuffix("d")): float(v) for k, v in cfg.labels.thresholds.items()}


@pytest.fixture(scope="module")
def daily_market(sample_daily, horizons, cfg):
    return market_forward_returns(sample_daily, horizons, cfg.features.market_weight_days)


@pytest.fixture(scope="module")
def absolute_and_relative(sample_daily, horizons, daily_market):
    return (build_labels(sample_daily, horizons),
            build_labels(sample_daily, horizons, RELATIVE, market_forward=daily_market))


def _hand_excess(daily, symbol, day, horizon, weight_days):
    """log(close_{d+h} / close_d) minus the sum of the market's daily log returns of days d+1 .. d+h."""
    closes = daily.set_index(["symbol", "ts"])["close"]
    coin = np.log(closes[(symbol, day + horizon * DAY)] / closes[(symbol, day)])
    market = market_return(daily, weight_days)
    return coin - market[day + DAY: day + horizon * DAY].sum()


# Rows where rising and beating the market disagree: (symbol, day, absolute class, relative class).
@pytest.mark.parametrize("symbol, day, absolute_class, relative_class", [
    ("ADAUSDT", "2023-01-11", BUY, SELL),  # +9 % while the market gained +15 %
    ("PEPEUSDT", "2023-08-16", HOLD, BUY),  # -3 % while the market fell more
    ("BTCUSDT", "2022-12-13", SELL, HOLD),  # -6 %, about the market's move
])
def test_relative_label_classes_the_excess_over_the_market(
    sample_daily, absolute_and_relative, cfg, symbol, day, absolute_class, relative_class
):
    absolute, relative = absolute_and_relative
    day = pd.Timestamp(day, tz="UTC")
    row = sample_daily.index[(sample_daily["symbol"] == symbol) & (sample_daily["ts"] == day)][0]
    excess = _hand_excess(sample_daily, symbol, day, 3, cfg.features.market_weight_days)
    threshold = cfg.labels.thresholds.label_3d
    assert abs(abs(excess) - threshold) > 1e-2, "a row away from the bound"
    expected = BUY if excess > threshold else SELL if excess < -threshold else HOLD
    assert expected == relative_class
    assert relative.at[row, "label_3d"] == relative_class and absolute.at[row, "label_3d"] == absolute_class
    # The raw forward return is untouched: the evaluation's IC reads it.
    assert relative.at[row, "fwd_ret_3d"] == absolute.at[row, "fwd_ret_3d"]


def test_relative_labels_follow_every_excess_return(sample_daily, absolute_and_relative, horizons, daily_market):
    """Every relative label is the class of log(1 + fwd_ret) - market forward return, missing with it."""
    _, relative = absolute_and_relative
    for horizon, threshold in horizons.items():
        market = daily_market[horizon].reindex(sample_daily["ts"]).to_numpy()
        excess = np.log1p(relative[f"fwd_ret_{horizon}d"].to_numpy(dtype="float64", na_value=np.nan)) - market
        label = relative[f"label_{horizon}d"]
        assert label.isna().to_numpy().tolist() == np.isnan(excess).tolist()
        clear = np.isfinite(excess) & (np.abs(np.abs(excess) - threshold) > 1e-9)
        expected = np.where(excess[clear] > threshold, BUY, np.where(excess[clear] < -threshold, SELL, HOLD))
        np.testing.assert_array_equal(label.to_numpy()[clear].astype(int), expected)


def _net_buy_share_vs_market(labels, ts, market):
    """Correlation over days of (share of BUY - share of SELL across coins) with the market's move."""
    net = (labels == BUY).astype("float64") - (labels == SELL).astype("float64")
    by_day = net[labels.notna()].groupby(ts).mean()
    return np.corrcoef(by_day, market.reindex(by_day.index))[0, 1]


def test_relative_labels_do_not_follow_the_market(sample_daily, absolute_and_relative, daily_market):
    absolute, relative = absolute_and_relative
    on_day = (sample_daily["ts"] == BIG_MOVE_DAY).to_numpy()
    assert daily_market.at[BIG_MOVE_DAY, 3] > 0.10 and on_day.sum() >= 6
    assert set(absolute.loc[on_day, "label_3d"]) == {BUY}
    assert {BUY, SELL} <= set(relative.loc[on_day, "label_3d"])
    # Over every day: the share of BUY minus SELL across coins tracks the market's move for
    # absolute labels (correlation 0.89 on the sample), not for relative ones (0.08).
    market = daily_market[3]
    assert _net_buy_share_vs_market(absolute["label_3d"], sample_daily["ts"], market) > 0.8
    assert abs(_net_buy_share_vs_market(relative["label_3d"], sample_daily["ts"], market)) < 0.3


@pytest.mark.parametrize("target, scale", [("relative", "fixed"), ("relative", "volatility"),
                                           ("absolute", "volatility")])
def test_hourly_day_end_labels_equal_daily_labels(sample_grid, sample_daily, horizons, cfg, target, scale):
    """The hourly and daily markets weigh their own bars, so their h-day sums differ at day ends;
    the hourly label of d 23:00 must still be the daily label of day d, bit for bit."""
    spec = LabelSpec(target=target, threshold_scale=scale)
    daily, hourly = build_label_frames(sample_daily, sample_grid, horizons, spec, cfg.features.market_weight_days)
    day_end = (sample_grid["ts"].dt.hour == 23).to_numpy()
    at_day_end = hourly[day_end].set_index(
        pd.MultiIndex.from_arrays([sample_grid.loc[day_end, "symbol"], sample_grid.loc[day_end, "ts"].dt.floor("D")])
    )
    expected = daily.set_index(pd.MultiIndex.from_frame(sample_daily[["symbol", "ts"]]))
    assert at_day_end.index.equals(expected.index)
    for column in expected.columns:
        assert at_day_end[column].equals(expected[column]), column
    assert daily["label_3d"].notna().sum() > 2000
    # Off the day ends the hourly grid has its own labels, missing only where the horizon runs out.
    assert hourly.loc[~day_end, "label_3d"].notna().mean() > 0.9


def test_hourly_and_daily_markets_differ_so_day_ends_take_the_daily_one(sample_grid, sample_daily, horizons, cfg):
    weight_days = cfg.features.market_weight_days
    daily = market_forward_returns(sample_daily, horizons, weight_days)
    hourly = market_forward_returns(sample_grid, horizons, weight_days * 24, bars_per_day=24)
    day_end = hourly[hourly.index.hour == 23].set_axis(hourly.index[hourly.index.hour == 23].floor("D"))
    gap = (day_end.reindex(daily.index) - daily).abs().stack()
    assert gap.median() < 1e-3 and gap.max() > 1e-2


def test_labels_read_nothing_after_their_horizon(sample_grid, horizons, cfg):
    """Labels built on the data up to a cut-off equal the full-data ones wherever their horizon ends
    by then, and are missing (never guessed) where it does not."""
    cutoff = pd.Timestamp("2023-07-01", tz="UTC")
    spec = LabelSpec(target="relative", threshold_scale="volatility")
    weight_days = cfg.features.market_weight_days
    full_daily = daily_from_hourly(sample_grid)
    early_grid = sample_grid[sample_grid["ts"] < cutoff + DAY].reset_index(drop=True)
    early_daily = daily_from_hourly(early_grid)
    full = build_label_frames(full_daily, sample_grid, horizons, spec, weight_days)[0]
    early = build_label_frames(early_daily, early_grid, horizons, spec, weight_days)[0]
    full = full.set_index(pd.MultiIndex.from_frame(full_daily[["symbol", "ts"]]))
    early = early.set_index(pd.MultiIndex.from_frame(early_daily[["symbol", "ts"]]))
    ts = early.index.get_level_values("ts")
    for horizon in horizons:
        settled = ts + horizon * DAY <= cutoff
        column = f"label_{horizon}d"
        assert early.loc[settled, column].equals(full.loc[early.index[settled], column]), column
        assert early.loc[~settled, column].isna().all(), column


def _calm_and_wild(forward_moves, scales, step=0.02):
    """Daily bars of symbols whose 4 daily log returns are ±step x scale (std known), then a flat
    day, then a close `forward_move` (simple return) above the 4th day's close."""
    frames = []
    for symbol, (move, scale) in enumerate(zip(forward_moves, scales, strict=True)):
        log_returns = np.array([1, -1, 1, -1]) * step * scale
        closes = np.exp(np.concatenate([[0.0], np.cumsum(log_returns)]))
        closes = np.concatenate([closes, [closes[-1], closes[-1] * (1 + move)]])
        frames.append(pd.DataFrame({
            "symbol": f"S{symbol}", "ts": pd.date_range("2024-01-01", periods=len(closes), freq="D", tz="UTC"),
            "close": closes, "volume": 1.0,
        }))
    return pd.concat(frames, ignore_index=True)


def test_volatility_scale_bound_is_k_times_trailing_std_times_sqrt_h():
    k, horizon, days = 0.5, 2, 4
    sigma = 0.02 * np.sqrt(4 / 3)  # std (ddof 1) of [+a, -a, +a, -a]
    calm_bound = k * sigma * np.sqrt(horizon)
    bars = _calm_and_wild(
        forward_moves=[1.01 * calm_bound, 0.99 * calm_bound, 1.01 * calm_bound, -1.01 * 2 * calm_bound],
        scales=[1, 1, 2, 2],
    )
    labels = build_labels(bars, {horizon: k}, LabelSpec(threshold_scale="volatility", volatility_days=days))
    label = labels[f"label_{horizon}d"].to_numpy(dtype="float64", na_value=np.nan).reshape(4, -1)
    # Day 4 (its close included) is the first with 4 daily returns; before it the labels are
    # warm-up (missing), after it the horizon runs past the data.
    assert np.isnan(label[:, [0, 1, 2, 3, 5, 6]]).all()
    # The same +1.01 x bound move is a BUY for the calm coin and a HOLD for the one twice as wild;
    # a move of 0.99 x k x sigma x sqrt(h) (above k x sigma) is a HOLD.
    np.testing.assert_array_equal(label[:, 4], [BUY, HOLD, HOLD, SELL])
    fixed = build_labels(bars, {horizon: k})
    assert fixed[f"label_{horizon}d"].notna().sum() == 4 * 5


def test_labels_config_is_threaded_through_the_build(sample_grid, sample_fear_greed, absolute_and_relative):
    cfg = compose(*ABSOLUTE_LABELS, "labels.target=relative")
    frames = build_feature_frames(sample_grid, sample_fear_greed, OmegaConf.to_container(cfg.features), cfg.labels)
    _, relative = absolute_and_relative
    assert frames.daily[frames.label_columns].equals(relative)


@pytest.mark.parametrize("override, key", [
    ("labels.target=beta", "labels.target"),
    ("labels.threshold_scale=atr", "labels.threshold_scale"),
    ("labels.volatility_days=1", "labels.volatility_days"),
])
def test_bad_label_config_raises(sample_grid, sample_fear_greed, override, key):
    cfg = compose(override)
    with pytest.raises(ValueError, match=key):
        build_feature_frames(sample_grid, sample_fear_greed, OmegaConf.to_container(cfg.features), cfg.labels)


def test_unknown_values_name_the_allowed_ones():
    with pytest.raises(ValueError, match=r"\('absolute', 'relative'\).*'beta'"):
        LabelSpec(target="beta")
    with pytest.raises(ValueError, match=r"\('fixed', 'volatility'\)"):
        LabelSpec(threshold_scale="atr")
    with pytest.raises(ValueError, match="market's forward returns"):
        build_labels(pd.DataFrame({"symbol": ["A"], "ts": [pd.Timestamp("2024-01-01")], "close": [1.0]}), {1: 0.1},
                     RELATIVE)
