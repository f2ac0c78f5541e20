"""Evaluation metrics against hand-computed cases, and the report's numbers against the JSON (SPEC §8, §9)."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from backtest import RankedBookConfig, daily_panel
from backtest.performance import performance
from evaluation import (
    PREDICTION_COLUMNS,
    calibration_by_class,
    classification_metrics,
    daily_rank_ic,
    evaluate_predictions,
    format_number,
    ic_over_time,
    ic_summary,
    newey_west_t_stat,
    paired_ic_comparison,
    payoff_tables,
    pooled_rank_ic,
    shown_value,
    win_rate_by_bin,
    write_report,
)
from evaluation.report import strategy_verdict

DAY1, DAY2, DAY3, DAY4 = pd.date_range("2024-01-01", periods=4, tz="UTC")


def _frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["date", "symbol", "score", "fwd_ret_3d"])


# --- rank IC ----------------------------------------------------------------------------------------------------


def test_daily_rank_ic_matches_hand_spearman_and_drops_undefined_days():
    frame = _frame([
        # Day 1: score ranks [1, 2, 3, 4], target ranks [1, 2, 4, 3]; d = [0, 0, -1, 1], sum d^2 = 2,
        # rho = 1 - 6 * 2 / (4 * 15) = 0.8.
        (DAY1, "A", 1.0, 0.1), (DAY1, "B", 2.0, 0.2), (DAY1, "C", 3.0, 0.4), (DAY1, "D", 4.0, 0.3),
        # Day 2: score ranks [4, 1, 3, 2], target ranks [1, 2, 4, 3]; d = [3, -1, -1, -1], sum d^2 = 12,
        # rho = 1 - 6 * 12 / 60 = -0.2.
        (DAY2, "A", 0.5, -0.03), (DAY2, "B", 0.1, -0.01), (DAY2, "C", 0.3, 0.05), (DAY2, "D", 0.2, 0.02),
        # Day 3: constant score -> undefined -> dropped.
        (DAY3, "A", 0.0, 0.1), (DAY3, "B", 0.0, 0.2), (DAY3, "C", 0.0, 0.3),
        # Day 4: a missing target leaves 2 names < min_names -> dropped.
        (DAY4, "A", 1.0, 0.1), (DAY4, "B", 2.0, np.nan), (DAY4, "C", 3.0, 0.3),
    ])
    ic = daily_rank_ic(frame.sample(frac=1.0, random_state=3))  # row order must not matter
    assert list(ic.index) == [DAY1, DAY2]
    np.testing.assert_allclose(ic.to_numpy(), [0.8, -0.2], atol=1e-12)


def test_daily_rank_ic_equals_scipy_per_day_with_ties():
    rng = np.random.default_rng(7)
    dates = pd.date_range("2024-01-01", periods=12, tz="UTC")
    frame = pd.DataFrame({
        "date": np.repeat(dates, 9),
        "score": rng.integers(0, 4, 108).astype(float),  # many ties
        "fwd_ret_3d": rng.normal(0, 0.05, 108).round(2),
    })
    expected = {day: spearmanr(g["score"], g["fwd_ret_3d"]).statistic for day, g in frame.groupby("date")}
    expected = pd.Series(expected).dropna()
    ic = daily_rank_ic(frame)
    assert list(ic.index) == list(expected.index)
    np.testing.assert_allclose(ic.to_numpy(), expected.to_numpy(), atol=1e-12)


def test_ic_is_per_day_not_pooled():
    # Within each day the score ranks the coins exactly backwards (daily IC = -1), but day 2 has higher
    # scores AND higher returns than day 1, so the pooled Spearman is positive:
    # pooled ranks x = [1..6], y = [3, 2, 1, 6, 5, 4]; sum d^2 = 16; rho = 1 - 6 * 16 / (6 * 35) = 0.542857.
    frame = _frame([
        (DAY1, "A", 1.0, 0.3), (DAY1, "B", 2.0, 0.2), (DAY1, "C", 3.0, 0.1),
        (DAY2, "A", 11.0, 1.3), (DAY2, "B", 12.0, 1.2), (DAY2, "C", 13.0, 1.1),
    ])
    np.testing.assert_allclose(daily_rank_ic(frame).to_numpy(), [-1.0, -1.0])
    assert pooled_rank_ic(frame) == pytest.approx(1 - 96 / 210)
    assert ic_summary(daily_rank_ic(frame))["mean"] == pytest.approx(-1.0)


def test_hac_t_stat_by_hand():
    # x = [0, 2, 4, 4, 6, 8] / 100, mean 0.04, e = [-4, -2, 0, 0, 2, 4] / 100, T = 6, lags L = 2 (3-day returns).
    # In units of 1e-4: g0 = 40/6, g1 = (8 + 0 + 0 + 0 + 8)/6 = 16/6, g2 = 0.
    # S = g0 + 2 * (2/3 * g1 + 1/3 * g2) = 40/6 + 64/18 = 92/9; Var(mean) = S / T = 46/27; t = 4 / sqrt(46/27).
    series = pd.Series([0.00, 0.02, 0.04, 0.04, 0.06, 0.08])
    hand_t = 4 / math.sqrt(46 / 27)
    assert newey_west_t_stat(series, lags=2) == pytest.approx(hand_t)
    # ic_summary of 3-day ICs uses L = h = 3 lags: g3 = (0 - 4 + 0) / 6 = -4/6 (overlap h - 1 = 2, plus one);
    # S = 40/6 + 2 * (3/4 * 16/6 + 2/4 * 0 + 1/4 * (-4/6)) = 62/6; Var(mean) = S / T = 62/36.
    summary = ic_summary(series, horizon_days=3)
    assert summary["t_stat_lags"] == 3
    assert summary["t_stat"] == pytest.approx(4 / math.sqrt(62 / 36))
    # The naive t (positively autocorrelated series) is larger: mean / (std / sqrt(T)) = 4 / (sqrt(8) / sqrt(6)).
    naive_t = 4 / (math.sqrt(8) / math.sqrt(6))
    assert hand_t < naive_t
    assert summary["mean"] == pytest.approx(0.04)
    assert summary["std"] == pytest.approx(math.sqrt(8) / 100)
    assert summary["icir"] == pytest.approx(0.04 / (math.sqrt(8) / 100))
    assert summary["days"] == 6
    assert summary["positive_share"] == pytest.approx(5 / 6)
    # Independent formulation: S = e' W e / T with Bartlett weights W_ij = max(0, 1 - |i - j| / (L + 1)).
    errors = series.to_numpy() - series.mean()
    lag = np.abs(np.subtract.outer(np.arange(6), np.arange(6)))
    long_run = errors @ np.clip(1 - lag / 3, 0, None) @ errors / 6
    assert newey_west_t_stat(series, lags=2) == pytest.approx(series.mean() / math.sqrt(long_run / 6))


def test_hac_t_stat_equals_statsmodels_newey_west():
    """The reference implementation: OLS on a constant with a Bartlett-kernel HAC covariance, no small-sample
    correction (our variance uses 1/T)."""
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(11)
    # An MA(2) series, like daily ICs of overlapping 3-day returns, with a drift.
    shocks = rng.normal(0, 1, 252)
    series = 0.2 + shocks[2:] + 0.8 * shocks[1:-1] + 0.5 * shocks[:-2]
    for lags in (0, 2, 3, 10):
        hac = {"maxlags": lags, "use_correction": False}
        fit = sm.OLS(series, np.ones_like(series)).fit(cov_type="HAC", cov_kwds=hac)
        assert newey_west_t_stat(series, lags=lags) == pytest.approx(float(fit.tvalues[0]), rel=1e-10)


def test_paired_comparison_matches_a_direct_computation_on_the_common_days():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(5)
    days = pd.date_range("2023-01-01", periods=120, tz="UTC")
    reference = pd.Series(rng.normal(0.05, 0.2, 120), index=days)
    other = pd.Series(rng.normal(0.0, 0.2, 120), index=days)
    # The other model is unscored on 7 days (constant score), the reference on 3 others.
    other = other.drop(days[[5, 17, 18, 40, 77, 78, 100]])
    reference = reference.drop(days[[1, 2, 60]])
    paired = paired_ic_comparison(reference, other, horizon_days=3)
    common = reference.index.intersection(other.index)
    diff = (reference[common] - other[common]).to_numpy()
    assert paired["days"] == len(common) == 110
    assert paired["days_reference_only"] == 7 and paired["days_other_only"] == 3
    assert paired["diff_mean"] == pytest.approx(diff.mean())
    assert paired["win_share"] == pytest.approx((diff > 0).mean())
    assert paired["t_stat_lags"] == 3
    fit = sm.OLS(diff, np.ones_like(diff)).fit(cov_type="HAC", cov_kwds={"maxlags": 3, "use_correction": False})
    assert paired["t_stat"] == pytest.approx(float(fit.tvalues[0]), rel=1e-10)
    # Antisymmetric: swapping the models flips the sign.
    swapped = paired_ic_comparison(other, reference, horizon_days=3)
    assert swapped["t_stat"] == pytest.approx(-paired["t_stat"])


# --- classification ---------------------------------------------------------------------------------------------

# Rows: true class, then (p_sell, p_hold, p_buy). Argmax predictions = [BUY, BUY, SELL, BUY, BUY, HOLD].
Y_TRUE = np.array([2, 2, 2, 0, 1, 1])
PROBA = np.array([
    [0.1, 0.2, 0.7],
    [0.2, 0.2, 0.6],
    [0.5, 0.3, 0.2],
    [0.3, 0.2, 0.5],
    [0.1, 0.4, 0.5],
    [0.2, 0.7, 0.1],
])


def test_classification_metrics_by_hand_and_orientation():
    result = classification_metrics(Y_TRUE, PROBA)
    # Confusion, rows = TRUE (SELL, HOLD, BUY), columns = PREDICTED: true BUY -> [SELL 1, HOLD 0, BUY 2].
    # Swapping y_true and y_pred would give the transpose.
    assert result["confusion_matrix"]["labels"] == ["SELL", "HOLD", "BUY"]
    assert result["confusion_matrix"]["matrix"] == [[0, 0, 1], [0, 1, 1], [1, 0, 2]]
    # BUY: predicted 4 times, 2 right -> precision 1/2; truly BUY 3 times, 2 found -> recall 2/3
    # (a swap exchanges them).
    assert result["precision"] == {"SELL": 0.0, "HOLD": 1.0, "BUY": 0.5}
    assert result["recall"] == pytest.approx({"SELL": 0.0, "HOLD": 0.5, "BUY": 2 / 3})
    # AUC (pairs positive > negative): BUY pos [.7, .6, .2] vs neg [.5, .5, .1] -> 7/9;
    # SELL pos [.3] vs neg [.1, .2, .5, .1, .2] -> 4/5; HOLD pos [.4, .7] vs neg [.2, .2, .3, .2] -> 1.
    assert result["auc"] == pytest.approx({"SELL": 0.8, "HOLD": 1.0, "BUY": 7 / 9})
    # F1 = 2TP / (2TP + FP + FN): SELL 0, HOLD 2/3, BUY 4/7.
    assert result["macro_f1"] == pytest.approx((0 + 2 / 3 + 4 / 7) / 3)
    assert result["accuracy"] == pytest.approx(3 / 6)
    p_true = [0.7, 0.6, 0.2, 0.3, 0.4, 0.7]
    assert result["log_loss"] == pytest.approx(-sum(math.log(p) for p in p_true) / 6)
    # Per-row sum (p - one_hot)^2: .14, .24, .98, .78, .62, .14.
    assert result["brier"] == pytest.approx(2.90 / 6)


def test_auc_is_none_for_an_absent_class():
    result = classification_metrics(Y_TRUE[[0, 1, 4, 5]], PROBA[[0, 1, 4, 5]])  # no SELL row
    assert result["auc"]["SELL"] is None
    assert result["auc"]["BUY"] == pytest.approx(1.0)


def test_calibration_curve_by_hand():
    y_true = np.array([2, 2, 0, 1])
    proba = np.array([[0.04, 0.04, 0.92], [0.06, 0.06, 0.88], [0.83, 0.05, 0.12], [0.06, 0.80, 0.14]])
    buy = calibration_by_class(y_true, proba)["BUY"]
    # Bins [0.1, 0.2): 0.12, 0.14 (no BUY); [0.8, 0.9): 0.88 (BUY); [0.9, 1.0]: 0.92 (BUY).
    assert buy["count"] == [2, 1, 1]
    assert buy["observed"] == [0.0, 1.0, 1.0]
    np.testing.assert_allclose(buy["mean_predicted"], [0.13, 0.88, 0.92])


def test_win_rate_by_bin_by_hand():
    frame = pd.DataFrame(
        [
            (0.10, 0.25, 0.65, 0.02),   # BUY 0.65 -> [0.6, 0.7), win, +0.02
            (0.05, 0.10, 0.85, -0.01),  # BUY 0.85 -> [0.8, 0.9), loss, -0.01
            (0.62, 0.30, 0.08, -0.03),  # SELL 0.62 -> [0.6, 0.7), win, +0.03 in the trade's direction
            (0.30, 0.60, 0.10, 0.50),   # HOLD: no trade
            (0.40, 0.30, 0.30, -0.50),  # SELL at 0.40 < 0.5: outside the bins
            (0.00, 0.00, 1.00, 0.05),   # BUY 1.0 -> last bin (closed at 1.0), win
            (0.55, 0.25, 0.20, np.nan),  # no forward return: excluded
            (0.20, 0.20, 0.60, 0.00),   # BUY 0.6 -> [0.6, 0.7), zero return is a loss
        ],
        columns=["p_sell", "p_hold", "p_buy", "fwd_ret_3d"],
    )
    result = win_rate_by_bin(frame)
    assert [b["bin"] for b in result] == ["0.5-0.6", "0.6-0.7", "0.7-0.8", "0.8-0.9", "0.9-1.0"]
    assert [b["count"] for b in result] == [0, 3, 0, 1, 1]
    assert [b["win_rate"] for b in result] == [None, pytest.approx(2 / 3), None, 0.0, 1.0]
    assert [b["mean_fwd_ret"] for b in result] == [None, pytest.approx(0.05 / 3), None, pytest.approx(-0.01),
                                                   pytest.approx(0.05)]


# --- predictions frame ------------------------------------------------------------------------------------------


def _predictions(seed: int = 0) -> pd.DataFrame:
    """2 models x 2 folds x 5 days x 6 symbols, probabilities loosely informative; 'trishula' appears first."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2024-03-01", periods=10, tz="UTC")
    grid = pd.MultiIndex.from_product(
        [["trishula", "lstm"], dates, [f"C{i}USDT" for i in range(6)]], names=["model", "date", "symbol"]
    ).to_frame(index=False)
    grid["fold"] = np.where(grid["date"] < dates[5], 3, 4)
    grid["fwd_ret_3d"] = rng.normal(0, 0.04, len(grid))
    label = np.where(grid["fwd_ret_3d"] > 0.02, 2, np.where(grid["fwd_ret_3d"] < -0.02, 0, 1))
    logits = rng.normal(0, 1, (len(grid), 3)) + 1.5 * np.eye(3)[label]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    grid[["p_sell", "p_hold", "p_buy"]] = proba
    grid["score"] = grid["p_buy"] - grid["p_sell"]
    grid["label"] = pd.array(label, dtype="Int8")
    return grid[list(PREDICTION_COLUMNS)]


