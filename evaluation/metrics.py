"""Out-of-sample metrics for the three-class signal (SPEC §8), written to avoid the seed system's defects (§9).

- The IC is the mean of DAILY cross-sectional rank ICs (one Spearman per decision day over the symbols).
  A Spearman over all coin-days mixes the time series into the cross-section (a day when every coin
  rose and every score was high counts as skill); it is reported only as `pooled_rank_ic`, named as such.
- Daily ICs of h-day forward returns overlap (day d and d+1 share h - 1 of their h days), so the
  plain t-statistic mean / (std / sqrt(T)) overstates significance; `ic_summary` uses a Newey-West
  (HAC) standard error with `horizon_days` lags (h - 1 lags with Bartlett weights under-state the
  variance of an MA(h - 1) series; h is the smallest lag that keeps the last overlap's full weight
  from being cut).
- Models are compared PAIRED (`paired_ic_comparison`): the daily IC difference on the days both are
  scored, with its own HAC t-stat. Two separate t-stats cannot say whether one model beats another.
- A model may be score-only (a factor baseline: `p_sell/p_hold/p_buy` null, only `score`): it gets the
  IC figures and None for every probability metric.
- Every scikit-learn call passes `y_true=` / `y_pred=` by keyword: the seed system swapped them, which
  swapped BUY precision and recall.

Classes are coded SELL = 0, HOLD = 1, BUY = 2 (`features.labels`). Every value returned is a plain
Python float / int / str / None (never NaN, never a numpy scalar), so results go to JSON unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from features.labels import BUY, CLASS_NAMES, HOLD, SELL

LABELS = (SELL, HOLD, BUY)
PROBA_COLUMNS = ("p_sell", "p_hold", "p_buy")
PREDICTION_COLUMNS = ("symbol", "date", "fold", "model", *PROBA_COLUMNS, "score", "label", "fwd_ret_3d")
TARGET = "fwd_ret_3d"
# The equal-weight blend of Trishula's parts' day ranks (stacking.walkforward.BLEND): shown first after Trishula.
BLEND = "blend_parts"
CALIBRATION_BINS = 10
WIN_RATE_BINS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_PROBA_TOLERANCE = 1e-3


def _num(value: object) -> float | None:
    """A JSON-safe float: None for None, NaN or ±inf (an undefined ratio is 'no value', never NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


# --- rank IC ---------------------------------------------------------------------------------------------------


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


def pooled_rank_ic(frame: pd.DataFrame, score: str = "score", target: str = TARGET) -> float | None:
    """ONE Spearman over all rows (coin-days) together: a diagnostic, never the IC (SPEC §9)."""
    data = frame.loc[:, [score, target]].dropna()
    if len(data) < 3 or data[score].nunique() < 2 or data[target].nunique() < 2:
        return None
    return _num(spearmanr(data[score].to_numpy(), data[target].to_numpy()).statistic)


def newey_west_t_stat(series: Sequence[float] | np.ndarray | pd.Series, lags: int) -> float | None:
    """t-statistic of the mean with a Newey-West (Bartlett kernel) standard error.

    Long-run variance S = g0 + 2 * sum_{l=1..L} (1 - l / (L + 1)) * g_l with autocovariances
    g_l = (1/T) * sum_t e_t e_{t-l} of the demeaned series e; Var(mean) = S / T; t = mean / sqrt(S / T).
    With L = 0 this is the plain t-statistic (with the 1/T variance). The Bartlett weights keep S >= 0.
    The observations are taken in order as consecutive (a day dropped from the series is not re-inserted).
    """
    values = np.asarray(series, dtype=float)
    count = len(values)
    if count < 2:
        return None
    errors = values - values.mean()
    long_run = errors @ errors / count
    for lag in range(1, min(lags, count - 1) + 1):
        long_run += 2 * (1 - lag / (lags + 1)) * (errors[lag:] @ errors[:-lag]) / count
    if long_run <= 0:
        return None
    return _num(values.mean() / np.sqrt(long_run / count))


def hac_lags(horizon_days: int) -> int:
    """Newey-West lags for daily statistics of h-day forward returns: h (overlap h - 1, plus one)."""
    return int(horizon_days)


# The fewest lags of the second, longer-memory HAC t beside the h-lag one: scores persist for weeks (a coin's
# rank moves slowly), so daily IC differences stay autocorrelated well past the label's h-day overlap.
LONG_HAC_MIN_LAGS = 10


def long_hac_lags(days: int) -> int:
    """Lags of the longer-memory t: Newey-West's automatic bandwidth floor(4 (T/100)^(2/9)), at least 10."""
    return max(LONG_HAC_MIN_LAGS, int(4 * (max(days, 1) / 100) ** (2 / 9)))


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
        "mean": _num(mean),
        "std": _num(std),
        "icir": _num(mean / std) if std else None,
        "t_stat": newey_west_t_stat(values, lags=hac_lags(horizon_days)),
        "t_stat_lags": hac_lags(horizon_days),
        "t_stat_long": newey_west_t_stat(values, lags=long_hac_lags(len(values))),
        "t_stat_long_lags": long_hac_lags(len(values)),
        "days": len(values),
        "positive_share": _num((values > 0).mean()) if len(values) else None,
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
        "diff_mean": _num(diff.mean()) if len(diff) else None,
        "diff_std": _num(diff.std(ddof=1)) if len(diff) >= 2 else None,
        "t_stat": newey_west_t_stat(diff, lags=hac_lags(horizon_days)),
        "t_stat_lags": hac_lags(horizon_days),
        "t_stat_long": newey_west_t_stat(diff, lags=long_hac_lags(len(diff))),
        "t_stat_long_lags": long_hac_lags(len(diff)),
        "win_share": _num((diff > 0).mean()) if len(diff) else None,
        "days": len(diff),
        "days_reference_only": int(reference.index.difference(joined.index).size),
        "days_other_only": int(other.index.difference(joined.index).size),
    }


