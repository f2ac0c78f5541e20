"""Forward-return labels: SELL = 0, HOLD = 1, BUY = 2.

`fwd_ret_{h}d` is always the coin's raw simple return from the close of bar t to the close h days
later (the evaluation's IC reads it). What `label_{h}d` classes is `labels.target`:
- `absolute`: that simple return ("the coin will rise");
- `relative`: the coin's forward LOG return minus the market's forward log return over the same
  h days ("the coin will beat the market"), the market being the volume-weighted one the features
  use (`features.market`). It is what a cross-sectional ranking or a long/short book needs.
The class bound is `labels.threshold_scale`:
- `fixed`: ±thresholds[h];
- `volatility`: ±k_h x sigma x sqrt(h), with k_h = thresholds[h] and sigma the coin's std of daily
  log returns over the `volatility_days` days ending with bar t (its close is known at decision
  time), so a calm coin and a wild one need moves of the same size in their own units.

A label of bar t reads nothing after the close h days later. A row whose horizon runs past the
symbol's data, or (volatility) without `volatility_days` daily returns of history, has no label
(missing), never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from features.market import market_return
from features.rolling import trailing

SELL, HOLD, BUY = 0, 1, 2
CLASS_NAMES = ("SELL", "HOLD", "BUY")
TARGETS = ("absolute", "relative")
THRESHOLD_SCALES = ("fixed", "volatility")
DAY = pd.Timedelta(days=1)
HOURS_PER_DAY = 24


@dataclass(frozen=True)
class LabelSpec:
    """What a label classes (`target`) and how its bound is set (`threshold_scale`), see the module doc."""

    target: str = "absolute"
    threshold_scale: str = "fixed"
    volatility_days: int = 30

    def __post_init__(self) -> None:
        for key, value, allowed in (("target", self.target, TARGETS),
                                    ("threshold_scale", self.threshold_scale, THRESHOLD_SCALES)):
            if value not in allowed:
                raise ValueError(f"labels.{key} must be one of {allowed}, got {value!r}")
        days = self.volatility_days
        if isinstance(days, bool) or not isinstance(days, int) or days < 2:
            raise ValueError(f"labels.volatility_days must be an integer >= 2 (a std needs two returns), got {days!r}")

    @classmethod
    def from_config(cls, labels_cfg: Mapping) -> LabelSpec:
        """From the `labels` config group; a key it lacks keeps today's meaning (absolute, fixed)."""
        default = cls()
        return cls(
            target=labels_cfg.get("target", default.target),
            threshold_scale=labels_cfg.get("threshold_scale", default.threshold_scale),
            volatility_days=labels_cfg.get("volatility_days", default.volatility_days),
        )


def label_columns(horizons: Mapping[int, float]) -> list[str]:
    return [col for h in sorted(horizons) for col in (f"fwd_ret_{h}d", f"label_{h}d")]


def market_forward_returns(
    bars: pd.DataFrame, horizons: Mapping[int, float], weight_window: int, bars_per_day: int = 1
) -> pd.DataFrame:
    """The market's forward log return over h days from each bar's close: one column per h, indexed by ts.

    The sum of the market's per-bar log returns (`features.market.market_return`) over the next
    h * bars_per_day bars. Each bar's weights come from volumes before that bar, so the value at t
    reads nothing after t + h days. Missing where a bar of the horizon is outside the data (or has
    no market return), never a partial sum.
    """
    market = market_return(bars, weight_window)
    index = pd.date_range(market.index[0], market.index[-1], freq=DAY / bars_per_day)
    per_bar = market.reindex(index).to_numpy()
    forward = {}
    for horizon in sorted(horizons):
        steps = horizon * bars_per_day
        values = np.full(len(per_bar), np.nan)
        if steps < len(per_bar):
            # Window i sums bars i .. i + steps - 1; bar t's forward return is the window from t + 1.
            values[: len(per_bar) - steps] = sliding_window_view(per_bar, steps).sum(axis=1)[1:]
        forward[horizon] = values
    return pd.DataFrame(forward, index=index)


def with_daily_day_ends(hourly_forward: pd.DataFrame, daily_forward: pd.DataFrame) -> pd.DataFrame:
    """The hourly market forward returns, with each day's last hour taking the daily value of that day.

    The hourly and daily markets weigh each bar by trailing volume of their own bars, so their
    h-day sums differ at day ends (by ~1e-4 typically on the sample, by a few % on a coin's listing
    day). Taking the daily value there keeps the hourly label of d 23:00 the daily label of day d.
    """
    day_end = (hourly_forward.index + pd.Timedelta(hours=1)).hour == 0
    out = hourly_forward.copy()
    out.loc[day_end] = daily_forward.reindex(hourly_forward.index[day_end].floor(DAY)).to_numpy()
    return out


