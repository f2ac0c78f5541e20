"""Window datamodules for one walk-forward fold.

A sample is (symbol, decision row): the `window` rows of that symbol ending at the decision row,
and the label measured from the decision row's close. Its decision time is the row's close (a
daily row d at d + 1 day, an hourly row t at t + 1 h), so the window never reaches past it. The
fold part (train / val / test) of a sample is the UTC day of its decision row, as in
`splits.walkforward`. Features are standardised with statistics fit on the fold's train rows,
optionally after taking away each timestamp's cross-sectional mean (`cross_section`, see
`splits.Normalizer`).
"""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from datamodules.windows import WindowDataset, window_end_mask
from features.build import FeatureFrames, label_horizon_days, load_feature_frames
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
        self.fold: Fold | None = None
        self.normalizer: Normalizer | None = None
        self.dataset = ""  # the frames' data lineage, known after setup
        self.samples: dict[str, pd.DataFrame] = {}
        self.datasets: dict[str, WindowDataset] = {}

    # -- what subclasses choose -------------------------------------------------------------
    def decision_rows(self, frame: pd.DataFrame) -> np.ndarray:
        return np.ones(len(frame), dtype=bool)

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
        folds = folds_from_config(frames.daily, self.cfg["split"], max(frames.horizons), label_horizon_days(self.label))
        chosen = [f for f in folds if f.index == self.fold_index]
        if not chosen:
            raise ValueError(
                f"fold {self.fold_index} is not among the folds the split config produces "
                f"({[f.index for f in folds]})"
            )
        self.fold = chosen[0]
        days = frame["ts"].dt.floor("D")
        self.normalizer = Normalizer.for_columns(self.columns, self.cross_section).fit(
            frame, self.fold.mask(days, "train"))
        values = np.array(self.normalizer.transform(frame), dtype=np.float32)  # a writable copy
        label = frame[self.label]
        usable = (
            window_end_mask(frame["symbol"].to_numpy(), values, self.window)
            & self.decision_rows(frame)
            & label.notna().to_numpy()
        )
        device = self._target_device()
        values_t = torch.from_numpy(values).to(device)
        # The timestamps as their tz-aware array: indexing it keeps the dtype, where .to_numpy() would first box
        # every hourly row into a Timestamp object (about 2 s a call on the full data, six calls a fit); each column
        # is read once for the three parts.
        ts, symbols, labels = frame["ts"].array, frame["symbol"].to_numpy(), label.to_numpy()
        for part in PARTS:
            ends = np.flatnonzero(usable & self.fold.mask(days, part))
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
            self.datasets[part] = WindowDataset(
                values_t,
                torch.from_numpy(ends).to(device),
                torch.tensor(self.samples[part]["label"].to_numpy(), device=device),
                self.window,
                self.channels_first,
            )

        # The feature frames leave many long-lived Python objects behind; freezing them keeps the
        # garbage collector, which Lightning's per-step logging triggers, from rescanning them
        # every step (about 10% of an LSTM training step on CPU, benchmarks/extractors.py).
        gc.collect()
        gc.freeze()

    def teardown(self, stage: str) -> None:
        # Hand the frozen objects back to the collector: a process that trains many folds (the main
        # job) must be able to free each fold's cycles, and frozen objects are never finalised at exit.
        gc.unfreeze()

    def train_class_counts(self) -> np.ndarray:
        return np.bincount(self.samples["train"]["label"].to_numpy(), minlength=3)

    # -- loaders ------------------------------------------------------------------------------
    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        on_device = self.datasets[part].windows.device.type != "cpu"
        return DataLoader(
            self.datasets[part],
            batch_size=self.batch_size if part == "train" else self.eval_batch_size,
            shuffle=shuffle,
            collate_fn=WindowDataset.collate_fn,
            # Batches gathered on the GPU need no worker processes.
            num_workers=0 if on_device else self.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        # Shuffling mixes samples inside the train window only; the windows themselves stay in time order.
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class DailySequenceDataModule(FoldWindowDataModule):
    """LSTM samples: the `window` (30) daily rows ending at each decision day, (batch, 30, 12)."""

    frame_kind = "daily"
    column_set = "lstm"
    channels_first = False
    bar = pd.Timedelta(days=1)

    def __init__(self, *args, window: int = 30, **kwargs):
        super().__init__(*args, window=window, **kwargs)


class HourlyWindowDataModule(FoldWindowDataModule):
    """TCN samples: the `window` (168) hourly rows ending at each decision hour, (batch, 6, 168).

    By default one sample per day, ending with the 23:00 bar (the daily close: the TCN embedding of
    day d is point in time for day d); `stride_hours` 1, 2, 3, 4, 6, 8 or 12 adds decision hours
    ending at 23:00 - k * stride.
    """

    frame_kind = "hourly"
    column_set = "tcn"
    channels_first = True
    bar = pd.Timedelta(hours=1)

    def __init__(self, *args, window: int = 168, stride_hours: int = 24, **kwargs):
        if stride_hours < 1 or 24 % stride_hours:
            raise ValueError(f"stride_hours must divide 24, got {stride_hours}")
        super().__init__(*args, window=window, **kwargs)
        self.stride_hours = stride_hours

    def decision_rows(self, frame: pd.DataFrame) -> np.ndarray:
        return ((frame["ts"].dt.hour.to_numpy() + 1) % self.stride_hours) == 0
