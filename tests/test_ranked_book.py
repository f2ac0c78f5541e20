"""The ranked book (backtest/ranked.py), its daily panel and the shared performance block."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from backtest import RankedBookConfig, daily_panel, run_ranked_book, run_strategy, write_backtest
from backtest.live import BookMismatchError, check_kept_book, live_book
from backtest.performance import performance

DAY = pd.Timedelta(days=1)
FREE = {"fee_rate": 0.0, "slippage": 0.0, "borrow_rate": 0.0, "benchmark_symbol": "AAA"}


def opens_to_hourly(opens: dict[str, list[float]], start: str = "2024-01-01") -> pd.DataFrame:
    """Hourly bars whose 00:00 opens are `opens` per day (flat within each day), volume 1."""
    frames = []
    for symbol, prices in opens.items():
        hours = pd.date_range(start, periods=24 * len(prices), freq="h", tz="UTC")
        price = np.repeat(prices, 24).astype("float64")
        frames.append(pd.DataFrame({"symbol": symbol, "ts": hours, "open": price, "high": price, "low": price,
                                    "close": price, "volume": 1.0}))
    return pd.concat(frames, ignore_index=True)


def scores_frame(scores: dict[str, list[float]], start: str = "2024-01-01") -> pd.DataFrame:
    days = pd.date_range(start, periods=len(next(iter(scores.values()))), freq="D", tz="UTC")
    wide = pd.DataFrame(scores, index=days)
    return wide.rename_axis(index="date", columns="symbol").stack().rename("score").reset_index()


# --- hand-made frames: exact values ---------------------------------------------------------------------------


def test_one_day_book_longs_the_top_and_shorts_the_bottom_at_the_next_open():
    # Day 0's decision (known at day 1's 00:00) earns day 1's open-to-open returns: A +10 %, D -10 %.
    bars = opens_to_hourly({"A": [100, 100, 110, 110], "B": [100, 100, 100, 100], "C": [100, 100, 100, 100],
                            "D": [100, 100, 90, 90]})
    signals = scores_frame({"A": [4.0], "B": [3.0], "C": [2.0], "D": [1.0]})
    result = run_ranked_book(signals, bars, RankedBookConfig(quantile=0.25, keep_quantile=0.25, holding_days=1,
                                                             fee_rate=0.001, slippage=0.0005, borrow_rate=0.0))
    daily = result.daily
    assert list(daily.index) == [pd.Timestamp("2024-01-02", tz="UTC")]
    assert daily["gross"].iloc[0] == pytest.approx(0.5 * 0.10 + 0.5 * 0.10)
    assert daily["long"].iloc[0] == pytest.approx(0.05) and daily["short"].iloc[0] == pytest.approx(0.05)
    assert daily["turnover"].iloc[0] == pytest.approx(1.0)  # from flat into 0.5 long + 0.5 short
    assert daily["net"].iloc[0] == pytest.approx(0.10 - 0.0015)
    assert result.positions.set_index("symbol")["weight"].to_dict() == {"A": 0.5, "D": -0.5}
    assert daily["equity"].iloc[0] == pytest.approx(5000 * (1 + 0.10 - 0.0015))


def test_tranches_hold_each_decision_for_holding_days_and_the_book_is_their_mean():
    opens = {s: [100.0] * 8 for s in "ABCD"}
    # Each day's ranking differs, so every tranche holds other names.
    scores = {"A": [4, 1, 1, 1], "B": [3, 4, 2, 2], "C": [2, 3, 4, 3], "D": [1, 2, 3, 4]}
    result = run_ranked_book(scores_frame({k: [float(x) for x in v] for k, v in scores.items()}),
                             opens_to_hourly(opens), RankedBookConfig(quantile=0.25, holding_days=3, **FREE))
    w = result.positions.pivot(index="date", columns="symbol", values="weight").fillna(0.0)
    day = pd.Timestamp("2024-01-04", tz="UTC")  # held from decisions of days 0, 1 and 2
    # Longs A, B, C and shorts D, A, A on days 0, 1, 2.
    expected = {"A": (0.5 - 0.5 - 0.5) / 3, "B": 0.5 / 3, "C": 0.5 / 3, "D": -0.5 / 3}
    for symbol, weight in expected.items():
        assert w.loc[day, symbol] == pytest.approx(weight), symbol
    # The last decision (day 3) is held through day 6, then the book is empty.
    assert w.index.max() == pd.Timestamp("2024-01-07", tz="UTC")
    assert w.loc[pd.Timestamp("2024-01-07", tz="UTC")].to_dict() == pytest.approx(
        {"A": 0.0, "B": 0.0, "C": 0.0, "D": 0.5 / 3} | {"A": -0.5 / 3})


def test_keep_band_holds_a_name_that_slipped_within_the_band():
    opens = {s: [100.0] * 6 for s in "ABCDEFGH"}
    # Day 1: A slips from 1st to 2nd of 8 (inside a keep share of 0.25 = 2 names), B takes the top.
    scores = {"A": [8, 7, 7], "B": [7, 8, 8], "C": [6, 6, 6], "D": [5, 5, 5], "E": [4, 4, 4], "F": [3, 3, 3],
              "G": [2, 2, 2], "H": [1, 1, 1]}
    signals = scores_frame({k: [float(x) for x in v] for k, v in scores.items()})
    plain = run_ranked_book(signals, opens_to_hourly(opens), RankedBookConfig(quantile=0.125, holding_days=1, **FREE))
    banded = run_ranked_book(signals, opens_to_hourly(opens),
                             RankedBookConfig(quantile=0.125, keep_quantile=0.25, holding_days=1, **FREE))
    longs = {name: r.tranches[r.tranches["side"] > 0].set_index("date")["symbol"].tolist()
             for name, r in (("plain", plain), ("banded", banded))}
    assert longs == {"plain": ["A", "B", "B"], "banded": ["A", "A", "A"]}
    assert banded.daily["turnover"].sum() < plain.daily["turnover"].sum()


def test_beta_neutral_legs_cancel_the_market_exposure(sample_grid):
    panel = daily_panel(sample_grid)
    scores = (-panel.volatility).stack().rename("score").rename_axis(["date", "symbol"]).reset_index()
    config = RankedBookConfig(quantile=0.25, holding_days=1, neutral="beta", **FREE)
    result = run_ranked_book(scores, sample_grid, config, panel=panel)
    w = result.positions.pivot(index="date", columns="symbol", values="weight").fillna(0.0)
    decided = w.index - DAY  # the decision day whose betas sized the book
    exposure = (w * panel.beta.reindex(index=decided, columns=w.columns).to_numpy()).sum(axis=1)
    sized = (w.clip(lower=0).sum(axis=1) / -w.clip(upper=0).sum(axis=1)).between(1 / 3 + 1e-9, 3 - 1e-9)
    assert sized.mean() > 0.5  # most days inside the leg-ratio limit, where the betas cancel exactly
    np.testing.assert_allclose(exposure[sized.to_numpy()], 0.0, atol=1e-9)
    np.testing.assert_allclose(w.abs().sum(axis=1), 1.0)  # gross 1 whatever the split


# --- the real sample ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reversal_signals(sample_grid) -> pd.DataFrame:
    """A real score known at each decision: minus the coin's return over the 3 days to the decision."""
    opens = daily_panel(sample_grid).open
    past = opens.shift(-1) / opens.shift(2) - 1.0  # day d: open(d + 1) / open(d - 2) - 1, known at d + 1 00:00
    return (-past).stack().rename("score").rename_axis(["date", "symbol"]).reset_index()


