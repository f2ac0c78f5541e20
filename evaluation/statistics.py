"""The statistics every figure carries: daily rank ICs, Newey-West (HAC) t-statistics, paired tests by day.

- The IC is the mean of DAILY cross-sectional rank ICs (one Spearman per decision day over the symbols).
  A Spearman over all coin-days mixes the time series into the cross-section (a day when every coin
  rose and every score was high counts as skill); it is reported only as `pooled_rank_ic`, named as such.
- Daily figures of h-day forward returns overlap (day d and d+1 share h - 1 of their h days), and scores
  persist for weeks, so the plain t-statistic mean / (std / sqrt(T)) overstates significance: every t here
  uses a Newey-West standard error, `ic_summary` with `hac_lags(h)` lags and `long_hac_lags(T)` (at least 10)
  beside it; daily P&L and return spreads (`mean_t`, `paired_difference`) with `long_hac_lags(T)` only.
  The t comes from statsmodels' HAC covariance (`newey_west_t_stat`).
- Models are compared PAIRED (`paired_ic_comparison`, `paired_difference`): the daily difference on the days
  both are known, with its own HAC t. Two separate t-stats cannot say whether one model beats another.

Every value returned is a plain Python float / int / None (never NaN, never a numpy scalar), so results go
to JSON unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.stats import spearmanr

TARGET = "fwd_ret_3d"
# The fewest lags of the longer-memory HAC t: scores persist for weeks (a coin's rank moves slowly), so daily
# IC differences and P&L stay autocorrelated well past the label's h-day overlap.
LONG_HAC_MIN_LAGS = 10


def plain_float(value: object) -> float | None:
    """A JSON-safe float: None for None, NaN or ±inf (an undefined ratio is 'no value', never NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def daily_rank_ic(
    frame: pd.DataFrame, score: str = "score", target: str = TARGET, date: str = "date", min_names: int = 3
) -> pd.Series:
    """Spearman correlation of `score` with `target` across symbols, one value per `date` (sorted).

    Spearman = Pearson correlation of the within-day average ranks (ties share their mean rank), computed
    for all days at once from per-day sums of centred ranks. The mean rank of n values is (n + 1) / 2
    with or without ties, so centring is exact and a constant column gives a zero sum of squares exactly.
    Rows with a missing score or target are dropped first; days left with fewer than `min_names` symbols,
    or with a constant score or target (correlation undefined), are dropped.
    """
    data = frame.loc[:, [date, score, target]].dropna()
    days = data.groupby(date, sort=True)
    centre = (days[score].transform("size") + 1) / 2
    x = days[score].rank(method="average") - centre
    y = days[target].rank(method="average") - centre
    sums = pd.DataFrame({"n": 1, "xy": x * y, "xx": x * x, "yy": y * y}).groupby(data[date], sort=True).sum()
    valid = (sums["n"] >= min_names) & (sums["xx"] > 0) & (sums["yy"] > 0)
    ic = sums.loc[valid, "xy"] / np.sqrt(sums.loc[valid, "xx"] * sums.loc[valid, "yy"])
    return ic.rename("ic").astype(float)


def daily_quintile_spread(
    frame: pd.DataFrame, score: str = "score", target: str = TARGET, date: str = "date", share: float = 0.2
) -> pd.Series:
    """Per `date` (sorted), the mean `target` of the day's top k scores less that of its bottom k, k =
    max(1, floor(share x the day's names)), as the ranked book picks its legs: what a long-short of the
    extremes is paid before costs. Rows with a missing score or target are dropped; days with fewer than
    2 k names are dropped."""
    data = frame.loc[:, [date, score, target]].dropna()
    days = data.groupby(date, sort=True)
    names = days[score].transform("size")
    k = np.maximum(1, np.floor(share * names))
    top = days[score].rank(method="first", ascending=False) <= k
    bottom = days[score].rank(method="first", ascending=True) <= k
    signed = data[target] * (top.astype(float) - bottom.astype(float)) / k
    spread = signed.groupby(data[date], sort=True).sum()
    return spread[(names.groupby(data[date], sort=True).first() >= 2 * k.groupby(data[date], sort=True).first())
                  ].rename("spread").astype(float)


def pooled_rank_ic(frame: pd.DataFrame, score: str = "score", target: str = TARGET) -> float | None:
    """ONE Spearman over all rows (coin-days) together: a diagnostic, never the IC (SPEC §9)."""
    data = frame.loc[:, [score, target]].dropna()
    if len(data) < 3 or data[score].nunique() < 2 or data[target].nunique() < 2:
        return None
    return plain_float(spearmanr(data[score].to_numpy(), data[target].to_numpy()).statistic)


def newey_west_t_stat(series: Sequence[float] | np.ndarray | pd.Series, lags: int) -> float | None:
    """t-statistic of the mean with a Newey-West (Bartlett kernel) standard error: statsmodels' OLS on a
    constant with a HAC covariance of `lags` lags and no small-sample correction.

    Long-run variance S = g0 + 2 * sum_{l=1..L} (1 - l / (L + 1)) * g_l with autocovariances
    g_l = (1/T) * sum_t e_t e_{t-l} of the demeaned series e; Var(mean) = S / T; t = mean / sqrt(S / T).
    With L = 0 this is the plain t-statistic (with the 1/T variance). None for fewer than 2 values or a
    constant series. The observations are taken in order as consecutive (a day dropped from the series is
    not re-inserted).
    """
    values = np.asarray(series, dtype=float)
    if len(values) < 2 or np.ptp(values) == 0:
        return None
    fit = sm.OLS(values, np.ones_like(values)).fit(cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": False})
    with np.errstate(divide="ignore", invalid="ignore"):
        return plain_float(fit.params[0] / fit.bse[0])


def hac_lags(horizon_days: int) -> int:
    """Newey-West lags for daily statistics of h-day forward returns: h (overlap h - 1, plus one)."""
    return int(horizon_days)


def long_hac_lags(days: int) -> int:
    """Lags of the longer-memory t: Newey-West's automatic bandwidth floor(4 (T/100)^(2/9)), at least 10."""
    return max(LONG_HAC_MIN_LAGS, int(4 * (max(days, 1) / 100) ** (2 / 9)))


def mean_t(series: pd.Series | np.ndarray) -> dict[str, float | int | None]:
    """The mean of a daily series (P&L, a return spread) with its Newey-West t at `long_hac_lags(T)` lags,
    the lags and the days (missing values dropped, the rest taken in order)."""
    values = pd.Series(series, dtype=float).dropna().to_numpy()
    lags = long_hac_lags(len(values))
    return {"mean": plain_float(values.mean()) if len(values) else None,
            "t_stat": newey_west_t_stat(values, lags), "lags": lags, "days": len(values)}


def paired_difference(first: pd.Series, second: pd.Series) -> dict[str, float | int | None]:
    """`first` minus `second` on the dates both hold (daily net P&L of two books, say): `mean_t` of the
    difference, and the share of those days `first` is ahead."""
    both = pd.concat([first, second], axis=1, join="inner").dropna().sort_index()
    diff = both.iloc[:, 0] - both.iloc[:, 1]
    return {**mean_t(diff), "win_share": plain_float((diff > 0).mean()) if len(diff) else None}


def ic_summary(daily_ic: pd.Series, horizon_days: int = 3) -> dict[str, float | int | None]:
    """Mean, std, ICIR (= mean / std of the daily ICs, not annualised), HAC t-stat, days, positive share.

    ICs of h-day forward returns on consecutive days overlap by h - 1 days, so the t-statistic uses a
    Newey-West standard error with `hac_lags(h)` lags (`newey_west_t_stat`), and `t_stat_long` with
    `long_hac_lags(T)` lags beside it; the ICIR is a ratio of the daily series only and is no significance test.
    """
    values = daily_ic.dropna().to_numpy(dtype=float)
    mean = values.mean() if len(values) else None
    std = values.std(ddof=1) if len(values) >= 2 else None
    return {
        "mean": plain_float(mean),
        "std": plain_float(std),
        "icir": plain_float(mean / std) if std else None,
        "t_stat": newey_west_t_stat(values, lags=hac_lags(horizon_days)),
        "t_stat_lags": hac_lags(horizon_days),
        "t_stat_long": newey_west_t_stat(values, lags=long_hac_lags(len(values))),
        "t_stat_long_lags": long_hac_lags(len(values)),
        "days": len(values),
        "positive_share": plain_float((values > 0).mean()) if len(values) else None,
    }


def paired_ic_comparison(
    reference: pd.Series, other: pd.Series, horizon_days: int = 3
) -> dict[str, float | int | None]:
    """The daily IC of `reference` minus `other`'s on the days both are scored (paired, same cross-sections).

    Both are `daily_rank_ic` series indexed by date. `diff_mean` is the mean daily difference,
    `t_stat` its Newey-West t-stat (`hac_lags(h)` lags: the differences overlap as the ICs do) and
    `t_stat_long` the one with `long_hac_lags(T)` lags (the scores' persistence),
    `win_share` the share of common days where the reference's IC is higher. Days only one model is
    scored on (the other's score was constant, or too few names) are counted, never silently paired.
    """
    joined = pd.concat({"reference": reference, "other": other}, axis=1, join="inner").dropna().sort_index()
    diff = (joined["reference"] - joined["other"]).to_numpy(dtype=float)
    return {
        "diff_mean": plain_float(diff.mean()) if len(diff) else None,
        "diff_std": plain_float(diff.std(ddof=1)) if len(diff) >= 2 else None,
        "t_stat": newey_west_t_stat(diff, lags=hac_lags(horizon_days)),
        "t_stat_lags": hac_lags(horizon_days),
        "t_stat_long": newey_west_t_stat(diff, lags=long_hac_lags(len(diff))),
        "t_stat_long_lags": long_hac_lags(len(diff)),
        "win_share": plain_float((diff > 0).mean()) if len(diff) else None,
        "days": len(diff),
        "days_reference_only": int(reference.index.difference(joined.index).size),
        "days_other_only": int(other.index.difference(joined.index).size),
    }