def _plain(value: object) -> None:
    """Only plain JSON types, no numpy scalars (np.float64 subclasses float, so check exact types)."""
    if isinstance(value, dict):
        assert all(type(k) is str for k in value)
        for item in value.values():
            _plain(item)
    elif isinstance(value, list):
        for item in value:
            _plain(item)
    else:
        assert type(value) in (str, int, float, bool, type(None)), type(value)
        assert not (type(value) is float and not math.isfinite(value))


def test_evaluate_predictions_structure_and_ranges():
    predictions = _predictions()
    metrics = evaluate_predictions(predictions)
    json.dumps(metrics, allow_nan=False)
    _plain(metrics)
    assert metrics["horizon_days"] == 3
    assert metrics["models"] == ["trishula", "lstm"]  # order of first appearance, not sorted
    assert [row["model"] for row in metrics["comparison"]] == ["trishula", "lstm"]
    assert set(metrics["per_fold"]["lstm"]) == {"3", "4"}
    keys = ["rows", "days", "ic", "pooled_rank_ic", "auc", "macro_f1", "accuracy", "log_loss", "brier",
            "precision", "recall", "confusion_matrix", "calibration", "win_rate_by_bin"]
    for model in metrics["models"]:
        pooled = metrics["pooled"][model]
        assert list(pooled) == keys
        assert pooled["rows"] == 60 and pooled["days"] == 10
        assert pooled["ic"]["days"] == 10  # the pooled IC is still one IC per test day
        assert sum(fold["rows"] for fold in metrics["per_fold"][model].values()) == 60
        assert all(list(fold) == keys for fold in metrics["per_fold"][model].values())
        assert -1 <= pooled["ic"]["mean"] <= 1 and -1 <= pooled["pooled_rank_ic"] <= 1
        assert all(0 <= auc <= 1 for auc in pooled["auc"].values())
        assert 0 <= pooled["accuracy"] <= 1 and 0 <= pooled["macro_f1"] <= 1
        assert pooled["log_loss"] > 0 and 0 <= pooled["brier"] <= 2
        assert np.asarray(pooled["confusion_matrix"]["matrix"]).sum() == 60
        for curve in pooled["calibration"].values():
            assert sum(curve["count"]) == 60
            assert len(curve["count"]) == len(curve["observed"]) == len(curve["mean_predicted"])
        comparison = next(row for row in metrics["comparison"] if row["model"] == model)
        assert comparison["ic_mean"] == pooled["ic"]["mean"] and comparison["auc_buy"] == pooled["auc"]["BUY"]
    # The signal is informative by construction.
    assert metrics["pooled"]["trishula"]["auc"]["BUY"] > 0.6


