"""Trishula anchored on the blend of its parts (stacking/anchor.py), the ranking objective and the longer-memory
HAC t, on the shipped sample's real forward returns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from evaluation import (
    BLEND,
    TARGET,
    evaluate_predictions,
    ic_summary,
    long_hac_lags,
    newey_west_t_stat,
    paired_ic_comparison,
)
from evaluation.statistics import daily_quintile_spread
from features.build import load_feature_frames
from models.trishula import TrishulaRanker
from stacking.anchor import (
    META,
    anchor_history,
    anchor_predictions,
    check_anchor,
    correction_model,
    fit_anchor_weight,
    fold_weights,
    mixed_score,
)
from stacking.frame import decision_rows

SETTINGS = {"to": BLEND, "grid": [0.0, 0.25, 0.5, 0.75, 1.0], "min_days": 60, "hac_lags": 10}
H = 3
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def rows(cfg) -> pd.DataFrame:
    """The sample's labelled decision rows: symbol, date and the real 3-day forward return."""
    groups = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "features", "labels")}
    frames = load_feature_frames(groups["data"], groups["features"], groups["labels"])
    labelled = decision_rows(frames, "label_3d").dropna(subset=[TARGET])
    return labelled.reset_index(drop=True)


def _history(rows: pd.DataFrame, meta: np.ndarray, blend: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"date": rows["date"], "meta": meta, "blend": blend, TARGET: rows[TARGET]})


def test_an_informed_meta_learner_gets_weight_only_from_days_whose_label_was_known(rows):
    noise = np.random.default_rng(0).normal(size=len(rows))
    informed = rows[TARGET].to_numpy() + 0.5 * rows[TARGET].std() * noise  # meta knows much of the return
    history = _history(rows, informed, np.random.default_rng(1).normal(size=len(rows)))
    days = np.sort(history["date"].unique())
    after_all = pd.Timestamp(days[-1]) + (H + 1) * DAY
    fitted = fit_anchor_weight(history, after_all, SETTINGS, H)
    assert fitted["days"] == len(days)
    assert fitted["w_star"] == 1.0 and fitted["t_star"] > 5
    assert fitted["weight"] == pytest.approx(1 - 1 / fitted["t_star"] ** 2) and fitted["weight"] > 0.9
    # The fold starting the day after the 60th day's label is known sees 60 days; a day earlier, 59: no weight.
    boundary = pd.Timestamp(days[59]) + (H + 1) * DAY
    assert fit_anchor_weight(history, boundary, SETTINGS, H)["days"] == 60
    assert fit_anchor_weight(history, boundary, SETTINGS, H)["weight"] > 0
    short = fit_anchor_weight(history, boundary - DAY, SETTINGS, H)
    assert short["days"] == 59 and short["weight"] == 0.0 and short["w_star"] is None


def test_the_spread_objective_chooses_by_what_the_extremes_are_paid(rows):
    # A meta score that knows only the extremes (the top and bottom fifth of each day's return), noise between:
    # chosen on the spread it is worth its full weight, as on the IC.
    rank = rows.groupby("date")[TARGET].rank(pct=True).to_numpy()
    noise = np.random.default_rng(5).normal(size=len(rows))
    extremes = np.where(rank > 0.8, 10.0, np.where(rank <= 0.2, -10.0, 0.0)) + noise
    history = _history(rows, extremes, np.random.default_rng(6).normal(size=len(rows)))
    fitted = fit_anchor_weight(history, history["date"].max() + (H + 1) * DAY, {**SETTINGS, "objective": "spread"}, H)
    assert fitted["objective"] == "spread" and fitted["w_star"] == 1.0 and fitted["weight"] > 0.8
    assert fitted["mean"]["1.0"] > fitted["mean"]["0.0"] > -0.01
    with pytest.raises(ValueError, match="stack.anchor.objective must be one of"):
        check_anchor({**SETTINGS, "to": BLEND, "objective": "sharpe"}, BLEND)


def test_daily_quintile_spread_is_the_top_fifth_less_the_bottom_fifth():
    day = pd.Timestamp("2023-01-02", tz="UTC")
    frame = pd.DataFrame({"date": [day] * 10 + [day + DAY] * 3 + [day + 2 * DAY],
                          "score": [*range(10), 1, 2, 3, 1],
                          TARGET: [0.0, -0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.5, 0.3, 1.0, 2.0, 3.0, 1.0]})
    spread = daily_quintile_spread(frame)
    # Day 1: 10 names, k = 2: top (scores 9, 8) mean 0.4, bottom (0, 1) mean -0.1. Day 2: 3 names, k = 1: the
    # top 3.0 less the bottom 1.0. Day 3: one name, fewer than 2 k: no spread.
    assert spread.index.tolist() == [day, day + DAY] and spread.tolist() == pytest.approx([0.5, 2.0])


