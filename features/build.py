"""Everything the models read, built in one pass from validated bars.

`build_feature_frames` turns the hourly grid and the Fear & Greed series into two frames:
- `daily`: one row per (symbol, UTC day) with the LSTM inputs, the tabular features (a column both
  sets define, e.g. the Fear & Greed level, is computed once by the same code and kept once), the
  regime inputs (market-wide, joined by day) and the labels;
- `hourly`: one row per (symbol, hour) with `is_filled`, the TCN channels and the same labels
  measured from that hour's close (so a window ending at any hour has a target).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from features.daily import LSTM_FEATURES, build_daily_features
from features.factors import FACTORS, build_factor_scores
from features.hourly import TCN_CHANNELS, build_hourly_features
from features.labels import LabelSpec, build_label_frames, label_columns
from features.regime import REGIME_FEATURES, build_regime_inputs
from features.tabular import TABULAR_FEATURES, build_tabular_features
from marketdata.daily import daily_from_hourly
from marketdata.load import dataset_id, load_market_data

DAY = pd.Timedelta(days=1)


def parse_horizons(thresholds: Mapping[str, float]) -> dict[int, float]:
    """{'label_3d': 0.05, ...} from config -> {3: 0.05, ...}."""
    horizons = {}
    for key, value in thresholds.items():
        match = re.fullmatch(r"label_(\d+)d", str(key))
        if match is None:
            raise ValueError(f"labels.thresholds key {key!r} must look like 'label_3d'")
        horizons[int(match.group(1))] = float(value)
    if not horizons:
        raise ValueError("labels.thresholds is empty: at least one label horizon is needed")
    return horizons


def label_horizon_days(label: str) -> int:
    """'label_3d' -> 3: the days of closes the label reads after its decision day."""
    return next(iter(parse_horizons({label: 0.0})))


@dataclass
class FeatureFrames:
    daily: pd.DataFrame
    hourly: pd.DataFrame
    horizons: dict[int, float]
    # The column names each set was built with (names carry their windows): lstm, tcn, tabular, regime,
    # and the factor baselines (evaluation only).
    columns: dict[str, tuple[str, ...]]
    # The data lineage the frames were built from (marketdata.load.dataset_id).
    dataset: str = ""

    @property
    def label_columns(self) -> list[str]:
        return label_columns(self.horizons)


def check_contiguous_days(daily: pd.DataFrame) -> None:
    """Label shifts and daily windows count rows as days: every symbol's days must be consecutive."""
    step = daily.groupby("symbol", sort=False)["ts"].diff()
    bad = step.notna() & (step != DAY)
    if bad.any():
        row = daily.loc[bad.idxmax()]
        raise ValueError(f"daily bars of {row['symbol']} skip from {row['ts'] - step[bad.idxmax()]} to {row['ts']}")


def build_feature_frames(
    hourly_grid: pd.DataFrame, fear_greed: pd.DataFrame, features_cfg: Mapping, labels_cfg: Mapping
) -> FeatureFrames:
    """`labels_cfg` is the `labels` config group: thresholds, target, threshold_scale, volatility_days."""
    horizons = parse_horizons(labels_cfg["thresholds"])
    label_spec = LabelSpec.from_config(labels_cfg)
    daily_bars = daily_from_hourly(hourly_grid)
    check_contiguous_days(daily_bars)
    fg = {
        "fear_greed_lag_days": features_cfg["fear_greed"]["lag_days"],
        "fear_greed_max_stale_days": features_cfg["fear_greed"]["max_stale_days"],
    }
    market_days = features_cfg["market_weight_days"]
    lstm = build_daily_features(daily_bars, fear_greed, market_weight_days=market_days, **fg, **features_cfg["daily"])
    tabular = build_tabular_features(
        daily_bars, fear_greed, market_weight_window=market_days, **fg, **features_cfg["tabular"]
    )
    regime = build_regime_inputs(
        daily_bars, fear_greed, market_weight_window=market_days,
        fear_greed_lag_days=fg["fear_greed_lag_days"], **features_cfg["regime"],
    )
    shared = [c for c in tabular.columns if c in lstm.columns]
    for column in shared:
        if not lstm[column].equals(tabular[column]):
            raise AssertionError(f"feature {column!r} is built two different ways by the LSTM and tabular sets")
    # Evaluation baselines (features/factors.py), never model inputs.
    factors = build_factor_scores(daily_bars, lstm["close_ret"])
    daily_labels, hourly_labels = build_label_frames(daily_bars, hourly_grid, horizons, label_spec, market_days)
    daily = pd.concat(
        [
            daily_bars[["symbol", "ts"]],
            lstm,
            tabular.drop(columns=shared),
            regime.reindex(daily_bars["ts"]).set_index(daily_bars.index),
            factors,
            daily_labels,
        ],
        axis=1,
    )
    tcn = build_hourly_features(hourly_grid, market_weight_hours=market_days * 24, **features_cfg["hourly"])
    hourly = pd.concat(
        [hourly_grid[["symbol", "ts", "is_filled"]], tcn, hourly_labels],
        axis=1,
    )
    columns = {
        "lstm": tuple(lstm.columns),
        "tcn": tuple(tcn.columns),
        "tabular": tuple(tabular.columns),
        "regime": tuple(regime.columns),
        "factors": tuple(factors.columns),
    }
    return FeatureFrames(daily=daily, hourly=hourly, horizons=horizons, columns=columns,
                         dataset=dataset_id(hourly_grid[~hourly_grid["is_filled"]] if "is_filled" in hourly_grid
                                            else hourly_grid))




def load_feature_frames(data_cfg: Mapping, features_cfg: Mapping, labels_cfg: Mapping) -> FeatureFrames:
    """Load and validate the configured data, apply the gap policy and build every frame."""
    grid, _, fear_greed = load_market_data(**data_cfg)
    return build_feature_frames(grid, fear_greed, features_cfg, labels_cfg)


__all__ = [
    "FACTORS",
    "LSTM_FEATURES",
    "REGIME_FEATURES",
    "TABULAR_FEATURES",
    "TCN_CHANNELS",
    "FeatureFrames",
    "build_feature_frames",
    "label_horizon_days",
    "load_feature_frames",
    "parse_horizons",
]
