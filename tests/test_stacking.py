"""The Trishula meta-learner on the shipped sample: raw margins, one softmax, feature checks,
confidence thresholds, past-only z-scores, meta folds and promotion."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from evaluation import daily_rank_ic, evaluate_predictions, newey_west_t_stat
from features.build import load_feature_frames
from features.factors import FACTORS
from features.labels import CLASS_NAMES
from models.trishula import (
    FeatureSchemaError,
    MissingFeatureError,
    TrishulaClassifier,
    TrishulaRanker,
    early_stopping_iteration,
    softmax,
    staged_log_loss,
)
from splits.artifacts import folds_from_config
from stacking.folds import meta_folds
from stacking.frame import (
    additive_inputs,
    check_out_of_sample,
    day_ranks,
    decision_rows,
    feature_sets,
    ranked_inputs,
)
from stacking.registry import Registry, decide_promotion
from stacking.run import build_signals, check_part_labels
from stacking.serving import ServedRun
from stacking.signals import (
    apply_confidence,
    cross_section_zscore,
    directions,
    fit_confidence_thresholds,
    precision_targets,
    rolling_zscore,
    signal_zscore,
)
from stacking.walkforward import StackSettings, predict_fold, train_fold
from store.feature_store import InSampleReadError

SMALL = {"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 20, "subsample": 0.8,
         "subsample_freq": 1, "colsample_bytree": 0.8, "random_state": 0, "deterministic": True,
         "force_row_wise": True, "n_jobs": 1, "verbose": -1}


@pytest.fixture(scope="module")
def frames(cfg):
    groups = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "features", "labels")}
    return load_feature_frames(groups["data"], groups["features"], groups["labels"])


@pytest.fixture(scope="module")
def split_rows(frames, cfg):
    """Fold 6's train / val / test decision rows (tabular features, real labels)."""
    rows = decision_rows(frames, "label_3d")
    fold = next(f for f in folds_from_config(frames.daily, cfg.split, 14) if f.index == 6)
    parts = {p: rows[fold.mask(rows["date"], p)] for p in ("train", "val", "test")}
    parts = {p: r[r["label_3d"].notna()] for p, r in parts.items()}
    return parts, list(frames.columns["tabular"])


@pytest.fixture(scope="module")
def fitted(split_rows):
    parts, features = split_rows
    model = TrishulaClassifier(SMALL, early_stopping_rounds=10, feature_schema_hash="schema-a")
    return model.fit(parts["train"][features], parts["train"]["label_3d"].to_numpy(),
                     parts["val"], parts["val"]["label_3d"].to_numpy())


def test_fit_follows_sklearn_conventions(fitted, split_rows):
    _, features = split_rows
    assert isinstance(fitted, TrishulaClassifier)
    assert fitted.feature_names_ == features and list(fitted.classes_) == [0, 1, 2]
    assert 1 <= fitted.best_iteration_ <= SMALL["n_estimators"]
    assert "multi_logloss" in fitted.best_score_["valid_0"]


