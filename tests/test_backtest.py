"""The regime gate and the Trailing J backtest on hand-built hourly paths, and invariants on the real sample."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from backtest import (
    EXIT_TYPES,
    TRADE_COLUMNS,
    BacktestConfig,
    RegimeConfig,
    classify_regime,
    regime_composite,
    regime_for_decisions,
    run_backtest,
    size_multiplier,
    write_backtest,
)
from backtest.panel import daily_panel
from backtest.trailing_j import exit_levels

DAY0 = pd.Timestamp("2024-01-01", tz="UTC")
DECISION = DAY0 + pd.Timedelta(days=1)  # the close of day 0: the first bar it may trade is 2024-01-02 00:00
HOUR = pd.Timedelta(hours=1)
# No costs, fills at the decision's own bar, benchmark on the test symbol: exit levels read exactly.
BARE = BacktestConfig(fee_rate=0.0, slippage=0.0, borrow_rate=0.0, fill_delay_hours=0, benchmark_symbol="AAA")
SLOT = 5000.0 * 0.85 / 30  # default per-slot notional on untouched capital


def path(bars: list[tuple[float, float, float, float]], symbol: str = "AAA", flat: float | None = None,
         before: int = 24, after: int = 100) -> pd.DataFrame:
    """`before` flat bars at 50 (distinct from any entry price) from DAY0, then `bars` (open, high, low, close)
    from DECISION, then `after` flat bars at `flat` (default: the last close)."""
    flat = bars[-1][3] if flat is None else flat
    rows = [(50.0, 50.0, 50.0, 50.0)] * before + bars + [(flat, flat, flat, flat)] * after
    frame = pd.DataFrame(rows, columns=["open", "high", "low", "close"])
    frame.insert(0, "ts", DAY0 + (np.arange(len(rows)) - before + 24) * HOUR)
    frame.insert(0, "symbol", symbol)
    return frame


def signal(symbol: str = "AAA", direction: int = 1, decision: pd.Timestamp = DECISION, **extra) -> pd.DataFrame:
    return pd.DataFrame({"symbol": [symbol], "decision_time": [decision], "direction": [direction], **extra})


def one_trade(bars: pd.DataFrame, signals: pd.DataFrame, config: BacktestConfig = BARE) -> pd.Series:
    trades = run_backtest(signals, bars, config).trades
    assert len(trades) == 1
    return trades.iloc[0]


# --- exits -------------------------------------------------------------------------------------------------


def test_take_profit_long_fills_at_the_level_on_its_bar():
    trade = one_trade(path([(100, 101, 99.5, 100.5), (100.5, 105, 100, 104)]), signal())
    assert trade["exit_type"] == "take_profit"
    assert trade["exit_price"] == pytest.approx(104.5)
    assert trade["exit_time"] == DECISION + 2 * HOUR  # close of the second bar


def test_take_profit_gap_is_not_credited():
    trade = one_trade(path([(100, 101, 99.5, 100.5), (107, 108, 106, 107)]), signal())
    assert trade["exit_type"] == "take_profit"
    assert trade["exit_price"] == pytest.approx(104.5)


def test_stop_loss_long_at_the_level_or_the_gap_open():
    at_level = one_trade(path([(100, 100.5, 99.5, 100), (100, 100, 91, 92)]), signal())
    assert (at_level["exit_type"], at_level["exit_price"]) == ("stop_loss", pytest.approx(92.0))
    gapped = one_trade(path([(100, 100.5, 99.5, 100), (90, 90.5, 89, 90)]), signal())
    assert (gapped["exit_type"], gapped["exit_price"]) == ("stop_loss", pytest.approx(90.0))


def test_trailing_long_activates_then_trails_from_earlier_peaks_only():
    bars = [
        (100, 103, 99.5, 102.8),  # peak 103 activates (>= 102); its own low 99.5 must not hit the new stop
        (102.8, 103.5, 102, 103),  # stop 103·0.985 = 101.455: not hit; peak now 103.5
        (103, 103.2, 101, 101.5),  # stop 103.5·0.985 = 101.9475: hit
    ]
    trade = one_trade(path(bars), signal())
    assert trade["exit_type"] == "trailing_stop"
    assert trade["exit_price"] == pytest.approx(103.5 * 0.985)
    assert trade["exit_time"] == DECISION + 3 * HOUR


def test_expiry_at_the_close_of_the_72nd_bar():
    bars = [(100, 100.5, 99.5, 100)] * 71 + [(100, 100.5, 99.5, 100.3), (100.3, 100.5, 99.5, 99.9)]
    trade = one_trade(path(bars), signal())
    assert trade["exit_type"] == "expiry"
    assert trade["exit_time"] == trade["entry_time"] + pd.Timedelta(hours=72)
    assert trade["exit_price"] == pytest.approx(100.3)


def test_expiry_when_the_data_ends_early():
    bars = path([(100, 100.5, 99.5, 100)] * 9 + [(100, 100.5, 99.5, 100.2)], after=0)
    trade = one_trade(bars, signal())
    assert (trade["exit_type"], trade["exit_price"]) == ("expiry", pytest.approx(100.2))
    assert trade["exit_time"] == bars["ts"].iloc[-1] + HOUR


def test_both_levels_in_one_bar_take_the_stop():
    trade = one_trade(path([(100, 100.5, 99.5, 100), (100, 105, 91, 100)]), signal())
    assert (trade["exit_type"], trade["exit_price"]) == ("stop_loss", pytest.approx(92.0))


@pytest.mark.parametrize(
    ("bars", "exit_type", "exit_price"),
    [
        ([(100, 100.5, 99.5, 100), (100, 100.5, 95, 96)], "take_profit", 95.5),
        ([(100, 100.5, 99.5, 100), (100, 109, 99.5, 108.5)], "stop_loss", 108.0),
        ([(100, 100.5, 99.5, 100), (111, 112, 110, 111)], "stop_loss", 111.0),  # gap up through the stop
        ([(100, 100.5, 99.5, 100), (100, 109, 94, 100)], "stop_loss", 108.0),  # both in one bar
        # trough 98 activates (<= 98.5); stop 98·1.003 = 98.294 hit next bar at the level (open below it)
        ([(100, 100.2, 98, 98.2), (98.2, 98.5, 97.9, 98.3)], "trailing_stop", 98 * 1.003),
    ],
)
def test_shorts_mirror_the_long_rules(bars, exit_type, exit_price):
    trade = one_trade(path(bars), signal(direction=-1))
    assert trade["side"] == "short"
    assert (trade["exit_type"], trade["exit_price"]) == (exit_type, pytest.approx(exit_price))


# --- costs and sizing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", [1, -1])
def test_fees_and_slippage_on_both_sides(direction):
    config = BacktestConfig(benchmark_symbol="AAA")  # fee 0.1 %, slippage 0.1 % a side
    bars = [(100, 100.5, 99.5, 100), (100, 105, 100, 104)] if direction > 0 else [
        (100, 100.5, 99.5, 100), (100, 100, 95, 96)]
    trade = one_trade(path(bars), signal(direction=direction), config)
    exit_price = 104.5 if direction > 0 else 95.5
    entry_fill = 100 * (1 + direction * 0.001)
    exit_fill = exit_price * (1 - direction * 0.001)
    quantity = SLOT / entry_fill
    fees = 0.001 * SLOT + 0.001 * quantity * exit_fill
    # Entered at the 01:00 bar's open, out on the same bar: a short borrows for that hour at 10 % a year.
    borrow = SLOT * 0.10 / (24 * 365) if direction < 0 else 0.0
    pnl = direction * quantity * (exit_fill - entry_fill) - fees - borrow
    assert trade["entry_time"] == DECISION + HOUR
    assert trade["notional"] == pytest.approx(SLOT)
    assert trade["quantity"] == pytest.approx(quantity)
    assert trade["fees"] == pytest.approx(fees)
    assert trade["financing"] == pytest.approx(borrow)
    assert trade["pnl"] == pytest.approx(pnl)
    assert trade["return_pct"] == pytest.approx(100 * pnl / SLOT)
    assert trade["entry_price"] == 100 and trade["exit_price"] == pytest.approx(exit_price)  # before slippage


def test_funding_is_paid_by_longs_and_received_by_shorts_over_the_hours_held():
    bars = path([(100, 100.5, 99.5, 100)] * 30)  # flat: every trade expires after 72 bars
    config = BacktestConfig(fee_rate=0.0, slippage=0.0, fill_delay_hours=0, financing="funding", funding_rate=0.0876,
                            benchmark_symbol="AAA")
    long, short = (one_trade(bars, signal(direction=d), config) for d in (1, -1))
    held = (long["exit_time"] - long["entry_time"]) / HOUR
    assert held == 72
    assert long["financing"] == pytest.approx(SLOT * 0.0876 * 72 / (24 * 365))
    assert short["financing"] == pytest.approx(-long["financing"])
    assert long["pnl"] == pytest.approx(-long["financing"]) and short["pnl"] == pytest.approx(long["financing"])


def test_position_limits_rank_by_abs_score_and_respect_capital():
    symbols = [f"S{i:02d}" for i in range(20)]
    bars = pd.concat([path([(100, 100.5, 99.5, 100)], symbol=s) for s in symbols] + [path([(100, 100, 100, 100)])],
                     ignore_index=True)
    scores = (np.random.default_rng(0).permutation(20) + 1.0) * np.where(np.arange(20) % 2, 1, -1)  # signs mixed
    signals = pd.DataFrame({"symbol": symbols, "decision_time": DECISION, "direction": 1, "score": scores})
    result = run_backtest(signals, bars, BARE)
    expected = signals.assign(a=np.abs(scores)).nlargest(15, "a")["symbol"]
    assert len(result.trades) == 15
    assert set(result.trades["symbol"]) == set(expected)
    assert result.trades["notional"].sum() <= 5000 * 0.85 + 1e-9
    mixed = signals.assign(direction=np.where(np.arange(20) < 10, 1, -1))
    limited = run_backtest(mixed, bars, BacktestConfig(max_long=4, max_short=3, benchmark_symbol="AAA")).trades
    assert limited["side"].value_counts().to_dict() == {"long": 4, "short": 3}


def test_neutral_admission_takes_as_many_longs_as_shorts_by_strength():
    symbols = [f"S{i:02d}" for i in range(7)]
    bars = pd.concat([path([(100, 100.5, 99.5, 100)], symbol=s) for s in symbols] + [path([(100, 100, 100, 100)])],
                     ignore_index=True)
    # Five longs and two shorts at one decision, a second time with only longs.
    signals = pd.DataFrame({"symbol": symbols, "decision_time": DECISION, "direction": [1, 1, 1, 1, 1, -1, -1],
                            "score": [5.0, 1.0, 4.0, 2.0, 3.0, -0.5, -9.0]})
    later = signals.assign(decision_time=DECISION + pd.Timedelta(days=5), direction=1)
    config = BacktestConfig(fee_rate=0.0, slippage=0.0, benchmark_symbol="AAA", admission="neutral")
    trades = run_backtest(pd.concat([signals, later], ignore_index=True), bars, config).trades
    assert sorted(zip(trades["symbol"], trades["side"], strict=True)) == [
        ("S00", "long"), ("S02", "long"), ("S05", "short"), ("S06", "short")]  # nothing from the one-sided time
    independent = run_backtest(signals, bars, BARE).trades
    assert len(independent) == 7
    with pytest.raises(ValueError, match=r"backtest\.trading\.admission"):
        BacktestConfig(admission="hedged")


def test_capital_budget_cuts_the_last_candidate():
    config = BacktestConfig(max_long=2, max_short=0, deploy_rate=0.5, benchmark_symbol="AAA", fee_rate=0, slippage=0)
    bars = pd.concat([path([(100, 100.5, 99.5, 100)], symbol=s) for s in ("AAA", "BBB", "CCC")], ignore_index=True)
    signals = pd.DataFrame({"symbol": ["AAA", "BBB"], "decision_time": DECISION, "direction": 1,
                            "regime": "bull", "score": [2.0, 1.0]})
    trades = run_backtest(signals, bars, config).trades
    # Slot 5000·0.5/2 = 1250, bull longs 1.5× = 1875 each, but only 2500 may be deployed.
    assert trades["notional"].tolist() == pytest.approx([1875.0, 625.0])


def test_one_open_position_per_symbol_and_side():
    bars = path([(100, 100.5, 99.5, 100)] * 30 + [(100, 106, 100, 105)])  # flat 30 h, then take profit
    signals = pd.DataFrame(
        {"symbol": "AAA", "decision_time": [DECISION, DECISION + HOUR * 12, DECISION + HOUR * 31],
         "direction": [1, 1, 1]}
    )
    trades = run_backtest(signals, bars, BARE).trades
    assert trades["decision_time"].tolist() == [DECISION, DECISION + HOUR * 31]  # 12 h: still open
    assert trades["exit_time"].iloc[0] <= trades["decision_time"].iloc[1]


# --- timing ------------------------------------------------------------------------------------------------


def test_entry_is_the_open_of_the_first_bar_at_or_after_the_decision():
    bars = path([(100, 100.5, 99.5, 100)] * 3)
    bars.loc[bars["ts"] == DECISION - HOUR, ["open", "close"]] = 60.0  # the decision bar itself
    bars.loc[bars["ts"] == DECISION + HOUR, "open"] = 100.2
    on_the_hour = one_trade(bars, signal())
    assert on_the_hour["entry_time"] == DECISION
    assert on_the_hour["entry_price"] == 100.0
    between = one_trade(bars, signal(decision=DECISION + pd.Timedelta(minutes=30)))
    assert between["entry_time"] == DECISION + HOUR
    assert between["entry_price"] == 100.2
    # The default: a daily run reaches the bar an hour after the close.
    delayed = one_trade(bars, signal(), BacktestConfig(fee_rate=0.0, slippage=0.0, benchmark_symbol="AAA"))
    assert delayed["entry_time"] == DECISION + HOUR and delayed["entry_price"] == 100.2


def test_gap_filled_bars_are_not_entered_and_missing_data_gives_no_trade():
    bars = path([(100, 100.5, 99.5, 100)] * 3).assign(is_filled=False)
    bars.loc[bars["ts"] == DECISION, "is_filled"] = True
    assert one_trade(bars, signal())["entry_time"] == DECISION + HOUR
    assert run_backtest(signal(decision=bars["ts"].iloc[-1] + HOUR), bars, BARE).trades.empty


def test_shifting_signals_a_day_later_changes_the_trades():
    # Day 1 falls through the stop of a day-1 entry; a day-2 entry at 91 then reaches its take profit (95.095).
    bars = path([(100, 100.5, 99.5, 100)] * 23 + [(100, 100.5, 91, 91)] + [(91, 91.5, 90.5, 91)] * 23
                + [(91, 96, 91, 95.5)])
    now = one_trade(bars, signal())
    later = one_trade(bars, signal(decision=DECISION + pd.Timedelta(days=1)))
    assert (now["entry_time"], now["exit_type"]) == (DECISION, "stop_loss")
    assert (later["entry_time"], later["exit_type"]) == (DECISION + pd.Timedelta(days=1), "take_profit")


def test_equity_is_marked_to_market_at_each_day_close():
    bars = [(100, 100.5, 99.5, 100)] * 23 + [(100, 101, 99.5, 101)] + [(101, 101.5, 100.5, 101)] * 47 + [
        (101, 101.5, 98.5, 99)]
    result = run_backtest(signal(), path(bars), BARE)
    trade = result.trades.iloc[0]
    equity = result.equity.set_index("date")["equity"]
    assert equity.index[0] == DAY0 and equity.iloc[0] == 5000.0
    assert equity[DECISION] == pytest.approx(5000 + SLOT * 0.01)  # open trade marked at 101
    assert equity.iloc[-1] == pytest.approx(5000 + trade["pnl"])  # realised once it exits
    assert trade["exit_type"] == "expiry" and trade["exit_price"] == 99


# --- regime ------------------------------------------------------------------------------------------------


def regime_inputs() -> pd.DataFrame:
    rows = {  # momentum, volatility, fear/greed, breadth, vol ratio
        "bull": (1.0, 0.0, 0.0, 0.0, 1.0),  # R = 0.35
        "bear": (-1.0, 0.0, 0.0, 0.0, 1.0),
        "range": (0.0, 0.5, 0.0, 0.0, 0.5),  # R = 0.10
        "edge": (0.0, 0.0, 0.0, 0.6, 1.0),  # R = 0.15 exactly: not > 0.15
        "bull_high_vol": (1.0, -1.0, 1.0, 1.0, 2.5),  # R = 0.60 and ratio 2.5
        "nan_component": (1.0, 0.0, np.nan, 0.0, 1.0),
        "nan_ratio": (0.0, 0.0, 0.0, 0.0, np.nan),
    }
    columns = ["regime_momentum", "regime_volatility", "regime_fear_greed", "regime_breadth", "vol_ratio_7d_30d"]
    index = pd.date_range(DAY0, periods=len(rows), freq="D", name="ts")
    return pd.DataFrame(list(rows.values()), columns=columns, index=index)


def test_regime_composite_values():
    composite = regime_composite(regime_inputs())
    expected = [0.35, -0.35, 0.10, 0.15, 0.35 - 0.20 + 0.20 + 0.25, np.nan, 0.0]
    np.testing.assert_allclose(composite.to_numpy(), expected)
    assert regime_composite(regime_inputs(), {"momentum": 1.0}).iloc[0] == 1.0


def test_classify_regime_precedence_and_nan_days():
    assert classify_regime(regime_inputs()).tolist() == [
        "bull", "bear", "range", "range", "high_vol", "unknown", "unknown"]
    trend_first = classify_regime(regime_inputs(), RegimeConfig(high_vol_first=False))
    assert trend_first.iloc[4] == "bull"
    range_high_vol = regime_inputs().assign(vol_ratio_7d_30d=3.0).iloc[[2]]
    assert classify_regime(range_high_vol, RegimeConfig(high_vol_first=False)).iloc[0] == "high_vol"


def test_size_multiplier_and_regime_known_at_decision():
    regime = pd.Series(["bull", "bull", "bear", "range", "high_vol", "unknown", None])
    direction = pd.Series([1, -1, 1, -1, 1, 1, -1])
    np.testing.assert_allclose(size_multiplier(regime, direction), [1.5, 0.5, 0.5, 0.7, 0.5, 0.0, 0.0])
    with pytest.raises(ValueError, match="sideways"):
        size_multiplier(pd.Series(["sideways"]), pd.Series([1]))
    daily = classify_regime(regime_inputs())
    decisions = pd.Series([DAY0 + pd.Timedelta(days=1), DAY0 + pd.Timedelta(days=2, hours=5), DAY0])
    assert regime_for_decisions(daily, decisions).tolist() == ["bull", "bear", "unknown"]


def test_regime_gate_blocks_and_scales_entries():
    bars = path([(100, 100.5, 99.5, 100)])
    assert one_trade(bars, signal(regime=["bull"]))["notional"] == pytest.approx(1.5 * SLOT)
    assert one_trade(bars, signal(direction=-1, regime=["bull"]))["notional"] == pytest.approx(0.5 * SLOT)
    assert one_trade(bars, signal(regime=["range"]))["size_multiplier"] == 0.7
    assert run_backtest(signal(regime=["unknown"]), bars, BARE).trades.empty
    blocked = RegimeConfig(range_long=0.0)
    assert run_backtest(signal(regime=["range"]), bars, BARE, blocked).trades.empty


# --- inputs and report -------------------------------------------------------------------------------------


def test_bad_inputs_are_errors():
    bars = path([(100, 100.5, 99.5, 100)])
    with pytest.raises(ValueError, match="hour-contiguous"):
        run_backtest(signal(), bars.drop(index=30), BARE)
    with pytest.raises(ValueError, match="tz-aware"):
        run_backtest(signal(decision=DECISION.tz_localize(None)), bars, BARE)
    with pytest.raises(ValueError, match="two signals"):
        run_backtest(pd.concat([signal(), signal()]), bars, BARE)
    with pytest.raises(ValueError, match="ZZZ"):
        run_backtest(signal(symbol="ZZZ"), bars, BARE)


def test_report_structure_and_undefined_ratios(tmp_path):
    result = run_backtest(signal(), path([(100, 100.5, 99.5, 100), (100, 105, 100, 104)]), BARE)
    report = result.to_json_dict()
    assert list(report) == ["strategy", "config", "regime", "summary", "performance", "benchmark", "exits",
                            "per_symbol", "per_month", "equity_curve"]
    assert report["config"] == {**BARE.__dict__}
    assert report["regime"] == {**RegimeConfig().__dict__}
    summary = report["summary"]
    assert summary["trades"] == 1 and summary["win_rate"] == 1.0
    assert summary["profit_factor"] is None and summary["payoff"] is None  # no losing trade
    assert report["exits"]["stop_loss"] == {"trades": 0, "pnl": 0.0, "win_rate": None}
    json.dumps(report, allow_nan=False)
    json_path, trades_path = write_backtest(result, tmp_path / "bt")
    assert json.loads(json_path.read_text())["summary"] == summary
    pd.testing.assert_frame_equal(pd.read_parquet(trades_path), result.trades, check_dtype=False)


def test_benchmark_is_buy_and_hold_of_its_symbol_and_undefined_when_the_data_lacks_it():
    # The first mark is the decision, day 0's close (50); AAA's last close is 104.
    bars = path([(100, 100.5, 99.5, 100)] * 24 + [(100, 105, 100, 104)])
    report = run_backtest(signal(), bars, BARE).to_json_dict()
    assert report["benchmark"]["in_data"] is True
    assert report["benchmark"]["return"] == pytest.approx(104 / 50 - 1)
    assert report["equity_curve"][0]["btc_equity"] == pytest.approx(5000)
    assert report["equity_curve"][-1]["btc_equity"] == pytest.approx(5000 * 104 / 50)

    other = run_backtest(signal(), bars, BacktestConfig(fee_rate=0.0, slippage=0.0, benchmark_symbol="BTCUSDT"))
    lacking = other.to_json_dict()
    assert lacking["summary"] == report["summary"]  # the strategy's figures do not depend on the benchmark
    assert lacking["benchmark"] == {"symbol": "BTCUSDT", "in_data": False, "return": None,
                                    "annualised_return": None, "sharpe": None, "max_drawdown": None}
    assert all(point["btc_equity"] is None for point in lacking["equity_curve"])
    json.dumps(lacking, allow_nan=False)


# --- the real sample ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_signals(sample_grid) -> pd.DataFrame:
    """direction = sign of the previous day's close-to-close return, for every symbol and day."""
    daily = sample_grid.assign(day=sample_grid["ts"].dt.floor("D")).groupby(["symbol", "day"], as_index=False)[
        "close"].last()
    ret = daily.groupby("symbol")["close"].pct_change()
    return pd.DataFrame({
        "symbol": daily["symbol"],
        "decision_time": daily["day"] + pd.Timedelta(days=1),
        "direction": np.sign(ret.fillna(0.0)).astype("int64"),
        "score": ret.abs(),
    })