def test_panel_returns_are_open_to_open_of_the_real_bars(sample_grid):
    panel = daily_panel(sample_grid)
    btc = sample_grid[sample_grid["symbol"] == "BTCUSDT"].set_index("ts")["open"]
    day = pd.Timestamp("2023-06-15", tz="UTC")
    assert panel.returns.loc[day, "BTCUSDT"] == pytest.approx(btc[day + DAY] / btc[day] - 1)
    assert panel.returns.iloc[-1].isna().all()  # the last day has no next open
    # The market is a weighted mean of the day's returns: inside their range.
    r = panel.returns.loc[day].dropna()
    assert r.min() <= panel.market[day] <= r.max()
    # Volatility and beta of day d use the returns that end by d's open: changing d's own return (the
    # next day's 00:00 open, not yet known at d's close) or any later one leaves them.
    later = sample_grid.copy()
    later.loc[later["ts"] >= day + DAY, "open"] *= 1.5
    changed = daily_panel(later)
    pd.testing.assert_series_equal(changed.volatility.loc[day], panel.volatility.loc[day])
    pd.testing.assert_series_equal(changed.beta.loc[day], panel.beta.loc[day])


def test_no_look_ahead_a_later_score_never_moves_an_earlier_position(sample_grid, reversal_signals):
    config = RankedBookConfig(keep_quantile=0.4)
    base = run_ranked_book(reversal_signals, sample_grid, config)
    cut = pd.Timestamp("2023-08-01", tz="UTC")
    changed = reversal_signals.copy()
    later = changed["date"] >= cut
    changed.loc[later, "score"] = -changed.loc[later, "score"]  # every later ranking flipped
    other = run_ranked_book(changed, sample_grid, config)
    # A decision on day d is held from d + 1: days up to `cut` are untouched, the day after differs.
    before = base.daily.index <= cut
    pd.testing.assert_frame_equal(base.daily[before], other.daily[before])
    assert not np.isclose(base.daily.loc[cut + DAY, "gross"], other.daily.loc[cut + DAY, "gross"])
    assert len(base.positions) > 0 and (base.daily["turnover"] > 0).any()


