"""The regime detector of SPEC §7: composite score, regime class and the long/short size gate.

Inputs are the per-day frame of `features.regime.build_regime_inputs` (index: day `ts`, 00:00 UTC; the
row of day d is known at d's close, i.e. at d + 1 day). From it:

- R = 0.35·momentum + 0.20·volatility + 0.20·fear/greed + 0.25·breadth (weights are parameters);
- regime: "bull" if R > 0.15, "bear" if R < -0.15, "high_vol" if σ7d/σ30d > 2, else "range".
  The seed writes these four as one `cases` block with overlapping conditions and no stated precedence.
  Default: high_vol wins over bull/bear (`high_vol_first=True`), because it is a risk rule: a market
  whose short-term volatility has doubled is sized down whatever its trend. `high_vol_first=False` gives
  the reading where the cases are tried top to bottom (high_vol only inside the range band).
- "unknown": any of the five inputs is NaN (warm-up, missing data). It is never guessed as "range":
  an unknown day opens no new position (multipliers 0, 0).

The gate is a (long, short) size multiplier per regime; 0 blocks the side. Bull: longs 1.5×, shorts
dampened to 0.5×; bear: the mirror; range: both 0.7× (all from the seed). The seed gives no number for
high_vol, so the default is a conservative 0.5× on both sides, below range's 0.7×. With these defaults
15 long + 15 short slots never ask for more than 30 slot units on any day (bull: 15·1.5 + 15·0.5), so
the multipliers move exposure between the sides rather than lever the book.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

REGIMES: tuple[str, ...] = ("bull", "bear", "high_vol", "range", "unknown")
COMPONENTS: dict[str, str] = {
    "momentum": "regime_momentum",
    "volatility": "regime_volatility",
    "fear_greed": "regime_fear_greed",
    "breadth": "regime_breadth",
}


@dataclass(frozen=True)
class RegimeConfig:
    """Every number of the regime detector and gate; plain fields so a Hydra config can pass them as kwargs."""

    weight_momentum: float = 0.35
    weight_volatility: float = 0.20
    weight_fear_greed: float = 0.20
    weight_breadth: float = 0.25
    bull_threshold: float = 0.15  # R > this: bull
    bear_threshold: float = -0.15  # R < this: bear
    high_vol_ratio: float = 2.0  # σ7d/σ30d > this: high_vol
    high_vol_first: bool = True  # high_vol takes precedence over bull/bear
    vol_ratio_column: str = "vol_ratio_7d_30d"
    bull_long: float = 1.5
    bull_short: float = 0.5
    bear_long: float = 0.5
    bear_short: float = 1.5
    range_long: float = 0.7
    range_short: float = 0.7
    high_vol_long: float = 0.5
    high_vol_short: float = 0.5

    def __post_init__(self) -> None:
        if not self.bear_threshold <= self.bull_threshold:
            raise ValueError(f"bear_threshold {self.bear_threshold} > bull_threshold {self.bull_threshold}")
        negative = {k: v for k, v in self.multipliers().items() if min(v) < 0}
        if negative:
            raise ValueError(f"size multipliers must be >= 0, got {negative}")

    def weights(self) -> dict[str, float]:
        """Composite weights keyed like `COMPONENTS`."""
        return {
            "momentum": self.weight_momentum,
            "volatility": self.weight_volatility,
            "fear_greed": self.weight_fear_greed,
            "breadth": self.weight_breadth,
        }

    def multipliers(self) -> dict[str, tuple[float, float]]:
        """regime -> (long multiplier, short multiplier); "unknown" always blocks both sides."""
        return {
            "bull": (self.bull_long, self.bull_short),
            "bear": (self.bear_long, self.bear_short),
            "high_vol": (self.high_vol_long, self.high_vol_short),
            "range": (self.range_long, self.range_short),
            "unknown": (0.0, 0.0),
        }


def regime_composite(inputs: pd.DataFrame, weights: dict[str, float] | None = None) -> pd.Series:
    """R per day (same index as `inputs`); NaN where any component is NaN (no partial sums)."""
    weights = RegimeConfig().weights() if weights is None else weights
    unknown = set(weights) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"unknown regime weight(s) {sorted(unknown)}; expected {sorted(COMPONENTS)}")
    columns = [COMPONENTS[name] for name in weights]
    values = inputs[columns].to_numpy(dtype="float64")  # (days, components)
    composite = values @ np.array(list(weights.values()), dtype="float64")  # NaN propagates
    return pd.Series(composite, index=inputs.index, name="regime_composite")


def classify_regime(inputs: pd.DataFrame, config: RegimeConfig | None = None) -> pd.Series:
    """One of `REGIMES` per day (same index as `inputs`), with the precedence of the module docstring."""
    config = RegimeConfig() if config is None else config
    composite = regime_composite(inputs, config.weights()).to_numpy()
    vol_ratio = inputs[config.vol_ratio_column].to_numpy(dtype="float64")
    bull = composite > config.bull_threshold
    bear = composite < config.bear_threshold
    high_vol = vol_ratio > config.high_vol_ratio
    unknown = np.isnan(composite) | np.isnan(vol_ratio)
    if config.high_vol_first:
        conditions, choices = [unknown, high_vol, bull, bear], ["unknown", "high_vol", "bull", "bear"]
    else:
        conditions, choices = [unknown, bull, bear, high_vol], ["unknown", "bull", "bear", "high_vol"]
    regime = np.select(conditions, choices, default="range")
    return pd.Series(regime, index=inputs.index, name="regime", dtype="str")


def size_multiplier(regime: pd.Series, direction: pd.Series, config: RegimeConfig | None = None) -> np.ndarray:
    """The gate's size multiplier per signal: the long column for direction > 0, the short one for < 0.

    A missing regime counts as "unknown" (blocked); a string outside `REGIMES` is an error. Direction 0
    gets 0. Shape (n,), float64.
    """
    config = RegimeConfig() if config is None else config
    names = regime.fillna("unknown").astype("str")
    bad = sorted(set(names.unique()) - set(REGIMES))
    if bad:
        raise ValueError(f"unknown regime(s) {bad}; expected one of {list(REGIMES)}")
    table = pd.DataFrame(config.multipliers(), index=["long", "short"]).T  # (regimes, 2)
    long_mult = names.map(table["long"]).to_numpy(dtype="float64")
    short_mult = names.map(table["short"]).to_numpy(dtype="float64")
    side = np.sign(direction.to_numpy(dtype="float64"))
    return np.select([side > 0, side < 0], [long_mult, short_mult], default=0.0)


def regime_for_decisions(regime: pd.Series, decision_time: pd.Series) -> pd.Series:
    """The regime known at each decision time, aligned to `decision_time`.

    The row of day d is known at d + 1 day, so a decision at time t reads day floor(t - 1 day): a
    decision at d's close (t = d + 1 day) reads d, never d + 1. A day missing from `regime` gives
    "unknown" rather than carrying an older regime forward. `regime` is indexed by day (tz-aware UTC).
    """
    day = (pd.DatetimeIndex(decision_time) - pd.Timedelta(days=1)).floor("D")
    values = regime.reindex(day.as_unit(regime.index.unit)).fillna("unknown").to_numpy()
    return pd.Series(values, index=decision_time.index, name="regime", dtype="str")
