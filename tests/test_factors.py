"""The factor baselines (features/factors.py): hand computations, and no data after the decision time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.factors import FACTORS, build_factor_scores


def test_factor_scores_equal_a_hand_computation():
    # Two symbols, 32 days of log returns each; A's are 0.01 * (1..32), B's alternate +-0.02.
    days = pd.date_range("2023-01-01", periods=32, tz="UTC")
    daily = pd.DataFrame({"symbol": np.repeat(["A", "B"], 32), "ts": np.tile(days, 2)})
    a = 0.01 * np.arange(1, 33)
    b = 0.02 * np.where(np.arange(32) % 2 == 0, 1.0, -1.0)
    scores = build_factor_scores(daily, pd.Series(np.concatenate([a, b])))
    assert list(scores.columns) == list(FACTORS)
    first_a, first_b = scores.iloc[:32], scores.iloc[32:]
    # reversal_3d on day 5 (index 4) of A: -(0.03 + 0.04 + 0.05); NaN before 3 returns exist.
    assert np.isnan(first_a["reversal_3d"].iloc[1])
    assert first_a["reversal_3d"].iloc[4] == pytest.approx(-0.12)
    # B's 3-day sums alternate +-0.02 (two of one sign, one of the other).
    assert first_b["reversal_3d"].iloc[2] == pytest.approx(-0.02)
    assert first_b["reversal_3d"].iloc[3] == pytest.approx(0.02)
    # lowvol_30d: minus the sample std of the last 30 returns; A's on day 31 (index 30) are 0.02..0.31.
    assert np.isnan(first_a["lowvol_30d"].iloc[28])
    assert first_a["lowvol_30d"].iloc[30] == pytest.approx(-np.std(a[1:31], ddof=1))
    assert first_b["lowvol_30d"].iloc[31] == pytest.approx(-np.std(b[2:32], ddof=1))
    # mom_30d: the 30-day log return, a sum of the last 30 log returns.
    assert first_a["mom_30d"].iloc[31] == pytest.approx(a[2:32].sum())
    assert first_b["mom_30d"].iloc[29] == pytest.approx(0.0, abs=1e-12)
    # One symbol never feeds the other: B's first 29 rows are NaN whatever A holds.
    assert first_b["lowvol_30d"].iloc[:29].isna().all()


def test_factors_read_nothing_after_the_decision_time(sample_daily):
    """Every return after a cut-off is redrawn: factor values of days before it stay bit-identical, later ones move."""
    daily = sample_daily[["symbol", "ts"]]
    returns = np.log(sample_daily["close"]).groupby(sample_daily["symbol"]).diff()
    cutoff = pd.Timestamp("2023-07-01", tz="UTC")
    after = (sample_daily["ts"] >= cutoff).to_numpy()
    changed = returns.copy()
    changed[after] = np.random.default_rng(3).normal(0.0, 0.05, after.sum())
    clean, perturbed = build_factor_scores(daily, returns), build_factor_scores(daily, changed)
    for factor in FACTORS:
        a, b = clean[factor].to_numpy(), perturbed[factor].to_numpy()
        assert np.array_equal(a[~after], b[~after], equal_nan=True), factor
        assert (a[after] != b[after]).mean() > 0.99, factor


def test_factors_are_built_into_the_daily_frame_but_are_no_model_input(frames_sample):
    frames = frames_sample
    assert frames.columns["factors"] == FACTORS
    assert set(FACTORS) <= set(frames.daily.columns)
    model_inputs = {*frames.columns["lstm"], *frames.columns["tabular"], *frames.columns["regime"]}
    assert not set(FACTORS) & model_inputs
    # After its 30-day warm-up (30 returns need 31 days), every symbol has every factor; before it, none.
    day_number = frames.daily.groupby("symbol").cumcount()
    assert frames.daily.loc[day_number >= 30, list(FACTORS)].notna().all().all()
    assert frames.daily.loc[day_number < 30, "lowvol_30d"].isna().all()


@pytest.fixture(scope="module")
def frames_sample(sample_grid, sample_fear_greed, cfg):
    from omegaconf import OmegaConf

    from features.build import build_feature_frames

    return build_feature_frames(sample_grid, sample_fear_greed, OmegaConf.to_container(cfg.features),
                                OmegaConf.to_container(cfg.labels))