def test_margins_are_raw_and_softmax_is_applied_once(fitted, split_rows):
    parts, _ = split_rows
    test = parts["test"]
    raw = fitted.raw_scores(test)
    proba = fitted.predict_proba(test)
    assert raw.shape == proba.shape == (len(test), 3)
    assert (raw < 0).any() or (raw > 1).any(), "margins look like probabilities"
    # LightGBM's own multiclass transform of the same trees equals our single softmax...
    lightgbm_proba = fitted.booster_.predict(test[fitted.feature_names_], num_iteration=fitted.best_iteration_)
    np.testing.assert_allclose(proba, lightgbm_proba, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    # ... and a second softmax would change it (a double transform is detectable).
    assert not np.allclose(softmax(proba), proba, atol=1e-3)


def test_missing_or_renamed_feature_is_an_error_naming_it(fitted, split_rows):
    parts, _ = split_rows
    test = parts["test"]
    with pytest.raises(MissingFeatureError, match="rsi_14"):
        fitted.predict_proba(test.drop(columns="rsi_14"))
    with pytest.raises(MissingFeatureError, match="macd_hist_rel"):
        fitted.raw_scores(test.rename(columns={"macd_hist_rel": "macd_hist"}))
    # Extra columns are ignored; a feature computed another way (other schema hash) is refused.
    np.testing.assert_array_equal(fitted.raw_scores(test.assign(extra=1.0)), fitted.raw_scores(test))
    with pytest.raises(FeatureSchemaError, match="schema-b"):
        fitted.raw_scores(test, feature_schema_hash="schema-b")


def test_staged_validation_curve_matches_lightgbm_early_stopping(fitted, split_rows):
    """The dask backend picks its best iteration from this curve: it must be LightGBM's own."""
    parts, features = split_rows
    losses = staged_log_loss(fitted.booster_, parts["val"][features], parts["val"]["label_3d"].to_numpy())
    assert len(losses) == fitted.booster_.current_iteration()
    assert early_stopping_iteration(losses, 10) == fitted.best_iteration_
    np.testing.assert_allclose(losses[fitted.best_iteration_ - 1], fitted.best_score_["valid_0"]["multi_logloss"],
                               rtol=1e-9)


def test_early_stopping_rule_by_hand():
    curve = np.array([1.0, 0.9, 0.95, 0.97, 0.85, 0.99, 0.99, 0.99, 0.7])
    assert early_stopping_iteration(curve, 2) == 2  # stops at round 4 before seeing 0.85
    assert early_stopping_iteration(curve, 3) == 5
    assert early_stopping_iteration(curve, 10) == 9


def test_saved_model_predicts_the_same(fitted, split_rows, tmp_path):
    parts, features = split_rows
    fitted.save(tmp_path / "model.txt")
    loaded = TrishulaClassifier.load(tmp_path / "model.txt", features, "schema-a")
    np.testing.assert_allclose(loaded.raw_scores(parts["test"]), fitted.raw_scores(parts["test"]), rtol=1e-12)
    with pytest.raises(FeatureSchemaError):
        TrishulaClassifier.load(tmp_path / "model.txt", features[::-1], "schema-a")


def test_fit_refuses_training_rows_without_every_class(split_rows):
    parts, features = split_rows
    train = parts["train"][parts["train"]["label_3d"] != 0]
    with pytest.raises(ValueError, match=r"lack class\(es\) \[0\]"):
        TrishulaClassifier(SMALL).fit(train[features], train["label_3d"].to_numpy(),
                                      parts["val"], parts["val"]["label_3d"].to_numpy())


def test_confidence_threshold_is_the_lowest_reaching_the_target_precision():
    # p_buy sorted high -> low with labels; precision of "p_buy >= t" at each cut:
    # .9:1/1  .8:2/2  .7:2/3  .6:3/4  .5:3/5  .4:3/6  .3:3/7  .2:3/8
    y = np.array([2, 2, 1, 2, 1, 1, 0, 0])
    p_buy = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    proba = np.column_stack([(1 - p_buy) / 2, (1 - p_buy) / 2, p_buy])
    def every(target):
        return dict.fromkeys(CLASS_NAMES, target)

    assert fit_confidence_thresholds(y, proba, every(0.75), min_support=1)["BUY"] == 0.6
    assert fit_confidence_thresholds(y, proba, every(0.6), min_support=1)["BUY"] == 0.5  # 3/5
    assert fit_confidence_thresholds(y, proba, every(0.75), min_support=5)["BUY"] is None  # out of reach
    # Each class is held to its own target.
    assert fit_confidence_thresholds(y, proba, {**every(1.0), "BUY": 0.6}, min_support=1)["BUY"] == 0.5
    # Tied probabilities enter together: with .6 tied to .5, the cut at .6 holds 3/5, not 3/4.
    tied = proba.copy()
    tied[3, 2] = 0.5
    assert fit_confidence_thresholds(y, tied, every(0.75), min_support=1)["BUY"] == 0.8


def test_precision_targets_are_a_lift_over_the_train_base_rates_or_one_absolute_figure():
    train = np.array([0] * 10 + [1] * 70 + [2] * 20)  # base rates SELL .1, HOLD .7, BUY .2
    assert precision_targets(train, "lift", 0.4, 1.5) == pytest.approx({"SELL": 0.15, "HOLD": 1.0, "BUY": 0.3})
    assert precision_targets(train, "absolute", 0.4, 1.5) == {"SELL": 0.4, "HOLD": 0.4, "BUY": 0.4}
    with pytest.raises(ValueError, match="stack.confidence.mode"):
        precision_targets(train, "relative", 0.4, 1.5)
    with pytest.raises(ValueError, match="target_lift"):
        precision_targets(train, "lift", 0.4, 0.0)


def test_confidence_gate_turns_unconfident_directions_into_hold():
    proba = np.array([[0.1, 0.2, 0.7], [0.1, 0.5, 0.4], [0.6, 0.3, 0.1], [0.45, 0.45, 0.1]])
    direction = np.array([2, 2, 0, 0], dtype="int8")
    signal = apply_confidence(direction, proba, {"SELL": 0.5, "HOLD": None, "BUY": 0.6})
    assert list(signal) == [2, 1, 0, 1]
    assert list(apply_confidence(direction, proba, {"SELL": None, "BUY": None})) == [1, 1, 1, 1]


def test_rolling_zscore_uses_past_days_only():
    days = pd.date_range("2023-01-01", periods=12, freq="D", tz="UTC")
    scores = np.array([0.1, 0.3, -0.2, 0.0, 0.4, 0.2, -0.1, 0.5, 0.3, -0.3, 0.1, 0.9])
    frame = pd.DataFrame({"symbol": "AAA", "date": days, "score": scores})
    other = pd.DataFrame({"symbol": "BBB", "date": days, "score": -10 * scores})  # must not mix in
    both = pd.concat([other, frame], ignore_index=True)
    z = rolling_zscore(both, window_days=5, min_periods=3)[both["symbol"] == "AAA"].to_numpy()
    for i in range(12):
        past = scores[max(0, i - 5):i]
        expected = (scores[i] - past.mean()) / past.std(ddof=1) if len(past) >= 3 else np.nan
        np.testing.assert_allclose(z[i], expected, rtol=1e-12, equal_nan=True)
    # Changing the last day's score changes only its own z.
    changed = both.copy()
    changed.loc[changed.index[-1], "score"] = -5.0
    z2 = rolling_zscore(changed, window_days=5, min_periods=3)[both["symbol"] == "AAA"].to_numpy()
    np.testing.assert_array_equal(z2[:-1], z[:-1])
    assert z2[-1] != z[-1]


def _day_rows(day: str, scores, fold: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"symbol": [f"S{i}" for i in range(len(scores))], "date": pd.Timestamp(day, tz="UTC"),
                         "fold": fold, "score": scores})