def test_factor_baselines_are_scored_on_their_score_alone_and_paired_against_trishula():
    predictions = _predictions()
    trishula = predictions[predictions["model"] == "trishula"]
    # A baseline whose score is the (known) forward return: a perfect ranker, with no probabilities.
    oracle = trishula.assign(model="oracle", p_sell=np.nan, p_hold=np.nan, p_buy=np.nan, score=trishula["fwd_ret_3d"])
    # A baseline with a constant score on the first day: that day is dropped for it, and counted.
    flat = trishula.assign(model="flat", p_sell=np.nan, p_hold=np.nan, p_buy=np.nan,
                           score=np.where(trishula["date"] == trishula["date"].min(), 1.0, -trishula["fwd_ret_3d"]))
    metrics = evaluate_predictions(pd.concat([predictions, oracle, flat], ignore_index=True))
    json.dumps(metrics, allow_nan=False)
    _plain(metrics)
    assert metrics["baselines"] == ["oracle", "flat"] and metrics["reference"] == "trishula"
    oracle_metrics = metrics["pooled"]["oracle"]
    assert oracle_metrics["ic"]["mean"] == pytest.approx(1.0)
    assert oracle_metrics["log_loss"] is None and oracle_metrics["auc"] == {"SELL": None, "HOLD": None, "BUY": None}
    assert metrics["pooled"]["flat"]["ic"]["days"] == 9 and metrics["pooled"]["flat"]["ic"]["days_dropped"] == 1
    assert metrics["paired"]["flat"]["days"] == 9 and metrics["paired"]["flat"]["days_other_only"] == 0
    assert metrics["paired"]["flat"]["days_reference_only"] == 1
    # Paired rows: Trishula minus the model, on the days both are scored.
    expected = daily_rank_ic(trishula) - daily_rank_ic(oracle)
    assert metrics["paired"]["oracle"]["diff_mean"] == pytest.approx(expected.mean())
    assert metrics["paired"]["oracle"]["win_share"] == 0.0
    row = next(r for r in metrics["comparison"] if r["model"] == "oracle")
    assert row["paired_t_stat"] == metrics["paired"]["oracle"]["t_stat"] < 0
    assert next(r for r in metrics["comparison"] if r["model"] == "trishula")["paired_t_stat"] is None
    # The verdict: Trishula is clearly behind the oracle and ahead of the reversed-return "flat" baseline.
    assert "oracle" in metrics["verdict"]["behind"] and "flat" in metrics["verdict"]["beats"]


