"""Walk-forward fold invariants (SPEC §3) and train-only normalisation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import LSTM_FEATURES, TCN_CHANNELS, build_feature_frames
from splits import Fold, Normalizer, make_folds
from splits.artifacts import fold_record, folds_from_config
from tests.conftest import compose

DAY = pd.Timedelta(days=1)
FIRST, LAST = pd.Timestamp("2022-12-01", tz="UTC"), pd.Timestamp("2023-12-31", tz="UTC")


@pytest.fixture(scope="module")
def frames(sample_grid, sample_fear_greed, cfg):
    from omegaconf import OmegaConf

    return build_feature_frames(
        sample_grid, sample_fear_greed, OmegaConf.to_container(cfg.features),
        OmegaConf.to_container(cfg.labels),
    )


@pytest.mark.parametrize("window", ["rolling", "expanding"])
def test_windows_are_ordered_purged_and_sized(window):
    folds = make_folds(FIRST, LAST, window=window)
    assert len(folds) == 13
    for fold in folds:
        if window == "rolling":
            assert (fold.train_end - fold.train_start) // DAY + 1 == 152
        else:
            assert fold.train_start == FIRST
        assert (fold.val_end - fold.val_start) // DAY + 1 == 21
        assert (fold.test_end - fold.test_start) // DAY + 1 == 14
        # Exactly 14 purged days strictly between the windows.
        assert (fold.val_start - fold.train_end) // DAY - 1 == 14
        assert (fold.test_start - fold.val_end) // DAY - 1 == 14
        assert FIRST <= fold.train_start and fold.test_end <= LAST
    starts = [f.test_start for f in folds]
    assert all((b - a) == 14 * DAY for a, b in zip(starts, starts[1:], strict=False))
    assert [f.index for f in folds] == list(range(13))
    # The folds cover the range: one more step would run past the last day.
    assert folds[-1].test_end + 14 * DAY > LAST
    assert folds[0].train_start == FIRST


def test_no_label_window_reaches_the_next_window(frames):
    """Every train row's label window (d, d + H] ends before val starts; val's before test."""
    days = frames.daily["ts"]
    longest = max(frames.horizons)
    for fold in make_folds(days.min(), days.max(), purge_days=longest, longest_horizon_days=longest):
        for earlier, later in (("train", "val"), ("val", "test")):
            rows = days[fold.mask(days, earlier)]
            later_start = fold.windows()[later][0]
            assert len(rows) > 0
            assert (rows + longest * DAY < later_start).all()
        # The windows never share a row.
        masks = [fold.mask(days, part) for part in ("train", "val", "test")]
        assert not (masks[0] & masks[1]).any() and not (masks[1] & masks[2]).any()


def test_purge_shorter_than_the_longest_horizon_is_refused():
    with pytest.raises(ValueError, match="shorter than the longest label horizon"):
        make_folds(FIRST, LAST, purge_days=7, longest_horizon_days=14)


def test_test_dates_restrict_folds_and_keep_their_numbers(frames):
    every = folds_from_config(frames.daily, compose().split, 14)
    some = folds_from_config(
        frames.daily, compose("split.first_test_date=2023-08-01", "split.last_test_date=2023-10-01").split, 14
    )
    in_range = [f.index for f in every if "2023-08-01" <= str(f.test_start.date()) <= "2023-10-01"]
    assert [f.index for f in some] == in_range
    assert [f.test_start for f in some] == [f.test_start for f in every if f.index in {g.index for g in some}]
    assert len(some) == 5


def test_config_purge_defaults_to_the_longest_horizon(frames):
    folds = folds_from_config(frames.daily, compose().split, max(frames.horizons))
    assert {f.purge_days for f in folds} == {14}
    assert {f.purge_days for f in folds_from_config(frames.daily, compose().split, 7)} == {7}
    longer = folds_from_config(frames.daily, compose("split.purge_days=20").split, 14)
    assert {f.purge_days for f in longer} == {20}


def test_the_open_last_fold_holds_the_days_after_the_last_full_test_window():
    closed = make_folds(FIRST, LAST)
    opened = make_folds(FIRST, LAST, open_last_fold=True)
    assert opened[:-1] == closed and opened[-1].index == closed[-1].index + 1
    assert opened[-1].test_start <= LAST < opened[-1].test_end
    # Its train and validation windows, and their labels, are known by its first test day.
    assert opened[-1].val_end + (1 + 14) * DAY <= opened[-1].test_start
    # On the last day of a full window, no fold is open.
    assert make_folds(FIRST, closed[-1].test_end, open_last_fold=True) == closed


def test_fold_round_trips_through_its_record():
    fold = make_folds(FIRST, LAST)[3]
    assert Fold.from_dict(fold.to_dict()) == fold


def test_normalisation_uses_train_rows_only(frames):
    fold = folds_from_config(frames.daily, compose().split, 14)[2]
    record = fold_record(fold, frames.daily, frames.hourly, LSTM_FEATURES, TCN_CHANNELS)
    stats = Normalizer.from_dict(record["normalization"]["daily"])
    train = frames.daily[fold.mask(frames.daily["ts"], "train")]
    np.testing.assert_allclose(stats.mean_, np.nanmean(train[list(LSTM_FEATURES)].to_numpy(), axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.scale_, np.nanstd(train[list(LSTM_FEATURES)].to_numpy(), axis=0), rtol=1e-12)

    # Replacing every non-train row (val, test and later) leaves the statistics as they were.
    outside = ~fold.mask(frames.daily["ts"], "train")
    hourly_outside = ~fold.mask(frames.hourly["ts"].dt.floor("D"), "train")
    daily, hourly = frames.daily.copy(), frames.hourly.copy()
    daily.loc[outside, list(LSTM_FEATURES)] = 1e6
    hourly.loc[hourly_outside, list(TCN_CHANNELS)] = -1e6
    again = fold_record(fold, daily, hourly, LSTM_FEATURES, TCN_CHANNELS)
    assert again["normalization"] == record["normalization"]
    # ... while changing a train row moves them.
    daily.loc[np.flatnonzero(~outside)[0], "close_ret"] = 5.0
    assert fold_record(fold, daily, hourly, LSTM_FEATURES, TCN_CHANNELS)["normalization"] != record["normalization"]
    assert record["rows"]["train"] == int((~outside).sum())


def test_normalizer_transform_and_errors(frames):
    train = np.zeros(len(frames.daily), dtype=bool)
    train[:500] = True
    norm = Normalizer.for_columns(["close_ret", "daily_range"]).fit(
        frames.daily, train
    )
    z = norm.transform(frames.daily[:500])
    np.testing.assert_allclose(np.nanmean(z.to_numpy(), axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.nanstd(z.to_numpy(), axis=0), 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="empty train window"):
        Normalizer.for_columns(["close_ret"]).fit(frames.daily, np.zeros(len(frames.daily), dtype=bool))
    with pytest.raises(RuntimeError, match="before fit"):
        Normalizer.for_columns(["close_ret"]).transform(frames.daily)


def test_cross_sectional_inputs_are_relative_to_their_timestamp_and_point_in_time(frames):
    daily = frames.daily
    fold = folds_from_config(daily, compose().split, 14)[2]
    train = fold.mask(daily["ts"], "train")
    norm = Normalizer.for_columns(LSTM_FEATURES, "demean").fit(daily, train)
    # The market-wide inputs are the same for every coin: taking the day's mean away would zero them.
    assert set(LSTM_FEATURES) - set(norm.demeaned_) == {"market_ret_1d", "fear_greed", "fear_greed_change_7d"}

    z = norm.transform(daily)
    day_means = z.groupby(daily["ts"].to_numpy()).mean()
    for column in norm.demeaned_:
        at = LSTM_FEATURES.index(column)
        # Every day's cross-section sums to the same constant, whatever the market did ...
        np.testing.assert_allclose(day_means[column].dropna(), -norm.mean_[at] / norm.scale_[at], atol=1e-9)
        # ... and what is left is the coin's difference from the day's mean, in train-fit units.
        raw = daily[column]
        expected = (raw - raw.groupby(daily["ts"]).transform("mean") - norm.mean_[at]) / norm.scale_[at]
        np.testing.assert_allclose(z[column], expected, atol=1e-9)
    np.testing.assert_allclose(z["fear_greed"], (daily["fear_greed"] - norm.mean_[10]) / norm.scale_[10])

    # A row depends on its own timestamp's rows only: the history up to a day transforms as in the whole frame.
    early = (daily["ts"] <= daily["ts"].iloc[400]).to_numpy()
    np.testing.assert_array_equal(norm.transform(daily[early]).to_numpy(), z[early].to_numpy())

    # Saved and read back (the artifact's record), it serves the same values; a record written before
    # cross-sectional inputs existed reads as plain standardisation.
    np.testing.assert_array_equal(Normalizer.from_dict(norm.to_dict()).transform(daily).to_numpy(), z.to_numpy())
    plain = Normalizer.for_columns(LSTM_FEATURES).fit(daily, train).to_dict()
    old = {k: plain[k] for k in ("columns", "mean", "scale")}
    np.testing.assert_array_equal(Normalizer.from_dict(old).transform(daily).to_numpy(),
                                  Normalizer.from_dict(plain).transform(daily).to_numpy())
    with pytest.raises(ValueError, match="cross_section must be one of"):
        Normalizer.for_columns(LSTM_FEATURES, "rank")