def test_cross_section_zscore_standardises_each_day_across_its_symbols():
    frame = pd.concat([
        _day_rows("2023-01-01", [0.1, 0.2, 0.3, 0.4, 0.5]),
        _day_rows("2023-01-02", [0.1, 0.2, 0.3, 0.9]),       # 4 symbols < min_symbols: no z
        _day_rows("2023-01-03", [0.2] * 6),                  # zero std: no z
        _day_rows("2023-01-04", [-0.4, -0.2, 0.0, 0.2, 0.4], fold=3),
        _day_rows("2023-01-04", [1.0, 2.0, 3.0, 4.0, 5.0], fold=4),  # overlapping test windows: apart
    ], ignore_index=True)
    shuffled = frame.sample(frac=1.0, random_state=0)  # row order must not matter
    z = cross_section_zscore(shuffled, min_symbols=5).sort_index()
    ramp = [-1.2649110640673518, -0.6324555320336759, 0.0, 0.6324555320336759, 1.2649110640673518]
    np.testing.assert_allclose(z.iloc[:5], ramp, atol=1e-12)
    assert z.iloc[5:15].isna().all()
    np.testing.assert_allclose(z.iloc[15:], ramp + ramp, atol=1e-12)
    assert cross_section_zscore(frame, min_symbols=4).iloc[5:9].notna().all()
    # Another day's scores never move a day's z: only its own day's scores enter.
    for day in frame["date"].unique():
        others = frame["date"] != day
        changed = frame.assign(score=frame["score"].where(~others, -7.0 * frame["score"] + 1.0))
        np.testing.assert_array_equal(cross_section_zscore(changed, min_symbols=5)[~others], z.to_numpy()[~others])


def test_signal_zscore_scale_is_validated_and_defaults_to_rolling():
    frame = pd.concat([_day_rows(f"2023-01-0{i + 1}", np.linspace(-0.5, 0.5, 6) * (i + 1)) for i in range(6)],
                      ignore_index=True)
    rolling = {"zscore_days": 3, "zscore_min_periods": 2}
    # A run recorded before stack.signals.scale existed was scored rolling.
    pd.testing.assert_series_equal(signal_zscore(frame, rolling), rolling_zscore(frame, 3, 2))
    with pytest.raises(ValueError, match=r"stack.signals.scale .*'rolling', 'cross_section'.*'per_day'"):
        signal_zscore(frame, {**rolling, "scale": "per_day"})


def test_cross_section_z_ignores_a_per_fold_rescaling_that_moves_rolling_z_at_the_boundary():
    rng = np.random.default_rng(7)
    days = pd.date_range("2023-01-01", periods=40, tz="UTC")
    frame = pd.DataFrame({"symbol": np.tile([f"S{i}" for i in range(8)], len(days)), "date": np.repeat(days, 8)})
    frame["fold"] = np.where(frame["date"] >= days[20], 1, 0)
    frame["score"] = rng.normal(0.0, 0.1, len(frame))
    # Fold 1's model scores on another scale (stretched and shifted): no edge changed.
    rescaled = frame.assign(score=frame["score"].where(frame["fold"] == 0, 3.0 * frame["score"] + 0.2))
    cfg = {"zscore_days": 10, "zscore_min_periods": 5, "cross_section_min_symbols": 5}
    cross = {**cfg, "scale": "cross_section"}
    np.testing.assert_allclose(signal_zscore(rescaled, cross), signal_zscore(frame, cross), rtol=1e-9, atol=1e-12)
    rolling = {**cfg, "scale": "rolling"}
    before, after = signal_zscore(frame, rolling), signal_zscore(rescaled, rolling)
    in_fold_0 = frame["fold"] == 0
    np.testing.assert_array_equal(after[in_fold_0], before[in_fold_0])
    # Past the boundary the rolling window still holds fold 0's scores: z bursts, and BUYs with it.
    first_days = frame["date"].between(days[20], days[24])
    assert not np.allclose(after[first_days], before[first_days])
    assert (directions(after[first_days]) == 2).sum() > 2 * (directions(before[first_days]) == 2).sum()


