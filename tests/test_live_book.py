"""The ranked book live (backtest/live.py) on the shipped sample, without the pipeline: each day's live run, on the
bars and signals up to that day's close only, trades what one backtest over the whole span trades; a kept book
that differs is refused; an account's holdings give the orders that move it to the target."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest import RankedBookConfig, daily_panel, run_ranked_book
from backtest.live import BookMismatchError, account_differences, account_orders, check_kept_book, live_book

DAY, HOUR = pd.Timedelta(days=1), pd.Timedelta(hours=1)
DAYS = pd.date_range("2023-10-02", "2023-10-12", tz="UTC")
CONFIG = RankedBookConfig(quantile=0.25, keep_quantile=0.4, weighting="inverse_vol", fee_rate=0.0007)
ORDER_COLUMNS = ["symbol", "side", "current_weight", "target_weight", "delta_weight", "reference_price", "equity",
                 "notional", "quantity", "fill_time"]


@pytest.fixture(scope="module")
def signals(sample_grid) -> pd.DataFrame:
    """A real score known at each decision: minus the coin's return over the 3 days to the decision's close."""
    close = daily_panel(sample_grid).close
    past = close / close.shift(3) - 1.0
    scores = (-past).stack().rename("score").rename_axis(["date", "symbol"]).reset_index()
    return scores[scores["date"].between(DAYS[0], DAYS[-1])].reset_index(drop=True)


@pytest.fixture(scope="module")
def lives(sample_grid, signals):
    """The live book of each day, from what a run at its close has."""
    return {day: live_book(signals[signals["date"] <= day], sample_grid[sample_grid["ts"] <= day + 23 * HOUR],
                           CONFIG, day) for day in DAYS}


def test_each_live_day_trades_what_the_whole_backtest_trades(sample_grid, signals, lives):
    backtest = run_ranked_book(signals, sample_grid, CONFIG)
    trades, holdings = backtest.trades.set_index("date"), backtest.holdings.set_index(["date", "symbol"])
    positions = backtest.positions.set_index(["date", "symbol"])["weight"]
    for day, live in lives.items():
        expected = trades.loc[[day]].reset_index(drop=True)
        pd.testing.assert_frame_equal(live.orders[ORDER_COLUMNS], expected[ORDER_COLUMNS], check_exact=False,
                                      rtol=1e-12)
        assert expected["fill_price"].notna().all()  # the whole backtest reaches the fill; the live run cannot
        book = live.book.set_index("symbol")
        pd.testing.assert_series_equal(book["weight"], positions.loc[day + DAY], check_names=False, rtol=1e-12)
        pd.testing.assert_series_equal(book["quantity"], holdings.loc[day, "quantity"], check_names=False, rtol=1e-12)
        equity = backtest.daily.loc[day, "equity"] if day > DAYS[0] else CONFIG.capital
        assert live.equity == pytest.approx(equity, rel=1e-12) and (live.orders["equity"] == live.equity).all()
        if day == DAYS[0]:
            assert live.held.empty and (live.orders["current_weight"] == 0).all()
        else:
            held = live.held.set_index("symbol")
            pd.testing.assert_series_equal(held["quantity"], holdings.loc[day - DAY, "quantity"], check_names=False,
                                           rtol=1e-12)
            traded = live.orders.set_index("symbol")["current_weight"]
            np.testing.assert_allclose(held["weight"].reindex(traded.index).fillna(0.0), traded, rtol=1e-12)
    assert sum(len(live.orders) for live in lives.values()) > len(DAYS)


def test_a_kept_book_that_differs_is_refused_naming_file_coin_and_day(lives, tmp_path):
    for day in DAYS[1:]:
        check_kept_book(lives[day - DAY].book, lives[day], tmp_path / "book.parquet")  # yesterday's book is held
    kept = lives[DAYS[-2]].book
    tampered = kept.assign(quantity=kept["quantity"] * np.where(np.arange(len(kept)) == 0, 1.01, 1.0))
    with pytest.raises(BookMismatchError, match=rf"book\.parquet holds {kept['symbol'].iloc[0]} at weight .* "
                                                rf"from {DAYS[-1]:%Y-%m-%d}"):
        check_kept_book(tampered, lives[DAYS[-1]], tmp_path / "book.parquet")


def test_an_account_is_moved_to_the_target_and_its_differences_reported(lives):
    live = lives[DAYS[-1]]
    book = live.held.set_index("symbol")["quantity"]
    same = account_orders(live, book)  # an account that holds the book: the backtest's trades
    pd.testing.assert_frame_equal(same[ORDER_COLUMNS], live.orders[ORDER_COLUMNS], check_exact=False, rtol=1e-9)
    assert not account_differences(live, book, 0.001)["beyond_tolerance"].any()
    target = live.book.set_index("symbol")["quantity"]
    extra = sorted(set(live.prices.index) - set(target.index) - set(book.index))[0]  # neither held nor wanted
    account = book.copy()
    account.iloc[0] *= 1.5
    account[extra] = 2_000_000.0
    orders = account_orders(live, account).set_index("symbol")
    symbols = target.index.union(account.index)
    expected = target.reindex(symbols, fill_value=0.0) - account.reindex(symbols, fill_value=0.0)
    np.testing.assert_allclose(orders["quantity"], expected.reindex(orders.index), rtol=1e-12)
    assert (orders["side"] == np.where(orders["quantity"] > 0, "buy", "sell")).all()
    assert orders.loc[extra, "side"] == "sell" and orders.loc[extra, "target_quantity"] == 0
    report = account_differences(live, account, 0.001).set_index("symbol")
    assert set(report.index[report["beyond_tolerance"]]) == {account.index[0], extra}
    assert report.loc[extra, "difference"] == 2_000_000.0 and report.loc[extra, "book_quantity"] == 0