def test_rows_without_label_are_excluded():
    predictions = _predictions()
    unknown = predictions.iloc[:12].copy()
    unknown["date"] = unknown["date"] + pd.Timedelta(days=30)
    unknown["label"] = pd.NA
    unknown["fwd_ret_3d"] = np.nan
    unknown[["p_sell", "p_hold", "p_buy"]] = [1.0, 0.0, 0.0]
    with_unknown = pd.concat([predictions, unknown], ignore_index=True)
    assert evaluate_predictions(with_unknown) == evaluate_predictions(predictions)
    assert ic_over_time(with_unknown)["date"].max() == predictions["date"].max()


def test_rows_that_are_not_probabilities_are_refused():
    predictions = _predictions()
    predictions.loc[0, "p_buy"] += 0.5
    with pytest.raises(ValueError, match="not probabilities"):
        evaluate_predictions(predictions)


def test_ic_over_time_per_model_and_day():
    predictions = _predictions()
    over_time = ic_over_time(predictions)
    assert list(over_time.columns) == ["date", "model", "ic"]
    assert len(over_time) == 20
    lstm = predictions[predictions["model"] == "lstm"]
    expected = daily_rank_ic(lstm)
    got = over_time[over_time["model"] == "lstm"].set_index("date")["ic"]
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy())


