"""Issue 34's scripted scenario through daily.py on the shipped sample: serve, miss two days, serve; a kill at each
write of a served day and of a restate; a switch of strategy; an account that differs from the book. At every step
the served books, orders and equity are the ranked backtest's (its trades, holdings, target weights and equity,
the backtest run once over the book's served signals on the whole sample), or the run stops with its own exit
code, nothing served lost or half written.

One main job on the sample up to 2023-12-19 (fold 13, tested from 12-19, is in: no retrain is due), then days
12-20 .. 12-28 fed as append files. The steps build on each other, so the scenario is one test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest import run_ranked_book
from backtest.orders import next_bar_orders
from cli import Exit, Stop
from marketdata import apply_gap_policy
from serving.run import run_daily
from serving.settings import Strategy
from store.feature_store import FeatureStore
from store.lineage import BarHistory
from tests.conftest import DAILY_WALK_FORWARD, ROOT, compose, main_job_until_stack

pytestmark = pytest.mark.slow

DAY, HOUR = pd.Timedelta(days=1), pd.Timedelta(hours=1)
START = pd.Timestamp("2023-12-20", tz="UTC")  # the first day the daily run serves
COMMON = DAILY_WALK_FORWARD
ORDER_COLUMNS = ["symbol", "side", "current_weight", "target_weight", "delta_weight", "reference_price", "equity",
                 "notional", "quantity", "fill_time"]
FILES = ("signals.parquet", "orders.parquet", "book.parquet", "manifest.json")


def day(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture(scope="module")
def scene(tmp_path_factory, sample_hourly_raw):
    """The main job up to 12-19 and one append file a day from 12-20 (or a span of days)."""
    base = tmp_path_factory.mktemp("scenario")
    hourly = sample_hourly_raw
    hourly[hourly["ts"] < START].to_parquet(base / "start.parquet", index=False)
    art = base / "artifacts"
    main_job_until_stack(base / "main", art, base / "start.parquet")
    return {"base": base, "art": art, "hourly": hourly}


def bars(scene, first: str, last: str | None = None) -> Path:
    """An append file of the days `first` .. `last` (default: `first` alone)."""
    first, last = day(first), day(last or first)
    path = scene["base"] / f"{first.date()}_{last.date()}.parquet"
    hourly = scene["hourly"]
    hourly[(hourly["ts"] >= first) & (hourly["ts"] < last + DAY)].to_parquet(path, index=False)
    return path


def overrides(art: Path, hourly: Path, *more: str) -> list[str]:
    return [f"paths.artifacts_dir={art}", f"data.hourly_path={hourly}", "daily.append=true", *COMMON, *more]


def daily_config(*more: str):
    return compose(*more, config_name="daily")


def serve(art: Path, hourly: Path, *more: str):
    return run_daily(daily_config(f"paths.output_dir={art.parent / 'out'}", *overrides(art, hourly, *more)))


def killed(art: Path, hourly: Path, at: str, *more: str) -> None:
    """daily.py in a process killed by SIGKILL just before the write `at` (tests/kill_at.py)."""
    done = subprocess.run([sys.executable, "tests/kill_at.py", "daily.py", f"hydra.run.dir={art.parent / 'killed'}",
                           *overrides(art, hourly, *more)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KILL_AT": at})
    assert done.returncode == -signal.SIGKILL, f"not killed at {at}: " + done.stdout[-2000:] + done.stderr[-2000:]


def restate(art: Path, hourly: Path):
    """The outcome of a restating run: which days it served again unchanged, or the code it stopped with."""
    try:
        return [(d.day, d.reserved) for d in serve(art, hourly, "data.restate=true").days]
    except Stop as stop:
        return stop.code


def days_folder(art: Path) -> Path:
    [dataset] = (art / "daily").iterdir()
    return dataset / "days"


def committed(art: Path) -> dict[str, dict[str, bytes]]:
    """Every committed day's files, bytes and all (a staging folder is not a day)."""
    folder = days_folder(art)
    return {d.name: {f.name: f.read_bytes() for f in sorted(d.iterdir())} for d in sorted(folder.iterdir())
            if not d.name.startswith(".")}


def manifest(art: Path, served: pd.Timestamp) -> dict:
    return json.loads((days_folder(art) / f"{served.date()}" / "manifest.json").read_text())


def table(art: Path, served: pd.Timestamp, name: str) -> pd.DataFrame:
    return pd.read_parquet(days_folder(art) / f"{served.date()}" / f"{name}.parquet")


def the_backtest(scene, art: Path, start: pd.Timestamp, last: pd.Timestamp):
    """The ranked backtest over the book's served signals (its first day to `last`), on the whole sample."""
    signals = pd.concat([table(art, d, "signals") for d in pd.date_range(start, last)], ignore_index=True)
    strategy = Strategy.from_config(daily_config(*COMMON).backtest)
    return run_ranked_book(signals, apply_gap_policy(scene["hourly"]), strategy.book), strategy