def test_sample_backtest_invariants(sample_grid, sample_signals):
    result = run_backtest(sample_signals, sample_grid)
    trades, report = result.trades, result.to_json_dict()
    summary = report["summary"]
    assert list(trades.columns) == list(TRADE_COLUMNS) and len(trades) > 100
    assert summary["trades"] == len(trades) == summary["trades_long"] + summary["trades_short"]
    assert sum(v["trades"] for v in report["exits"].values()) == len(trades)
    assert sum(v["pnl"] for v in report["per_symbol"].values()) == pytest.approx(summary["net_pnl"])
    assert sum(v["pnl"] for v in report["per_month"].values()) == pytest.approx(summary["net_pnl"])
    assert report["equity_curve"][-1]["equity"] == pytest.approx(5000 + summary["net_pnl"])
    assert (trades["exit_time"] - trades["entry_time"]).max() <= pd.Timedelta(hours=72)
    assert (trades["entry_time"] > trades["decision_time"] - pd.Timedelta(1, "ns")).all()
    assert set(trades["exit_type"]) <= set(EXIT_TYPES)
    # Entry price is the open of the entry bar; no more than 15 open per side at any time.
    opens = sample_grid.set_index(["symbol", "ts"])["open"]
    assert np.array_equal(opens.loc[list(zip(trades["symbol"], trades["entry_time"], strict=True))].to_numpy(),
                          trades["entry_price"].to_numpy())
    events = pd.concat([trades.assign(t=trades["entry_time"], d=1), trades.assign(t=trades["exit_time"], d=-1)])
    for _, side in events.sort_values(["t", "d"]).groupby("side"):
        assert side["d"].cumsum().max() <= 15
    json.dumps(report, allow_nan=False)
    shifted = run_backtest(sample_signals.assign(decision_time=sample_signals["decision_time"] + pd.Timedelta(days=1)),
                           sample_grid)
    assert not shifted.trades["entry_time"].equals(trades["entry_time"])