def test_cross_section_signals_of_one_day_alone_equal_the_batch():
    """The daily run serves one day: with cross_section its rows alone give the batch's z and signals."""
    rng = np.random.default_rng(3)
    days = pd.date_range("2023-01-01", periods=6, tz="UTC")
    proba = rng.dirichlet([1.0, 1.0, 1.0], size=6 * 7)
    predictions = pd.DataFrame({"symbol": np.tile([f"S{i}" for i in range(7)], 6), "date": np.repeat(days, 7),
                                "fold": np.repeat([0, 0, 0, 1, 1, 1], 7), "model": "trishula",
                                "p_sell": proba[:, 0], "p_hold": proba[:, 1], "p_buy": proba[:, 2]})
    predictions["score"] = predictions["p_buy"] - predictions["p_sell"]
    thresholds = {0: {"SELL": 0.3, "BUY": 0.3}, 1: {"SELL": 0.3, "BUY": 0.3}}
    cfg = {"scale": "cross_section", "cross_section_min_symbols": 5, "z_threshold": 1.0}
    batch = build_signals(predictions, thresholds, cfg)
    for day in days:
        served = build_signals(predictions[predictions["date"] == day], thresholds, cfg)
        pd.testing.assert_frame_equal(served, batch[batch["date"] == day].reset_index(drop=True))
    assert batch["z"].notna().all() and set(batch["signal"]) == {"BUY", "HOLD", "SELL"}


def test_direction_thresholds():
    assert list(directions(np.array([2.0, -2.0, 1.5, -1.5, np.nan]), 1.5)) == [2, 0, 1, 1, 1]


def test_meta_folds_keep_purges_and_skip_short_train_windows(frames, cfg):
    folds = folds_from_config(frames.daily, cfg.split, 14)
    first = folds[0].test_start + pd.Timedelta(days=3)
    made, skipped = meta_folds(folds, first, val_days=21, purge_days=14, min_train_days=30)
    assert skipped == [f.index for f in folds if f.index < 6] and [m.index for m in made] == list(range(6, 14))
    for meta, fold in zip(made, folds[6:], strict=True):
        assert (meta.test_start, meta.test_end) == (fold.test_start, fold.test_end)
        assert (meta.val_start - meta.train_end).days == 15 and (meta.test_start - meta.val_end).days == 15
        assert meta.train_start == first and (meta.train_end - meta.train_start).days + 1 >= 30
    rolling, _ = meta_folds(folds, first, val_days=21, purge_days=14, min_train_days=30, train_days=40)
    assert all((m.train_end - m.train_start).days + 1 == 40 for m in rolling if m.train_start > first)


def test_rows_in_sample_for_their_extractor_are_refused():
    frame = pd.DataFrame({
        "symbol": ["AAA", "BBB"],
        "decision_time": pd.to_datetime(["2023-07-02", "2023-07-02"], utc=True),
        "lstm_version": ["v1", "v1"],
        "lstm_eligible_from": pd.to_datetime(["2023-07-01", "2023-07-05"], utc=True),
    })
    with pytest.raises(InSampleReadError, match="BBB"):
        check_out_of_sample(frame, "lstm")
    check_out_of_sample(frame.iloc[:1], "lstm")


def _predictions(frames, quality: float, seed: int) -> pd.DataFrame:
    """Trishula-shaped predictions on two real folds: the score is `quality` × the real 3-day return plus noise."""
    rows = decision_rows(frames, "label_3d")
    rows = rows[rows["date"].between("2023-09-01", "2023-09-28") & rows["label_3d"].notna()]
    noise = np.random.default_rng(seed).normal(0, 0.05, len(rows))
    score = np.tanh(quality * rows["fwd_ret_3d"].to_numpy() * 10 + noise)
    p_buy, p_sell = np.clip(score, 0, None) * 0.8 + 0.1, np.clip(-score, 0, None) * 0.8 + 0.1
    return pd.DataFrame({
        "symbol": rows["symbol"].to_numpy(), "date": rows["date"].to_numpy(),
        "fold": np.where(rows["date"] < pd.Timestamp("2023-09-15", tz="UTC"), 6, 7), "model": "trishula",
        "p_sell": p_sell, "p_hold": 1 - p_buy - p_sell, "p_buy": p_buy, "score": p_buy - p_sell,
        "label": rows["label_3d"].astype("float64").to_numpy(), "fwd_ret_3d": rows["fwd_ret_3d"].to_numpy(),
    })


def test_promotion_keeps_a_better_champion_and_swaps_for_a_better_challenger(frames, tmp_path):
    good, bad = _predictions(frames, 1.0, 0), _predictions(frames, -1.0, 1)
    registry = Registry(tmp_path)
    first = decide_promotion("good", good, None, None, "ic_mean", evaluate_predictions)
    assert first.promoted and first.reason == "no champion yet"
    registry.record(first)
    assert registry.champion()["run_id"] == "good"

    worse = decide_promotion("bad", bad, "good", good, "ic_mean", evaluate_predictions)
    assert not worse.promoted and worse.challenger_value < worse.champion_value
    assert worse.folds == [6, 7] and worse.rows == len(good)
    registry.record(worse)
    assert registry.champion()["run_id"] == "good"

    better = decide_promotion("good2", good, "bad", bad, "log_loss", evaluate_predictions)
    assert better.promoted and better.challenger_value < better.champion_value  # lower log-loss wins
    tie = decide_promotion("same", good, "good", good.copy(), "ic_mean", evaluate_predictions)
    assert not tie.promoted and "champion stays" in tie.reason
    # Only rows both tested count: a challenger tested on fold 7 only is compared on fold 7 only.
    partial = decide_promotion("late", good[good["fold"] == 7], "bad", bad, "ic_mean", evaluate_predictions)
    assert partial.folds == [7]
    with pytest.raises(ValueError, match="stack.promotion.metric"):
        decide_promotion("x", good, None, None, "sharpe", evaluate_predictions)