# --- classification --------------------------------------------------------------------------------------------


def predicted_class(proba: np.ndarray) -> np.ndarray:
    """Argmax over (SELL, HOLD, BUY); an exact tie goes to the lower code (SELL before HOLD before BUY)."""
    return np.asarray(proba).argmax(axis=1)


def class_auc(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float | None]:
    """One-vs-rest ROC AUC per class name; None where the class (or its complement) is absent from y_true."""
    out: dict[str, float | None] = {}
    for code, name in zip(LABELS, CLASS_NAMES, strict=True):
        positive = np.asarray(y_true) == code
        defined = 0 < positive.sum() < len(positive)
        out[name] = _num(roc_auc_score(y_true=positive, y_score=proba[:, code])) if defined else None
    return out


def macro_f1(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Unweighted mean F1 over the classes present in y_true or the predictions (sklearn's default set)."""
    return float(f1_score(y_true=y_true, y_pred=predicted_class(proba), average="macro", zero_division=0))


def accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    return float(accuracy_score(y_true=y_true, y_pred=predicted_class(proba)))


def precision_recall(y_true: np.ndarray, proba: np.ndarray) -> dict[str, dict[str, float | None]]:
    """Per-class precision (of the predicted class) and recall (of the true class); None where undefined.

    These are the numbers a y_true / y_pred swap exchanges (SPEC §9): precision of BUY divides by the rows
    PREDICTED BUY, recall of BUY by the rows that truly were BUY.
    """
    y_pred = predicted_class(proba)
    kwargs = {"labels": list(LABELS), "average": None, "zero_division": np.nan}
    precision = precision_score(y_true=y_true, y_pred=y_pred, **kwargs)
    recall = recall_score(y_true=y_true, y_pred=y_pred, **kwargs)
    return {
        "precision": {name: _num(value) for name, value in zip(CLASS_NAMES, precision, strict=True)},
        "recall": {name: _num(value) for name, value in zip(CLASS_NAMES, recall, strict=True)},
    }


def multiclass_log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (natural log), over all three labels.

    Positional call on purpose: scikit-learn 1.9 renamed the keyword `y_pred` to `y_proba`, and a (n, 3)
    probability matrix cannot be mistaken for the label vector (a swap fails on shape).
    """
    return float(log_loss(y_true, proba, labels=list(LABELS)))


def brier_score(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Multiclass Brier score: mean over rows of sum over classes of (p - one_hot)^2, in [0, 2]."""
    one_hot = np.eye(len(LABELS))[np.asarray(y_true)]
    return float(np.mean(np.sum((proba - one_hot) ** 2, axis=1)))


def confusion(y_true: np.ndarray, proba: np.ndarray) -> dict[str, list]:
    """Counts with rows = TRUE class, columns = PREDICTED class, both in the order SELL, HOLD, BUY."""
    matrix = confusion_matrix(y_true=y_true, y_pred=predicted_class(proba), labels=list(LABELS))
    return {"labels": list(CLASS_NAMES), "matrix": matrix.astype(int).tolist()}


def calibration_by_class(
    y_true: np.ndarray, proba: np.ndarray, n_bins: int = CALIBRATION_BINS
) -> dict[str, dict[str, list]]:
    """Reliability curve per class (one-vs-rest), `n_bins` uniform bins on [0, 1], non-empty bins only.

    `calibration_curve` gives the observed fraction and the mean predicted probability; the row count per
    bin is recomputed with the same binning it uses (edges linspace(0, 1, n_bins + 1), a value on an inner
    edge goes to the lower bin), so the three lists align.
    """
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    out = {}
    for code, name in zip(LABELS, CLASS_NAMES, strict=True):
        prob = proba[:, code]
        observed, mean_predicted = calibration_curve(
            y_true=(np.asarray(y_true) == code).astype(int), y_prob=prob, n_bins=n_bins, strategy="uniform"
        )
        counts = np.bincount(np.searchsorted(inner_edges, prob), minlength=n_bins)
        out[name] = {
            "mean_predicted": [float(v) for v in mean_predicted],
            "observed": [float(v) for v in observed],
            "count": [int(v) for v in counts[counts > 0]],
        }
    return out


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, object]:
    """All probability/classification metrics for integer labels `y_true` and an (n, 3) `proba` matrix."""
    return {
        "auc": class_auc(y_true, proba),
        "macro_f1": macro_f1(y_true, proba),
        "accuracy": accuracy(y_true, proba),
        "log_loss": multiclass_log_loss(y_true, proba),
        "brier": brier_score(y_true, proba),
        **precision_recall(y_true, proba),
        "confusion_matrix": confusion(y_true, proba),
        "calibration": calibration_by_class(y_true, proba),
    }


# --- trading view -----------------------------------------------------------------------------------------------


def _bin_label(low: float, high: float) -> str:
    return f"{float(low)!r}-{float(high)!r}"


def win_rate_by_bin(frame: pd.DataFrame, bins: Sequence[float] = WIN_RATE_BINS) -> list[dict[str, object]]:
    """Win rate of the directional calls, binned by the probability of the called direction.

    A row is a call when its argmax class is BUY or SELL (HOLD rows are no trade); it falls in bin
    [low, high) by that class's probability (the last bin also holds its upper edge). Rows whose top
    probability is below the first edge (e.g. < 0.5: a plurality, not a majority) are outside every bin,
    as are rows without a forward return. A BUY wins when fwd_ret_3d > 0, a SELL when it is < 0; a zero
    return is a loss for both. `mean_fwd_ret` is the return signed in the trade's direction.
    """
    edges = np.asarray(bins, dtype=float)
    proba = frame.loc[:, list(PROBA_COLUMNS)].to_numpy(dtype=float)
    called = predicted_class(proba)
    confidence = proba.max(axis=1)
    direction = np.select([called == BUY, called == SELL], [1.0, -1.0], default=0.0)
    signed = direction * frame[TARGET].to_numpy(dtype=float)
    position = np.searchsorted(edges, confidence, side="right") - 1
    position = np.where(confidence == edges[-1], len(edges) - 2, position)
    keep = (direction != 0) & np.isfinite(signed) & (position >= 0) & (position < len(edges) - 1)
    calls = pd.DataFrame({"bin": position[keep], "win": signed[keep] > 0, "ret": signed[keep]})
    stats = calls.groupby("bin").agg(count=("win", "size"), win_rate=("win", "mean"), mean_fwd_ret=("ret", "mean"))
    stats = stats.reindex(range(len(edges) - 1))
    return [
        {
            "bin": _bin_label(edges[i], edges[i + 1]),
            "count": int(np.nan_to_num(stats["count"].iat[i])),
            "win_rate": _num(stats["win_rate"].iat[i]),
            "mean_fwd_ret": _num(stats["mean_fwd_ret"].iat[i]),
        }
        for i in range(len(edges) - 1)
    ]


# --- per-day series of a metric (paired tests) --------------------------------------------------------------


def _row_losses(rows: pd.DataFrame, metric: str) -> np.ndarray:
    """Per-row value of a row-decomposable metric: log_loss, brier or accuracy."""
    proba = np.clip(rows.loc[:, list(PROBA_COLUMNS)].to_numpy(dtype=float), 0.0, 1.0)
    y_true = rows["label"].to_numpy(dtype=int)
    if metric == "log_loss":
        return -np.log(np.clip(proba[np.arange(len(y_true)), y_true], 1e-15, None))
    if metric == "brier":
        return np.sum((proba - np.eye(len(LABELS))[y_true]) ** 2, axis=1)
    return (predicted_class(proba) == y_true).astype(float)


# Metrics with a natural per-day series: the IC family (the daily IC) and the row-decomposable ones
# (the day's mean of the per-row values). AUC and macro-F1 have none.
DAILY_SERIES_METRICS = ("ic_mean", "icir", "ic_t_stat", "log_loss", "brier", "accuracy")


def daily_metric_series(rows: pd.DataFrame, metric: str) -> pd.Series:
    """One value per date of `metric` for a model's labelled rows: the daily rank IC for the IC family,
    else the day's mean per-row log-loss, Brier score or hit rate."""
    if metric not in DAILY_SERIES_METRICS:
        raise ValueError(f"{metric!r} has no per-day series; one of {DAILY_SERIES_METRICS} has")
    labelled = rows.loc[rows["label"].notna()]
    if metric.startswith("ic"):
        return daily_rank_ic(labelled)
    values = pd.Series(_row_losses(labelled, metric), index=labelled.index)
    return values.groupby(labelled["date"], sort=True).mean().rename(metric)


# --- predictions frame ------------------------------------------------------------------------------------------


def score_only_models(predictions: pd.DataFrame) -> list[str]:
    """Models whose rows carry a score but no class probabilities (all three null): factor baselines."""
    no_proba = predictions.loc[:, list(PROBA_COLUMNS)].isna().all(axis=1)
    per_model = no_proba.groupby(predictions["model"].astype(str), sort=False).all()
    return [str(model) for model in per_model.index[per_model]]


def labelled_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """Rows whose label (hence forward return) is known; checks the columns and the probabilities.

    A score-only model's rows have all three probabilities null; every other row must hold three
    probabilities that sum to one.
    """
    missing = [column for column in PREDICTION_COLUMNS if column not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack columns {missing}; expected {list(PREDICTION_COLUMNS)}")
    labelled = predictions.loc[predictions["label"].notna()]
    scored_only = labelled["model"].astype(str).isin(score_only_models(predictions)).to_numpy()
    proba = labelled.loc[:, list(PROBA_COLUMNS)].to_numpy(dtype=float)
    bad = ~np.isfinite(proba).all(axis=1) | (proba.min(axis=1) < -_PROBA_TOLERANCE)
    bad |= np.abs(proba.sum(axis=1) - 1.0) > _PROBA_TOLERANCE
    bad &= ~scored_only
    if bad.any():
        raise ValueError(f"{int(bad.sum())} labelled rows have p_sell + p_hold + p_buy that are not probabilities")
    return labelled


# What a score-only model (no probabilities) gets for the probability metrics.
_NO_CLASSIFICATION = {
    "auc": dict.fromkeys(CLASS_NAMES), "macro_f1": None, "accuracy": None, "log_loss": None, "brier": None,
    "precision": dict.fromkeys(CLASS_NAMES), "recall": dict.fromkeys(CLASS_NAMES), "confusion_matrix": None,
    "calibration": None, "win_rate_by_bin": None,
}


def _metrics(rows: pd.DataFrame, horizon_days: int, score_only: bool) -> dict[str, object]:
    ic = daily_rank_ic(rows)
    days = int(rows["date"].nunique())
    out = {
        "rows": len(rows),
        "days": days,
        "ic": {**ic_summary(ic, horizon_days), "days_dropped": days - len(ic)},
        "pooled_rank_ic": pooled_rank_ic(rows),
    }
    if score_only:
        return {**out, **_NO_CLASSIFICATION}
    y_true = rows["label"].to_numpy(dtype=int)
    proba = np.clip(rows.loc[:, list(PROBA_COLUMNS)].to_numpy(dtype=float), 0.0, 1.0)
    return {**out, **classification_metrics(y_true, proba), "win_rate_by_bin": win_rate_by_bin(rows)}


def _comparison_row(model: str, metrics: dict, paired: dict | None) -> dict[str, object]:
    return {
        "model": model,
        "ic_mean": metrics["ic"]["mean"],
        "icir": metrics["ic"]["icir"],
        "ic_t_stat": metrics["ic"]["t_stat"],
        "ic_t_stat_long": metrics["ic"]["t_stat_long"],
        "ic_days": metrics["ic"]["days"],
        "ic_days_dropped": metrics["ic"]["days_dropped"],
        # The reference (Trishula) minus this model, paired by day; None on the reference's own row.
        "paired_diff": paired["diff_mean"] if paired else None,
        "paired_t_stat": paired["t_stat"] if paired else None,
        "paired_t_stat_long": paired["t_stat_long"] if paired else None,
        "paired_win_share": paired["win_share"] if paired else None,
        "pooled_rank_ic": metrics["pooled_rank_ic"],
        "auc_buy": metrics["auc"]["BUY"],
        "auc_sell": metrics["auc"]["SELL"],
        "macro_f1": metrics["macro_f1"],
        "accuracy": metrics["accuracy"],
        "log_loss": metrics["log_loss"],
        "brier": metrics["brier"],
        "rows": metrics["rows"],
    }


def evaluate_predictions(
    predictions: pd.DataFrame, horizon_days: int = 3, reference: str = "trishula", leading: Sequence[str] = (BLEND,)
) -> dict[str, object]:
    """Metrics per model, pooled over folds and per fold, paired comparisons, and a comparison table.

    `predictions` holds one row per (model, symbol, decision date) with the columns `PREDICTION_COLUMNS`.
    Rows without a label (forward return not yet known) are excluded from every metric. The pooled IC
    is still the daily cross-sectional IC, now over all test days of all folds. `paired[model]` is
    `paired_ic_comparison(reference, model)` over all test days, for every model other than
    `reference` (empty when the reference is absent). Models come in the order: the reference, the
    `leading` ones (the blend of Trishula's parts: the first bar it must clear), then the rest in their order
    of first appearance; `baselines` lists the score-only ones; folds are sorted and keyed by str(fold).
    """
    labelled = labelled_predictions(predictions)
    present = [str(model) for model in pd.unique(predictions["model"])]
    first = [m for m in (reference, *leading) if m in present]
    models = [*first, *(m for m in present if m not in first)]
    baselines = score_only_models(predictions)
    pooled, per_fold, daily = {}, {}, {}
    for model in models:
        rows = labelled.loc[labelled["model"].astype(str) == model]
        if rows.empty:
            raise ValueError(f"model {model!r} has no labelled prediction to evaluate")
        score_only = model in baselines
        daily[model] = daily_rank_ic(rows)
        pooled[model] = _metrics(rows, horizon_days, score_only)
        per_fold[model] = {
            str(fold): _metrics(group, horizon_days, score_only) for fold, group in rows.groupby("fold", sort=True)
        }
    paired = (
        {m: paired_ic_comparison(daily[reference], daily[m], horizon_days) for m in models if m != reference}
        if reference in daily else {}
    )
    result = {
        "horizon_days": horizon_days,
        "models": models,
        "baselines": baselines,
        "reference": reference if reference in daily else None,
        "pooled": pooled,
        "per_fold": per_fold,
        "paired": paired,
        "comparison": [_comparison_row(model, pooled[model], paired.get(model)) for model in models],
    }
    return {**result, "verdict": verdict(result)}


# A paired |t| at or above this is read as a clear difference in the verdict (about 5 % two-sided).
VERDICT_T = 2.0


def verdict(metrics: Mapping, t_threshold: float = VERDICT_T) -> dict[str, object]:
    """Does the reference (Trishula) beat each other model and baseline, paired, on the same days?

    `beats` / `behind` list the models whose paired t-stat (reference minus model) is >= t / <= -t;
    the rest are `inconclusive`. The reference's own IC and its HAC t come along, and `against_blend` its
    paired difference against the blend of its parts (`trails`: the mean difference is below zero).
    """
    reference = metrics.get("reference")
    if reference is None:
        return {"reference": None, "beats": [], "behind": [], "inconclusive": [], "t_threshold": t_threshold,
                "against_blend": None}
    ic = metrics["pooled"][reference]["ic"]
    sides = {"beats": [], "behind": [], "inconclusive": []}
    for model, paired in metrics["paired"].items():
        t = paired["t_stat"]
        side = "inconclusive" if t is None or abs(t) < t_threshold else ("beats" if t > 0 else "behind")
        sides[side].append(model)
    blend = metrics["paired"].get(BLEND)
    against_blend = None if blend is None else {
        "diff_mean": blend["diff_mean"], "t_stat": blend["t_stat"], "t_stat_long": blend["t_stat_long"],
        "days": blend["days"], "trails": blend["diff_mean"] is not None and blend["diff_mean"] < 0}
    return {"reference": reference, "ic_mean": ic["mean"], "ic_t_stat": ic["t_stat"], "days": ic["days"],
            **sides, "t_threshold": t_threshold, "against_blend": against_blend}


def ic_over_time(predictions: pd.DataFrame) -> pd.DataFrame:
    """Daily cross-sectional rank IC per model (labelled rows only): columns date, model, ic."""
    labelled = labelled_predictions(predictions)
    frames = [
        daily_rank_ic(rows).rename_axis("date").reset_index().assign(model=str(model))
        for model, rows in labelled.groupby("model", sort=False)
    ]
    if not frames:
        return pd.DataFrame({"date": pd.Series(dtype="datetime64[ns, UTC]"), "model": [], "ic": []})
    return pd.concat(frames, ignore_index=True)[["date", "model", "ic"]]
