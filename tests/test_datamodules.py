"""The window datamodules serve exactly the windows and labels the folds say, on real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from datamodules import DailySequenceDataModule, HourlyWindowDataModule
from datamodules.windows import WindowDataset, window_end_mask
from features.build import LSTM_FEATURES, TCN_CHANNELS, load_feature_frames
from splits import Normalizer
from splits.artifacts import fold_record
from tests.conftest import compose

FOLD = 5


def _groups(*overrides):
    cfg = compose(*overrides)
    return {k: OmegaConf.to_container(cfg[k]) for k in ("data", "features", "labels", "split")}


@pytest.fixture(scope="module")
def frames():
    g = _groups()
    return load_feature_frames(g["data"], g["features"], g["labels"])


@pytest.fixture(scope="module", params=["daily", "hourly"])
def datamodule(request):
    cls = DailySequenceDataModule if request.param == "daily" else HourlyWindowDataModule
    dm = cls(**_groups(), fold=FOLD, batch_size=32)
    dm.setup("fit")
    return dm


def test_samples_fall_in_their_fold_window_and_end_at_the_decision(datamodule):
    fold, bar = datamodule.fold, datamodule.bar
    for part in ("train", "val", "test"):
        samples = datamodule.samples[part]
        start, end = fold.windows()[part]
        day = samples["window_end"].dt.floor("D")
        assert len(samples) > 50
        assert day.between(start, end).all()
        # The window is the `window` bars ending with the decision bar, never past its close.
        assert (samples["window_end"] + bar == samples["decision_time"]).all()
        assert (samples["window_end"] - samples["window_start"] == (datamodule.window - 1) * bar).all()
    if datamodule.frame_kind == "hourly":
        # One sample per day by default: the window ends with the 23:00 bar, the daily close.
        assert (datamodule.samples["train"]["window_end"].dt.hour == 23).all()


def test_batches_equal_the_normalised_rows_of_each_window(datamodule, frames):
    frame = getattr(frames, datamodule.frame_kind)
    columns = list(datamodule.columns)
    stats = fold_record(datamodule.fold, frames.daily, frames.hourly, LSTM_FEATURES, TCN_CHANNELS)["normalization"]
    expected_stats = Normalizer.from_dict(stats[datamodule.frame_kind])
    np.testing.assert_allclose(datamodule.normalizer.mean_, expected_stats.mean_, rtol=1e-12)
    samples = datamodule.samples["val"]
    x, y = next(iter(datamodule.val_dataloader()))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    if datamodule.frame_kind == "daily":
        assert tuple(x.shape[1:]) == (30, 12)
    else:
        assert tuple(x.shape[1:]) == (6, 168)
    indexed = frame.set_index(["symbol", "ts"])
    for i in (0, 7, len(x) - 1):
        sample = samples.iloc[i]
        rows = indexed.loc[sample["symbol"]].loc[sample["window_start"] : sample["window_end"], columns]
        assert len(rows) == datamodule.window
        want = (rows.to_numpy() - expected_stats.mean_) / expected_stats.scale_
        got = x[i].numpy() if datamodule.frame_kind == "daily" else x[i].numpy().T
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert int(y[i]) == int(indexed.loc[(sample["symbol"], sample["window_end"]), datamodule.label])


def test_every_complete_labelled_window_is_served(datamodule, frames):
    """Independent count: decision rows in the fold part whose whole window exists, is finite, is labelled."""
    frame = getattr(frames, datamodule.frame_kind)
    counted = 0
    for _, rows in frame.groupby("symbol"):
        finite = np.isfinite(rows[list(datamodule.columns)].to_numpy()).all(axis=1)
        run = pd.Series(finite).rolling(datamodule.window).sum().to_numpy() == datamodule.window
        day = rows["ts"].dt.floor("D")
        start, end = datamodule.fold.windows()["train"]
        decision = rows["ts"].dt.hour == 23 if datamodule.frame_kind == "hourly" else True
        keep = run & day.between(start, end).to_numpy() & rows[datamodule.label].notna().to_numpy() & decision
        counted += int(np.sum(keep))
    assert counted == len(datamodule.samples["train"])


def test_hourly_stride_adds_decision_hours():
    dm = HourlyWindowDataModule(**_groups(), fold=FOLD, stride_hours=6)
    dm.setup("fit")
    hours = set(dm.samples["train"]["window_end"].dt.hour)
    assert hours == {5, 11, 17, 23}
    with pytest.raises(ValueError, match="must divide 24"):
        HourlyWindowDataModule(**_groups(), fold=FOLD, stride_hours=5)


def test_unknown_fold_is_refused():
    dm = DailySequenceDataModule(**_groups(), fold=99)
    with pytest.raises(ValueError, match="fold 99 is not among the folds"):
        dm.setup("fit")


def test_windows_are_views_not_copies():
    values = torch.arange(40, dtype=torch.float32).reshape(20, 2)
    ds = WindowDataset(values, torch.tensor([4, 9, 19]), torch.tensor([0, 1, 2]), length=5, channels_first=False)
    assert ds.windows.untyped_storage().data_ptr() == values.untyped_storage().data_ptr()
    x, y = ds.__getitems__([0, 2])
    torch.testing.assert_close(x[1], values[15:20])
    assert y.tolist() == [0, 2]


def test_window_end_mask_respects_symbol_blocks_and_missing_values():
    symbols = np.array(["A"] * 5 + ["B"] * 4)
    values = np.ones((9, 2))
    values[6, 1] = np.nan
    mask = window_end_mask(symbols, values, 3)
    # A: rows 2..4 end full windows; B starts at 5, row 6 is missing, so only windows without it.
    assert mask.tolist() == [False, False, True, True, True, False, False, False, False]
    values[6, 1] = 0.0
    assert window_end_mask(symbols, values, 3).tolist()[5:] == [False, False, True, True]


def test_every_network_input_varies_across_the_fold_samples(datamodule):
    """A channel that is the same at some window step in every train sample is a constant input (SPEC §9):
    the hour of day at step t of a window that always ends at 23:00 was one. Every (channel, step) must vary."""
    train = datamodule.datasets["train"]
    x, _ = train.__getitems__(list(range(len(train))))  # the whole train part as one batch
    steps_last = x if datamodule.channels_first else x.transpose(1, 2)  # (samples, channels, steps)
    spread = steps_last.std(dim=0)  # (channels, steps)
    dead = [(datamodule.columns[c], int(t)) for c, t in (spread == 0).nonzero().tolist()]
    assert not dead, f"inputs constant across {len(x)} train samples (channel, step): {dead[:5]}"
    assert steps_last.shape[1] == len(datamodule.columns)


def test_cross_sectional_windows_hold_each_coins_difference_from_the_hours_mean(frames):
    dm = HourlyWindowDataModule(**_groups(), fold=FOLD, cross_section="demean")
    dm.setup("fit")
    norm = dm.normalizer
    assert norm.cross_section == "demean" and norm.demeaned_ == TCN_CHANNELS
    hourly = frames.hourly
    relative = hourly[list(TCN_CHANNELS)] - hourly.groupby("ts")[list(TCN_CHANNELS)].transform("mean")
    x, _ = next(iter(dm.val_dataloader()))
    sample = dm.samples["val"].iloc[3]
    rows = relative[(hourly["symbol"] == sample["symbol"]).to_numpy()
                    & hourly["ts"].between(sample["window_start"], sample["window_end"]).to_numpy()]
    np.testing.assert_allclose(x[3].numpy().T, (rows.to_numpy() - norm.mean_) / norm.scale_, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="cross_section"):
        DailySequenceDataModule(**_groups(), fold=FOLD, cross_section="zscore")
