"""Window datamodules for one walk-forward fold.

A sample is (symbol, decision row): the `window` rows of that symbol ending at the decision row,
and the label measured from the decision row's close. Its decision time is the row's close (a
daily row d at d + 1 day, an hourly row t at t + 1 h), so the window never reaches past it. The
fold part (train / val / test) of a sample is the UTC day of its decision row, as in
`splits.walkforward`, and a sample is kept only if its label ends by the next part's first hour
(purged by the label's horizon in hours: an intraday training window's label ends earlier than the
day's close's, so this drops nothing the day purge keeps, and it states the rule). Features are
standardised with statistics fit on the fold's train rows, optionally after taking away each
timestamp's cross-sectional mean (`cross_section`, see `splits.Normalizer`).

Training-recipe options (issue 33), all off by default: market-context inputs (`market_context`,
datamodules/context.py), batches of whole decision timestamps (`day_batches`, for a listwise loss),
a random share of the train windows per epoch (`train_fraction`), train-only augmentations
(`augment`, datamodules/augment.py), for the TCN intraday training windows (`stride_hours`), and other
horizons' labels beside the primary one for heads that learn them (`aux_labels`: a train window's class of
each, IGNORE where it is unknown or would end past the validation window's first hour), and what a listwise
loss ranks the train windows by (`train_target`: the forward return; `scaled`: the forward return less its
timestamp's mean over the coins, over the coin's trailing residual volatility x sqrt(horizon), so a wild coin's
move counts in its own units, as the label classes it; `volatility_neutral`: the forward return's rank at its
timestamp less its least-squares fit on the rank of that volatility, what the return holds beyond the
low-volatility factor, as the book's `neutralize: volatility` ranks the score).
Validation and test samples stay the daily decision rows that are served and stacked.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from datamodules.augment import Augment
from datamodules.context import coin_specific, context_names, input_frame
from datamodules.samplers import DayBatchSampler, FractionSampler
from datamodules.targets import TRAIN_TARGETS, scaled, volatility_neutral
from datamodules.windows import IGNORE, WindowDataset, window_end_mask
from features.build import FeatureFrames, label_horizon_days, load_feature_frames
from features.rolling import trailing
from splits import Fold, Normalizer
from splits.artifacts import folds_from_config

PARTS = ("train", "val", "test")


class FoldWindowDataModule(L.LightningDataModule):
    """Builds the feature frames, picks fold `fold` and serves windows of `columns`.

    data / features / labels / split are the Hydra config groups of the same names, so the
    datamodule sees exactly the data and folds the main job does. On a GPU (`device: auto` with a
    CUDA trainer) the fold's tensors live on the device and batches are gathered there.
    """

    frame_kind: str = ""
    column_set: str = ""  # which of FeatureFrames.columns the windows hold, unless `columns` is given
    channels_first: bool = False
    bar: pd.Timedelta = pd.Timedelta(0)
    # The coin's trailing residual volatility (train_target scaled and volatility_neutral): the std of this per-bar
    # residual log return (coin less market) over `volatility_bars` bars, per day (x sqrt(bars a day)).
    residual_column: str = ""
    volatility_bars: int = 0
    bars_per_day: int = 1

    def __init__(
        self,
        data: Mapping,
        features: Mapping,
        labels: Mapping,
        split: Mapping,
        fold: int,
        window: int,
        columns: Sequence[str] | None = None,
        batch_size: int = 256,
        eval_batch_size: int = 1024,
        num_workers: int = 0,
        device: str = "auto",
        cross_section: str = "none",
        market_context: bool = False,
        context_symbol: str = "BTCUSDT",
        day_batches: bool = False,
        train_fraction: float = 1.0,
        augment: Augment | None = None,
        aux_labels: Sequence[str] = (),
        train_target: str = "return",
        frames: FeatureFrames | None = None,
    ):
        super().__init__()
        self.prebuilt_frames = frames  # the caller's frames, built from the same config (the main job)
        self.cfg = {"data": dict(data), "features": dict(features), "labels": dict(labels), "split": dict(split)}
        self.fold_index, self.window = int(fold), int(window)
        self.columns: tuple[str, ...] | None = None if columns is None else tuple(columns)
        self.batch_size, self.eval_batch_size, self.num_workers, self.device = (
            batch_size, eval_batch_size, num_workers, device,
        )
        self.label = self.cfg["labels"]["primary"]
        Normalizer.for_columns((), cross_section)  # a bad value fails here, before the frames are built
        self.cross_section = cross_section
        if not 0 < train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
        self.market_context, self.context_symbol = bool(market_context), context_symbol
        self.day_batches, self.train_fraction = bool(day_batches), float(train_fraction)
        self.augment = augment if augment is not None and augment.enabled else None
        self.aux_labels = tuple(aux_labels)
        if train_target not in TRAIN_TARGETS:
            raise ValueError(f"train_target must be one of {TRAIN_TARGETS}, got {train_target!r}")
        self.train_target = train_target
        if train_target != "return" and not self.day_batches:
            raise ValueError(f"train_target={train_target} is what a listwise loss ranks: it needs day_batches=true")
        if self.label in self.aux_labels:
            raise ValueError(f"aux_labels {list(self.aux_labels)} repeat the primary label {self.label}")
        if self.aux_labels and self.augment is not None and self.augment.mix > 0:
            raise ValueError("augment.mix mixes the primary label only: it cannot be used with aux_labels")
        self.context: dict | None = None  # {"symbol", "columns"}: the inputs given market context, after setup
        self.input_columns: tuple[str, ...] = ()  # what the net reads: `columns`, then their context columns
        self.fold: Fold | None = None
        self.normalizer: Normalizer | None = None
        self.dataset = ""  # the frames' data lineage, known after setup
        self.samples: dict[str, pd.DataFrame] = {}
        self.datasets: dict[str, WindowDataset] = {}

    # -- what subclasses choose -------------------------------------------------------------
    def decision_rows(self, frame: pd.DataFrame) -> np.ndarray:
        """The rows validation and test windows end at (the served decisions)."""
        return np.ones(len(frame), dtype=bool)

    def train_rows(self, frame: pd.DataFrame) -> np.ndarray:
        """The rows training windows end at."""
        return self.decision_rows(frame)

    @property
    def train_extras(self) -> bool:
        """Train batches carry forward returns and decision-time groups (a listwise loss, coin mixing)."""
        return self.day_batches or self.augment is not None or bool(self.aux_labels)

    # -- set-up -------------------------------------------------------------------------------
    def _frames(self) -> FeatureFrames:
        if self.prebuilt_frames is not None:
            return self.prebuilt_frames
        return load_feature_frames(self.cfg["data"], self.cfg["features"], self.cfg["labels"])

    def _target_device(self) -> torch.device:
        if self.device != "auto":
            return torch.device(self.device)
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        frames = self._frames()
        self.dataset = frames.dataset
        frame = getattr(frames, self.frame_kind)
        if self.columns is None:
            self.columns = frames.columns[self.column_set]
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{self.frame_kind} features {missing} are not built by the features config")
        unbuilt = [c for c in self.aux_labels if c not in frames.label_columns or not c.startswith("label_")]
        if unbuilt:
            raise ValueError(f"aux_labels {unbuilt} are not labels the labels config builds ({frames.label_columns})")
        folds = folds_from_config(frames.daily, self.cfg["split"], max(frames.horizons), label_horizon_days(self.label))
        chosen = [f for f in folds if f.index == self.fold_index]
        if not chosen:
            raise ValueError(
                f"fold {self.fold_index} is not among the folds the split config produces "
                f"({[f.index for f in folds]})"
            )
        self.fold = chosen[0]
        days = frame["ts"].dt.floor("D")
        train_days = self.fold.mask(days, "train")
        inputs = frame
        if self.market_context:
            self.context = {"symbol": self.context_symbol,
                            "columns": coin_specific(frame, self.columns, train_days)}
            inputs = input_frame(frame, self.columns, self.context)
        self.input_columns = (*self.columns, *context_names(self.context["columns"] if self.context else ()))
        self.normalizer = Normalizer.for_columns(self.input_columns, self.cross_section).fit(inputs, train_days)
        values = np.array(self.normalizer.transform(inputs), dtype=np.float32)  # a writable copy
        del inputs
        label = frame[self.label]
        usable = (
            window_end_mask(frame["symbol"].to_numpy(), values, self.window)
            & label.notna().to_numpy()
        )
        decisions = self.decision_rows(frame)
        part_rows = {"train": self.train_rows(frame), "val": decisions, "test": decisions}
        device = self._target_device()
        values_t = torch.from_numpy(values).to(device)
        # The timestamps as their tz-aware array: indexing it keeps the dtype, where .to_numpy() would first box
        # every hourly row into a Timestamp object (about 2 s a call on the full data, six calls a fit); each column
        # is read once for the three parts.
        ts, symbols, labels = frame["ts"].array, frame["symbol"].to_numpy(), label.to_numpy()
        horizon = pd.Timedelta(days=label_horizon_days(self.label))
        forward = frame[f"fwd_ret_{horizon.days}d"].to_numpy(dtype="float32", na_value=np.nan)
        # Purge by the label's hours: a part's labels end by the next part's first hour (test: nothing after it).
        label_ends_by = {"train": self.fold.val_start, "val": self.fold.test_start, "test": None}
        for part in PARTS:
            ends = np.flatnonzero(usable & part_rows[part] & self.fold.mask(days, part))
            if label_ends_by[part] is not None:
                ends = ends[np.asarray(ts[ends] + self.bar + horizon <= label_ends_by[part])]
            self.samples[part] = pd.DataFrame(
                {
                    "symbol": symbols[ends],
                    "window_start": ts[ends - (self.window - 1)],
                    "window_end": ts[ends],
                    "decision_time": ts[ends] + self.bar,
                    "label": labels[ends].astype("int64"),
                    "row": ends,
                }
            )
            extras = {}
            if part == "train" and self.aux_labels:
                aux = self._aux_classes(frame, ends, ts, label_ends_by[part])  # (samples, H)
                self.samples[part] = self.samples[part].assign(**dict(zip(self.aux_labels, aux.T, strict=True)))
                extras["aux"] = torch.from_numpy(aux).to(device)
            if part != "train" or self.train_extras:
                # Forward returns rank a timestamp's coins (the daily rank IC, a listwise loss); the group names it.
                group = pd.factorize(self.samples[part]["decision_time"])[0]
                ret = forward[ends]
                if part == "train" and self.train_target != "return":
                    volatility = self._volatility(frame, ends)
                    ret = (scaled(ret, group, volatility, horizon.days) if self.train_target == "scaled"
                           else volatility_neutral(ret, group, volatility))
                extras |= {"ret": torch.from_numpy(ret).to(device), "group": torch.from_numpy(group).to(device)}
            augment = None
            if part == "train" and self.augment is not None:
                augment = self.augment.bind(self.input_columns, self.normalizer.mean_, self.normalizer.scale_, device)
            self.datasets[part] = WindowDataset(
                values_t,
                torch.from_numpy(ends).to(device),
                torch.tensor(self.samples[part]["label"].to_numpy(), device=device),
                self.window,
                self.channels_first,
                augment=augment,
                **extras,
            )

        # The feature frames leave many long-lived Python objects behind; freezing them keeps the
        # garbage collector, which Lightning's per-step logging triggers, from rescanning them
        # every step (about 10% of an LSTM training step on CPU, benchmarks/extractors.py).
        gc.collect()
        gc.freeze()

    def _volatility(self, frame: pd.DataFrame, ends: np.ndarray) -> np.ndarray:
        """(samples,) each window's coin's trailing daily residual volatility, known at its end (NaN: too short)."""
        std = trailing(frame[self.residual_column], frame["symbol"], self.volatility_bars, "std").to_numpy()
        return std[ends] * np.sqrt(self.bars_per_day)

    def _aux_classes(self, frame: pd.DataFrame, ends: np.ndarray, ts, ends_by: pd.Timestamp) -> np.ndarray:
        """(samples, H) int64: each window's class of each aux label, IGNORE where it is missing or its horizon
        ends after `ends_by` (a longer label than the primary, which the part's purge does not cover)."""
        out = np.full((len(ends), len(self.aux_labels)), IGNORE, dtype="int64")
        for k, name in enumerate(self.aux_labels):
            value = frame[name].to_numpy(dtype="float64", na_value=np.nan)[ends]
            in_time = np.asarray(ts[ends] + self.bar + pd.Timedelta(days=label_horizon_days(name)) <= ends_by)
            known = np.isfinite(value) & in_time
            out[known, k] = value[known].astype("int64")
        return out

    def teardown(self, stage: str) -> None:
        # Hand the frozen objects back to the collector: a process that trains many folds (the main
        # job) must be able to free each fold's cycles, and frozen objects are never finalised at exit.
        gc.unfreeze()

    def train_class_counts(self) -> np.ndarray:
        return np.bincount(self.samples["train"]["label"].to_numpy(), minlength=3)

    # -- loaders ------------------------------------------------------------------------------
    def _loader(self, part: str, **sampling) -> DataLoader:
        """A loader of `part`'s windows, batched as `sampling` says (batch_size / shuffle / sampler / batch_sampler)."""
        dataset = self.datasets[part]
        # Batches gathered on the GPU need no worker processes.
        workers = 0 if dataset.windows.device.type != "cpu" else self.num_workers
        return DataLoader(dataset, collate_fn=WindowDataset.collate_fn, num_workers=workers, **sampling)

    def train_dataloader(self) -> DataLoader:
        # Shuffling mixes samples inside the train window only; the windows themselves stay in time order.
        dataset = self.datasets["train"]
        if self.day_batches:
            if self.trainer is not None and self.trainer.world_size > 1:
                raise ValueError("day_batches trains in one process: DDP would split its timestamps")
            sampler = DayBatchSampler(dataset.group.cpu().numpy(), self.batch_size, self.train_fraction)
            return self._loader("train", batch_sampler=sampler)
        if self.train_fraction < 1:
            return self._loader("train", batch_size=self.batch_size,
                                sampler=FractionSampler(len(dataset), self.train_fraction))
        return self._loader("train", batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", batch_size=self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", batch_size=self.eval_batch_size)


class DailySequenceDataModule(FoldWindowDataModule):
    """LSTM samples: the `window` (30) daily rows ending at each decision day, (batch, 30, 12)."""

    frame_kind = "daily"
    column_set = "lstm"
    channels_first = False
    bar = pd.Timedelta(days=1)
    residual_column, volatility_bars, bars_per_day = "residual_1d", 30, 1

    def __init__(self, *args, window: int = 30, **kwargs):
        super().__init__(*args, window=window, **kwargs)


class HourlyWindowDataModule(FoldWindowDataModule):
    """TCN samples: the `window` (168) hourly rows ending at each decision hour, (batch, 6, 168).

    One sample per day, ending with the 23:00 bar (the daily close: the TCN embedding of day d is point
    in time for day d). `stride_hours` 1, 2, 3, 4, 6, 8 or 12 adds TRAINING windows ending at
    23:00 - k * stride, each labelled from its own end (the hourly frame's labels: the coin's forward
    return from that hour's close over the label's horizon, relative to the market over the same hours
    and classed against the coin's volatility at that hour, as the daily label is; at 23:00 it is the
    daily label); validation and test keep the daily decisions.
    """

    frame_kind = "hourly"
    column_set = "tcn"
    channels_first = True
    bar = pd.Timedelta(hours=1)
    residual_column, volatility_bars, bars_per_day = "residual_1h", 30 * 24, 24

    def __init__(self, *args, window: int = 168, stride_hours: int = 24, **kwargs):
        if stride_hours < 1 or 24 % stride_hours:
            raise ValueError(f"stride_hours must divide 24, got {stride_hours}")
        super().__init__(*args, window=window, **kwargs)
        self.stride_hours = stride_hours

    def decision_rows(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["ts"].dt.hour.to_numpy() == 23

    def train_rows(self, frame: pd.DataFrame) -> np.ndarray:
        return ((frame["ts"].dt.hour.to_numpy() + 1) % self.stride_hours) == 0
