"""From class probabilities to trading signals (SPEC §6).

- score s = P(buy) - P(sell), in [-1, 1];
- z, by `stack.signals.scale`:
  rolling: s standardised per symbol by the mean and std of that symbol's scores over the previous
  `window_days` calendar days (past days only: day d's own score is not in its statistics), with
  at least `min_periods` of them, else no z (and no signal);
  cross_section: s standardised by the mean and std of the same day's scores across symbols (one
  fold's model made them all), with at least `min_symbols` of them and a nonzero std, else no z;
- direction: BUY if z > threshold, SELL if z < -threshold, else HOLD;
- confidence: per class, the lowest probability threshold whose precision on held-out rows
  reaches the class's target (with at least `min_support` rows above it). A BUY or SELL direction
  stands only if that class's probability reaches its threshold; a class whose target is out of
  reach gets no threshold and never fires (logged, never relaxed silently). The target is one
  absolute precision, or a lift over the class's base rate on the train rows.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from features.labels import BUY, CLASS_NAMES, HOLD, SELL


def signal_score(proba: np.ndarray) -> np.ndarray:
    """(n, 3) probabilities in SELL, HOLD, BUY order -> s = P(buy) - P(sell), (n,)."""
    return proba[:, BUY] - proba[:, SELL]


def rolling_zscore(
    frame: pd.DataFrame, window_days: int = 30, min_periods: int = 10, score: str = "score"
) -> pd.Series:
    """Per-symbol z of `score` against the previous `window_days` days (calendar, so gaps are honoured)."""
    ordered = frame[["symbol", "date", score]].sort_values(["symbol", "date"])
    stats = (
        ordered.set_index("date")
        .groupby("symbol", sort=False)[score]
        .rolling(f"{window_days}D", closed="left", min_periods=min_periods)
        .agg(["mean", "std"])
    )
    mean = stats["mean"].to_numpy()
    std = stats["std"].to_numpy()
    z = (ordered[score].to_numpy() - mean) / np.where(std > 0, std, np.nan)
    return pd.Series(z, index=ordered.index).reindex(frame.index)


def cross_section_zscore(frame: pd.DataFrame, min_symbols: int = 5, score: str = "score") -> pd.Series:
    """Per-day z of `score` against that day's scores across symbols (the day's own scores only).

    The walk-forward scores each test window with its own fold's model, whose scale differs from
    its neighbours'; within one (date, fold) one model made every score, so a per-fold affine change
    of scale cancels. A day lies in one fold's test window unless split.step_days < test_days, when
    each fold's rows of the day are standardised apart.
    """
    by_day = frame.groupby(["date", "fold"], sort=False)[score]
    std = by_day.transform("std")
    scored = (by_day.transform("count") >= min_symbols) & (std > 0)
    return ((frame[score] - by_day.transform("mean")) / std).where(scored)


Z_SCALES = ("rolling", "cross_section")


def zscore_scale(signal_cfg: Mapping) -> str:
    """The validated `stack.signals.scale`; runs recorded before the option existed used rolling."""
    scale = signal_cfg.get("scale", "rolling")
    if scale not in Z_SCALES:
        raise ValueError(f"stack.signals.scale must be one of {Z_SCALES}, got {scale!r}")
    return scale


def signal_zscore(frame: pd.DataFrame, signal_cfg: Mapping) -> pd.Series:
    """z of each row's score under `stack.signals` (`frame` has symbol, date, fold and score)."""
    if zscore_scale(signal_cfg) == "cross_section":
        return cross_section_zscore(frame, signal_cfg["cross_section_min_symbols"])
    return rolling_zscore(frame, signal_cfg["zscore_days"], signal_cfg["zscore_min_periods"])


def directions(z: pd.Series | np.ndarray, threshold: float = 1.5) -> np.ndarray:
    """BUY (2) if z > threshold, SELL (0) if z < -threshold, else HOLD (1); no z -> HOLD."""
    z = np.asarray(z, dtype="float64")
    return np.where(z > threshold, BUY, np.where(z < -threshold, SELL, HOLD)).astype("int8")


CONFIDENCE_MODES = ("lift", "absolute")


def precision_targets(
    train_labels: np.ndarray, mode: str, target_precision: float, target_lift: float
) -> dict[str, float]:
    """Per class, the precision its confidence threshold must reach.

    absolute: `target_precision` for every class. lift: `target_lift` times the class's share of the
    train labels, capped at 1. The classes' base rates differ (SELL is about 10 % of label_3d on the
    sample, BUY 22 %), so one absolute figure is trivial for one class and out of reach for another;
    a lift asks each for the same edge over guessing. Train labels only: the validation rows the
    thresholds are fit on must not set their own bar.
    """
    if mode == "absolute":
        return {name: float(target_precision) for name in CLASS_NAMES}
    if mode != "lift":
        raise ValueError(f"stack.confidence.mode must be one of {CONFIDENCE_MODES}, got {mode!r}")
    if not target_lift > 0:
        raise ValueError(f"stack.confidence.target_lift must be > 0, got {target_lift}")
    labels = np.asarray(train_labels, dtype="int64")
    base_rate = np.bincount(labels, minlength=len(CLASS_NAMES)) / max(len(labels), 1)
    return {name: float(min(1.0, target_lift * base_rate[code])) for code, name in enumerate(CLASS_NAMES)}


def fit_confidence_thresholds(
    y_true: np.ndarray, proba: np.ndarray, targets: Mapping[str, float], min_support: int = 20
) -> dict[str, float | None]:
    """Per class c, the lowest threshold t with precision(label == c | p_c >= t) >= targets[c] and
    support >= min_support; None when no threshold reaches it."""
    y_true = np.asarray(y_true, dtype="int64")
    thresholds: dict[str, float | None] = {}
    for code, name in enumerate(CLASS_NAMES):
        p = proba[:, code]
        order = np.argsort(-p, kind="stable")
        hits = np.cumsum(y_true[order] == code)
        support = np.arange(1, len(p) + 1)
        # Candidate cut after each distinct probability (ties go together): rows p >= p_sorted[i].
        last_of_tie = np.r_[p[order][1:] != p[order][:-1], True]
        ok = last_of_tie & (support >= min_support) & (hits / support >= targets[name])
        # The lowest reaching threshold = the largest qualifying support.
        thresholds[name] = float(p[order][np.flatnonzero(ok)[-1]]) if ok.any() else None
    return thresholds


def apply_confidence(direction: np.ndarray, proba: np.ndarray, thresholds: dict[str, float | None]) -> np.ndarray:
    """BUY / SELL directions whose class probability misses its threshold become HOLD."""
    signal = np.asarray(direction, dtype="int8").copy()
    for code in (SELL, BUY):
        threshold = thresholds.get(CLASS_NAMES[code])
        chosen = signal == code
        confident = np.zeros(len(signal), dtype=bool) if threshold is None else proba[:, code] >= threshold
        signal[chosen & ~confident] = HOLD
    return signal