def test_dollar_neutral_book_and_costs_on_the_real_sample(sample_grid, reversal_signals):
    config = RankedBookConfig(fee_rate=0.0007, slippage=0.0003, borrow_rate=0.08)
    result = run_ranked_book(reversal_signals, sample_grid, config)
    w = result.positions.pivot(index="date", columns="symbol", values="weight").fillna(0.0)
    panel = daily_panel(sample_grid)
    full = w.index[3:-3][panel.returns.loc[w.index[3:-3]].notna().all(axis=1)]  # every tranche live, all priced
    assert len(full) > 200  # ARB and PEPE list in 2023
    # Net of the tranches (a coin long in one and short in another nets out): no net dollars, gross <= 1.
    np.testing.assert_allclose(w.loc[full].sum(axis=1), 0.0, atol=1e-12)
    assert (w.loc[full].abs().sum(axis=1) <= 1 + 1e-12).all() and (w.loc[full].abs().sum(axis=1) > 0.3).all()
    per_leg = result.tranches.groupby(["date", "side"]).size().unstack()
    assert (per_leg[1] == per_leg[-1]).all() and set(per_leg[1]) <= {1}  # 6-8 coins: a quintile is 1 name
    daily = result.daily
    np.testing.assert_allclose(daily["cost"], 0.001 * daily["turnover"])
    np.testing.assert_allclose(daily["net"], daily["gross"] - daily["cost"] - daily["borrow"])
    np.testing.assert_allclose(daily["long"] + daily["short"], daily["gross"])
    report = result.to_json_dict()
    summary = report["summary"]
    # At the breakeven cost the summed net return is zero.
    breakeven = summary["breakeven_cost_bps"] / 1e4
    assert (daily["gross"] - daily["borrow"] - breakeven * daily["turnover"]).sum() == pytest.approx(0, abs=1e-12)
    assert report["performance"]["cost_sweep"]["10"]["return"] == pytest.approx(summary["return"])
    assert summary["return"] == pytest.approx(daily["equity"].iloc[-1] / 5000 - 1)
    json.dumps(report, allow_nan=False)


def test_performance_market_block_matches_an_ols_fit(sample_grid, reversal_signals):
    daily = run_ranked_book(reversal_signals, sample_grid, RankedBookConfig()).daily
    block = performance(daily)["market"]
    fit = sm.OLS(daily["net"].to_numpy(), sm.add_constant(daily["market"].to_numpy()), missing="drop").fit()
    assert block["beta"] == pytest.approx(fit.params[1])
    assert block["alpha"] == pytest.approx(fit.params[0] * 365)
    assert block["alpha_t_stat"] == pytest.approx(fit.tvalues[0])
    assert block["correlation"] == pytest.approx(np.sqrt(fit.rsquared) * np.sign(fit.params[1]))


def test_run_strategy_dispatches_and_writes_the_book(sample_grid, reversal_signals, tmp_path):
    backtest_cfg = {"strategy": "ranked", "book": {"quantile": 0.25}}
    result = run_strategy(backtest_cfg, reversal_signals, sample_grid, regime_inputs=pd.DataFrame())
    json_path, table = write_backtest(result, tmp_path)
    assert json.loads(json_path.read_text())["strategy"] == "ranked"
    pd.testing.assert_frame_equal(pd.read_parquet(table), result.positions)
    # Trailing J with the regime gate off: every signal sized at 1, no regime read.
    signals = reversal_signals.assign(decision_time=reversal_signals["date"] + DAY, z=reversal_signals["score"],
                                      signal=np.where(reversal_signals["score"] > 0.05, "BUY", "HOLD"))
    trailing = {"strategy": "trailing_j", "gate": False, "signal_column": "signal", "regime": {},
                "trading": {"benchmark_symbol": "BTCUSDT"}}
    trades = run_strategy(trailing, signals, sample_grid, regime_inputs=pd.DataFrame()).trades
    assert len(trades) > 10 and (trades["size_multiplier"] == 1.0).all() and (trades["side"] == "long").all()
    with pytest.raises(ValueError, match="backtest.strategy must be one of"):
        run_strategy({"strategy": "momentum"}, reversal_signals, sample_grid, regime_inputs=pd.DataFrame())


