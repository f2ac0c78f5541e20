"""Daily operation on the shipped sample: live equals the walk-forward and the backtest, missed days are caught up
as if served one at a time, a re-served day changes nothing, a changed or late past, stale data and a missing
champion are refused, a kill during the backfill loses nothing; lineage keeps other data and old code out.

One main job on the sample up to 2023-12-17 (its last fold, 12, is open: tested 12-05..12-17), then the days are
fed as append files through the daily command: 12-18, then 12-19 (it begins fold 13's test window: the run
retrains, the challenger adds fold 13, and serves from the new champion), then 12-20 and 12-21's bars in one file
(12-20 was missed: caught up, then 12-21), then 12-22. The reference is an independent batch walk-forward (the main
job, a fresh store and registry, one backfill over the whole span) on the sample cut at 12-23, and the ranked
backtest of its signals.

Order-free: the module's env is built once and never changed; a test that serves, restates or kills works on
its own copy of the artifacts (`fresh`: up to 12-22; `after_last_day`: with 12-23 served by a clean run), so each
passes alone and in any order.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

import store.lineage as lineage
from backtest import RankedBookConfig, run_ranked_book
from backtest.orders import next_bar_orders
from cli import Exit, Stop
from marketdata import apply_gap_policy, load_hourly
from serving.run import run_daily
from serving.settings import Strategy
from stacking.champion import ChampionSettings, stale_inputs
from stacking.lineage import StaleInput
from store.feature_store import FeatureStore
from store.lineage import BarHistory
from tests.conftest import DAILY_WALK_FORWARD, ROOT, SAMPLE, compose, main_job_until_stack

pytestmark = pytest.mark.slow

FIRST_DAY, LAST_DAY = pd.Timestamp("2023-12-18", tz="UTC"), pd.Timestamp("2023-12-23", tz="UTC")
DAY, HOUR = pd.Timedelta(days=1), pd.Timedelta(hours=1)
MISSED, RETRAIN_DAY = pd.Timestamp("2023-12-20", tz="UTC"), pd.Timestamp("2023-12-19", tz="UTC")
COMMON = DAILY_WALK_FORWARD
SIGNAL_COLUMNS = ["symbol", "date", "decision_time", "fold", "p_sell", "p_hold", "p_buy", "score", "raw_sell",
                  "raw_hold", "raw_buy", "z", "direction", "signal"]
SERVED_FILES = ("signals", "orders", "book", "manifest")


def _compose(*overrides: str):
    return compose(*overrides, config_name="daily")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Bar files, the main job up to 12-17, and the days 12-18 .. 12-22 served (12-20 caught up with 12-21), with a
    copy of the artifacts as they were after 12-19. Read only: a test that changes artifacts takes a copy."""
    base = tmp_path_factory.mktemp("daily")
    hourly = pd.read_parquet(SAMPLE / "hourly.parquet")
    files = {"start": base / "until_2023-12-17.parquet", "reference": base / "until_2023-12-23.parquet",
             "missed": base / "2023-12-20_and_21.parquet"}
    hourly[hourly["ts"] < FIRST_DAY].to_parquet(files["start"], index=False)
    hourly[hourly["ts"] < LAST_DAY + DAY].to_parquet(files["reference"], index=False)
    for day in pd.date_range(FIRST_DAY, LAST_DAY, tz="UTC"):
        hourly[(hourly["ts"] >= day) & (hourly["ts"] < day + DAY)].to_parquet(base / f"{day.date()}.parquet",
                                                                               index=False)
    hourly[(hourly["ts"] >= MISSED) & (hourly["ts"] < MISSED + 2 * DAY)].to_parquet(files["missed"], index=False)
    art = base / "artifacts"
    main_job_until_stack(base / "main", art, files["start"])
    built = {"base": base, "art": art, "out": base / "out", "files": files}
    runs = [run_daily(_config(built, base / f"{day}.parquet")) for day in ("2023-12-18", "2023-12-19")]
    built["after_retrain"] = shutil.copytree(art, base / "after_retrain")
    runs += [run_daily(_config(built, files["missed"])), run_daily(_config(built, base / "2023-12-22.parquet"))]
    built["runs"] = runs
    built["results"] = {served.day: served for run in runs for served in run.days}
    built["dataset"] = runs[0].dataset
    return built