def test_volatility_exits_are_symmetric_and_follow_each_coins_volatility(sample_grid, sample_signals):
    panel = daily_panel(sample_grid)
    config = BacktestConfig(fee_rate=0.0, slippage=0.0, exit_scale="volatility", exit_sigmas=1.5)
    days = pd.Series(pd.to_datetime(["2023-06-01", "2023-06-01", "2022-12-02"], utc=True))
    symbols, sides = pd.Series(["BTCUSDT", "PEPEUSDT", "BTCUSDT"]), pd.Series([1, -1, -1])
    levels = exit_levels(symbols, days, sides, config, panel)
    sigma = 1.5 * panel.volatility.loc[days[0], "BTCUSDT"] * np.sqrt(72 / 24)
    assert levels["take_profit"][0] == pytest.approx(sigma) and levels["stop_loss"][0] == pytest.approx(sigma)
    assert levels["trail_activation"][0] == pytest.approx(sigma / 2) and levels["trail"][0] == pytest.approx(sigma / 2)
    # PEPE is not listed on 2023-06-01's volatility window, BTC has no history on 2022-12-02: the fixed levels.
    assert levels["take_profit"][1:].tolist() == [0.045, 0.045] and levels["trail"][1:].tolist() == [0.003, 0.003]
    trades = run_backtest(sample_signals, sample_grid, config, panel=panel).trades
    hit = trades[trades["exit_type"] == "take_profit"]
    assert len(hit) > 10
    move = np.where(hit["side"] == "long", 1, -1) * (hit["exit_price"] / hit["entry_price"] - 1)
    expected = exit_levels(hit["symbol"], hit["decision_time"] - pd.Timedelta(days=1), pd.Series(
        np.where(hit["side"] == "long", 1, -1), index=hit.index), config, panel)["take_profit"]
    np.testing.assert_allclose(move, expected, rtol=1e-9)
    with pytest.raises(ValueError, match=r"backtest\.trading\.exit_scale"):
        BacktestConfig(exit_scale="atr")