def trailing_volatility(bars: pd.DataFrame, days: int, bars_per_day: int = 1) -> pd.Series:
    """Std of the coin's daily log returns over the `days` days ending with each bar, its close included.

    On the hourly grid the daily returns are the 24-hour returns ending at the same hour of each
    day, so at a day's last hour the value is the daily bars' own. Missing until `days` returns exist.
    """
    closes = bars.groupby("symbol", sort=False)["close"]
    daily_log_return = np.log(bars["close"] / closes.shift(bars_per_day))
    hour_slot = closes.cumcount() % bars_per_day  # contiguous bars: the same slot is the same hour of day
    # One rolling group per (symbol, hour slot), numbered so `trailing` groups on a single key.
    symbol_slot = pd.Series(pd.factorize(bars["symbol"])[0] * bars_per_day + hour_slot.to_numpy(), index=bars.index)
    return trailing(daily_log_return, symbol_slot, days, "std")


def classify(value: pd.Series, threshold: float | pd.Series) -> pd.Series:
    """BUY above +threshold, SELL below -threshold, else HOLD (a move exactly at ±threshold is HOLD:
    the classes need a strict move); missing where the value or the threshold is."""
    label = np.where(value > threshold, BUY, np.where(value < -threshold, SELL, HOLD))
    missing = value.isna() | np.isnan(threshold)
    return pd.Series(label, index=value.index, dtype="Int8").mask(missing)


def build_labels(
    bars: pd.DataFrame,
    horizons: Mapping[int, float],
    spec: LabelSpec | None = None,
    bars_per_day: int = 1,
    market_forward: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """`fwd_ret_{h}d` (raw simple return) and `label_{h}d` (nullable Int8) per horizon h -> threshold or k.

    `bars` must hold contiguous bars per symbol (daily bars, or the complete hourly grid with
    `bars_per_day=24`), so a shift of h * bars_per_day rows is a shift of h days. The `relative`
    target needs `market_forward` (`market_forward_returns` of the same bars, indexed by ts).
    """
    spec = spec or LabelSpec()
    if spec.target == "relative" and market_forward is None:
        raise ValueError("labels.target=relative needs the market's forward returns")
    volatility = (
        trailing_volatility(bars, spec.volatility_days, bars_per_day) if spec.threshold_scale == "volatility" else None
    )
    out = {}
    closes = bars.groupby("symbol", sort=False)["close"]
    for horizon in sorted(horizons):
        scale = float(horizons[horizon])
        if horizon < 1 or scale <= 0:
            raise ValueError(f"label horizon {horizon}d needs horizon >= 1 and threshold > 0, got {scale}")
        end_close = closes.shift(-horizon * bars_per_day)
        forward = end_close / bars["close"] - 1.0
        if spec.target == "relative":
            market = market_forward[horizon].reindex(bars["ts"]).to_numpy()
            target = np.log(end_close / bars["close"]) - market
        else:
            target = forward
        threshold = scale if volatility is None else scale * volatility * np.sqrt(horizon)
        out[f"fwd_ret_{horizon}d"] = forward
        out[f"label_{horizon}d"] = classify(target, threshold)
    return pd.DataFrame(out, index=bars.index)[label_columns(horizons)]


def build_label_frames(
    daily_bars: pd.DataFrame,
    hourly_grid: pd.DataFrame,
    horizons: Mapping[int, float],
    spec: LabelSpec,
    market_weight_days: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The labels of the daily bars and of the hourly grid, consistent: the label of the hourly bar
    d 23:00 is the daily label of day d (the same two closes, market return and volatility)."""
    daily_market = hourly_market = None
    if spec.target == "relative":
        daily_market = market_forward_returns(daily_bars, horizons, market_weight_days)
        hourly_market = with_daily_day_ends(
            market_forward_returns(hourly_grid, horizons, market_weight_days * HOURS_PER_DAY, HOURS_PER_DAY),
            daily_market,
        )
    daily = build_labels(daily_bars, horizons, spec, market_forward=daily_market)
    hourly = build_labels(hourly_grid, horizons, spec, bars_per_day=HOURS_PER_DAY, market_forward=hourly_market)
    return daily, hourly
