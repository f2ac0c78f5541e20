"""The window datamodules serve exactly the windows and labels the folds say, on real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from datamodules import DailySequenceDataModule, HourlyWindowDataModule
from datamodules.samplers import DayBatchSampler
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
    x, y, *_ = next(iter(datamodule.val_dataloader()))  # a WindowBatch: windows, labels, forward returns, timestamps
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
    x = next(iter(dm.val_dataloader())).x
    sample = dm.samples["val"].iloc[3]
    rows = relative[(hourly["symbol"] == sample["symbol"]).to_numpy()
                    & hourly["ts"].between(sample["window_start"], sample["window_end"]).to_numpy()]
    np.testing.assert_allclose(x[3].numpy().T, (rows.to_numpy() - norm.mean_) / norm.scale_, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="cross_section"):
        DailySequenceDataModule(**_groups(), fold=FOLD, cross_section="zscore")


# -- training recipe (issue 33): intraday training windows, whole-timestamp batches, context, augmentations -----
def test_intraday_training_windows_are_labelled_from_their_own_end_and_val_test_stay_daily(frames):
    daily_dm = HourlyWindowDataModule(**_groups(), fold=FOLD, frames=frames)
    daily_dm.setup("fit")
    dm = HourlyWindowDataModule(**_groups(), fold=FOLD, stride_hours=6, frames=frames)
    dm.setup("fit")
    train = dm.samples["train"]
    assert set(train["window_end"].dt.hour) == {5, 11, 17, 23}
    assert 3.5 * len(daily_dm.samples["train"]) < len(train) <= 4 * len(daily_dm.samples["train"])
    # The served decisions are untouched: the same daily validation and test windows as the default's.
    for part in ("val", "test"):
        pd.testing.assert_frame_equal(dm.samples[part], daily_dm.samples[part])
    # Each window's label is the hourly frame's at its own last bar (its own forward return) ...
    hourly = frames.hourly
    assert (train["label"].to_numpy() == hourly[dm.label].to_numpy()[train["row"].to_numpy()]).all()
    # ... which at 23:00 is the daily label, and at other hours often is not the day's.
    end_of_day = train.assign(day=train["window_end"].dt.floor("D")).merge(
        daily_dm.samples["train"].assign(day=daily_dm.samples["train"]["window_end"].dt.floor("D")),
        on=["symbol", "day"], suffixes=("", "_day"))
    intraday = end_of_day["window_end"].dt.hour != 23
    assert (end_of_day.loc[~intraday, "label"] == end_of_day.loc[~intraday, "label_day"]).all()
    assert (end_of_day.loc[intraday, "label"] != end_of_day.loc[intraday, "label_day"]).mean() > 0.2


def test_training_labels_end_by_the_validation_window_to_the_hour(frames):
    """Hourly windows with a 3-day purge (the shortest the 3-day label allows): every train label ends by
    the first validation hour, and the train part reaches that bound (the last day's windows are kept)."""
    groups = _groups()
    groups["split"]["purge_days"] = 3
    dm = HourlyWindowDataModule(**groups, fold=FOLD, stride_hours=1, frames=frames)
    dm.setup("fit")
    label_end = dm.samples["train"]["decision_time"] + pd.Timedelta(days=3)
    assert label_end.max() == dm.fold.val_start  # the 23:00 window of the last train day: 72 h after its close
    assert set(dm.samples["train"]["window_end"].dt.hour) == set(range(24))
    val_end = dm.samples["val"]["decision_time"] + pd.Timedelta(days=3)
    assert val_end.max() <= dm.fold.test_start


def test_day_batches_hold_whole_timestamps_and_every_window_once(frames):
    objective_groups = _groups()
    dm = HourlyWindowDataModule(**objective_groups, fold=FOLD, stride_hours=6, day_batches=True, batch_size=40,
                                frames=frames)
    dm.setup("fit")
    train = dm.datasets["train"]
    group = train.group.numpy()
    torch.manual_seed(0)
    batches = list(dm.train_dataloader())
    assert all(type(b).__name__ == "WindowBatch" for b in batches)
    seen = np.concatenate([b.group.numpy() for b in batches])
    counts = np.bincount(group)
    # Every window once; each batch's timestamps whole (their every window is in it), about batch_size big.
    assert len(seen) == len(group) and (np.bincount(seen, minlength=len(counts)) == counts).all()
    for batch in batches:
        ids, n = np.unique(batch.group.numpy(), return_counts=True)
        assert (n == counts[ids]).all()
        assert len(batch.group) < 40 + counts.max()
    # Exactly as many batches as the loader says, every epoch: Lightning validates after the last one by its count
    # (one fewer and no epoch would ever be validated).
    assert len(batches) == len(dm.train_dataloader())
    assert all(len(list(dm.train_dataloader())) == len(dm.train_dataloader()) for _ in range(5))
    # The group is the decision time; a fresh order each epoch.
    decision = dm.samples["train"]["decision_time"].to_numpy()
    assert all(len(set(decision[group == g])) == 1 for g in np.unique(batches[0].group.numpy()))
    again = [b.group[0].item() for b in dm.train_dataloader()]
    assert again != [b.group[0].item() for b in batches]
    # A fraction: about that share of the windows, still whole timestamps.
    half = HourlyWindowDataModule(**objective_groups, fold=FOLD, stride_hours=6, day_batches=True, batch_size=40,
                                  train_fraction=0.5, frames=frames)
    half.setup("fit")
    half_batches = list(half.train_dataloader())
    assert len(half_batches) == len(half.train_dataloader())
    taken = np.concatenate([b.group.numpy() for b in half_batches])
    assert 0.5 * len(group) - counts.max() < len(taken) <= 0.5 * len(group) + 1
    with pytest.raises(ValueError, match="too many for whole-timestamp batches"):
        DayBatchSampler(group, batch_size=counts.max() - 1)
    assert (np.bincount(taken, minlength=len(counts))[np.unique(taken)] == counts[np.unique(taken)]).all()


def test_a_train_fraction_draws_a_fresh_share_of_the_windows_each_epoch(frames):
    dm = DailySequenceDataModule(**_groups(), fold=FOLD, train_fraction=0.25, batch_size=64, frames=frames)
    dm.setup("fit")
    n = len(dm.datasets["train"])
    sampler = dm.train_dataloader().sampler
    first, second = list(sampler), list(sampler)
    assert len(first) == len(set(first)) == round(0.25 * n) and len(set(first) ^ set(second)) > 0
    assert sum(len(y) for _, y in dm.train_dataloader()) == round(0.25 * n)


def test_validation_batches_carry_each_windows_forward_return_and_timestamp(datamodule, frames):
    frame = getattr(frames, datamodule.frame_kind)
    samples = datamodule.samples["val"]
    batch = next(iter(datamodule.val_dataloader()))
    n = len(batch.y)
    rows = samples["row"].to_numpy()[:n]
    np.testing.assert_array_equal(batch.ret.numpy(), frame["fwd_ret_3d"].to_numpy(dtype="float32")[rows])
    decision = samples["decision_time"].to_numpy()[:n]
    same = batch.group.numpy()[:, None] == batch.group.numpy()[None, :]
    assert (same == (decision[:, None] == decision[None, :])).all()
    # The default train batches stay plain (x, y) pairs.
    assert type(next(iter(datamodule.train_dataloader()))) is tuple
    assert datamodule.datasets["val"].windows.untyped_storage().data_ptr() == (
        datamodule.datasets["train"].windows.untyped_storage().data_ptr())  # one tensor, viewed


def test_market_context_inputs_are_each_timestamps_cross_section_and_btc(frames):
    dm = HourlyWindowDataModule(**_groups(), fold=FOLD, cross_section="demean", market_context=True, frames=frames)
    dm.setup("fit")
    assert dm.context == {"symbol": "BTCUSDT", "columns": list(TCN_CHANNELS)}
    assert len(dm.input_columns) == 4 * len(TCN_CHANNELS)
    # The context columns are the same for every coin of a timestamp: kept as they are, never demeaned.
    assert set(dm.normalizer.demeaned_) == set(TCN_CHANNELS)
    hourly = frames.hourly
    columns = list(TCN_CHANNELS)
    by_ts = hourly.groupby("ts")
    btc = hourly[hourly["symbol"] == "BTCUSDT"].set_index("ts")[columns]
    sample = dm.samples["val"].iloc[5]
    rows = hourly[(hourly["symbol"] == sample["symbol"]).to_numpy()
                  & hourly["ts"].between(sample["window_start"], sample["window_end"]).to_numpy()]
    expected = {}
    for c in columns:
        expected[f"{c}:xs_mean"] = by_ts[c].mean().reindex(rows["ts"]).to_numpy()
        expected[f"{c}:xs_std"] = by_ts[c].std(ddof=0).reindex(rows["ts"]).to_numpy()
        expected[f"{c}:ref"] = btc[c].reindex(rows["ts"]).to_numpy()
    x = dm.datasets["val"].__getitems__([5]).x[0].numpy().T  # (168, 24)
    norm = dm.normalizer
    for name, values in expected.items():
        j = dm.input_columns.index(name)
        np.testing.assert_allclose(x[:, j] * norm.scale_[j] + norm.mean_[j], values, rtol=1e-4, atol=1e-5)
    # The LSTM's market-wide inputs (one value for every coin) get no context of their own.
    lstm = DailySequenceDataModule(**_groups(), fold=FOLD, market_context=True, frames=frames)
    lstm.setup("fit")
    assert set(LSTM_FEATURES) - set(lstm.context["columns"]) == {"market_ret_1d", "fear_greed", "fear_greed_change_7d"}


def test_augmentations_change_only_training_windows_and_keep_what_they_promise(frames):
    from datamodules.augment import Augment, time_warp

    x = torch.randn(4, 3, 50)
    torch.testing.assert_close(time_warp(x, torch.ones(4)), x)
    warped = time_warp(x, torch.tensor([0.9, 1.1, 0.95, 1.05]))
    torch.testing.assert_close(warped[..., -1], x[..., -1], rtol=0, atol=0)  # the last step, the label's, exact
    assert not torch.allclose(warped[..., :-1], x[..., :-1])

    augment = Augment(scale=0.3, scale_channels=["residual_1h", "price_spread"], warp=0.0, mix=1.0)
    dm = HourlyWindowDataModule(**_groups(), fold=FOLD, augment=augment, frames=frames)
    plain = HourlyWindowDataModule(**_groups(), fold=FOLD, frames=frames)
    dm.setup("fit")
    plain.setup("fit")
    index = list(range(0, 600, 7))
    torch.manual_seed(0)
    batch = dm.datasets["train"].__getitems__(index)
    x0, _ = plain.datasets["train"].__getitems__(index)
    target = batch.target
    torch.testing.assert_close(target.sum(1), torch.ones(len(index)))
    lam = target.gather(1, batch.y[:, None])[:, 0]  # the own class's weight (>= 0.5 unless both share a class)
    assert (lam >= 0.5 - 1e-6).all() and (target.max(1).values >= 0.5).all()
    # Unscaled channels are the mix of the window and its partner, a window of another coin at the same hour.
    unscaled = [dm.input_columns.index(c) for c in TCN_CHANNELS if c not in ("residual_1h", "price_spread")]
    assert not torch.allclose(batch.x[:, unscaled], x0[:, unscaled])
    partners = dm.datasets["train"].partners(torch.tensor(index))
    group = dm.datasets["train"].group
    assert (group[partners] == group[torch.tensor(index)]).all() and (partners != torch.tensor(index)).any()
    # Validation and test windows are never augmented.
    for part in ("val", "test"):
        every = list(range(len(dm.datasets[part])))
        torch.testing.assert_close(dm.datasets[part].__getitems__(every).x, plain.datasets[part].__getitems__(every).x)


def test_magnitude_scaling_scales_the_raw_values_of_the_chosen_channels(frames):
    from datamodules.augment import Augment

    augment = Augment(scale=0.5, scale_channels=["residual_1h"])
    dm = HourlyWindowDataModule(**_groups(), fold=FOLD, augment=augment, frames=frames)
    dm.setup("fit")
    index = list(range(0, 300, 11))
    torch.manual_seed(1)
    x = dm.datasets["train"].__getitems__(index).x
    torch.manual_seed(1)
    factor = torch.exp(0.5 * torch.randn(len(index), 1, 1))[:, 0]  # the draw the augmentation makes
    x0 = dm.datasets["train"]._x(torch.tensor(index))
    j, norm = dm.input_columns.index("residual_1h"), dm.normalizer
    raw, raw0 = x[:, j] * norm.scale_[j] + norm.mean_[j], x0[:, j] * norm.scale_[j] + norm.mean_[j]
    torch.testing.assert_close(raw, factor * raw0, rtol=1e-4, atol=1e-6)
    others = [i for i in range(len(dm.input_columns)) if i != j]
    torch.testing.assert_close(x[:, others], x0[:, others], rtol=0, atol=0)


def test_other_horizons_labels_ride_with_the_train_windows_and_end_by_the_validation_window(frames):
    """aux_labels: each train window carries its class of each label (the frame's, at its own end), IGNORE where it
    is unknown or its horizon reaches past the first validation hour; validation and test stay as they were."""
    from datamodules.windows import IGNORE

    groups = _groups()
    groups["split"]["purge_days"] = 3  # the 3-day label's shortest purge: the 7-day label of late windows reaches on
    dm = HourlyWindowDataModule(**groups, fold=FOLD, stride_hours=6, aux_labels=["label_1d", "label_7d"],
                                frames=frames)
    dm.setup("fit")
    train = dm.samples["train"]
    rows = train["row"].to_numpy()
    for name, days in (("label_1d", 1), ("label_7d", 7)):
        value = frames.hourly[name].to_numpy(dtype="float64", na_value=np.nan)[rows]
        reaches = (train["decision_time"] + pd.Timedelta(days=days) > dm.fold.val_start).to_numpy()
        known = np.isfinite(value) & ~reaches
        np.testing.assert_array_equal(train[name].to_numpy()[known], value[known].astype("int64"))
        assert (train[name].to_numpy()[~known] == IGNORE).all()
        assert known.mean() > 0.9
    # The 7-day label of the last 4 train days' windows reaches into validation; the 1-day label is always known
    # where the 3-day one is.
    assert (train["label_7d"] == IGNORE).sum() > 0 == (train["label_1d"] == IGNORE).sum()
    batch = next(iter(dm.train_dataloader()))
    assert type(batch).__name__ == "WindowBatch" and batch.aux.shape == (len(batch.y), 2)
    assert set(np.unique(batch.aux.numpy())) <= {IGNORE, 0, 1, 2}
    assert dm.datasets["train"].aux.shape == (len(train), 2)
    picked = dm.datasets["train"].__getitems__([0, 7, len(train) - 1])
    np.testing.assert_array_equal(picked.aux.numpy(), train[["label_1d", "label_7d"]].to_numpy()[[0, 7, -1]])
    assert dm.datasets["val"].aux is None and dm.datasets["test"].aux is None
    # The primary label's samples are those of the plain datamodule: the aux labels drop no window.
    plain = HourlyWindowDataModule(**groups, fold=FOLD, stride_hours=6, frames=frames)
    plain.setup("fit")
    for part in ("train", "val", "test"):
        assert (plain.samples[part]["row"].to_numpy() == dm.samples[part]["row"].to_numpy()).all()
    with pytest.raises(ValueError, match="primary label"):
        DailySequenceDataModule(**groups, fold=FOLD, aux_labels=["label_3d"], frames=frames)
    with pytest.raises(ValueError, match="not labels the labels config builds"):
        DailySequenceDataModule(**groups, fold=FOLD, aux_labels=["label_2d"], frames=frames).setup("fit")
    from datamodules.augment import Augment
    with pytest.raises(ValueError, match="mix"):
        DailySequenceDataModule(**groups, fold=FOLD, aux_labels=["label_1d"], augment=Augment(mix=0.5), frames=frames)


@pytest.mark.parametrize("cls", [DailySequenceDataModule, HourlyWindowDataModule])
def test_a_scaled_train_target_is_each_coins_move_in_its_own_volatility_and_validation_keeps_the_return(frames, cls):
    """train_target=scaled: a train window's ranking target is its forward return less its timestamp's mean over
    the train windows, over its coin's trailing residual volatility (30 days of the residual return, per day)
    x sqrt(3), known at the window's end; validation and test keep the raw forward return."""
    dm = cls(**_groups(), fold=FOLD, day_batches=True, train_target="scaled", frames=frames)
    dm.setup("fit")
    plain = cls(**_groups(), fold=FOLD, day_batches=True, frames=frames)
    plain.setup("fit")
    frame = getattr(frames, dm.frame_kind)
    train = dm.samples["train"]
    scaled, raw = dm.datasets["train"].ret.numpy(), plain.datasets["train"].ret.numpy()
    np.testing.assert_array_equal(dm.datasets["val"].ret.numpy(), plain.datasets["val"].ret.numpy())
    per_day = 24 if dm.frame_kind == "hourly" else 1
    column = "residual_1h" if per_day == 24 else "residual_1d"
    day = train["decision_time"].iloc[len(train) // 2]  # one timestamp, by hand
    at = np.flatnonzero((train["decision_time"] == day).to_numpy())
    assert len(at) >= 4
    rows = train["row"].to_numpy()[at]
    for i, row in zip(at, rows, strict=True):
        symbol = frame["symbol"].iloc[row]
        history = frame[column].iloc[row - 30 * per_day + 1: row + 1]
        assert (frame["symbol"].iloc[row - 30 * per_day + 1: row + 1] == symbol).all()
        expected = (raw[i] - raw[at].mean()) / (history.std() * np.sqrt(per_day) * np.sqrt(3))
        assert scaled[i] == pytest.approx(expected, rel=1e-4)
    # The order within a day changes (a calm coin's small move can outrank a wild coin's larger one).
    assert not (np.argsort(scaled[at]) == np.argsort(raw[at])).all()
    with pytest.raises(ValueError, match="train_target"):
        cls(**_groups(), fold=FOLD, train_target="sharpe", frames=frames)
    with pytest.raises(ValueError, match="day_batches"):
        cls(**_groups(), fold=FOLD, train_target="scaled", frames=frames)


def test_a_volatility_neutral_target_is_the_books_residual_rank_of_the_return_per_timestamp(frames):
    """datamodules.targets.volatility_neutral on long arrays equals backtest.ranked's residual ranks (the book's
    neutralize: volatility) on the same days x coins frame, and holds nothing linear in the volatility's rank."""
    from backtest.ranked import _residual_ranks
    from datamodules.targets import volatility_neutral

    daily = frames.daily[["symbol", "ts", "fwd_ret_3d", "volatility_30d"]]
    group = pd.factorize(daily["ts"])[0]
    ret, vol = daily["fwd_ret_3d"].to_numpy(), daily["volatility_30d"].to_numpy()
    long = volatility_neutral(ret, group, vol)
    wide = _residual_ranks(daily.pivot(index="ts", columns="symbol", values="fwd_ret_3d"),
                           daily.pivot(index="ts", columns="symbol", values="volatility_30d"))
    expected = wide.stack().dropna().rename("expected").reset_index()
    got = daily.assign(got=long).merge(expected, on=["ts", "symbol"])
    assert len(got) == np.isfinite(long).sum() > 2000
    np.testing.assert_allclose(got["got"], got["expected"], atol=1e-6)
    both = np.isfinite(long)
    frame = pd.DataFrame({"g": group[both], "r": long[both],
                          "v": pd.Series(vol[both]).groupby(group[both]).rank(pct=True).to_numpy()})
    covariance = frame.groupby("g").apply(lambda d: ((d.r - d.r.mean()) * (d.v - d.v.mean())).sum(),
                                          include_groups=False)
    assert covariance.abs().max() < 1e-6
