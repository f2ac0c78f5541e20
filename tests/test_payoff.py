"""What the book is paid (evaluation/payoff.py): quantiles, spreads, legs, market states and each score's book,
against hand-computed cases and against the ranked book itself on the shipped sample's bars."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from backtest import RankedBookConfig, daily_panel, run_ranked_book
from evaluation.payoff import (
    book_figures,
    by_half_year,
    half_year,
    market_state,
    payoff_tables,
    quantile_of_day,
    quantile_tables,
    scored_rows,
)
from evaluation.statistics import mean_t, newey_west_t_stat, paired_difference


def _day(scores: list[float], model: str = "m", day: str = "2023-03-01") -> pd.DataFrame:
    return pd.DataFrame({"model": model, "date": pd.Timestamp(day, tz="UTC"), "score": scores})


def test_quantiles_are_mirror_symmetric_and_skip_days_with_too_few_coins():
    eight = _day([8.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])  # row order must not matter
    assert quantile_of_day(eight, 5).tolist() == [5, 1, 1, 2, 3, 3, 4, 5]  # 2 / 1 / 2 / 1 / 2 coins
    ten = _day(list(range(10)))
    assert quantile_of_day(ten, 5).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert quantile_of_day(ten, 10).tolist() == list(range(1, 11))
    # 15 coins in deciles put coins on the decile edges (10 (r - 1/2) / 15 = 1, 3, ...): mirrored, D10 holds one
    # coin as D1 does (a floor on both halves would give the top two).
    assert quantile_of_day(_day(list(range(15))), 10).tolist() == [1, 2, 2, 3, 4, 4, 5, 6, 6, 7, 7, 8, 9, 9, 10]
    assert quantile_of_day(_day([1.0, 2.0, 3.0, 4.0]), 5).isna().all()  # 4 coins: no quintiles that day
    # Six coins: the middle two share Q3. The two lowest tie: they share their mean rank 1.5, hence Q1.
    assert quantile_of_day(_day([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), 5).tolist() == [1, 2, 3, 3, 4, 5]
    assert quantile_of_day(_day([1.0, 1.0, 3.0, 4.0, 5.0, 6.0]), 5).tolist() == [1, 1, 3, 3, 4, 5]
    # Each (model, day) is ranked on its own.
    both = pd.concat([_day([1.0, 2, 3, 4, 5]), _day([5.0, 4, 3, 2, 1], model="n"),
                      _day([1.0, 2, 3, 4, 5], day="2023-03-02")], ignore_index=True)
    assert quantile_of_day(both, 5).tolist() == [1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 1, 2, 3, 4, 5]


def test_market_state_reads_the_returns_through_the_decision_day_only():
    days = pd.date_range("2023-01-01", periods=40, tz="UTC", name="date")
    market = pd.Series(0.01, index=days)
    market.iloc[10:31] = -0.02  # 10 days of +1 %, then -2 %: the 30 through day 30 compound below zero
    state = market_state(market, days=30)
    assert state.iloc[:29].isna().all() and state.iloc[29] == "down"  # from the 30th return on
    assert 1.01**9 * 0.98**21 - 1 < 0 and state.iloc[30] == "down"
    # Day d's own return (known at its close) moves its state; a later one does not.
    moved = market.copy()
    moved.iloc[35] = 5.0
    changed = market_state(moved, days=30)
    assert changed.iloc[35] == "up" != state.iloc[35] and changed.iloc[34] == state.iloc[34]
    assert half_year(pd.DatetimeIndex(["2023-06-30", "2023-07-01"], tz="UTC")).tolist() == ["2023-H1", "2023-H2"]


def _hand_panel(days: pd.DatetimeIndex, symbols: list[str]) -> SimpleNamespace:
    """What the quantile tables read of a panel: each coin's trailing volatility and the market (always up)."""
    calendar = pd.date_range(days[0] - pd.Timedelta(days=40), days[-1], tz="UTC", name="date")
    volatility = pd.DataFrame([[0.01 * (i + 1) for i in range(len(symbols))]] * len(calendar), index=calendar,
                              columns=pd.Index(symbols, name="symbol"))
    return SimpleNamespace(volatility=volatility, market=pd.Series(0.001, index=calendar))