def _copy(env, where):
    """`env` with its own copy of the artifacts (extractors, the store and its bar history, Trishula runs, the days
    served) and output folder under `where`: a test that serves, restates or kills changes only its copy."""
    shutil.copytree(env["art"], where / "artifacts")
    return {**env, "art": where / "artifacts", "out": where / "out"}


@pytest.fixture
def fresh(env, tmp_path):
    """A copy of the env: served up to 12-22, 12-23 not yet."""
    return _copy(env, tmp_path)


@pytest.fixture(scope="module")
def last_day(env, tmp_path_factory):
    """A copy of the env with 12-23 served by a clean run (the reference for a served day's files)."""
    served = _copy(env, tmp_path_factory.mktemp("last_day"))
    served["last"] = run_daily(_config(served, _day_file(env, LAST_DAY)))
    return served


@pytest.fixture
def after_last_day(last_day, tmp_path):
    """A copy of `last_day` to change."""
    return _copy(last_day, tmp_path)


def _config(env, hourly, *overrides):
    return _compose(f"paths.artifacts_dir={env['art']}", f"paths.output_dir={env['out']}",
                    f"data.hourly_path={hourly}", "daily.append=true", *COMMON, *overrides)


def _day_file(env, day) -> Path:
    return env["base"] / f"{day.date()}.parquet"


@pytest.fixture(scope="module")
def reference(env):
    """The batch walk-forward on the whole span, with a fresh store and registry (extractors reused)."""
    ref = env["base"] / "reference"
    stdout = main_job_until_stack(ref, env["art"], env["files"]["reference"], f"store.root={ref / 'store'}",
                                  f"stack.root={ref / 'trishula'}")
    assert "extractors: 8 of 8 unchanged" in " ".join(stdout.split())  # appended bars keep their keys
    return pd.read_parquet(ref / "signals.parquet")


def _day_path(env, name, day) -> Path:
    """The served day's `name` file (signals, orders, book or manifest)."""
    folder = env["art"] / "daily" / env["dataset"] / "days" / f"{day.date()}"
    return folder / ("manifest.json" if name == "manifest" else f"{name}.parquet")


def _served(env, day) -> pd.DataFrame:
    return pd.read_parquet(_day_path(env, "signals", day))


