"""Trishula's score anchored on the blend of its parts (issue 23, run 29).

The equal-weight blend of the parts' day ranks (`blend_parts`) is the score Trishula must not trail.
Whatever a combiner learns about weights from ~36 coins a day is mostly noise (the forecast-combination
puzzle), so the served score starts from the blend and adds the meta-learner only as far as earlier
folds' out-of-sample rows support it:

    score = (1 - w_f) * r(blend) + w_f * r(meta)        r = the day's percentile rank

where meta is the score of the correction (`stack.anchor.correction`): the multiclass meta-learner's
P(buy) - P(sell), or the same inputs under a ranking objective (a regression of the return's day rank;
run 29 adopted it: it beat the multiclass score at paired t 2.1 on the development years),
with one weight per meta fold f, fitted on the rows of EARLIER folds' test windows whose label was known
before f's first decision (date + h + 1 days <= f's first test day), never on f itself, by `objective`:
`ic` (the daily rank IC) or `spread` (issue 32, money not ranks: the day's top-fifth mean forward return less
its bottom fifth's, what the ranked book's legs are paid before costs):
- w* = the grid value whose mix has the highest mean of the objective's daily series on those days;
- t* = the paired Newey-West t of mix(w*) minus the blend on those days;
- w_f = w* * max(0, 1 - 1 / t*^2) when t* > 1, else 0 (positive-part James-Stein shrinkage of the
  correction toward the blend); no weight (w_f = 0) with fewer than `min_days` such days.
Where the correction is noise, Trishula is the blend. The rule was fixed before its run
(`benchmarks/results/experiments/29_anchored_stacker/plan.md`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from evaluation.statistics import TARGET, daily_quintile_spread, daily_rank_ic, newey_west_t_stat
from stacking.frame import RANK_OBJECTIVE_MODEL

# The meta-learner's own score, kept beside the anchored one in the predictions.
META = "trishula_meta"
# A prediction row's key: one model's rows align with another's on it.
KEYS = ["fold", "symbol", "date"]
# stack.anchor.objective -> the daily series a mix's weight is chosen on.
OBJECTIVES = {"ic": daily_rank_ic, "spread": daily_quintile_spread}


def anchor_enabled(stack_cfg: Mapping) -> bool:
    """Whether the run anchors Trishula's score (runs recorded before the option existed did not)."""
    anchor = stack_cfg.get("anchor")
    return bool(anchor) and anchor.get("to") is not None


def mixed_score(meta: np.ndarray, blend: np.ndarray, groups: list[np.ndarray], weight) -> np.ndarray:
    """(1 - weight) * rank of `blend` + weight * rank of `meta`, ranks as shares of each group's rows (a day,
    or a (fold, day)); `weight` a number or one per row: (n,)."""
    ranks = pd.DataFrame({"meta": meta, "blend": blend}).groupby(groups, sort=False).rank(pct=True)
    return ((1.0 - weight) * ranks["blend"] + weight * ranks["meta"]).to_numpy(dtype="float64")


def fit_anchor_weight(history: pd.DataFrame, first_test_day: pd.Timestamp, settings: Mapping,
                      horizon_days: int) -> dict:
    """The weight of the meta-learner in fold f's score, from `history`: earlier folds' out-of-sample rows
    (date, meta, blend and the target return). Only rows whose label was known before f's first decision count.
    """
    known = history[history["date"] + pd.Timedelta(days=horizon_days + 1) <= first_test_day]
    known = known.dropna(subset=["meta", "blend", TARGET])
    lags, grid = int(settings["hac_lags"]), [float(w) for w in settings["grid"]]
    days = int(known["date"].nunique())
    out = {"weight": 0.0, "w_star": None, "t_star": None, "days": days, "objective": settings.get("objective", "ic"),
           "mean": {}}
    if days < int(settings["min_days"]):
        return out
    meta, blend, dates = known["meta"].to_numpy(), known["blend"].to_numpy(), [known["date"].to_numpy()]
    daily = OBJECTIVES[settings.get("objective", "ic")]
    ics = {w: daily(known.assign(score=mixed_score(meta, blend, dates, w))) for w in grid}
    blend_ic = daily(known.assign(score=known["blend"]))
    means = {w: float(ic.mean()) for w, ic in ics.items()}
    w_star = max(grid, key=lambda w: (means[w], -w))  # ties go to the smaller weight: closer to the blend
    diff = pd.concat([ics[w_star], blend_ic], axis=1, join="inner").dropna()
    t_star = newey_west_t_stat((diff.iloc[:, 0] - diff.iloc[:, 1]).to_numpy(), lags) if w_star > 0 else None
    shrink = max(0.0, 1.0 - 1.0 / t_star**2) if t_star is not None and t_star > 1 else 0.0
    return {**out, "weight": w_star * shrink, "w_star": w_star, "t_star": t_star,
            "mean": {str(w): m for w, m in means.items()}}


