"""Per-fold datamodules: 30-day daily sequences for the LSTM, 168-hour windows for the TCN."""

from datamodules.fold_windows import DailySequenceDataModule, FoldWindowDataModule, HourlyWindowDataModule

__all__ = ["DailySequenceDataModule", "FoldWindowDataModule", "HourlyWindowDataModule"]
