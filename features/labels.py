"""Forward-return labels: SELL = 0, HOLD = 1, BUY = 2.

The label of day d over h days compares close_{d+h} with close_d (both daily closes): it uses
exactly those two bars. A row whose horizon runs past the symbol's last daily bar has no label
(missing), never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

SELL, HOLD, BUY = 0, 1, 2
CLASS_NAMES = ("SELL", "HOLD", "BUY")


def label_columns(horizons: Mapping[int, float]) -> list[str]:
    return [col for h in sorted(horizons) for col in (f"fwd_ret_{h}d", f"label_{h}d")]


def build_labels(bars: pd.DataFrame, horizons: Mapping[int, float], bars_per_day: int = 1) -> pd.DataFrame:
    """`fwd_ret_{h}d` (simple return) and `label_{h}d` (nullable Int8) per horizon h -> threshold.

    `bars` must hold contiguous bars per symbol (daily bars, or the complete hourly grid with
    `bars_per_day=24`), so a shift of h * bars_per_day rows is a shift of h days. On the hourly grid
    the label at d 23:00 is the daily label of day d (the same two closes).
    A return exactly at ±threshold is HOLD (the classes need a strict move).
    """
    out = {}
    closes = bars.groupby("symbol", sort=False)["close"]
    for horizon in sorted(horizons):
        threshold = float(horizons[horizon])
        if horizon < 1 or threshold <= 0:
            raise ValueError(f"label horizon {horizon}d needs horizon >= 1 and threshold > 0, got {threshold}")
        forward = closes.shift(-horizon * bars_per_day) / bars["close"] - 1.0
        label = np.where(forward > threshold, BUY, np.where(forward < -threshold, SELL, HOLD))
        out[f"fwd_ret_{horizon}d"] = forward
        out[f"label_{horizon}d"] = pd.Series(label, index=bars.index, dtype="Int8").mask(forward.isna())
    return pd.DataFrame(out, index=bars.index)[label_columns(horizons)]