# --- report -----------------------------------------------------------------------------------------------------


def _backtest() -> tuple[dict, pd.DataFrame]:
    dates = pd.date_range("2024-03-01", periods=10, tz="UTC")
    net = np.array([0.0, 0.01, -0.02, 0.015, 0.0, 0.01, -0.005, 0.02, 0.0, 0.003])
    equity = 5000 * np.cumprod(1 + net)
    market = np.array([0.0, 0.02, -0.01, 0.0, 0.01, -0.03, 0.0, 0.01, 0.005, 0.0])
    daily = pd.DataFrame({"gross": net + 0.001, "long": net, "short": 0.001, "turnover": 0.5, "cost": 0.0005,
                          "borrow": 0.0005, "net": net, "market": market}, index=dates)
    backtest = {
        "strategy": "trailing_j",
        "performance": performance(daily),
        "config": {"capital": 5000.0, "fee": 0.001},
        "regime": {"bull_threshold": 0.15},
        "summary": {"start": "2024-03-01", "end": "2024-03-10", "days": 10, "net_pnl": 162.123456, "return": 0.0324,
                    "annualised_return": 2.2, "sharpe": 3.14159265, "sortino": None, "calmar": 12345.678,
                    "max_drawdown": -0.02, "win_rate": 0.6, "profit_factor": 1.8, "payoff": 1.2, "trades": 5,
                    "trades_long": 3, "trades_short": 2, "fees": 5.0},
        "benchmark": {"symbol": "BTCUSDT", "in_data": True, "return": 0.05, "annualised_return": 4.1, "sharpe": 2.0,
                      "max_drawdown": -0.07},
        "exits": {"take_profit": {"trades": 3, "pnl": 300.0, "win_rate": 1.0},
                  "stop_loss": {"trades": 2, "pnl": -137.876544, "win_rate": 0.0}},
        "per_symbol": {"C0USDT": {"trades": 3, "pnl": 200.0, "win_rate": 2 / 3},
                       "C1USDT": {"trades": 2, "pnl": -37.876544, "win_rate": 0.5}},
        "per_month": {"2024-03": {"trades": 5, "pnl": 162.123456, "return": 0.0324}},
        "equity_curve": [
            {"date": d.strftime("%Y-%m-%d"), "equity": float(e), "drawdown": float(e / m - 1),
             "btc_equity": 5000.0 + 25.0 * i, "market_equity": float(5000 * np.prod(1 + market[:i + 1]))}
            for i, (d, e, m) in enumerate(zip(dates, equity, np.maximum.accumulate(equity), strict=True))
        ],
    }
    trades = pd.DataFrame({
        "symbol": ["C0USDT", "C0USDT", "C0USDT", "C1USDT", "C1USDT"],
        "side": ["long", "long", "short", "long", "short"],
        "return_pct": [0.045, 0.045, 0.045, -0.08, 0.01],
        "pnl": [100.0, 100.0, 0.0, -137.876544, 100.0],
        "exit_type": ["take_profit"] * 3 + ["stop_loss"] * 2,
    })
    return backtest, trades