def test_ablations_drop_exactly_the_named_extractor_inputs(frames):
    embeddings = {"lstm": [f"lemb_{i}" for i in range(12)], "tcn": [f"emb_{i}" for i in range(16)]}
    probabilities = {kind: [f"{kind}_p_sell", f"{kind}_p_hold", f"{kind}_p_buy"] for kind in embeddings}
    sets = feature_sets(frames, ["lstm", "tcn"], embeddings, ["no_embeddings", "no_lstm", "no_tcn"], embeddings=True)
    assert list(sets) == ["tabular", "trishula", "trishula_no_embeddings", "trishula_no_lstm", "trishula_no_tcn"]
    tabular = sets["tabular"]
    assert set(sets["trishula"]) == {*tabular, *embeddings["lstm"], *embeddings["tcn"], *probabilities["lstm"],
                                     *probabilities["tcn"]}
    assert set(sets["trishula_no_embeddings"]) == {*tabular, *probabilities["lstm"], *probabilities["tcn"]}
    assert set(sets["trishula_no_lstm"]) == {*tabular, *embeddings["tcn"], *probabilities["tcn"]}
    assert set(sets["trishula_no_tcn"]) == {*tabular, *embeddings["lstm"], *probabilities["lstm"]}
    assert not set(FACTORS) & {column for columns in sets.values() for column in columns}
    assert list(feature_sets(frames, ["lstm", "tcn"], embeddings, embeddings=True)) == ["tabular", "trishula"]
    with pytest.raises(ValueError, match="no_gru"):
        feature_sets(frames, ["lstm", "tcn"], embeddings, ["no_gru"], embeddings=True)

    # Without embeddings (the default), Trishula reads the probabilities and the ablation adds the embeddings.
    sets = feature_sets(frames, ["lstm", "tcn"], embeddings, ["with_embeddings", "no_tcn"], embeddings=False)
    assert set(sets["trishula"]) == {*tabular, *probabilities["lstm"], *probabilities["tcn"]}
    assert set(sets["trishula_with_embeddings"]) == {*tabular, *embeddings["lstm"], *embeddings["tcn"],
                                                     *probabilities["lstm"], *probabilities["tcn"]}
    assert set(sets["trishula_no_tcn"]) == {*tabular, *probabilities["lstm"]}
    # The ranking objective changes the objective only: Trishula's inputs, in Trishula's order.
    ranked = feature_sets(frames, ["lstm", "tcn"], embeddings, ["rank_objective"], embeddings=False)
    assert ranked["trishula_rank_objective"] == ranked["trishula"]
    with pytest.raises(ValueError, match="no_embeddings"):
        feature_sets(frames, ["lstm", "tcn"], embeddings, ["no_embeddings"], embeddings=False)

    # stack.extractor_inputs=score: one column a kind, P(buy) - P(sell), in place of the three probabilities.
    sets = feature_sets(frames, ["lstm", "tcn"], embeddings, ["with_embeddings", "no_lstm"], embeddings=False,
                        extractor_inputs="score")
    assert set(sets["trishula"]) == {*tabular, "lstm_score", "tcn_score"}
    assert set(sets["trishula_with_embeddings"]) == {*tabular, *embeddings["lstm"], *embeddings["tcn"],
                                                     "lstm_score", "tcn_score"}
    assert set(sets["trishula_no_lstm"]) == {*tabular, "tcn_score"}
    with pytest.raises(ValueError, match="stack.extractor_inputs must be one of"):
        feature_sets(frames, ["lstm", "tcn"], embeddings, embeddings=False, extractor_inputs="logits")

    # stack.regime_inputs=false: no model reads the market-wide regime inputs; everything else stays.
    regime = set(frames.columns["regime"])
    assert regime and regime <= set(tabular)
    sets = feature_sets(frames, ["lstm", "tcn"], embeddings, ["no_tcn"], embeddings=False, regime_inputs=False)
    assert set(sets["tabular"]) == set(tabular) - regime
    assert set(sets["trishula"]) == set(tabular) - regime | {*probabilities["lstm"], *probabilities["tcn"]}
    assert set(sets["trishula_no_tcn"]) == set(tabular) - regime | set(probabilities["lstm"])


def _tree_features(node: dict) -> set[int]:
    if "split_feature" not in node:
        return set()
    return {node["split_feature"]} | _tree_features(node["left_child"]) | _tree_features(node["right_child"])


