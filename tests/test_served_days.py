"""The served days on disk (serving/days.py) and the plan of which days to serve (serving/plan.py), without the
pipeline: a day is committed whole or not at all and read only while its bytes match its manifest; missed days are
caught up in order or refused, another strategy or a broken or old book stops with its exit code."""

from __future__ import annotations

import pandas as pd
import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from cli import Exit, Stop
from serving.days import BookId, ServedDay, ServedDays
from serving.plan import plan_days
from serving.settings import DailySettings, Strategy
from tests.conftest import ROOT, compose

DAY = pd.Timedelta(days=1)
START = pd.Timestamp("2023-12-18", tz="UTC")


def strategy(*overrides: str) -> Strategy:
    return Strategy.from_config(compose(*overrides).backtest)


def settings(*overrides: str) -> DailySettings:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return DailySettings.from_config(hydra_compose(config_name="daily", overrides=list(overrides)))


def served_day(day: pd.Timestamp, book: BookId) -> ServedDay:
    orders = pd.DataFrame({"symbol": ["BTCUSDT"], "quantity": [0.01 * (day - START).days]})
    return ServedDay(day, book, {"signals": pd.DataFrame({"symbol": ["BTCUSDT"], "score": [0.5]}), "orders": orders},
                     {"run_id": "r"})


@pytest.fixture
def book() -> BookId:
    ranked = strategy()
    return BookId(ranked.name, ranked.key, START, dict(ranked.config))


def test_a_day_is_committed_whole_and_read_only_while_it_matches_its_manifest(tmp_path, book, monkeypatch):
    served = ServedDays(tmp_path)
    served.commit(served_day(START, book))
    assert served.days() == [START] and served.book(START) == book
    assert served.difference(served_day(START, book)) is None
    other = served_day(START, book)
    other.tables["orders"]["quantity"] += 1.0
    assert "its orders differ" in served.difference(other)
    # A crash while the day is written leaves no part of it (the staging folder goes with the next run).
    monkeypatch.setattr(pd.DataFrame, "to_parquet", _crash_on_second_call(pd.DataFrame.to_parquet))
    with pytest.raises(RuntimeError):
        served.commit(served_day(START + DAY, book))
    assert served.days() == [START] and not list(served.folder.glob(".staging-*"))
    monkeypatch.undo()
    # A file edited after the commit is refused, naming it.
    path = served.path(START) / "orders.parquet"
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    with pytest.raises(Stop, match=r"2023-12-18/orders\.parquet differs from the file served") as stop:
        served.table(START, "orders")
    assert stop.value.code == Exit.BOOK_MISMATCH


def _crash_on_second_call(write):
    calls = []

    def crashing(frame, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed while writing the day")
        return write(frame, *args, **kwargs)

    return crashing


def test_the_plan_starts_a_book_catches_up_or_stops(tmp_path, book):
    served = ServedDays(tmp_path)
    first = plan_days(served, START, strategy(), settings())
    assert first.starts_book and first.days == [START] and first.book.start == START
    served.commit(served_day(START, book))
    later = START + 3 * DAY
    plan = plan_days(served, later, strategy(), settings())
    assert plan.days == [START + DAY, START + 2 * DAY, later] and plan.caught_up == plan.days[:2]
    assert plan.book == book and not plan.starts_book
    with pytest.raises(Stop, match=r"2 day\(s\) missed since the last served day 2023-12-18: the first is "
                                   r"2023-12-19") as stop:
        plan_days(served, later, strategy(), settings("daily.catch_up=false"))
    assert stop.value.code == Exit.MISSED_DAYS
    assert plan_days(served, START, strategy(), settings()).days == [START]  # served again, to compare
    with pytest.raises(Stop) as stop:
        plan_days(served, START, strategy(), settings("daily.new_book=true"))
    assert stop.value.code == Exit.SERVED_ALREADY
    new = plan_days(served, later, strategy(), settings("daily.new_book=true"))
    assert new.starts_book and new.days == [later]


def test_another_strategy_a_broken_book_or_an_old_layout_stops(tmp_path, book):
    served = ServedDays(tmp_path)
    for day in (START, START + DAY, START + 2 * DAY):
        served.commit(served_day(day, book))
    for other in (strategy("backtest=trailing_j"), strategy("backtest.book.quantile=0.25")):
        with pytest.raises(Stop, match=r"is not the open book's: the ranked book started 2023-12-18") as stop:
            plan_days(served, START + 3 * DAY, other, settings())
        assert stop.value.code == Exit.OTHER_BOOK
    served.path(START + DAY).rename(tmp_path / "aside")
    with pytest.raises(Stop, match=r"days/2023-12-19 is missing: 2023-12-19 belongs to the ranked book") as stop:
        plan_days(served, START + 3 * DAY, strategy(), settings())
    assert stop.value.code == Exit.BOOK_MISMATCH
    legacy = ServedDays(tmp_path / "legacy")
    (legacy.root / "book").mkdir(parents=True)
    with pytest.raises(Stop, match=r"legacy/book holds days served in the layout before") as stop:
        plan_days(legacy, START, strategy(), settings())
    assert stop.value.code == Exit.OTHER_BOOK
    assert plan_days(legacy, START, strategy(), settings("daily.new_book=true")).starts_book


def test_bad_daily_settings_name_their_key():
    with pytest.raises(ValueError, match="daily.retrain must be one of"):
        settings("daily.retrain=sometimes")
    with pytest.raises(ValueError, match=r"daily.holdings_tolerance must lie in \[0, 1\)"):
        settings("daily.holdings_tolerance=2")
    with pytest.raises(ValueError, match=r"backtest.book has no key\(s\) \['quantil'\]"):
        strategy("+backtest.book.quantil=0.1")