class _KeyedCells(HTMLParser):
    """Collects (data-key, data-value, shown text) of every tagged table cell."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[list[str]] = []
        self._open = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if "data-key" in attributes:
            self.cells.append([attributes["data-key"], attributes["data-value"], ""])
            self._open = True

    def handle_endtag(self, tag: str) -> None:
        self._open = False

    def handle_data(self, data: str) -> None:
        if self._open:
            self.cells[-1][2] += data


def _resolve(document: dict, key: str) -> object:
    """The key scheme: dotted path; inside the "comparison" list, a segment selects the entry by model."""
    node: object = document
    for segment in key.split("."):
        if isinstance(node, list):
            node = next(entry for entry in node if entry["model"] == segment)
        else:
            assert segment in node, key
            node = node[segment]
    return node


def _hourly(symbols: list[str], seed: int = 4) -> pd.DataFrame:
    """Random-walk hourly bars of `symbols` from 2024-01-01 to 2024-03-20 (the predictions' days and 60 before)."""
    ts = pd.date_range("2024-01-01", "2024-03-20 23:00", freq="h", tz="UTC")
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (len(ts), len(symbols))), axis=0))
    frame = pd.DataFrame(close, index=ts, columns=symbols).rename_axis(index="ts", columns="symbol").stack()
    bars = frame.rename("close").reset_index()
    bars["open"] = bars.groupby("symbol")["close"].shift(1).fillna(bars["close"])
    return bars.assign(volume=1.0)