def test_a_noise_meta_learner_leaves_trishula_the_blend(rows):
    informed = rows[TARGET].to_numpy() + 0.5 * rows[TARGET].std() * np.random.default_rng(2).normal(size=len(rows))
    history = _history(rows, np.random.default_rng(3).normal(size=len(rows)), informed)
    fitted = fit_anchor_weight(history, history["date"].max() + (H + 1) * DAY, SETTINGS, H)
    assert fitted["w_star"] == 0.0 and fitted["weight"] == 0.0
    assert fitted["mean"]["0.0"] > fitted["mean"]["1.0"] and fitted["objective"] == "ic"


def _predictions(rows: pd.DataFrame) -> pd.DataFrame:
    """Two folds of trishula and blend rows on the sample's real days (fold 1 from the 60th day on)."""
    rng = np.random.default_rng(4)
    days = np.sort(rows["date"].unique())
    fold = (rows["date"] >= days[60]).astype("int32")
    base = rows[["symbol", "date"]].assign(fold=fold, fwd_ret_3d=rows[TARGET])
    return pd.concat([base.assign(model="trishula", score=rng.normal(size=len(rows))),
                      base.assign(model=BLEND, score=rng.normal(size=len(rows)))], ignore_index=True)


def test_anchored_scores_are_the_blend_at_weight_0_and_the_meta_learner_at_weight_1(rows):
    predictions = _predictions(rows)
    anchored = anchor_predictions(predictions, {0: 0.0, 1: 1.0}, BLEND)
    assert len(anchored) == len(predictions) + (predictions["model"] == "trishula").sum()
    meta = anchored[anchored["model"] == META].reset_index(drop=True)
    original = predictions[predictions["model"] == "trishula"].reset_index(drop=True)
    pd.testing.assert_frame_equal(meta.drop(columns="model"), original.drop(columns="model"))
    trishula = anchored[anchored["model"] == "trishula"].reset_index(drop=True)
    blend = predictions[predictions["model"] == BLEND].reset_index(drop=True)
    by_day = [trishula["fold"], trishula["date"]]
    expected = np.where(trishula["fold"] == 0, blend["score"].groupby(by_day).rank(pct=True),
                        original["score"].groupby(by_day).rank(pct=True))
    np.testing.assert_allclose(trishula["score"], expected)
    # In between, the mix of both ranks; the history a later fold's weight reads pairs them by row.
    half = mixed_score(original["score"].to_numpy(), blend["score"].to_numpy(), by_day, 0.5)
    np.testing.assert_allclose(half, 0.5 * (expected + np.where(trishula["fold"] == 0, original["score"].groupby(
        by_day).rank(pct=True), blend["score"].groupby(by_day).rank(pct=True))))
    history = anchor_history(predictions, BLEND)
    np.testing.assert_allclose(history["blend"], blend["score"])
    with pytest.raises(ValueError, match=f"1 trishula rows have no {BLEND} score"):
        anchor_predictions(predictions.drop(index=blend.index[:1] + len(original)), {0: 0.0, 1: 1.0}, BLEND)


def test_a_bad_anchor_setting_is_refused_naming_the_key():
    check_anchor({**SETTINGS, "to": None}, BLEND)
    with pytest.raises(ValueError, match="stack.anchor.to"):
        check_anchor({**SETTINGS, "to": "lstm"}, BLEND)
    with pytest.raises(ValueError, match="stack.anchor.grid"):
        check_anchor({**SETTINGS, "grid": [0.0, 1.5]}, BLEND)
    with pytest.raises(ValueError, match="stack.anchor.min_days"):
        check_anchor({**SETTINGS, "min_days": 1}, BLEND)


