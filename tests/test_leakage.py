"""No feature may use information after its timestamp (SPEC §3), proven for every column.

All prices and volumes after a cut-off are changed at random (keeping the bars valid), and so is
every Fear & Greed value that is not yet known then. Every feature known at or before the cut-off
must be bit-identical; every feature that is not a pure calendar function must change after it,
so the test can fail. A daily row of day d is known at d + 1 day, an hourly row of hour t at t + 1 h.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from features.build import build_feature_frames
from marketdata import apply_gap_policy
from tests.conftest import ABSOLUTE_LABELS, compose

CALENDAR_COLUMNS = {"dow_sin", "dow_cos"}
CUTOFFS = ["2023-06-15 00:00", "2023-09-03 13:00"]


def _build(hourly_raw, fear_greed, cfg):
    return build_feature_frames(
        apply_gap_policy(hourly_raw, cfg.data.gaps, cfg.data.max_gap_hours),
        fear_greed,
        OmegaConf.to_container(cfg.features),
        OmegaConf.to_container(cfg.labels),
    )


def _perturb(hourly_raw, fear_greed, cutoff, seed):
    rng = np.random.default_rng(seed)
    hourly, fg = hourly_raw.copy(), fear_greed.copy()
    after = (hourly["ts"] >= cutoff).to_numpy()
    # Scale each bar's range, then redraw open and close inside it: the bar stays valid.
    price_factor = np.exp(rng.normal(0.0, 0.05, after.sum()))
    low = hourly.loc[after, "low"].to_numpy() * price_factor
    high = hourly.loc[after, "high"].to_numpy() * price_factor
    for column in ("open", "close"):
        hourly.loc[after, column] = low + rng.uniform(0.0, 1.0, after.sum()) * (high - low)
    hourly.loc[after, "low"], hourly.loc[after, "high"] = low, high
    hourly.loc[after, "volume"] *= np.exp(rng.normal(0.0, 0.7, after.sum()))
    # The value dated d is known once day d has ended: everything dated on or after the day
    # before the cut-off's day may be unknown at the cut-off.
    unknown = (fg["date"] >= (cutoff.tz_localize(None).normalize() - pd.Timedelta(days=1))).to_numpy()
    fg.loc[unknown, "value"] = rng.integers(0, 101, unknown.sum()).astype("float64")
    return hourly, fg


def _values(frame, column):
    return frame[column].to_numpy(dtype="float64", na_value=np.nan)


@pytest.fixture(scope="module", params=CUTOFFS)
def before_and_after(request, sample_hourly_raw, sample_fear_greed, cfg):
    cutoff = pd.Timestamp(request.param, tz="UTC")
    clean = _build(sample_hourly_raw, sample_fear_greed, cfg)
    changed = _build(*_perturb(sample_hourly_raw, sample_fear_greed, cutoff, seed=7), cfg)
    return cutoff, clean, changed


def _feature_columns(frames, kind):
    frame = frames.daily if kind == "daily" else frames.hourly
    exclude = {"symbol", "ts", "is_filled", *frames.label_columns}
    return [c for c in frame.columns if c not in exclude]


@pytest.mark.parametrize("kind", ["daily", "hourly"])
def test_features_known_at_cutoff_are_bit_identical(before_and_after, kind):
    cutoff, clean, changed = before_and_after
    a, b = (clean.daily, changed.daily) if kind == "daily" else (clean.hourly, changed.hourly)
    assert a[["symbol", "ts"]].equals(b[["symbol", "ts"]])
    known_by = pd.Timedelta(days=1) if kind == "daily" else pd.Timedelta(hours=1)
    known = (a["ts"] + known_by <= cutoff).to_numpy()
    assert known.sum() > 500 and (~known).sum() > 500
    columns = _feature_columns(clean, kind)
    leaking = [c for c in columns if not np.array_equal(_values(a, c)[known], _values(b, c)[known], equal_nan=True)]
    assert leaking == [], f"{kind} features change before {cutoff} when only later data changes: {leaking}"
    inert = [
        c for c in columns
        if c not in CALENDAR_COLUMNS and np.array_equal(_values(a, c)[~known], _values(b, c)[~known], equal_nan=True)
    ]
    assert inert == [], f"{kind} features ignore the changed data after {cutoff}: {inert}"


def test_labels_use_only_their_horizon(before_and_after):
    """A label of day d over h days is fixed once close_{d+h} is known, and it moves when that does."""
    cutoff, clean, changed = before_and_after
    last_known_close = (cutoff - pd.Timedelta(days=1)).normalize()  # the day whose close is at or before cutoff
    for horizon in clean.horizons:
        ends = clean.daily["ts"] + pd.Timedelta(days=horizon)
        for column in (f"fwd_ret_{horizon}d", f"label_{horizon}d"):
            a, b = _values(clean.daily, column), _values(changed.daily, column)
            settled = (ends <= last_known_close).to_numpy()
            assert np.array_equal(a[settled], b[settled], equal_nan=True), column
            if column.startswith("fwd_ret"):
                open_ = (ends > last_known_close + pd.Timedelta(days=1)).to_numpy() & np.isfinite(a)
                assert (a[open_] != b[open_]).mean() > 0.99, column


def test_labels_equal_an_independent_computation(sample_hourly_raw, sample_fear_greed):
    """fwd_ret_hd = close(symbol, d + h) / close(symbol, d) - 1 by a date join, class by thresholds
    (the SPEC's absolute labels; tests/test_labels.py checks the relative ones by hand)."""
    frames = _build(sample_hourly_raw, sample_fear_greed, compose(*ABSOLUTE_LABELS))
    daily = frames.daily
    # The day's close is its 23:00 bar's close (the sample's only missing hour is at 13:00).
    last_hour = sample_hourly_raw[sample_hourly_raw["ts"].dt.hour == 23]
    closes = last_hour.set_index([last_hour["symbol"], last_hour["ts"].dt.floor("D")])["close"]
    for horizon, threshold in frames.horizons.items():
        start = closes.reindex(pd.MultiIndex.from_arrays([daily["symbol"], daily["ts"]])).to_numpy()
        end_key = pd.MultiIndex.from_arrays([daily["symbol"], daily["ts"] + pd.Timedelta(days=horizon)])
        end = closes.reindex(end_key).to_numpy()
        expected = end / start - 1
        got = daily[f"fwd_ret_{horizon}d"].to_numpy(dtype="float64", na_value=np.nan)
        np.testing.assert_array_equal(got, expected)
        label = daily[f"label_{horizon}d"]
        assert label.isna().to_numpy().tolist() == np.isnan(expected).tolist()
        finite = np.isfinite(expected)
        klass = np.where(expected[finite] > threshold, 2, np.where(expected[finite] < -threshold, 0, 1))
        np.testing.assert_array_equal(label.to_numpy()[finite].astype(int), klass)
    # The last `horizon` days of every symbol have no label.
    tail = daily.groupby("symbol").tail(14)
    assert tail["label_14d"].isna().all()
    # Measured from the 23:00 hourly close, the hourly labels are the daily labels.
    hourly = frames.hourly[frames.hourly["ts"].dt.hour == 23]
    joined = daily.merge(hourly.assign(ts=hourly["ts"].dt.floor("D")), on=["symbol", "ts"], suffixes=("", "_h"))
    assert len(joined) == len(daily)
    for column in frames.label_columns:
        assert joined[column].equals(joined[f"{column}_h"].rename(column)), column



# -- hourly training windows and market-context inputs (issue 33) ---------------------------------------------------
def test_market_context_is_point_in_time(before_and_after):
    """Each timestamp's cross-sectional mean, dispersion and BTC value of the TCN channels: bit-identical for every
    hour known at the cut-off, changed after it."""
    from datamodules.context import market_context

    cutoff, clean, changed = before_and_after
    columns = list(clean.columns["tcn"])
    a, b = market_context(clean.hourly, columns, "BTCUSDT"), market_context(changed.hourly, columns, "BTCUSDT")
    known = (clean.hourly["ts"] + pd.Timedelta(hours=1) <= cutoff).to_numpy()
    for column in a.columns:
        assert np.array_equal(a[column].to_numpy()[known], b[column].to_numpy()[known], equal_nan=True), column
        assert not np.array_equal(a[column].to_numpy()[~known], b[column].to_numpy()[~known], equal_nan=True), column


@pytest.fixture(scope="module")
def cut_at_validation(sample_hourly_raw, sample_fear_greed, cfg):
    """Fold 5 with a 3-day purge (the shortest its 3-day label allows: the last training label ends at the first
    validation hour), its frames clean and with every bar from that hour on changed."""
    from splits.artifacts import folds_from_config

    groups = {k: OmegaConf.to_container(cfg[k]) for k in ("data", "features", "labels", "split")}
    groups["split"]["purge_days"] = 3
    clean = _build(sample_hourly_raw, sample_fear_greed, cfg)
    [fold] = [f for f in folds_from_config(clean.daily, groups["split"], 14, 3) if f.index == 5]
    changed = _build(*_perturb(sample_hourly_raw, sample_fear_greed, fold.val_start, seed=11), cfg)
    return groups, clean, changed


@pytest.mark.parametrize("kind", ["hourly", "daily"])
def test_training_windows_read_nothing_after_their_labels_end(cut_at_validation, kind):
    """Every training sample (hourly windows at every hour, with market context, cross-sectionally demeaned) is
    bit-identical when all data from the first validation hour on changes: its inputs, its normalisation and its
    label, which ends exactly there. The validation samples, which read that data, change."""
    from datamodules import DailySequenceDataModule, HourlyWindowDataModule

    groups, clean, changed = cut_at_validation
    options = {"market_context": True, "cross_section": "demean", "day_batches": True}
    if kind == "hourly":
        make = lambda frames: HourlyWindowDataModule(**groups, fold=5, stride_hours=1, frames=frames, **options)  # noqa: E731
    else:
        make = lambda frames: DailySequenceDataModule(**groups, fold=5, frames=frames, **options)  # noqa: E731
    a, b = make(clean), make(changed)
    a.setup("fit")
    b.setup("fit")
    pd.testing.assert_frame_equal(a.samples["train"], b.samples["train"])
    assert (a.samples["train"]["decision_time"] + pd.Timedelta(days=3)).max() == a.fold.val_start
    np.testing.assert_array_equal(a.normalizer.mean_, b.normalizer.mean_)
    np.testing.assert_array_equal(a.normalizer.scale_, b.normalizer.scale_)
    train = len(a.datasets["train"])
    last = a.samples["train"]["decision_time"].rank(method="dense", ascending=False) <= 30
    index = sorted(set(range(0, train, 53)) | set(np.flatnonzero(last.to_numpy()).tolist()))
    batch_a, batch_b = a.datasets["train"].__getitems__(index), b.datasets["train"].__getitems__(index)
    for field in ("x", "y", "ret", "group"):
        assert torch.equal(getattr(batch_a, field), getattr(batch_b, field)), field
    val_a = a.datasets["val"].__getitems__(list(range(len(a.datasets["val"]))))
    val_b = b.datasets["val"].__getitems__(list(range(len(b.datasets["val"]))))
    assert not torch.equal(val_a.x, val_b.x) and not torch.equal(val_a.ret, val_b.ret)