def test_additive_features_never_share_a_tree_with_another_column(split_rows, frames):
    """stack.additive_extractors: a tree that splits on an additive column splits on nothing else; the
    other columns still interact."""
    parts, features = split_rows
    additive = ["rsi_14", "ret_7d"]  # real columns standing in for extractor outputs
    model = TrishulaClassifier(SMALL, early_stopping_rounds=None, additive_features=additive).fit(
        parts["train"][features], parts["train"]["label_3d"].to_numpy(), parts["val"],
        parts["val"]["label_3d"].to_numpy())
    index = {features.index(c) for c in additive}
    used = [_tree_features(tree["tree_structure"]) for tree in model.booster_.dump_model()["tree_info"]]
    assert any(u & index for u in used) and any(len(u) > 1 for u in used)
    assert all(len(u) == 1 for u in used if u & index)
    with pytest.raises(ValueError, match="not_a_column"):
        TrishulaClassifier(SMALL, additive_features=["not_a_column"]).fit(
            parts["train"][features], parts["train"]["label_3d"].to_numpy(), parts["val"],
            parts["val"]["label_3d"].to_numpy())
    # The extractor outputs: every column the tabular model lacks, probabilities and embeddings alike.
    embeddings = {"lstm": ["lemb_0"], "tcn": ["temb_0"]}
    sets = feature_sets(frames, ["lstm", "tcn"], embeddings, ["with_embeddings"], embeddings=False)
    assert set(additive_inputs(sets)) == {"lemb_0", "temb_0", *(f"{kind}_p_{c}" for kind in embeddings
                                                                 for c in ("sell", "hold", "buy"))}


def test_promotion_refuses_a_challenger_inside_the_margin_or_below_min_t_and_logs_why(frames, tmp_path):
    champion, close, clear = _predictions(frames, 0.5, 0), _predictions(frames, 0.55, 1), _predictions(frames, 3.0, 2)
    registry = Registry(tmp_path)
    registry.record(decide_promotion("champ", champion, None, None, "ic_mean", evaluate_predictions))

    # A point-estimate win smaller than the margin is refused.
    inside = decide_promotion("close", close, "champ", champion, "ic_mean", evaluate_predictions, margin=0.5, min_t=0)
    assert inside.challenger_value > inside.champion_value and not inside.promoted
    assert "not better by more than the margin 0.5" in inside.reason
    # Past the margin, but its paired t-stat does not reach min_t.
    weak = decide_promotion("close", close, "champ", champion, "ic_mean", evaluate_predictions, margin=0.0, min_t=50)
    assert not weak.promoted and "below min_t 50" in weak.reason
    assert weak.paired_t_stat is not None and weak.paired_t_stat < 50 and weak.paired_days == 28  # 2023-09-01..28
    # The paired t is the HAC t of the daily IC difference, challenger minus champion, on the common days.
    diff = (daily_rank_ic(close) - daily_rank_ic(champion)).dropna()
    assert weak.paired_diff == pytest.approx(diff.mean())
    assert weak.paired_t_stat == pytest.approx(newey_west_t_stat(diff.to_numpy(), lags=3))
    # A clear winner passes both; lower-is-better metrics are signed so that t > 0 favours the challenger.
    strong = decide_promotion("clear", clear, "champ", champion, "ic_mean", evaluate_predictions,
                              margin=0.005, min_t=2.0)
    assert strong.promoted and strong.paired_t_stat >= 2
    by_loss = decide_promotion("clear", clear, "champ", champion, "log_loss", evaluate_predictions,
                               margin=0.0, min_t=2.0)
    # Its over-confident probabilities lose on log-loss: the sign says so, and the reverse comparison promotes.
    assert by_loss.challenger_value > by_loss.champion_value and by_loss.paired_t_stat < -1 and not by_loss.promoted
    reverse = decide_promotion("champ", champion, "clear", clear, "log_loss", evaluate_predictions, min_t=1.0)
    assert reverse.promoted and reverse.paired_t_stat == pytest.approx(-by_loss.paired_t_stat)

    for decision in (inside, weak, strong):
        registry.record(decision)
    log = registry.promotions()
    assert [entry["promoted"] for entry in log] == [True, False, False, True]
    assert log[1]["margin"] == 0.5 and log[2]["min_t"] == 50 and "below min_t" in log[2]["reason"]
    assert log[3]["paired_t_stat"] == strong.paired_t_stat
    assert registry.champion()["run_id"] == "clear"
    with pytest.raises(ValueError, match="no per-day series"):
        decide_promotion("x", close, "champ", champion, "auc_buy", evaluate_predictions, min_t=1.0)


def test_dask_backend_trains_the_same_model_class_on_two_workers(split_rows):
    from dask.distributed import Client, LocalCluster

    parts, features = split_rows
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        model = TrishulaClassifier(SMALL, early_stopping_rounds=10, backend="dask", dask_client=client).fit(
            parts["train"][features], parts["train"]["label_3d"].to_numpy(),
            parts["val"], parts["val"]["label_3d"].to_numpy(),
        )
    # A plain local booster comes back, trained across both workers.
    assert model.booster_.params.get("num_machines") == 2
    assert model.feature_names_ == features and 1 <= model.best_iteration_ <= SMALL["n_estimators"]
    proba = model.predict_proba(parts["test"])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="Client"):
        TrishulaClassifier(SMALL, backend="dask")