def anchor_predictions(predictions: pd.DataFrame, weights: Mapping[int, float], blend: str,
                       correction: str = "trishula") -> pd.DataFrame:
    """`predictions` with Trishula's score anchored on `blend`'s: per fold and day, (1 - w) x the blend's rank +
    w x the rank of `correction`'s score (the multiclass meta-learner's own, or the ranking objective's), with
    the fold's weight w; Trishula's own rows kept beside as `trishula_meta`. Rows align on (fold, symbol, date)."""
    mine = (predictions["model"] == "trishula").to_numpy()
    rows = predictions.loc[mine, KEYS]
    for name, column in ((blend, "blend"), (correction, "meta")):
        rows = rows.merge(_scores(predictions, name, column), on=KEYS, how="left", validate="one_to_one")
        if rows[column].isna().any():
            raise ValueError(f"{int(rows[column].isna().sum())} trishula rows have no {name} score to anchor on")
    weight = rows["fold"].map(lambda fold: weights[int(fold)]).to_numpy(dtype="float64")
    out = predictions.copy()
    out.loc[mine, "score"] = mixed_score(rows["meta"].to_numpy(), rows["blend"].to_numpy(),
                                         [rows["fold"].to_numpy(), rows["date"].to_numpy()], weight)
    return pd.concat([out, predictions[mine].assign(model=META)], ignore_index=True)


def fold_weights(predictions: pd.DataFrame, first_test_days: Mapping[int, pd.Timestamp], settings: Mapping,
                 blend: str, horizon_days: int) -> dict[int, dict]:
    """Per meta fold, `fit_anchor_weight` on the out-of-sample rows of the folds before it (and of those, only
    the days whose label was known before its first decision): no fold's weight reads its own rows."""
    history = anchor_history(predictions, blend, correction_model(settings))
    return {fold: fit_anchor_weight(history[history["fold"] < fold], start, settings, horizon_days)
            for fold, start in sorted(first_test_days.items())}


def anchor_walkforward(predictions: pd.DataFrame, first_test_days: Mapping[int, pd.Timestamp], settings: Mapping,
                       blend: str, horizon_days: int) -> tuple[pd.DataFrame, dict[int, dict]]:
    """Trishula's score anchored as the walk-forward anchors it: each fold's weight fitted on the folds before it
    (`fold_weights`), then applied (`anchor_predictions`, with `settings`' correction). (the anchored predictions,
    fold -> its weight fit)."""
    weights = fold_weights(predictions, first_test_days, settings, blend, horizon_days)
    anchored = anchor_predictions(predictions, {fold: w["weight"] for fold, w in weights.items()}, blend,
                                  correction_model(settings))
    return anchored, weights


def anchor_history(predictions: pd.DataFrame, blend: str, correction: str = "trishula") -> pd.DataFrame:
    """Out-of-sample rows as `fit_anchor_weight` reads them: fold, date, the correction's score (meta), the
    blend's and the target."""
    meta = _scores(predictions, correction, "meta", TARGET)
    return meta.merge(_scores(predictions, blend, "blend"), on=KEYS, how="inner", validate="one_to_one")[
        ["fold", "date", "meta", "blend", TARGET]]


def _scores(predictions: pd.DataFrame, model: str, column: str, *extra: str) -> pd.DataFrame:
    """`model`'s rows: the row key, its score as `column`, and any `extra` columns."""
    rows = predictions.loc[predictions["model"] == model, [*KEYS, "score", *extra]]
    return rows.rename(columns={"score": column})


# stack.anchor.correction -> the model whose score corrects the blend.
CORRECTIONS = {"multiclass": "trishula", "rank_objective": RANK_OBJECTIVE_MODEL}


def correction_model(settings: Mapping) -> str:
    """The model whose score corrects the blend (runs recorded before the option existed: the multiclass one)."""
    return CORRECTIONS[settings.get("correction", "multiclass")]


def check_anchor(settings: Mapping | None, blend: str) -> None:
    """A bad `stack.anchor` fails before any fold is trained."""
    if not settings or settings.get("to") is None:
        return
    if settings.get("correction", "multiclass") not in CORRECTIONS:
        raise ValueError(f"stack.anchor.correction must be one of {sorted(CORRECTIONS)}, got "
                         f"{settings['correction']!r}")
    if settings.get("objective", "ic") not in OBJECTIVES:
        raise ValueError(f"stack.anchor.objective must be one of {sorted(OBJECTIVES)}, got {settings['objective']!r}")
    if settings["to"] != blend:
        raise ValueError(f"stack.anchor.to must be {blend!r} or null, got {settings['to']!r}")
    grid = [float(w) for w in settings["grid"]]
    if not grid or min(grid) < 0 or max(grid) > 1:
        raise ValueError(f"stack.anchor.grid must hold weights in [0, 1], got {grid}")
    if int(settings["min_days"]) < 2 or int(settings["hac_lags"]) < 0:
        raise ValueError(f"stack.anchor.min_days must be >= 2 and hac_lags >= 0, got {settings['min_days']} "
                         f"and {settings['hac_lags']}")