def _payoff(predictions: pd.DataFrame) -> dict:
    return payoff_tables(predictions, daily_panel(_hourly(sorted(predictions["symbol"].unique()))), RankedBookConfig())


@pytest.mark.parametrize("with_backtest", [True, False])
def test_report_is_self_contained_and_shows_the_json_numbers(tmp_path: Path, with_backtest: bool):
    predictions = _predictions()
    metrics = {**evaluate_predictions(predictions), "payoff": _payoff(predictions)}
    backtest, trades = _backtest() if with_backtest else (None, None)
    path = write_report(tmp_path, metrics, predictions, backtest, trades)
    assert path == tmp_path / "report.html" and path.is_file()
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, flags=re.IGNORECASE)
    assert "http://" not in text and "https://" not in text
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    figures = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    expected = {"ic_over_time.png", "roc.png", "calibration.png", "confusion_matrix.png", "win_rate_by_bin.png",
                "payoff_quintiles.png"}
    if with_backtest:
        expected |= {"strategy_equity.png", "cost_sweep.png", "drawdown.png", "pnl_exits.png",
                     "pnl_per_symbol.png", "pnl_per_month.png", "trade_returns.png"}
    assert set(figures) == expected and len(images) == len(expected)

    # Every tagged number equals the JSON value at its path (after a JSON round trip, as the files hold it).
    document = json.loads(json.dumps({**metrics, "backtest": backtest}, allow_nan=False))
    parser = _KeyedCells()
    parser.feed(text)
    for key, value, shown in parser.cells:
        expected_value = _resolve(document, key)
        assert value == repr(expected_value), key
        if not isinstance(expected_value, str):
            assert shown == shown_value(key, expected_value), key
    keys = {key for key, _, _ in parser.cells}
    assert {"comparison.trishula.ic_mean", "comparison.lstm.brier", "per_fold.lstm.4.ic.t_stat"} <= keys
    # What the book is paid: every model's quintiles, spread, legs and book, and the state table.
    assert {"payoff.models.lstm.overall.quintiles.Q1.mean", "payoff.models.trishula.overall.quintiles.spread.t_stat",
            "payoff.models.trishula.overall.quintiles.short_leg.mean", "payoff.models.lstm.overall.book.sharpe",
            "payoff.by_state.trishula.up.verdict", "payoff.models.trishula.half_years.2024-H1.book.return"} <= keys
    # The opening answer repeats headline figures; past it, every value has one cell.
    opening, details = text.split("<h2>Model comparison", 1)
    assert "<h2>Does the stack work on this run?</h2>" in opening
    body = _KeyedCells()
    body.feed(details)
    assert len({key for key, _, _ in body.cells}) == len(body.cells)
    head = _KeyedCells()
    head.feed(opening)
    opening_keys = {key for key, _, _ in head.cells}
    assert {"verdict.ic_mean", "comparison.lstm.paired_t_stat", "comparison.lstm.ic_mean"} <= opening_keys
    assert ("backtest.performance.summary.return" in opening_keys) == with_backtest
    assert ("backtest.performance.cost_sweep.10.sharpe" in opening_keys) == with_backtest
    if with_backtest:  # the strategy opens the report, before the models' evidence
        assert opening.index("<h2>The strategy") < opening.index("<h2>Does the stack work")
    assert any(key.startswith("backtest.") for key in keys) == with_backtest
    if with_backtest:
        assert {"backtest.summary.sharpe", "backtest.summary.sortino", "backtest.exits.stop_loss.pnl",
                "backtest.per_symbol.C1USDT.win_rate", "backtest.per_month.2024-03.return",
                "backtest.benchmark.max_drawdown"} <= keys