def test_without_early_stopping_every_round_is_kept_and_scored_on_validation(split_rows):
    parts, features = split_rows
    model = TrishulaClassifier(SMALL, early_stopping_rounds=None).fit(
        parts["train"][features], parts["train"]["label_3d"].to_numpy(), parts["val"],
        parts["val"]["label_3d"].to_numpy())
    assert model.best_iteration_ == model.booster_.current_iteration() == SMALL["n_estimators"]
    y = parts["val"]["label_3d"].to_numpy(dtype="int64")
    proba = model.predict_proba(parts["val"])
    assert model.best_score_["valid_0"]["multi_logloss"] == pytest.approx(-np.mean(np.log(proba[np.arange(len(y)), y])))


def test_day_ranks_rank_each_day_among_its_own_rows_and_leave_the_regime_raw(frames, split_rows):
    parts, _ = split_rows
    rows = parts["val"]
    features = {"trishula": [*frames.columns["tabular"], *frames.columns["regime"]]}
    ranked = ranked_inputs(features, frames, "day_rank")
    assert ranked == list(frames.columns["tabular"]) and ranked_inputs(features, frames, "raw") == []
    with pytest.raises(ValueError, match="stack.inputs"):
        ranked_inputs(features, frames, "zscore")
    out = day_ranks(rows, ranked)
    day = rows["date"].iloc[0]
    today = rows[rows["date"] == day]
    # By hand: the share of the day's rows at or below each value (ties averaged), per column.
    expected = today["rsi_14"].rank(pct=True)
    assert np.allclose(out.loc[today.index, "rsi_14"], expected)
    assert out[list(frames.columns["regime"])].equals(rows[list(frames.columns["regime"])])
    # A day's ranks never read another day: changing every other day leaves them unchanged.
    shifted = rows.copy()
    shifted.loc[shifted["date"] != day, ranked] = shifted.loc[shifted["date"] != day, ranked] * -3.0 + 7.0
    assert day_ranks(shifted, ranked).loc[today.index, ranked].equals(out.loc[today.index, ranked])
    assert out[ranked].max().max() <= 1.0 and out[ranked].min().min() > 0.0


def _parts_alone(frames, extra: list[str]) -> tuple[dict, StackSettings]:
    """The tabular model and `extra` parts on the tabular inputs (no extractor outputs), with the settings
    that train them."""
    features = feature_sets(frames, [], {}, embeddings=False, extra_parts=extra)
    features.pop("trishula")
    confidence = {"mode": "lift", "target_lift": 1.5, "target_precision": 0.4, "min_support": 20}
    return features, StackSettings(label="label_3d", params=SMALL, early_stopping_rounds=None, confidence=confidence,
                                   kinds=[], feature_schema_hash="schema-a", models=list(features),
                                   ranked=list(frames.columns["tabular"]), extra_parts=extra)


def test_extra_parts_learn_their_own_targets_and_join_the_blend(frames, cfg, tmp_path):
    rows = decision_rows(frames, "label_3d")
    # Every built label rides along (never as an input): the extra parts learn other horizons'.
    assert {"label_1d", "label_7d", "fwd_ret_7d"} <= set(rows.columns)
    fold = next(f for f in folds_from_config(frames.daily, cfg.split, 14) if f.index == 6)
    extra = ["tabular_1d", "tabular_7d", "tabular_rank"]
    features, settings = _parts_alone(frames, extra)  # no extractor outputs here: the parts alone
    assert all(features[part] == features["tabular"] for part in extra)
    train_fold(rows, fold, features, settings, tmp_path)
    meta = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in features}
    assert {name: (m["label"], m["objective"]) for name, m in meta.items()} == {
        "tabular": ("label_3d", "multiclass"), "tabular_1d": ("label_1d", "multiclass"),
        "tabular_7d": ("label_7d", "multiclass"), "tabular_rank": ("fwd_ret_3d_day_rank", "rank")}
    # Confidence thresholds gate the primary label's classes only.
    assert set(meta["tabular"]["confidence"]["thresholds"]) == set(CLASS_NAMES)
    assert all(meta[part]["confidence"]["thresholds"] == {} for part in extra)

    predictions = predict_fold(rows, fold, tmp_path, settings)
    wide = predictions.pivot(index=["date", "symbol"], columns="model", values="score")
    assert not np.allclose(wide["tabular_7d"], wide["tabular"])  # another target, another model
    # The blend, by hand: the mean of the four parts' day ranks (shares of the day's coins).
    ranks = wide[["tabular", *extra]].groupby(level="date").rank(pct=True)
    np.testing.assert_allclose(wide["blend_parts"], ranks.mean(axis=1), rtol=1e-12)

    with pytest.raises(ValueError, match="tabular_30d"):
        feature_sets(frames, [], {}, embeddings=False, extra_parts=["tabular_30d"])
    with pytest.raises(ValueError, match=r"label_7d.*labels.thresholds"):
        check_part_labels(["tabular_7d", "tabular_rank"], ["fwd_ret_3d", "label_3d"])
    check_part_labels(["tabular_rank"], ["fwd_ret_3d", "label_3d"])  # the return's rank needs no other label