def test_the_ranking_objective_predicts_a_rank_score_and_saves_what_it_predicts(rows, tmp_path):
    days = np.sort(rows["date"].unique())
    target = rows.groupby("date")[TARGET].rank(pct=True)
    features = rows.assign(ret_rank=target).pipe(lambda r: r.select_dtypes("number").drop(
        columns=[c for c in r.columns if c.startswith(("fwd_", "label_")) or c == "ret_rank"]))
    train, val = (rows["date"] < days[80]).to_numpy(), (rows["date"] >= days[80]).to_numpy()
    params = {"n_estimators": 30, "learning_rate": 0.1, "num_leaves": 7, "min_child_samples": 20, "n_jobs": 1,
              "verbose": -1, "deterministic": True, "force_row_wise": True}
    model = TrishulaRanker(params, early_stopping_rounds=None, feature_schema_hash="schema-a").fit(
        features[train], target[train], features[val], target[val])
    scores = model.raw_scores(features[val], "schema-a")
    assert scores.shape == (int(val.sum()),) and np.isfinite(scores).all() and scores.std() > 0
    assert "l2" in model.best_score_["valid_0"]
    model.save(tmp_path / "rank.txt")
    loaded = TrishulaRanker.load(tmp_path / "rank.txt", model.feature_names_, "schema-a")
    np.testing.assert_allclose(loaded.raw_scores(features[val], "schema-a"), scores)
    with pytest.raises(TypeError, match="rank score"):
        model.predict_proba(features[val])


def test_the_long_memory_t_uses_at_least_10_lags_or_the_automatic_bandwidth(rows):
    assert long_hac_lags(680) == 10 and long_hac_lags(100_000) == 18
    daily = pd.Series(np.random.default_rng(5).normal(0.05, 0.2, 400),
                      index=pd.date_range("2021-01-01", periods=400, tz="UTC"))
    summary = ic_summary(daily)
    assert summary["t_stat_long_lags"] == 10 and summary["t_stat_lags"] == 3
    assert summary["t_stat_long"] == pytest.approx(newey_west_t_stat(daily.to_numpy(), 10))
    paired = paired_ic_comparison(daily, daily * 0.5)
    assert paired["t_stat_long"] == pytest.approx(newey_west_t_stat(0.5 * daily.to_numpy(), 10))


def test_the_comparison_shows_the_blend_first_and_says_when_trishula_trails_it(rows):
    predictions = _predictions(rows)
    oracle = predictions["fwd_ret_3d"].where(predictions["model"] == BLEND, predictions["score"])
    scored = predictions.assign(score=oracle, label=1.0, p_sell=np.nan, p_hold=np.nan, p_buy=np.nan)
    scored = pd.concat([scored.assign(model="factor").iloc[: len(rows)], scored], ignore_index=True)
    metrics = evaluate_predictions(scored)
    assert metrics["models"][:2] == ["trishula", BLEND]
    assert [row["model"] for row in metrics["comparison"]][:2] == ["trishula", BLEND]
    against = metrics["verdict"]["against_blend"]
    assert against["trails"] and against["diff_mean"] < -0.5 and against["t_stat_long"] < -2


def test_each_folds_weight_reads_only_the_folds_before_it_and_the_chosen_correction(rows):
    predictions = _predictions(rows)
    ranker = predictions[predictions["model"] == "trishula"].assign(model="trishula_rank_objective")
    ranker["score"] = ranker["fwd_ret_3d"]  # an oracle correction
    predictions = pd.concat([predictions, ranker], ignore_index=True)
    starts = predictions.groupby("fold")["date"].min().to_dict()
    settings = {**SETTINGS, "correction": "rank_objective", "min_days": 30}
    assert correction_model(settings) == "trishula_rank_objective"
    weights = fold_weights(predictions, starts, settings, BLEND, H)
    assert weights[0]["days"] == 0 and weights[0]["weight"] == 0.0  # nothing before the first fold
    assert weights[1]["days"] == 60 - H and weights[1]["weight"] > 0.9  # fold 0's known days: the oracle wins
    # Fold 1's own rows never move its weight.
    later = predictions["fold"] == 1
    scrambled = predictions.assign(score=predictions["score"].where(~later, -predictions["score"]))
    assert fold_weights(scrambled, starts, settings, BLEND, H)[1] == weights[1]
    # The multiclass correction reads Trishula's own (here noise) score: far less weight than the oracle's.
    assert fold_weights(predictions, starts, {**settings, "correction": "multiclass"}, BLEND, H)[1]["weight"] < 0.5
    with pytest.raises(ValueError, match="stack.anchor.correction"):
        check_anchor({**SETTINGS, "correction": "lambdarank"}, BLEND)