def _same_rows(served: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert len(served) > 0 and len(served) == len(expected)
    pd.testing.assert_frame_equal(served[SIGNAL_COLUMNS].sort_values("symbol", ignore_index=True),
                                  expected[SIGNAL_COLUMNS].sort_values("symbol", ignore_index=True),
                                  check_exact=False, rtol=1e-12, atol=1e-12)


def test_live_signals_equal_the_walk_forward_day_by_day(env, reference):
    results = env["results"]
    assert sorted(results) == list(pd.date_range(FIRST_DAY, LAST_DAY - DAY, tz="UTC"))
    # Day 12-19 began fold 13's test window: the run retrained and served from the new champion.
    assert [run.retrained for run in env["runs"]] == [False, True, False, False]
    assert len({r.run_id for r in results.values()}) == 2
    assert [len(run.days) for run in env["runs"]] == [1, 1, 2, 1]  # 12-20 was missed, then caught up
    trading = Strategy.from_config(_compose("backtest=trailing_j").backtest).trading
    grid = apply_gap_policy(load_hourly(env["files"]["reference"]))
    trailing_orders = 0
    for day, result in results.items():
        served = _served(env, day)
        assert (served["date"] == day).all() and (served["run_id"] == result.run_id).all()
        _same_rows(served, reference[reference["date"] == day])
        assert served["fold"].iloc[0] == (12 if day < RETRAIN_DAY else 13)
        assert set(served["regime"]) <= {"bull", "bear", "range", "high_vol", "unknown"}
        # Trailing J's orders for the same signals: one per fired signal, its side and its slot x multiplier.
        trailing = next_bar_orders(served, grid[grid["ts"] < day + DAY], trading).set_index("symbol")
        fired = served[served["signal"].isin(["BUY", "SELL"]) & (served["size_multiplier"] > 0)].set_index("symbol")
        assert trailing["side"].to_dict() == fired["signal"].map({"BUY": "long", "SELL": "short"}).to_dict()
        slot = 5000 * 0.85 / 30
        np.testing.assert_allclose(trailing["notional"], slot * fired.loc[trailing.index, "size_multiplier"])
        long = trailing["side"] == "long"
        assert (trailing.loc[long, "take_profit"] > trailing.loc[long, "reference_price"]).all()
        assert (trailing.loc[~long, "stop_loss"] > trailing.loc[~long, "reference_price"]).all()
        trailing_orders += len(trailing)
    assert trailing_orders > 0
    # The walk-forward's own output for the retrain day: the challenger's signals as run_stack wrote them.
    run_dir = env["art"] / "trishula" / "runs" / results[RETRAIN_DAY].run_id
    stored = pd.read_parquet(run_dir / "signals.parquet")
    _same_rows(_served(env, RETRAIN_DAY), stored[stored["date"] == RETRAIN_DAY])


ORDER_COLUMNS = ["symbol", "side", "current_weight", "target_weight", "delta_weight", "reference_price", "equity",
                 "notional", "quantity", "fill_time"]


def test_the_live_book_trades_what_the_backtest_trades_day_by_day(env, reference):
    """Through daily.py, five served days (a retrain on 12-19, 12-20 missed and caught up): each day's orders are
    the ranked backtest's trades of that day (the walk-forward's signals of the book's days, traded on the whole
    span's bars), the book kept is its target weights and the coins it holds once they fill, the book held before
    them its holdings of the day before, and the equity the orders are sized on its equity at the day's close."""
    days = sorted(env["results"])
    grid = apply_gap_policy(load_hourly(env["files"]["reference"]))
    config = RankedBookConfig(**OmegaConf.to_container(_compose().backtest.book, resolve=True))
    backtest = run_ranked_book(reference[reference["date"].between(days[0], days[-1])], grid, config)
    trades, holdings = backtest.trades.set_index("date"), backtest.holdings.set_index(["date", "symbol"])
    positions = backtest.positions.set_index(["date", "symbol"])["weight"]
    assert trades.loc[days[0], "current_weight"].eq(0).all()  # the book starts flat on its first day
    for day in days:
        orders = pd.read_parquet(_day_path(env, "orders", day))
        expected = trades.loc[[day]].reset_index(drop=True)
        assert len(orders) > 0 and orders["fill_time"].eq(day + DAY + HOUR).all()  # the 01:00 bar after the close
        pd.testing.assert_frame_equal(orders[ORDER_COLUMNS], expected[ORDER_COLUMNS], check_exact=False, rtol=1e-9)
        kept = pd.read_parquet(_day_path(env, "book", day)).set_index("symbol")
        np.testing.assert_allclose(kept["weight"], positions.loc[day + DAY].reindex(kept.index), rtol=1e-9)
        np.testing.assert_allclose(kept["quantity"], holdings.loc[day, "quantity"].reindex(kept.index), rtol=1e-9)
        assert set(kept.index) == set(positions.loc[day + DAY].index) == set(holdings.loc[day].index)
        live = env["results"][day].live
        held = holdings.loc[day - DAY, "quantity"] if day > days[0] else pd.Series(dtype="float64")
        pd.testing.assert_series_equal(live.held.set_index("symbol")["quantity"], held, check_names=False,
                                       check_index_type=False, rtol=1e-9)
        equity = backtest.daily.loc[day, "equity"] if day > days[0] else config.capital
        manifest = json.loads(_day_path(env, "manifest", day).read_text())
        assert manifest["equity"] == pytest.approx(equity, rel=1e-9) and live.equity == manifest["equity"]
        assert manifest["book"]["start"] == f"{days[0].date()}" and manifest["run_id"] == env["results"][day].run_id


def test_a_missed_day_caught_up_is_served_as_it_would_have_been_on_its_own(env, tmp_path):
    """12-20 was missed and served with 12-21 by one run; served one day at a time from the artifacts as they were
    after 12-19 instead, both days' files (signals, orders, book, manifest) are the same bit for bit."""
    alone = {**env, "art": shutil.copytree(env["after_retrain"], tmp_path / "artifacts"), "out": tmp_path / "out"}
    for day in (MISSED, MISSED + DAY):
        [served] = run_daily(_config(alone, _day_file(env, day))).days
        assert served.day == day and not served.reserved
    for day in (MISSED, MISSED + DAY):
        for name in SERVED_FILES:
            assert _day_path(alone, name, day).read_bytes() == _day_path(env, name, day).read_bytes(), (day, name)


def test_sigkill_during_the_backfill_leaves_everything_consistent_and_the_rerun_equals_a_clean_run(fresh, last_day,
                                                                                                   reference):
    store = FeatureStore(fresh["art"] / "store")
    before = {kind: store.table_version(kind) for kind in ("lstm", "tcn")}
    args = [sys.executable, "daily.py", f"hydra.run.dir={fresh['out'] / 'killed'}",
            f"paths.artifacts_dir={fresh['art']}", f"data.hourly_path={_day_file(fresh, LAST_DAY)}",
            "daily.append=true", *COMMON]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = fresh["art"] / "store" / ".staging"
    deadline = time.time() + 120
    while not (staging.exists() and any(staging.rglob("chunk-*"))) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-backfill, before it finished
    # The store is as it was (no commit), readable; no day served, whole or in part; the registry is whole.
    assert {kind: store.table_version(kind) for kind in ("lstm", "tcn")} == before
    for kind in ("lstm", "tcn"):
        assert not store.read(kind).duplicated(["version", "symbol", "decision_time"]).any()
    days = _day_path(fresh, "signals", LAST_DAY).parents[1]
    assert sorted(p.name for p in days.iterdir()) == [f"{d.date()}" for d in sorted(fresh["results"])]
    for state in (fresh["art"] / "trishula" / "scopes").glob("*.json"):
        json.loads(state.read_text())
    # The re-run completes and serves what a clean run serves for the day: the batch walk-forward's signals, and
    # the clean daily run's files, bit for bit.
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    _same_rows(_served(fresh, LAST_DAY), reference[reference["date"] == LAST_DAY])
    for name in SERVED_FILES:
        assert _day_path(fresh, name, LAST_DAY).read_bytes() == _day_path(last_day, name, LAST_DAY).read_bytes()
    for kind in ("lstm", "tcn"):
        assert not store.read(kind).duplicated(["version", "symbol", "decision_time"]).any()


def test_rerunning_a_day_changes_nothing_and_says_so(after_last_day, capsys):
    env = after_last_day
    store = FeatureStore(env["art"] / "store")
    history = BarHistory.of(env["art"] / "store", env["dataset"])
    kept = {name: _day_path(env, name, LAST_DAY).read_bytes() for name in SERVED_FILES}
    before = ({kind: store.table_version(kind) for kind in ("lstm", "tcn")}, history.read())
    capsys.readouterr()
    again = run_daily(_config(env, _day_file(env, LAST_DAY)))
    [served] = again.days
    assert not again.retrained and served.day == LAST_DAY and served.reserved
    said = " ".join(capsys.readouterr().out.split())
    assert "2023-12-23 was served already" in said and "no new orders" in said and "0 new order(s)" in said
    assert "ranked book: equity" not in said  # no orders table: nothing to place again
    assert {kind: store.table_version(kind) for kind in ("lstm", "tcn")} == before[0]  # nothing appended twice
    pd.testing.assert_frame_equal(history.read(), before[1])
    assert {name: _day_path(env, name, LAST_DAY).read_bytes() for name in SERVED_FILES} == kept


def _changed_bar_file(env, where):
    """12-20's bars with ETHUSDT's 10:00 close 1 % higher: a changed past bar."""
    day = pd.read_parquet(_day_file(env, pd.Timestamp("2023-12-20", tz="UTC")))
    row = day.index[(day["symbol"] == "ETHUSDT") & (day["ts"] == pd.Timestamp("2023-12-20 10:00", tz="UTC"))][0]
    day.loc[row, "close"] = day.loc[row, "close"] * 1.01
    day.loc[row, "high"] = max(day.loc[row, "high"], day.loc[row, "close"])
    changed = where / "changed.parquet"
    day.to_parquet(changed, index=False)
    return changed


def test_a_served_day_is_never_overwritten_with_other_numbers(after_last_day, tmp_path):
    """The served day again with orders from an account that holds another book: refused (exit 7), the served
    files untouched."""
    env = after_last_day
    before = {name: _day_path(env, name, LAST_DAY).read_bytes() for name in SERVED_FILES}
    account = tmp_path / "account.csv"
    pd.DataFrame({"symbol": ["BTCUSDT"], "quantity": [0.5]}).to_csv(account, index=False)
    with pytest.raises(Stop, match=r"2023-12-23 was served already .* and this run serves \['account\.parquet'"):
        run_daily(_config(env, _day_file(env, LAST_DAY), f"daily.holdings_path={account}"))
    assert {name: _day_path(env, name, LAST_DAY).read_bytes() for name in SERVED_FILES} == before


def test_a_changed_past_bar_is_refused_naming_symbol_and_time(fresh, tmp_path):
    changed = _changed_bar_file(fresh, tmp_path)
    history = BarHistory.of(fresh["art"] / "store", fresh["dataset"])
    before = history.read()
    with pytest.raises(Stop, match=r"ETHUSDT at 2023-12-20 10:00:00\+00:00") as stop:
        run_daily(_config(fresh, changed))
    assert stop.value.code == Exit.CHANGED_PAST and "data.restate=true" in str(stop.value)
    pd.testing.assert_frame_equal(history.read(), before)  # nothing used the changed bar


def test_a_partial_day_is_refused_before_any_bar_is_taken(fresh, tmp_path):
    history = BarHistory.of(fresh["art"] / "store", fresh["dataset"])
    before = history.read()
    day = pd.read_parquet(_day_file(fresh, LAST_DAY))
    partial = tmp_path / "partial.parquet"
    day[day["ts"] <= LAST_DAY + 14 * HOUR].to_parquet(partial, index=False)
    refused = r"partial day: the latest bar in .*partial\.parquet is 2023-12-23 14:00"
    with pytest.raises(Stop, match=refused) as stop:
        run_daily(_config(fresh, partial))
    assert stop.value.code == Exit.STALE_DATA
    pd.testing.assert_frame_equal(history.read(), before)  # nothing entered the history


def test_stale_data_and_a_missing_champion_exit_with_their_codes(fresh, tmp_path):
    stale = subprocess.run(
        [sys.executable, "daily.py", f"hydra.run.dir={tmp_path / 'stale'}", f"paths.artifacts_dir={fresh['art']}",
         f"data.hourly_path={_day_file(fresh, LAST_DAY)}", "daily.append=true",
         "data.max_data_age_hours=2", *COMMON], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert stale.returncode == Exit.STALE_DATA == 9
    [line] = [line for line in stale.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: stale data: the latest bar closed")
    with pytest.raises(Stop, match="no eligible champion for dataset") as stop:
        run_daily(_compose(f"paths.artifacts_dir={tmp_path / 'empty'}", f"paths.output_dir={tmp_path}",
                           f"data.hourly_path={fresh['files']['start']}", *COMMON))
    assert stop.value.code == Exit.NO_CHAMPION


def test_stack_does_not_read_a_store_of_another_dataset(env, tmp_path):
    """The sample without one coin is another dataset: the store built from the whole sample is not read."""
    from rich.console import Console

    from features.build import load_feature_frames
    from stacking.run import run_stack

    hourly = pd.read_parquet(env["files"]["reference"])
    other = tmp_path / "other.parquet"
    hourly[hourly["symbol"] != "ADAUSDT"].to_parquet(other, index=False)
    cfg = compose(f"paths.artifacts_dir={env['art']}", f"paths.output_dir={tmp_path}", f"data.hourly_path={other}",
                  COMMON[0], config_name="stack")
    frames = load_feature_frames(cfg.data, cfg.features, cfg.labels)
    console = Console(record=True, width=200)
    with pytest.raises(FileNotFoundError, match="holds no lstm outputs made from this data"):
        run_stack(cfg, frames, console, tmp_path)
    assert "made from other data" in console.export_text()
    assert np.isin(FeatureStore(env["art"] / "store").versions("lstm")["dataset"], [frames.dataset]).sum() == 0


def _written(store: FeatureStore) -> pd.Series:
    """When each stored row was written, by kind, version, symbol and decision time."""
    return pd.concat({kind: store.read(kind).set_index(["version", "symbol", "decision_time"])["written_at"]
                      for kind in ("lstm", "tcn")}, names=["kind"])


def _rebuilt_after(before: pd.Series, after: pd.Series, since: pd.Timestamp) -> None:
    """Every row is back, none twice; the rows whose decision follows `since` were written again, none before."""
    assert after.index.sort_values().equals(before.index.sort_values())
    late = after.index.get_level_values("decision_time") > since
    assert late.sum() > 0
    assert (after[late] > before.reindex(after.index)[late]).all()  # rebuilt
    assert (after[~late] == before.reindex(after.index)[~late]).all()  # untouched


def test_restating_history_rebuilds_the_store_rows_after_the_changed_bar(after_last_day, tmp_path):
    """data.restate=true: the history takes the new bar, the store's rows from it on are rebuilt."""
    env = after_last_day
    changed = _changed_bar_file(env, tmp_path)  # ETHUSDT 2023-12-20 10:00
    store = FeatureStore(env["art"] / "store")
    before = _written(store)
    result = run_daily(_config(env, changed, "data.restate=true"))
    assert result.last.day == LAST_DAY and result.last.reserved and not result.retrained  # served again, unchanged
    history = BarHistory.of(env["art"] / "store", result.dataset).read()
    bar = history[(history["symbol"] == "ETHUSDT") & (history["ts"] == pd.Timestamp("2023-12-20 10:00", tz="UTC"))]
    assert bar["close"].iloc[0] == pd.read_parquet(changed).set_index(["symbol", "ts"]).loc[
        ("ETHUSDT", pd.Timestamp("2023-12-20 10:00", tz="UTC")), "close"]
    _rebuilt_after(before, _written(store), pd.Timestamp("2023-12-20 10:00", tz="UTC"))


def test_a_late_bar_for_an_hour_already_used_is_refused_or_restated(after_last_day):
    """A bar that arrives after its hour was used (the run filled the gap, its extractor outputs kept the fill) is
    a changed past: refused (exit 5) naming symbol and time, nothing taken; with data.restate=true it is taken and
    the store's rows after it are rebuilt."""
    env, late_ts = after_last_day, pd.Timestamp("2023-12-21 10:00", tz="UTC")
    history = BarHistory.of(env["art"] / "store", env["dataset"])
    bars = history.read()
    late = (bars["symbol"] == "ETHUSDT") & (bars["ts"] == late_ts)
    history.write(bars[~late])  # the runs so far used 10:00 without ETHUSDT's bar
    before = history.read()
    day_file = _day_file(env, pd.Timestamp("2023-12-21", tz="UTC"))  # 12-21's bars, ETHUSDT's 10:00 among them
    with pytest.raises(Stop, match=r"the bar of ETHUSDT at 2023-12-21 10:00:00\+00:00 arrived late") as stop:
        run_daily(_config(env, day_file))
    assert stop.value.code == Exit.CHANGED_PAST and "data.restate=true" in str(stop.value)
    pd.testing.assert_frame_equal(history.read(), before)  # not taken
    store = FeatureStore(env["art"] / "store")
    written = _written(store)
    served = {name: _day_path(env, name, LAST_DAY).read_bytes() for name in SERVED_FILES}
    result = run_daily(_config(env, day_file, "data.restate=true"))
    assert result.last.day == LAST_DAY and result.last.reserved and not result.retrained
    taken = history.read()
    assert len(taken) == len(bars) and ((taken["symbol"] == "ETHUSDT") & (taken["ts"] == late_ts)).sum() == 1
    _rebuilt_after(written, _written(store), late_ts)
    # The bars are the ones served from: the day's numbers stand, its files untouched.
    assert {name: _day_path(env, name, LAST_DAY).read_bytes() for name in SERVED_FILES} == served


def _champion_id(env) -> str:
    (state,) = (env["art"] / "trishula" / "scopes").glob("*.json")
    return json.loads(state.read_text())["champion"]["run_id"]


def test_a_champion_made_by_other_code_is_refused_or_replaced_by_the_current_codes(fresh, source_copy, reference):
    """The Trishula code changed since the champion was trained (the hashed copy of the source, touched): with
    daily.retrain=skip the day is refused (exit 8) naming the run, the changed source and the command that
    rebuilds it; with the retrain allowed, the current code's challenger replaces it and serves the day."""
    old = _champion_id(fresh)
    serving = source_copy / "stacking" / "serving.py"
    serving.write_text(serving.read_text() + "\n# a refactor\n")
    stale = rf"stale lineage: Trishula run {old} was made by trishula source \w+ \(the current code's is " \
            rf"{lineage.source_hash('trishula')}\)"
    with pytest.raises(Stop, match=stale) as stop:
        run_daily(_config(fresh, _day_file(fresh, LAST_DAY), "daily.retrain=skip"))
    assert stop.value.code == Exit.STALE_LINEAGE and "python daily.py daily.retrain=only" in str(stop.value)
    assert not _day_path(fresh, "signals", LAST_DAY).exists()
    result = run_daily(_config(fresh, _day_file(fresh, LAST_DAY)))
    assert result.retrained and result.run_id != old and _champion_id(fresh) == result.run_id
    meta = json.loads((fresh["art"] / "trishula" / "runs" / result.run_id / "run.json").read_text())
    assert meta["source_hash"] == lineage.source_hash("trishula")
    (state,) = (fresh["art"] / "trishula" / "scopes").glob("*.json")
    assert json.loads(state.read_text())["promotions"][-1]["reason"].startswith(
        f"the champion's code no longer exists (Trishula run {old} was made by trishula source")
    _same_rows(_served(fresh, LAST_DAY), reference[reference["date"] == LAST_DAY])


def test_stale_extractors_and_store_rows_stop_a_skipped_retrain_naming_them(fresh, source_copy):
    """An extractor the champion serves with made by other extractor code, or store rows by other backfill code:
    refused (exit 8) naming the version and the source kind."""
    old = _champion_id(fresh)
    run_file = fresh["art"] / "trishula" / "runs" / old / "run.json"
    meta = json.loads(run_file.read_text())
    version = meta["store"]["lstm"][-1]["version"]
    (artifact,) = (fresh["art"] / "extractors" / "lstm").glob(f"fold_*/{version}/artifact.json")
    recorded = json.loads(artifact.read_text())
    artifact.write_text(json.dumps({**recorded, "source_hash": "0ld-extractor"}))
    with pytest.raises(Stop, match=rf"stale lineage: lstm extractor {version} was made by extractor source "
                                        r"0ld-extractor") as stop:
        run_daily(_config(fresh, _day_file(fresh, LAST_DAY), "daily.retrain=skip"))
    assert stop.value.code == Exit.STALE_LINEAGE and "python daily.py daily.retrain=only" in str(stop.value)
    artifact.write_text(json.dumps(recorded))
    # The networks' code changes (extractors and backfill); the store's rows were made by the old backfill code,
    # though the champion's run.json is made to record the new one: the rows themselves are judged too.
    backfill = lineage.source_hash("backfill")
    tcn = source_copy / "models" / "tcn.py"
    tcn.write_text(tcn.read_text() + "\n# a fix\n")
    for rows in meta["store"].values():
        for row in rows:
            row["sources"] = lineage.source_hash("backfill")
    run_file.write_text(json.dumps(meta))
    cfg = _config(fresh, _day_file(fresh, LAST_DAY), "daily.retrain=skip")
    stale = stale_inputs(ChampionSettings.from_config(cfg, fresh["dataset"], "skip"), meta, fresh["dataset"])
    assert StaleInput(f"tcn store rows of version {meta['store']['tcn'][-1]['version']}", "backfill", backfill,
                      lineage.source_hash("backfill")) in stale
    assert {s.source for s in stale} == {"extractor", "backfill"}
    with pytest.raises(Stop, match=r"stale lineage: \w+ extractor \S+ was made by extractor source") as stop:
        run_daily(cfg)
    assert stop.value.code == Exit.STALE_LINEAGE