def test_parts_aimed_at_the_extremes_train_on_their_window_targets(frames, cfg, tmp_path):
    rows = decision_rows(frames, "label_3d")
    fold = next(f for f in folds_from_config(frames.daily, cfg.split, 14) if f.index == 6)
    extra = ["tabular_tails", "tabular_vol_scaled", "tabular_beta_residual", "tabular_lambdarank_top",
             "tabular_lambdarank_bottom"]
    features, settings = _parts_alone(frames, extra)
    train_fold(rows, fold, features, settings, tmp_path)
    meta = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in extra}
    assert {name: (m["label"], m["objective"], m["score_sign"]) for name, m in meta.items()} == {
        "tabular_tails": ("fwd_ret_3d_tails", "multiclass", 1.0),
        "tabular_vol_scaled": ("fwd_ret_3d_vol_scaled", "rank", 1.0),
        "tabular_beta_residual": ("fwd_ret_3d_beta_residual_rank", "rank", 1.0),
        "tabular_lambdarank_top": ("fwd_ret_3d_quintile", "rank", 1.0),
        "tabular_lambdarank_bottom": ("fwd_ret_3d_quintile_reversed", "rank", -1.0)}
    assert "val_ndcg@5" in meta["tabular_lambdarank_top"] and "val_l2" in meta["tabular_vol_scaled"]
    predictions = predict_fold(rows, fold, tmp_path, settings)
    wide = predictions.pivot(index=["date", "symbol"], columns="model", values="score")
    # The bottom end's part is served negated: its booster's own prediction ranks the losers first.
    bottom = TrishulaRanker.load(tmp_path / "tabular_lambdarank_bottom.txt",
                                 meta["tabular_lambdarank_bottom"]["features"], "schema-a")
    test = rows[fold.mask(rows["date"], "test")].reset_index(drop=True)
    raw = bottom.raw_scores(day_ranks(test, meta["tabular_lambdarank_bottom"]["ranked_features"]), "schema-a")
    served = predictions[predictions["model"] == "tabular_lambdarank_bottom"]["score"].to_numpy()
    np.testing.assert_array_equal(served, -raw)
    ranks = wide[["tabular", *extra]].groupby(level="date").rank(pct=True)
    np.testing.assert_allclose(wide["blend_parts"], ranks.mean(axis=1), rtol=1e-12)
    check_part_labels(extra, ["fwd_ret_3d", "label_3d"])  # made from the forward return: no other label


def test_a_served_run_predicts_the_extra_parts_its_blend_is_made_of(tmp_path):
    stack = {"lgbm": SMALL, "early_stopping_rounds": None, "confidence": {}, "kinds": ["lstm", "tcn"],
             "anchor": {"to": "blend_parts", "correction": "rank_objective"}, "extra_parts": ["tabular_7d"]}
    trained = ["tabular", "tabular_7d", "trishula", "trishula_no_lstm", "trishula_rank_objective"]
    run = ServedRun("run", tmp_path, {"stack": stack, "schema": "s", "folds": [{"models": dict.fromkeys(trained)}]},
                    [], {})
    settings = run.settings("label_3d")
    assert settings.models == ["tabular", "tabular_7d", "trishula", "trishula_rank_objective"]
    assert list(settings.extra_parts) == ["tabular_7d"]
    # A run made before the option existed blends tabular and the kinds alone.
    older = ServedRun("old", tmp_path, {**run.meta, "stack": {k: v for k, v in stack.items() if k != "extra_parts"}},
                      [], {})
    assert list(older.settings("label_3d").extra_parts) == []


def test_window_targets_aim_at_the_extremes_of_each_day():
    from stacking.frame import BETA_RESIDUAL_RANK, TAILS, VOL_SCALED, window_targets

    day = pd.Timestamp("2023-01-01", tz="UTC")
    rows = pd.DataFrame({
        "date": [day] * 5 + [day + pd.Timedelta(days=1)] * 5,
        "fwd_ret_3d": [0.10, 0.05, 0.0, -0.05, -0.10, 0.3, 0.2, 0.1, 0.0, np.nan],
        "volatility_30d": [0.05, 0.05, 0.05, 0.05, 0.01, 0.1, 0.1, 0.1, 0.1, 0.1],
        "beta_30d": [1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 0.0, 1.0, 1.0, 1.0],
    })
    out = window_targets(rows)
    # The day's bottom fifth SELL (0), top fifth BUY (2), the rest HOLD (percentile ranks: with 4 returns the
    # lowest ranks 0.25, above a fifth); a missing return has no class.
    assert out[TAILS].iloc[:5].tolist() == [2.0, 1.0, 1.0, 1.0, 0.0]
    assert out[TAILS].iloc[5:9].tolist() == [2.0, 1.0, 1.0, 1.0] and np.isnan(out[TAILS].iloc[9])
    # Less the day's mean, over the coin's volatility, clipped at 5.
    assert out[VOL_SCALED].iloc[0] == pytest.approx(0.10 / 0.05)
    assert out[VOL_SCALED].iloc[4] == -5.0  # -0.10 / 0.01 = -10, clipped
    assert out[VOL_SCALED].iloc[5] == pytest.approx((0.3 - 0.15) / 0.1)
    # Day 2's mean is 0.15: the residuals 0.3 - 2 x 0.15 = 0, 0.2 - 0, 0.1 - 0.15, 0.0 - 0.15, ranked.
    assert out[BETA_RESIDUAL_RANK].iloc[5:9].tolist() == pytest.approx([0.75, 1.0, 0.5, 0.25])
