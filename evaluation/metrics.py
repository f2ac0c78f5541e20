"""Out-of-sample metrics per model and fold (SPEC §8): the daily rank IC with its HAC t (`evaluation.statistics`),
the probability metrics (`evaluation.classification`), paired comparisons against Trishula and the verdict.

A model may be score-only (a factor baseline: `p_sell/p_hold/p_buy` null, only `score`): it gets the IC
figures and None for every probability metric. Every value returned is a plain Python float / int / str /
None, so results go to JSON unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from evaluation.classification import PROBA_COLUMNS, classification_metrics, row_values, win_rate_by_bin
from evaluation.statistics import daily_rank_ic, ic_summary, paired_ic_comparison, pooled_rank_ic
from features.labels import CLASS_NAMES

PREDICTION_COLUMNS = ("symbol", "date", "fold", "model", *PROBA_COLUMNS, "score", "label", "fwd_ret_3d")
# The equal-weight blend of Trishula's parts' day ranks (stacking.walkforward.BLEND): shown first after Trishula.
BLEND = "blend_parts"
_PROBA_TOLERANCE = 1e-3


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
    values = pd.Series(row_values(labelled, metric), index=labelled.index)
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
