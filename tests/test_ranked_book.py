"""The ranked book (backtest/ranked.py), its daily panel and the shared performance block."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from backtest import RankedBookConfig, daily_panel, run_ranked_book, run_strategy, write_backtest
from backtest.performance import performance

DAY = pd.Timedelta(days=1)
FREE = {"fee_rate": 0.0, "slippage": 0.0, "borrow_rate": 0.0, "benchmark_symbol": "AAA", "min_names": 1}


def opens_to_hourly(opens: dict[str, list[float]], start: str = "2024-01-01") -> pd.DataFrame:
    """Hourly bars flat at `opens[s][t]` through each day t (its close and its fill price alike), volume 1."""
    return days_to_hourly(opens, opens, start)


def days_to_hourly(closes: dict[str, list[float]], fills: dict[str, list[float]],
                   start: str = "2024-01-01", fill_hour: int = 1) -> pd.DataFrame:
    """Hourly bars at `closes[s][t]` through day t, except the open of its `fill_hour` bar: `fills[s][t]`."""
    frames = []
    for symbol, prices in closes.items():
        hours = pd.date_range(start, periods=24 * len(prices), freq="h", tz="UTC")
        price = np.repeat(prices, 24).astype("float64")
        opens = price.copy()
        opens[fill_hour::24] = fills[symbol]
        frames.append(pd.DataFrame({"symbol": symbol, "ts": hours, "open": opens, "high": np.maximum(opens, price),
                                    "low": np.minimum(opens, price), "close": price, "volume": 1.0}))
    return pd.concat(frames, ignore_index=True)


def scores_frame(scores: dict[str, list[float]], start: str = "2024-01-01") -> pd.DataFrame:
    days = pd.date_range(start, periods=len(next(iter(scores.values()))), freq="D", tz="UTC")
    wide = pd.DataFrame(scores, index=days)
    return wide.rename_axis(index="date", columns="symbol").stack().rename("score").reset_index()


# --- hand-made frames: exact values ---------------------------------------------------------------------------


def test_an_account_trades_quantities_at_the_reference_price_and_fills_at_the_0100_open():
    # Day 0's decision (at its close, prices 100) fills at day 1's 01:00 open F1 and is marked at day 1's
    # close P1; with no decision on day 1 the book is closed at day 2's 01:00 open F2.
    closes = {"A": [100, 104, 110], "B": [100, 100, 100], "C": [100, 100, 100], "D": [100, 95, 90]}
    fills = {"A": [100, 102, 108], "B": [100, 100, 100], "C": [100, 100, 100], "D": [100, 98, 93]}
    bars = days_to_hourly(closes, fills)
    signals = scores_frame({"A": [4.0], "B": [3.0], "C": [2.0], "D": [1.0]})
    config = RankedBookConfig(quantile=0.25, holding_days=1, fee_rate=0.001, slippage=0.0005, borrow_rate=0.0,
                              min_names=1)
    result = run_ranked_book(signals, bars, config)
    day = pd.date_range("2024-01-01", periods=3, tz="UTC")
    daily = result.daily
    assert list(daily.index) == [day[1], day[2]]
    # Day 1: flat until the fill, then long A and short D from their fills to their closes.
    gross1 = 0.5 * (104 - 102) / 100 - 0.5 * (95 - 98) / 100
    turnover1 = 0.5 * 102 / 100 + 0.5 * 98 / 100
    net1 = gross1 - 0.0015 * turnover1
    assert daily.loc[day[1], "gross"] == pytest.approx(gross1)
    assert daily.loc[day[1], "long"] == pytest.approx(0.5 * 0.02) and daily.loc[day[1], "short"] == pytest.approx(0.015)
    assert daily.loc[day[1], "turnover"] == pytest.approx(turnover1)
    assert daily.loc[day[1], "net"] == pytest.approx(net1)
    # Day 2: the held weights (marked at day 1's closes, over the equity after day 1) to the 01:00 fills.
    held = {"A": 0.5 * 1.04 / (1 + net1), "D": -0.5 * 0.95 / (1 + net1)}
    gross2 = held["A"] * (108 / 104 - 1) + held["D"] * (93 / 95 - 1)
    turnover2 = abs(held["A"]) * 108 / 104 + abs(held["D"]) * 93 / 95
    assert daily.loc[day[2], "gross"] == pytest.approx(gross2)
    assert daily.loc[day[2], "turnover"] == pytest.approx(turnover2)
    assert daily["equity"].iloc[-1] == pytest.approx(5000 * (1 + net1) * (1 + gross2 - 0.0015 * turnover2))
    # The orders: quantities at the reference price, filled at the 01:00 open.
    trades = result.trades.set_index(["date", "symbol"])
    assert trades.loc[(day[0], "A"), "quantity"] == pytest.approx(0.5 * 5000 / 100)
    assert trades.loc[(day[0], "D"), "quantity"] == pytest.approx(-0.5 * 5000 / 100)
    assert trades.loc[(day[0], "D"), "fill_price"] == 98 and trades.loc[(day[0], "A"), "side"] == "buy"
    assert (result.trades["fill_time"] == result.trades["date"] + pd.Timedelta(hours=25)).all()
    equity1 = 5000 * (1 + net1)
    assert trades.loc[(day[1], "A"), "current_weight"] == pytest.approx(held["A"])
    assert trades.loc[(day[1], "A"), "equity"] == pytest.approx(equity1)
    # Selling the whole holding: the quantity sold is the quantity bought.
    assert trades.loc[(day[1], "A"), "quantity"] == pytest.approx(-25.0)
    assert trades.loc[(day[1], "D"), "quantity"] == pytest.approx(25.0)
    assert result.holdings.set_index(["date", "symbol"])["quantity"].to_dict() == pytest.approx(
        {(day[0], "A"): 25.0, (day[0], "D"): -25.0})
    assert result.positions.set_index("symbol")["weight"].to_dict() == {"A": 0.5, "D": -0.5}


def test_fill_delay_zero_fills_at_the_0000_open():
    closes = {"A": [100, 104, 110], "B": [100, 100, 100], "C": [100, 100, 100], "D": [100, 95, 90]}
    fills = {"A": [100, 101, 108], "B": [100, 100, 100], "C": [100, 100, 100], "D": [100, 99, 93]}
    signals = scores_frame({"A": [4.0], "B": [3.0], "C": [2.0], "D": [1.0]})
    result = run_ranked_book(signals, days_to_hourly(closes, fills, fill_hour=0),
                             RankedBookConfig(quantile=0.25, holding_days=1, fill_delay_hours=0, min_names=1))
    first = result.trades[result.trades["date"] == result.trades["date"].min()].set_index("symbol")
    assert first["fill_price"].to_dict() == {"A": 101, "D": 99}
    assert (first["fill_time"] == pd.Timestamp("2024-01-02", tz="UTC")).all()
    with pytest.raises(ValueError, match="fill_delay_hours"):
        run_ranked_book(signals, days_to_hourly(closes, fills), RankedBookConfig(fill_delay_hours=0),
                        panel=daily_panel(days_to_hourly(closes, fills)))


def test_a_coin_whose_data_ends_is_closed_at_its_last_price_without_later_bars():
    # E's bars end with day 1; the book holds it short from day 0's decision. At day 2's decision it has no
    # close: it is closed at its last price (day 1's close), whatever the other coins do after.
    closes = {"A": [100, 100, 100, 100], "B": [100, 100, 100, 100], "C": [100, 100, 100, 100],
              "D": [100, 100, 100, 100], "E": [100, 120]}
    bars = opens_to_hourly(closes)
    signals = scores_frame({"A": [5.0, 5.0], "B": [4.0, 4.0], "C": [3.0, 3.0], "D": [2.0, 2.0], "E": [1.0, 1.0]})
    config = RankedBookConfig(quantile=0.2, holding_days=1, **FREE)
    result = run_ranked_book(signals, bars, config)
    trades = result.trades.set_index(["date", "symbol"])
    day = pd.date_range("2024-01-01", periods=4, tz="UTC")
    # Day 1's decision keeps E short (it has a close and the lowest score); its fill on day 2 has no bar.
    assert trades.loc[(day[1], "E"), "fill_price"] == 120  # no 01:00 bar on day 2: the last price
    assert result.daily.loc[day[2], "short"] == pytest.approx(0.0)  # no move after its last price
    # The backtest never reads past a coin's last bar: more bars for the others change nothing before them.
    longer = opens_to_hourly({**{s: [*v, 100.0] for s, v in closes.items() if s != "E"}, "E": closes["E"]})
    again = run_ranked_book(signals, longer, config)
    pd.testing.assert_frame_equal(result.daily.loc[: day[2]], again.daily.loc[: day[2]])


def test_drawdown_counts_from_the_starting_capital():
    closes = {"A": [100, 90, 80], "B": [100, 100, 100], "C": [100, 100, 100], "D": [100, 100, 100]}
    signals = scores_frame({"A": [4.0, 4.0], "B": [3.0, 3.0], "C": [2.0, 2.0], "D": [1.0, 1.0]})
    result = run_ranked_book(signals, opens_to_hourly(closes), RankedBookConfig(quantile=0.25, holding_days=1,
                                                                                  **FREE))
    daily = result.daily
    assert (daily["equity"] <= 5000).all() and daily["equity"].iloc[-1] < 5000  # never above its start
    np.testing.assert_allclose(daily["drawdown"], daily["equity"] / 5000 - 1)
    assert performance(daily)["summary"]["max_drawdown"] == pytest.approx(daily["equity"].min() / 5000 - 1)


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
    """A real score known at each decision: minus the coin's return over the 3 days to the decision's close."""
    close = daily_panel(sample_grid).close
    past = close / close.shift(3) - 1.0  # day d: close(d) / close(d - 3) - 1, known at d's close
    return (-past).stack().rename("score").rename_axis(["date", "symbol"]).reset_index()


def test_panel_prices_are_the_days_closes_and_the_0100_opens_of_the_real_bars(sample_grid):
    panel = daily_panel(sample_grid)
    btc = sample_grid[sample_grid["symbol"] == "BTCUSDT"].set_index("ts")
    day = pd.Timestamp("2023-06-15", tz="UTC")
    assert panel.close.loc[day, "BTCUSDT"] == btc.loc[day + pd.Timedelta(hours=23), "close"]
    assert panel.fill.loc[day, "BTCUSDT"] == btc.loc[day + pd.Timedelta(hours=1), "open"]
    assert panel.returns.loc[day, "BTCUSDT"] == pytest.approx(panel.close.loc[day, "BTCUSDT"]
                                                              / panel.close.loc[day - DAY, "BTCUSDT"] - 1)
    # The market is a weighted mean of the day's returns: inside their range.
    r = panel.returns.loc[day].dropna()
    assert r.min() <= panel.market[day] <= r.max()
    # Volatility, skew and beta of day d use the returns through d's close: changing any later bar leaves them.
    later = sample_grid.copy()
    later.loc[later["ts"] >= day + DAY, ["open", "close"]] *= 1.5
    changed = daily_panel(later)
    for name in ("volatility", "skew", "beta"):
        pd.testing.assert_series_equal(getattr(changed, name).loc[day], getattr(panel, name).loc[day])
    assert not np.allclose(changed.volatility.loc[day + DAY], panel.volatility.loc[day + DAY])


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
    full = w.index[3:-3][panel.close.loc[w.index[3:-3]].notna().all(axis=1)]  # every tranche live, all priced
    assert len(full) > 200  # ARB and PEPE list in 2023
    # Net of the tranches (a coin long in one and short in another nets out): no net dollars, gross <= 1.
    np.testing.assert_allclose(w.loc[full].sum(axis=1), 0.0, atol=1e-12)
    assert (w.loc[full].abs().sum(axis=1) <= 1 + 1e-12).all() and (w.loc[full].abs().sum(axis=1) > 0.3).all()
    per_leg = result.tranches.groupby(["date", "side"]).size().unstack()
    assert (per_leg[1] == per_leg[-1]).all() and set(per_leg[1]) == {2}  # 6-8 coins: min_names, not 1
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


def test_the_account_in_coins_and_cash_gives_the_books_equity(sample_grid, reversal_signals):
    # An independent ledger: cash moves by each fill's quantity x fill price, the costs on that value and the
    # borrow on the shorts; equity = cash + the coins held x each day's close. It must be the book's equity.
    config = RankedBookConfig(keep_quantile=0.4, weighting="inverse_vol", fee_rate=0.0007, borrow_rate=0.08)
    result = run_ranked_book(reversal_signals, sample_grid, config)
    panel = daily_panel(sample_grid)
    trades = result.trades.dropna(subset=["fill_price"])
    cash = config.capital - (trades["quantity"] * trades["fill_price"]).groupby(trades["date"]).sum()
    cash -= (0.0012 * (trades["quantity"].abs() * trades["fill_price"])).groupby(trades["date"]).sum()
    held = result.holdings.pivot(index="date", columns="symbol", values="quantity").fillna(0.0)
    held = held.reindex(index=cash.index, columns=panel.symbols, fill_value=0.0)
    days = cash.index + DAY  # each decision's fill falls in the next day's row
    closes = panel.close.ffill().reindex(days).fillna(0.0).to_numpy()
    borrow = 0.08 / 365 * (held.clip(upper=0).abs().to_numpy() * panel.close.ffill().reindex(cash.index).fillna(0.0)
                           .to_numpy()).sum(axis=1)
    ledger = cash.cumsum() - config.capital * (np.arange(len(cash)))  # the capital counted once
    equity = ledger.to_numpy() - np.cumsum(borrow) + (held.to_numpy() * closes).sum(axis=1)
    np.testing.assert_allclose(equity, result.daily["equity"].reindex(days).to_numpy(), rtol=1e-9)


def test_book_candidates_change_the_short_leg_as_configured(sample_grid, reversal_signals):
    panel = daily_panel(sample_grid)
    base = run_ranked_book(reversal_signals, sample_grid, RankedBookConfig(holding_days=1), panel=panel)
    # wild_short: the day's wildest coin (a fifth of 6-8 coins) by trailing volatility is never shorted.
    tame = run_ranked_book(reversal_signals, sample_grid, RankedBookConfig(holding_days=1, wild_short="volatility"),
                           panel=panel)
    shorts = tame.tranches[tame.tranches["side"] < 0]
    known = panel.volatility.notna().sum(axis=1) >= 5
    wildest = panel.volatility[known].idxmax(axis=1).reindex(panel.days)
    assert not (shorts["symbol"].to_numpy() == wildest.reindex(shorts["date"]).to_numpy())[
        known.reindex(shorts["date"]).to_numpy()].any()
    assert (base.tranches[base.tranches["side"] < 0]["symbol"].to_numpy()
            == wildest.reindex(base.tranches[base.tranches["side"] < 0]["date"]).to_numpy()).any()
    # short_leg=btc: long the top names, short BTC alone, dollar neutral.
    hedged = run_ranked_book(reversal_signals, sample_grid, RankedBookConfig(holding_days=1, short_leg="btc"),
                             panel=panel)
    w = hedged.positions.pivot(index="date", columns="symbol", values="weight").fillna(0.0)
    assert (w.drop(columns="BTCUSDT") >= 0).all().all()
    np.testing.assert_allclose(w.sum(axis=1), 0.0, atol=1e-12)
    # short_leg=market: the short leg is the volume-weighted basket of every coin with a close.
    market = run_ranked_book(reversal_signals, sample_grid, RankedBookConfig(holding_days=1, short_leg="market"),
                             panel=panel)
    day = pd.Timestamp("2023-09-01", tz="UTC")
    tranche = market.tranches[market.tranches["date"] == day]
    assert (tranche["side"] < 0).sum() >= 5  # the basket, not k names
    # vol_target: the book's predicted volatility (its weights on the trailing returns) is the target.
    targeted = run_ranked_book(reversal_signals, sample_grid,
                               RankedBookConfig(holding_days=1, vol_target=0.3, max_gross=10.0), panel=panel)
    target = targeted.positions.pivot(index="date", columns="symbol", values="weight").fillna(0.0)
    row = target.loc[day + DAY].reindex(panel.symbols, fill_value=0.0)
    window = panel.returns.loc[day - 59 * DAY: day].fillna(0.0)
    assert (window @ row).std(ddof=1) * np.sqrt(365) == pytest.approx(0.3)
    capped = run_ranked_book(reversal_signals, sample_grid,
                             RankedBookConfig(holding_days=1, vol_target=5.0, max_gross=1.5), panel=panel)
    gross = capped.positions.groupby("date")["weight"].apply(lambda x: x.abs().sum())
    assert gross.max() == pytest.approx(1.5)


def test_a_volatility_neutral_book_ranks_what_the_score_holds_beyond_volatility(sample_grid, reversal_signals):
    from backtest.ranked import _residual_ranks

    panel = daily_panel(sample_grid)
    scores = reversal_signals.pivot(index="date", columns="symbol", values="score").reindex(
        index=panel.days, columns=panel.symbols)
    residual = _residual_ranks(scores, panel.volatility)
    vol_rank = panel.volatility.where(residual.notna()).rank(axis=1, pct=True)
    # Least squares: each day's residual is uncorrelated with the volatility ranks, and a coin without a known
    # volatility is left unscored.
    covariance = (residual * vol_rank.sub(vol_rank.mean(axis=1), axis=0)).sum(axis=1)
    np.testing.assert_allclose(covariance, 0.0, atol=1e-12)
    assert residual[panel.volatility.isna()].isna().all().all()
    # A score that is only "calm coins do better" leaves nothing to rank.
    pure = _residual_ranks(-panel.volatility, panel.volatility)
    np.testing.assert_allclose(pure.fillna(0.0), 0.0, atol=1e-12)
    plain = run_ranked_book(reversal_signals, sample_grid, RankedBookConfig(), panel=panel)
    neutral = run_ranked_book(reversal_signals, sample_grid, RankedBookConfig(neutralize="volatility"), panel=panel)
    assert not plain.positions.equals(neutral.positions)


def test_financing_borrow_or_funding_per_coin(sample_grid, reversal_signals, tmp_path):
    day = pd.Timestamp("2023-09-01", tz="UTC")
    borrow = run_ranked_book(reversal_signals, sample_grid, RankedBookConfig(borrow_rate=0.2))
    w = borrow.positions.pivot(index="date", columns="symbol", values="weight").fillna(0.0)
    assert borrow.daily.loc[day, "borrow"] == pytest.approx(0.2 / 365 * -w.loc[day].clip(upper=0).sum())
    # A funding file: BTC pays 0.01 % three times a day; the other coins pay the constant annual rate.
    times = pd.date_range("2022-12-01", "2024-01-01", freq="8h", tz="UTC")
    path = tmp_path / "funding.csv"
    pd.DataFrame({"symbol": "BTCUSDT", "ts": times, "rate": 0.0001}).to_csv(path, index=False)
    funded = run_ranked_book(reversal_signals, sample_grid,
                             RankedBookConfig(financing="funding", funding_rate=0.05, funding_path=str(path)))
    rates = pd.Series(0.05 / 365, index=w.columns)
    rates["BTCUSDT"] = 0.0003
    assert funded.daily.loc[day, "borrow"] == pytest.approx(float(w.loc[day] @ rates))
    pd.DataFrame({"symbol": "BTCUSDT", "ts": times[:2], "rate": [0.0001, 2.0]}).to_csv(path, index=False)
    from backtest.costs import load_funding
    load_funding.cache_clear()
    with pytest.raises(ValueError, match=r"funding\.csv: BTCUSDT at 2022-12-01 08:00:00\+00:00 has rate 2\.0"):
        run_ranked_book(reversal_signals, sample_grid, RankedBookConfig(financing="funding", funding_path=str(path)))


def test_performance_market_block_matches_an_ols_fit_with_hac_errors(sample_grid, reversal_signals):
    daily = run_ranked_book(reversal_signals, sample_grid, RankedBookConfig()).daily
    block = performance(daily)["market"]
    fit = sm.OLS(daily["net"].to_numpy(), sm.add_constant(daily["market"].to_numpy()), missing="drop").fit(
        cov_type="HAC", cov_kwds={"maxlags": 10})
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
    ({"short_leg": "eth"}, "backtest.book.short_leg"),
    ({"wild_short": "beta"}, "backtest.book.wild_short"),
    ({"wild_share": 1.0}, "backtest.book.wild_share"),
    ({"vol_target": -0.1}, "backtest.book.vol_target"),
    ({"financing": "margin"}, "backtest.book.financing"),
    ({"fill_delay_hours": 24}, "backtest.book.fill_delay_hours"),
    ({"min_names": 0}, "backtest.book.min_names"),
    ({"neutralize": "beta"}, "backtest.book.neutralize"),
])
def test_bad_book_configs_name_their_key(override, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        RankedBookConfig(**override)


def test_more_names_than_the_day_has_coins_names_the_key_and_day(sample_grid, reversal_signals):
    with pytest.raises(ValueError, match=r"backtest\.book\.names=5: 2022-12-0\d has \d coins"):
        run_ranked_book(reversal_signals, sample_grid, RankedBookConfig(select="names", names=5, keep_names=5))