def assert_book_is_the_backtests(scene, art: Path, start: pd.Timestamp, last: pd.Timestamp,
                                 account_days: tuple = ()) -> None:
    """Each served day of the book from `start` to `last`: its orders are the backtest's trades of the day (but on a
    day traded from the account), its book the backtest's target weights and holdings, its equity the backtest's."""
    backtest, strategy = the_backtest(scene, art, start, last)
    trades, holdings = backtest.trades.set_index("date"), backtest.holdings.set_index(["date", "symbol"])
    positions = backtest.positions.set_index(["date", "symbol"])["weight"]
    for served in pd.date_range(start, last):
        facts = manifest(art, served)
        assert facts["book"]["start"] == f"{start.date()}" and facts["book"]["strategy"] == "ranked"
        equity = backtest.daily.loc[served, "equity"] if served > start else strategy.book.capital
        assert facts["equity"] == pytest.approx(equity, rel=1e-9)
        if served not in account_days:
            pd.testing.assert_frame_equal(table(art, served, "orders")[ORDER_COLUMNS],
                                          trades.loc[[served]].reset_index(drop=True)[ORDER_COLUMNS],
                                          check_exact=False, rtol=1e-9)
        book = table(art, served, "book").set_index("symbol")
        assert set(book.index) == set(positions.loc[served + DAY].index)
        np.testing.assert_allclose(book["weight"], positions.loc[served + DAY].reindex(book.index), rtol=1e-9)
        np.testing.assert_allclose(book["quantity"], holdings.loc[served, "quantity"].reindex(book.index), rtol=1e-9)
    assert trades.loc[[start], "current_weight"].eq(0).all()  # a book starts flat: its first orders open it