# --- live: the daily run's book is the backtest's ------------------------------------------------------------------


def test_live_book_replays_the_backtest_day_by_day(sample_grid, reversal_signals, tmp_path):
    config = RankedBookConfig(quantile=0.25, keep_quantile=0.4, weighting="inverse_vol", fee_rate=0.0007)
    days = pd.date_range("2023-10-02", "2023-10-12", tz="UTC")
    served = reversal_signals[reversal_signals["date"].between(days[0], days[-1])]
    backtest = run_ranked_book(served, sample_grid, config)
    positions = backtest.positions.pivot(index="date", columns="symbol", values="weight").fillna(0.0)
    kept = None
    for day in days:
        bars = sample_grid[sample_grid["ts"] <= day + pd.Timedelta(hours=23)]  # what a live run has at day's close
        book = live_book(served[served["date"] <= day], bars, config, day)
        check_kept_book(kept, book, tmp_path / "kept.parquet")  # yesterday's target is today's book
        target = book.book.set_index("symbol")["weight"]
        expected = positions.loc[day + DAY]
        pd.testing.assert_series_equal(target.sort_index(), expected[expected != 0].sort_index(), check_names=False)
        assert set(book.orders["symbol"]) <= set(target.index) | set(book.held.index)
        orders = book.orders.set_index("symbol")
        np.testing.assert_allclose(orders["target_weight"], expected.reindex(orders.index).fillna(0.0))
        np.testing.assert_allclose(orders["delta_weight"], orders["target_weight"] - orders["current_weight"])
        np.testing.assert_allclose(orders["quantity"] * orders["reference_price"], orders["delta_weight"] * book.equity)
        assert (orders["fill_time"] == day + DAY).all()
        if day == days[0]:
            assert book.held.empty
        if day <= days[1]:  # the book is first held on day 1; its first return is known a day later
            assert book.equity_through is None and book.backtest_equity == config.capital
        else:
            assert book.equity_through == day - DAY
            assert book.backtest_equity == pytest.approx(backtest.daily.loc[day - DAY, "equity"], rel=1e-12)
        kept = book.book
    # A kept book that differs from the served signals' is refused, naming the file, the coin and the day.
    tampered = kept.assign(weight=kept["weight"] * 2)
    with pytest.raises(BookMismatchError, match=r"kept\.parquet holds \w+USDT at weight .* for 2023-10-13"):
        later = pd.Timestamp("2023-10-13", tz="UTC")
        signals = reversal_signals[reversal_signals["date"].between(days[0], later)]
        book = live_book(signals, sample_grid[sample_grid["ts"] <= later + pd.Timedelta(hours=23)], config, later)
        check_kept_book(tampered, book, tmp_path / "kept.parquet")


# --- bad configs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("override", "key"), [
    ({"holding_days": 0}, "backtest.book.holding_days"),
    ({"fee_rate": -0.001}, "backtest.book.: costs"),
    ({"borrow_rate": -0.1}, "backtest.book.: costs"),
    ({"quantile": 0.6}, "backtest.book.quantile"),
    ({"keep_quantile": 0.1}, "backtest.book.keep_quantile"),
    ({"names": 0}, "backtest.book.names"),
    ({"weighting": "cap"}, "backtest.book.weighting"),
    ({"neutral": "sector"}, "backtest.book.neutral"),
])
def test_bad_book_configs_name_their_key(override, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        RankedBookConfig(**override)


def test_more_names_than_the_day_has_coins_names_the_key_and_day(sample_grid, reversal_signals):
    with pytest.raises(ValueError, match=r"backtest\.book\.names=5: 2022-12-0\d has \d coins"):
        run_ranked_book(reversal_signals, sample_grid, RankedBookConfig(select="names", names=5, keep_names=5))