def test_quantile_means_medians_spread_and_legs_by_hand():
    days = pd.date_range("2023-03-01", periods=3, tz="UTC")
    symbols = ["A", "B", "C", "D", "E"]
    # Scores rank A < B < C < D < E every day: A is Q1, E is Q5. Returns per day:
    returns = {days[0]: [0.05, 0.00, 0.01, 0.02, 0.01],
               days[1]: [0.20, 0.01, 0.00, 0.00, 0.03],  # A, the lowest score, explodes
               days[2]: [-0.04, 0.02, 0.01, 0.00, 0.02]}
    predictions = pd.DataFrame([{"model": "m", "symbol": s, "date": d, "score": float(i), "fwd_ret_3d": r[i]}
                                for d, r in returns.items() for i, s in enumerate(symbols)])
    rows = scored_rows(predictions, _hand_panel(days, symbols))
    assert (rows["state"] == "up").all() and (rows["half_year"] == "2023-H1").all()
    tables = quantile_tables(rows, "quintiles")
    assert set(tables) == {("m", "overall", "all"), ("m", "half_years", "2023-H1"), ("m", "market_states", "up")}
    table = tables[("m", "overall", "all")]
    assert table["Q1"]["mean"] == pytest.approx((0.05 + 0.20 - 0.04) / 3)  # 7 %: the bottom's mean is the highest
    assert table["Q1"]["median"] == pytest.approx(0.05)
    assert table["Q5"]["mean"] == pytest.approx(0.02) and table["Q5"]["median"] == pytest.approx(0.02)
    assert table["Q3"]["names"] == 1.0
    # Per unit of the coin's volatility (A 0.01, E 0.05 a day) over the 3-day horizon.
    assert table["Q1"]["mean_vol"] == pytest.approx(0.07 / (0.01 * math.sqrt(3)))
    assert table["Q5"]["median_vol"] == pytest.approx(0.02 / (0.05 * math.sqrt(3)))
    spread = pd.Series([0.01 - 0.05, 0.03 - 0.20, 0.02 + 0.04])
    assert table["spread"] == mean_t(spread)
    assert table["spread"]["mean"] == pytest.approx(-0.05) and table["spread"]["days"] == 3
    assert table["spread"]["t_stat"] == pytest.approx(newey_west_t_stat(spread, 10))
    cross = pd.Series([np.mean(r) for r in returns.values()])
    assert table["long_leg"]["mean"] == pytest.approx((pd.Series([0.01, 0.03, 0.02]) - cross).mean())
    assert table["short_leg"]["mean"] == pytest.approx((cross - pd.Series([0.05, 0.20, -0.04])).mean())
    assert table["short_leg"]["mean"] < 0  # the short leg of this score loses: its bottom quintile rallied
    assert tables[("m", "half_years", "2023-H1")] == table  # every day in one half-year and one state
    assert quantile_tables(rows, "deciles") == {}  # 5 coins: no deciles


def test_mean_t_and_paired_difference():
    days = pd.date_range("2023-01-01", periods=60, tz="UTC")
    rng = np.random.default_rng(3)
    first = pd.Series(rng.normal(0.002, 0.01, 60), index=days)
    second = pd.Series(rng.normal(0.0, 0.01, 60), index=days).drop(days[[4, 9]])
    figures = mean_t(first.where(first.index != days[0]))  # a missing day is dropped
    assert figures["days"] == 59 and figures["lags"] == 10
    assert figures["t_stat"] == pytest.approx(newey_west_t_stat(first.iloc[1:], 10))
    paired = paired_difference(first, second)
    diff = first.drop(days[[4, 9]]) - second
    assert paired["days"] == 58 and paired["mean"] == pytest.approx(diff.mean())
    assert paired["t_stat"] == pytest.approx(newey_west_t_stat(diff, 10))
    assert paired["win_share"] == pytest.approx((diff > 0).mean())


@pytest.fixture(scope="module")
def sample_panel(sample_grid):
    return daily_panel(sample_grid)


def _scores(panel, models: dict[str, int]) -> pd.DataFrame:
    """Random scores per model (seeded), on 150 of the sample's days, with the panel's own 3-day forward returns."""
    days = panel.days[120:270]
    frames = []
    for model, seed in models.items():
        rows = pd.MultiIndex.from_product([days, panel.symbols], names=["date", "symbol"]).to_frame(index=False)
        rows["score"] = np.random.default_rng(seed).normal(size=len(rows))
        frames.append(rows.assign(model=model))
    rows = pd.concat(frames, ignore_index=True)
    forward = (1 + panel.returns).rolling(3).apply(np.prod, raw=True).shift(-3) - 1
    return rows.join(forward.rename_axis(index="date", columns="symbol").stack().rename("fwd_ret_3d"),
                     on=["date", "symbol"])


def test_each_scores_book_is_the_ranked_book_and_its_parts_add_up(sample_panel):
    config = RankedBookConfig()
    predictions = _scores(sample_panel, {"trishula": 1, "lowvol_30d": 2})
    payoff = payoff_tables(predictions, sample_panel, config)
    json.dumps(payoff, allow_nan=False)
    assert list(payoff["models"]) == ["trishula", "lowvol_30d"]
    for model in payoff["models"]:
        daily = run_ranked_book(predictions.loc[predictions["model"] == model, ["symbol", "date", "score"]],
                                pd.DataFrame(), config, panel=sample_panel).daily
        entry = payoff["models"][model]
        assert entry["overall"]["book"] == book_figures(daily)
        # Half-years partition the book's days; so do the market states, less the days with no state.
        halves = entry["half_years"]
        assert sum(h["book"]["days"] for h in halves.values()) == len(daily)
        assert [{k: v for k, v in row.items() if k != "half_year"} for row in by_half_year(daily)] == [
            halves[h]["book"] for h in sorted(halves)]
        states = entry["market_states"]
        assert sum(s["book"]["days"] for s in states.values()) <= len(daily)
        assert payoff["by_state"][model]["up"]["return"] == states["up"]["book"]["return"]
        # The quantiles: days with a known forward return, each decision day in one half-year.
        assert entry["overall"]["quintiles"]["spread"]["days"] == sum(
            h["quintiles"]["spread"]["days"] for h in halves.values())
    assert payoff["decision_days"]["all"] == predictions.dropna(subset=["fwd_ret_3d"])["date"].nunique()
    counts = payoff["decision_days"]
    assert counts["up"] > 0 and counts["down"] > 0
    assert counts["up"] + counts["down"] + counts["unknown_state"] == counts["all"]