def test_the_scripted_scenario(scene, tmp_path):
    art = scene["art"]

    # 1. The first served day starts a book, flat.
    [first] = serve(art, bars(scene, "2023-12-20")).days
    assert first.day == START and not first.retrained
    assert_book_is_the_backtests(scene, art, START, START)

    # 2. 12-21 and 12-22 are missed: with catch_up=false the run stops naming the first, nothing served; then the
    #    same bars are served in order, each day as on its own.
    missed = bars(scene, "2023-12-21", "2023-12-23")
    before = committed(art)
    with pytest.raises(Stop, match=r"2 day\(s\) missed since the last served day 2023-12-20: the first is "
                                   r"2023-12-21") as stop:
        serve(art, missed, "daily.catch_up=false")
    assert stop.value.code == Exit.MISSED_DAYS and committed(art) == before
    caught = serve(art, missed)
    assert [d.day for d in caught.days] == list(pd.date_range("2023-12-21", "2023-12-23", tz="UTC"))
    assert_book_is_the_backtests(scene, art, START, day("2023-12-23"))

    # 3. A kill at each write of serving 12-24 (the bar history, the store's commit record, the day's staging, the
    #    day's commit) leaves the days served as they were and no part of 12-24; the rerun serves what a clean run
    #    serves, bit for bit.
    clean = shutil.copytree(art, tmp_path / "clean" / "artifacts")
    serve(clean, bars(scene, "2023-12-24"))
    served_before = committed(art)
    for at in ("rename:/history/:1", "rename:committed.json:1", "parquet:/.staging-:2", "rename:/days/:1"):
        killed(art, bars(scene, "2023-12-24"), at)
        assert committed(art) == served_before, at
    [rerun] = serve(art, bars(scene, "2023-12-24")).days
    assert rerun.day == day("2023-12-24") and not rerun.reserved
    assert committed(art) == committed(clean)
    assert not list(days_folder(art).glob(".staging-*"))  # what the kills left half written is gone
    assert_book_is_the_backtests(scene, art, START, day("2023-12-24"))
    served_after_24 = committed(art)

    # 4. A restate killed after the store's rows were deleted, before the history took the new bar: the rerun
    #    restates again and ends where a restate that was not killed ends (the served days stand either way: the
    #    latest is served again, the same numbers or a refusal to overwrite them, the same in both).
    changed = bars(scene, "2023-12-21")
    frame = pd.read_parquet(changed)
    bar = day("2023-12-21") + 10 * HOUR
    at = (frame["symbol"] == "ETHUSDT") & (frame["ts"] == bar)
    frame.loc[at, ["close", "high"]] = frame.loc[at, ["close", "high"]].to_numpy() * 1.01
    frame.to_parquet(changed, index=False)
    clean = shutil.copytree(art, tmp_path / "restated" / "artifacts")
    restated = restate(clean, changed)
    history = BarHistory.of(art / "store", caught.dataset)
    old = history.read()
    killed(art, changed, "rename:/history/:1", "data.restate=true")
    pd.testing.assert_frame_equal(history.read(), old)  # the restate's commit did not happen
    for kind in ("lstm", "tcn"):  # the rows that depend on the bar went first
        assert (FeatureStore(art / "store").read(kind)["decision_time"] > bar).sum() == 0
    assert restate(art, changed) == restated
    pd.testing.assert_frame_equal(history.read(), BarHistory.of(clean / "store", caught.dataset).read())
    assert ((history.read()["ts"] == bar) & (history.read()["symbol"] == "ETHUSDT")).sum() == 1
    for kind in ("lstm", "tcn"):
        keys = ["version", "symbol", "decision_time"]
        mine, theirs = (FeatureStore(a / "store").read(kind).drop(columns="written_at").sort_values(
            keys, ignore_index=True) for a in (art, clean))
        assert (mine["decision_time"] > bar).sum() > 0  # rebuilt
        pd.testing.assert_frame_equal(mine, theirs)
    assert committed(art) == committed(clean) == served_after_24

    # 5. Another strategy with the ranked book open stops, nothing written; asked for, a new book starts.
    trailing = ("backtest=trailing_j",)
    before = committed(art)
    with pytest.raises(Stop, match=r"the configured strategy \(trailing_j, config \w+\) is not the open book's: the "
                                   r"ranked book started 2023-12-20") as stop:
        serve(art, bars(scene, "2023-12-25"), *trailing)
    assert stop.value.code == Exit.OTHER_BOOK and committed(art) == before
    [switched] = serve(art, bars(scene, "2023-12-25"), *trailing, "daily.new_book=true").days
    assert manifest(art, switched.day)["book"]["strategy"] == "trailing_j"
    trading = Strategy.from_config(daily_config(*COMMON, *trailing).backtest).trading
    grid = apply_gap_policy(scene["hourly"])
    pd.testing.assert_frame_equal(table(art, switched.day, "orders"),
                                  next_bar_orders(switched.signals, grid[grid["ts"] < switched.day + DAY], trading))
    with pytest.raises(Stop) as stop:  # back to the ranked book: the open one is Trailing J's
        serve(art, bars(scene, "2023-12-26"))
    assert stop.value.code == Exit.OTHER_BOOK
    [reopened] = serve(art, bars(scene, "2023-12-26"), "daily.new_book=true").days
    assert_book_is_the_backtests(scene, art, reopened.day, reopened.day)  # a new book, flat on 12-26

    # 6. An account that holds another book: the orders move it to the target; where it differs beyond the
    #    tolerance is kept with the day. An account that holds the book gets the backtest's trades.
    held = table(art, reopened.day, "book").set_index("symbol")["quantity"]
    same = tmp_path / "same.csv"
    held.rename("quantity").reset_index().to_csv(same, index=False)
    twin = shutil.copytree(art, tmp_path / "twin" / "artifacts")
    serve(twin, bars(scene, "2023-12-27"), f"daily.holdings_path={same}")
    account = held.copy()
    account.iloc[0] *= 1.10  # 10 % more of one coin
    hourly = scene["hourly"]
    closes = hourly[hourly["ts"] == day("2023-12-27") + 23 * HOUR].set_index("symbol")["close"]
    extra = sorted(set(closes.index) - set(held.index))[0]  # a coin the book does not hold: 5 % of equity of it
    account[extra] = 250.0 / closes[extra]
    differs = tmp_path / "differs.parquet"
    account.rename("quantity").reset_index().to_parquet(differs)
    [traded] = serve(art, bars(scene, "2023-12-27"), f"daily.holdings_path={differs}").days
    assert_book_is_the_backtests(scene, art, reopened.day, traded.day, account_days=(traded.day,))
    assert_book_is_the_backtests(scene, twin, reopened.day, traded.day, account_days=(traded.day,))
    backtest, _ = the_backtest(scene, art, reopened.day, traded.day)
    trades = backtest.trades.set_index("date").loc[[traded.day]].set_index("symbol")
    twin_orders = table(twin, traded.day, "orders").set_index("symbol")
    assert set(twin_orders.index) == set(trades.index)
    np.testing.assert_allclose(twin_orders["quantity"], trades["quantity"].reindex(twin_orders.index), rtol=1e-9)
    orders = table(art, traded.day, "orders").set_index("symbol")
    target = table(art, traded.day, "book").set_index("symbol")["quantity"]
    expected = target.reindex(account.index.union(target.index), fill_value=0.0) - account.reindex(
        account.index.union(target.index), fill_value=0.0)
    np.testing.assert_allclose(orders["quantity"], expected.reindex(orders.index), rtol=1e-9)
    assert set(orders.index) == set(expected.index[expected.abs() > 0])
    report = table(art, traded.day, "account").set_index("symbol")
    assert set(report.index[report["beyond_tolerance"]]) == {account.index[0], extra}
    assert report.loc[extra, "difference_weight"] == pytest.approx(250.0 / traded.live.equity, rel=1e-9)
    assert manifest(art, traded.day)["orders_from"] == "account"

    # 7. A served day's file deleted: the next run stops naming it (its book is what the orders trade from).
    (days_folder(art) / f"{traded.day.date()}" / "book.parquet").unlink()
    with pytest.raises(Stop, match=r"2023-12-27/book\.parquet is missing") as stop:
        serve(art, bars(scene, "2023-12-28"))
    assert stop.value.code == Exit.BOOK_MISMATCH
    assert not (days_folder(art) / "2023-12-28").exists()