def test_a_rewritten_report_leaves_no_figure_of_the_earlier_one(tmp_path: Path):
    predictions = _predictions()
    metrics = evaluate_predictions(predictions)
    backtest, trades = _backtest()
    write_report(tmp_path, metrics, predictions, backtest, trades)
    assert (tmp_path / "figures" / "trade_returns.png").is_file()
    write_report(tmp_path, metrics, predictions, backtest, trades.iloc[:0])  # no trades: no trade-return figure
    figures = {p.name for p in (tmp_path / "figures").glob("*.png")}
    assert "trade_returns.png" not in figures and "strategy_equity.png" in figures
    write_report(tmp_path, metrics, predictions)  # no backtest: only the model figures stay
    assert {p.name for p in (tmp_path / "figures").glob("*.png")} == {
        "ic_over_time.png", "roc.png", "calibration.png", "confusion_matrix.png", "win_rate_by_bin.png"}


def test_the_report_says_what_ran_counts_that_agree_and_draws_no_empty_chart(tmp_path: Path):
    """Issue 34's report fixes: the day counts in one sentence that adds up, "In words" says whether the book made
    money, a model with the same probabilities as another is named in the calibration figure instead of hidden
    under it, the win-rate chart is not drawn when no call reaches a bin, the configuration shows every group."""
    predictions = _predictions()
    # Three classes near a third each: no top probability reaches 0.5, so no call falls in a win-rate bin.
    predictions[["p_sell", "p_hold", "p_buy"]] = predictions[["p_sell", "p_hold", "p_buy"]] * 0.2 + 0.8 / 3
    predictions["score"] = predictions["p_buy"] - predictions["p_sell"]
    last = predictions["date"] >= predictions["date"].max() - pd.Timedelta(days=2)
    predictions.loc[last, ["label", "fwd_ret_3d"]] = [pd.NA, np.nan]  # the last 3 days: no forward return yet
    meta = predictions[predictions["model"] == "trishula"].assign(model="trishula_meta")
    predictions = pd.concat([predictions, meta], ignore_index=True)
    metrics = evaluate_predictions(predictions)
    backtest, _ = _backtest()
    context = {"data": {"symbols": ["C0USDT"], "days": ["2024-01-01", "2024-03-10"], "folds": ["2024-03-01"],
                        "smoke_test": "a smoke test, not evidence: 6 coins."},
               "settings": {"stack": {"anchor": {"to": "blend_parts"}}, "extractors": {"lstm": {"hidden": 8}}}}
    text = write_report(tmp_path, metrics, predictions, backtest, None, context=context).read_text()
    assert ("10 test days scored (2024-03-01 .. 2024-03-10), 7 of them with a known 3-day forward return (the last "
            "3 have none yet); trishula's daily rank IC on") in text
    assert 'data-key="verdict.days" data-value="7">7</span> of those (0 left out' in text
    assert "held positions on 10 days (2024-03-01 .. 2024-03-10" in text
    assert "<b>In words</b>: the book made money after costs: +3.3 % net over 10 days" in text
    assert "This run is a smoke test, not evidence" in text
    assert "trishula = trishula_meta" in text  # one line, named after both
    assert "no call falls in a bin, and no chart is drawn" in text
    assert not (tmp_path / "figures" / "win_rate_by_bin.png").exists()
    assert "<h3>stack</h3>" in text and "<h3>extractors</h3>" in text and "<h3>backtest (as traded)</h3>" in text
    assert "lost money after costs" in strategy_verdict({**backtest["performance"]["summary"], "return": -0.1}, None)


def test_backtest_fractions_show_as_percentages():
    assert shown_value("backtest.summary.return", 0.0324) == "+3.2 %"
    assert shown_value("backtest.performance.summary.max_drawdown", -0.192) == "-19.2 %"
    assert shown_value("backtest.performance.summary.turnover_per_day", 0.386) == "38.6 %"
    assert shown_value("backtest.performance.per_month.2024-03", -0.05) == "-5.0 %"
    assert shown_value("backtest.summary.sharpe", 2.159) == "2.159"
    assert shown_value("backtest.summary.trades", 5) == "5"
    assert shown_value("comparison.trishula.ic_mean", 0.0816) == "0.0816"
    assert shown_value("backtest.summary.return", None) == "—"


def test_format_number():
    assert format_number(None) == "—"
    assert format_number(3.14159265) == "3.142"
    assert format_number(-0.000123456) == "-0.0001235"
    assert format_number(12345.678) == "12,346"
    assert format_number(42) == "42"
    assert format_number(float("nan")) == "—"
