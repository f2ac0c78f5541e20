"""The main job on the shipped sample, run as a user runs it: every stage, its outputs, re-runs,
and the meta-learner's guarantees checked on the store the run built."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from backtest import EXIT_TYPES, TRADE_COLUMNS, RankedBookConfig, run_ranked_book, run_strategy
from features.build import LSTM_FEATURES, REGIME_FEATURES, TABULAR_FEATURES, TCN_CHANNELS, load_feature_frames
from features.factors import FACTORS
from marketdata import apply_gap_policy, load_hourly
from models.trishula import MissingFeatureError
from stacking.frame import MixedVersionsError, assemble_stack_frame, complete_rows, decision_rows
from stacking.lineage import cap_at_pins
from stacking.walkforward import PREDICTION_COLUMNS, TRAINED_ROWS, FoldModel
from store.feature_store import FeatureStore, InSampleReadError
from tests.conftest import ROOT, SAMPLE, compose, readme_commands

E2E = (  # the whole pipeline, cut down: 5 evaluated folds, extractors of folds 0, 4, 8, 12, 2 epochs each
    "split.first_test_date=2023-10-01", "pipeline.retrain_every_folds=4", "trainer.max_epochs=2",
)


def _run(tmp_path, *overrides, timeout=900):
    return subprocess.run(
        [sys.executable, "pipeline.py", f"hydra.run.dir={tmp_path}", *overrides],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="module")
def artifacts_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, artifacts_dir):
    out = tmp_path_factory.mktemp("pipeline")
    done = _run(out, *E2E, f"paths.artifacts_dir={artifacts_dir}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (out / "stdout.txt").write_text(done.stdout)
    return out


def test_pipeline_writes_features_labels_and_folds(run_dir):
    daily = pd.read_parquet(run_dir / "daily_features.parquet")
    hourly = pd.read_parquet(run_dir / "hourly_features.parquet")
    assert set(LSTM_FEATURES) <= set(daily.columns) and {"label_3d", "fwd_ret_3d"} <= set(daily.columns)
    assert set(TABULAR_FEATURES) <= set(daily.columns) and set(REGIME_FEATURES) <= set(daily.columns)
    assert daily.columns.is_unique
    assert list(hourly.columns)[:9] == ["symbol", "ts", "is_filled", *TCN_CHANNELS]
    assert {"label_3d", "fwd_ret_14d"} <= set(hourly.columns)
    assert sorted(daily["symbol"].unique()) == sorted(pd.read_parquet(SAMPLE / "hourly.parquet")["symbol"].unique())
    assert not daily.duplicated(["symbol", "ts"]).any() and not hourly.duplicated(["symbol", "ts"]).any()
    folds = json.loads((run_dir / "folds.json").read_text())["folds"]
    assert [f["index"] for f in folds] == [8, 9, 10, 11, 12, 13]  # 13: the open fold, tested up to the data end
    assert set(folds[0]["normalization"]) == {"daily", "hourly"}
    assert folds[0]["normalization"]["hourly"]["columns"] == list(TCN_CHANNELS)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["daily_rows"] == len(daily) and summary["folds"] == 6
    assert sum(summary["primary_label_counts"].values()) == int(daily["label_3d"].notna().sum())
    # Nothing half-written is left behind.
    assert not list(run_dir.glob(".*.tmp"))


def test_overrides_reach_the_stages(tmp_path):
    done = _run(tmp_path, "split.first_test_date=2023-10-01", "split.window=expanding", "pipeline.until=data")
    assert done.returncode == 0, done.stderr[-3000:]
    folds = json.loads((tmp_path / "folds.json").read_text())["folds"]
    assert [f["index"] for f in folds] == [8, 9, 10, 11, 12, 13]
    assert {f["train_start"] for f in folds} == {"2022-12-01"}
    assert not (tmp_path / "metrics.json").exists()  # the run stopped after the data plane


def test_bad_data_path_fails_with_a_clear_message(tmp_path):
    done = _run(tmp_path, "data.hourly_path=nowhere/hourly.parquet")
    assert done.returncode != 0
    assert "nowhere/hourly.parquet: no such file" in done.stderr


def test_corrupt_data_fails_naming_file_symbol_and_time(tmp_path):
    bad = pd.read_parquet(SAMPLE / "hourly.parquet")
    bad.loc[100, "volume"] = -1.0
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path, index=False)
    done = _run(tmp_path / "run", f"data.hourly_path={path}")
    assert done.returncode != 0
    assert f"{path}: negative volume for ADAUSDT at 2022-12-05 04:00:00+00:00" in done.stderr


def test_full_data_config_points_at_shared_data():
    cfg = compose("data=full")
    assert cfg.data.hourly_path == "../shared/data/hourly.parquet"
    assert cfg.data.fear_greed_path == "../shared/data/fear_greed.parquet"
    assert cfg.data.gaps == "fill_flat" and cfg.data.max_gap_hours == 23


# -- the meta-learner's outputs (issue 5) ------------------------------------------------------------


@pytest.fixture(scope="module")
def predictions(run_dir):
    return pd.read_parquet(run_dir / "predictions.parquet")


@pytest.fixture(scope="module")
def metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def test_predictions_hold_four_models_and_the_factor_baselines_on_the_same_test_rows(run_dir, predictions):
    assert tuple(predictions.columns) == PREDICTION_COLUMNS
    assert set(predictions["model"]) == {"tabular", "trishula", "trishula_meta", "trishula_rank_objective", "lstm",
                                         "tcn", *FACTORS, "blend_parts"}
    keys = {m: set(map(tuple, g[["symbol", "date", "fold"]].to_numpy())) for m, g in predictions.groupby("model")}
    assert len({frozenset(k) for k in keys.values()}) == 1
    assert not predictions.duplicated(["model", "symbol", "date"]).any()
    baselines = predictions["model"].isin([*FACTORS, "blend_parts", "trishula_rank_objective"])  # score only
    assert predictions.loc[baselines, ["p_sell", "p_hold", "p_buy"]].isna().all().all()
    classifiers = predictions[~baselines]
    proba = classifiers[["p_sell", "p_hold", "p_buy"]].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-9)
    assert ((proba >= 0) & (proba <= 1)).all()
    own = classifiers[classifiers["model"] != "trishula"]  # Trishula's score is anchored (below)
    np.testing.assert_allclose(own["score"], own["p_buy"] - own["p_sell"], rtol=1e-12)
    # The blend: per day, the mean of the parts' score ranks as shares of the day's names (by hand).
    wide = predictions.pivot_table(index=["date", "symbol"], columns="model", values="score")
    day_size = wide.groupby(level="date")["tabular"].transform("size")
    ranks = [wide[part].groupby(level="date").rank() / day_size for part in ("tabular", "lstm", "tcn")]
    np.testing.assert_allclose(wide["blend_parts"], sum(ranks) / 3, rtol=1e-12)
    # Trishula's score: the blend's and the meta-learner's day ranks, mixed with each fold's recorded weight,
    # fitted on earlier folds' days only (the sample's first folds have none: the blend alone).
    weights = json.loads((run_dir / "metrics.json").read_text())["anchor_weights"]
    assert set(weights) == {str(f) for f in predictions["fold"].unique()}
    first = str(predictions["fold"].min())
    assert weights[first]["days"] == 0 and weights[first]["weight"] == 0.0
    assert all(0.0 <= w["weight"] <= 1.0 for w in weights.values())
    fold_of_day = predictions.drop_duplicates("date").set_index("date")["fold"]
    w = np.asarray(wide.index.get_level_values("date").map(fold_of_day).map(lambda f: weights[str(f)]["weight"]),
                   dtype="float64")
    # The correction (stack.anchor.correction=rank_objective): the ranking objective's score.
    meta_rank = wide["trishula_rank_objective"].groupby(level="date").rank() / day_size
    blend_rank = wide["blend_parts"].groupby(level="date").rank() / day_size
    np.testing.assert_allclose(wide["trishula"], (1 - w) * blend_rank + w * meta_rank)
    meta = predictions[predictions["model"] == "trishula_meta"]
    np.testing.assert_allclose(meta["score"], meta["p_buy"] - meta["p_sell"], rtol=1e-12)
    # A baseline's score is its factor, as built point in time into the daily frame.
    daily = pd.read_parquet(run_dir / "daily_features.parquet").rename(columns={"ts": "date"})
    for factor in FACTORS:
        rows = predictions[predictions["model"] == factor]
        rows = rows.merge(daily[["symbol", "date", factor]], on=["symbol", "date"])
        np.testing.assert_array_equal(rows["score"], rows[factor])
    # Every row lies in its fold's test window, and its label / return are the real ones.
    folds = {f["index"]: f for f in json.loads((run_dir / "folds.json").read_text())["folds"]}
    for fold, rows in predictions.groupby("fold"):
        window = folds[fold]
        assert rows["date"].min() >= pd.Timestamp(window["test_start"], tz="UTC")
        assert rows["date"].max() <= pd.Timestamp(window["test_end"], tz="UTC")
    daily = pd.read_parquet(run_dir / "daily_features.parquet").rename(columns={"ts": "date"})
    joined = predictions.merge(daily[["symbol", "date", "fwd_ret_3d", "label_3d"]], on=["symbol", "date"],
                               suffixes=("", "_daily"))
    assert len(joined) == len(predictions)
    np.testing.assert_allclose(joined["fwd_ret_3d"], joined["fwd_ret_3d_daily"], equal_nan=True)
    np.testing.assert_array_equal(joined["label"], joined["label_3d"].astype("float64"))


def test_metrics_compare_the_models_and_baselines_per_fold_pooled_and_paired(metrics, predictions):
    # Trishula first, the blend of its parts next: the first bar it must clear.
    assert metrics["models"] == ["trishula", "blend_parts", "tabular", "trishula_rank_objective", "lstm", "tcn",
                                 *FACTORS, "trishula_meta"]
    assert metrics["baselines"] == ["trishula_rank_objective", *FACTORS, "blend_parts"]
    assert metrics["reference"] == "trishula"
    assert [row["model"] for row in metrics["comparison"]] == metrics["models"]
    assert set(metrics["paired"]) == set(metrics["models"]) - {"trishula"}
    for model, paired in metrics["paired"].items():
        assert paired["days"] + paired["days_other_only"] == metrics["pooled"]["trishula"]["ic"]["days"]
        assert paired["t_stat_lags"] == 3 and paired["t_stat_long_lags"] >= 10 and 0 <= paired["win_share"] <= 1
        row = next(r for r in metrics["comparison"] if r["model"] == model)
        assert row["paired_t_stat"] == paired["t_stat"]
    assert sorted(metrics["verdict"]["beats"] + metrics["verdict"]["behind"] + metrics["verdict"]["inconclusive"]) \
        == sorted(metrics["paired"])
    for model in (*FACTORS, "blend_parts"):
        assert metrics["pooled"][model]["log_loss"] is None and -1 <= metrics["pooled"][model]["ic"]["mean"] <= 1
    for model in ("tabular", "trishula", "lstm", "tcn"):
        assert set(metrics["per_fold"][model]) == {str(f) for f in sorted(predictions["fold"].unique())}
        pooled = metrics["pooled"][model]
        assert pooled["rows"] == int(predictions.loc[predictions["model"] == model, "label"].notna().sum())
        assert -1 <= pooled["ic"]["mean"] <= 1 and pooled["ic"]["days"] > 20
        assert 0 < pooled["log_loss"] < 5 and 0 <= pooled["accuracy"] <= 1
        assert np.array(pooled["confusion_matrix"]["matrix"]).sum() == pooled["rows"]
    assert metrics["promotion"]["promoted"] and metrics["promotion"]["reason"] == "no champion yet"


def test_signals_are_z_scored_gated_and_decided_at_the_close(run_dir, predictions, artifacts_dir):
    signals = pd.read_parquet(run_dir / "signals.parquet")
    trishula = predictions[predictions["model"] == "trishula"]
    assert len(signals) == len(trishula)
    assert (signals["decision_time"] == signals["date"] + pd.Timedelta(days=1)).all()
    assert set(signals["signal"]) <= {"BUY", "HOLD", "SELL"}
    fired = signals["signal"] != "HOLD"
    assert (signals.loc[fired, "signal"] == signals.loc[fired, "direction"]).all()
    assert (signals.loc[signals["direction"] == "BUY", "z"] > 1.5).all()
    assert (signals.loc[signals["direction"] == "SELL", "z"] < -1.5).all()
    # The confidence gate, with each fold's own thresholds: a BUY / SELL direction stands exactly when its class
    # probability reaches the fold's threshold (none: it never fires), else it is HOLD.
    run = json.loads((run_dir / "metrics.json").read_text())["run_id"]
    meta = json.loads((artifacts_dir / "trishula" / "runs" / run / "run.json").read_text())
    thresholds = {s["fold"]["index"]: s["models"]["trishula"]["thresholds"] for s in meta["folds"]}
    for name, column in (("BUY", "p_buy"), ("SELL", "p_sell")):
        cut = signals["fold"].map({fold: t[name] for fold, t in thresholds.items()}).astype("float64")  # None: NaN
        chosen = signals["direction"] == name
        assert chosen.any()
        np.testing.assert_array_equal(signals.loc[chosen, "signal"] == name, signals.loc[chosen, column] >= cut[chosen])
    # Raw margins are stored; the probabilities are their softmax.
    raw = signals[["raw_sell", "raw_hold", "raw_buy"]].to_numpy()
    exp = np.exp(raw - raw.max(axis=1, keepdims=True))
    np.testing.assert_allclose(exp / exp.sum(axis=1, keepdims=True), signals[["p_sell", "p_hold", "p_buy"]], rtol=1e-9)


@pytest.fixture(scope="module")
def stacked(run_dir, artifacts_dir):
    cfg = compose("split.first_test_date=2023-10-01")
    frames = load_feature_frames(cfg.data, cfg.features, cfg.labels)
    store = FeatureStore(artifacts_dir / "store")
    return frames, store


def test_meta_learner_training_rows_are_out_of_sample_for_their_extractors(stacked):
    """The store's lineage: each row's extractor finished training (labels included) a purge before the row."""
    frames, store = stacked
    rows = decision_rows(frames, "label_3d")
    frame = assemble_stack_frame(rows, store, ["lstm", "tcn"], allow_mixed_versions=True)
    frame = frame[complete_rows(frame, ["lstm", "tcn"])]
    assert len(frame) > 500
    for kind in ("lstm", "tcn"):
        lineage = store.read(kind).drop_duplicates("version").set_index("version")
        val_end = frame[f"{kind}_version"].map(lineage["val_end"])
        labels_end = val_end + pd.Timedelta(days=1 + 3)  # the last validation label's close
        assert (labels_end + pd.Timedelta(days=14) <= frame["decision_time"]).all()
        assert frame[f"{kind}_version"].nunique() == 4  # folds 0, 4, 8, 12: mixed, as configured
        # The score the meta-learner may read instead of the probabilities (stack.extractor_inputs).
        np.testing.assert_array_equal(frame[f"{kind}_score"], frame[f"{kind}_p_buy"] - frame[f"{kind}_p_sell"])
        assert frame[f"{kind}_score"].between(-1, 1).all() and frame[f"{kind}_score"].std() > 0


def test_every_row_each_meta_fold_trained_on_was_out_of_sample_for_its_extractor(run_dir, artifacts_dir, stacked):
    """The rows each meta fold actually learned from (saved as trained), not re-derived through the as-of read:
    each read an extractor version that had finished training (labels included) a purge before the row's
    decision, and they lie in the fold's train and validation windows."""
    _, store = stacked
    run = json.loads((run_dir / "metrics.json").read_text())["run_id"]
    folds = sorted((artifacts_dir / "trishula" / "runs" / run).glob("fold_*"))
    assert len(folds) >= 3
    lineage = {kind: store.read(kind).drop_duplicates("version").set_index("version") for kind in ("lstm", "tcn")}
    for fold_dir in folds:
        rows = pd.read_parquet(fold_dir / TRAINED_ROWS)
        meta = json.loads((fold_dir / "trishula.json").read_text())
        windows = {k: pd.Timestamp(v, tz="UTC") for k, v in meta["windows"].items() if k.endswith(("_start", "_end"))}
        train = rows[rows["part"] == "train"]
        assert len(train) == meta["rows"]["train"] and (rows["part"] == "val").sum() == meta["rows"]["val"]
        assert train["date"].between(windows["train_start"], windows["train_end"]).all()
        assert rows.loc[rows["part"] == "val", "date"].between(windows["val_start"], windows["val_end"]).all()
        decision = rows["date"] + pd.Timedelta(days=1)
        for kind, versions in lineage.items():
            labels_end = rows[f"{kind}_version"].map(versions["val_end"]) + pd.Timedelta(days=1 + 3)
            assert labels_end.notna().all() and (labels_end + pd.Timedelta(days=14) <= decision).all()
            assert set(rows[f"{kind}_version"]) == set(meta["extractor_versions"][kind])


def test_in_sample_pins_and_unannounced_mixing_are_refused(stacked):
    frames, store = stacked
    rows = decision_rows(frames, "label_3d")
    newest = store.versions("lstm")["version"].iloc[-1]
    with pytest.raises(InSampleReadError, match="in sample"):
        assemble_stack_frame(rows, store, ["lstm"], pinned={"lstm": newest}, allow_mixed_versions=True)
    with pytest.raises(MixedVersionsError, match="stack.allow_mixed_versions"):
        assemble_stack_frame(rows, store, ["lstm", "tcn"], allow_mixed_versions=False)


def test_a_pin_serves_its_version_from_its_eligibility_on_and_never_a_newer_one(stacked):
    """stack.pinned_versions caps the as-of rule: earlier rows read older versions, later ones the pin."""
    frames, store = stacked
    versions = store.versions("lstm")
    pin = versions["version"].iloc[-2]  # fold 8's: fold 12's is newer
    among = cap_at_pins(store, {"lstm": list(versions["version"])}, {"lstm": pin})
    assert among["lstm"] == list(versions["version"].iloc[:-1])
    rows = decision_rows(frames, "label_3d")
    frame = assemble_stack_frame(rows, store, ["lstm"], allow_mixed_versions=True, among=among)
    read = frame[frame["lstm_version"].notna()]
    after = read["decision_time"] >= versions["eligible_from"].iloc[-2]
    assert (read.loc[after, "lstm_version"] == pin).all() and after.sum() > 100
    assert (read.loc[~after, "lstm_version"] != pin).all() and (~after).sum() > 100


def test_served_model_refuses_a_missing_feature(run_dir, artifacts_dir, stacked, metrics):
    frames, store = stacked
    run = artifacts_dir / "trishula" / "runs" / metrics["run_id"]
    served = FoldModel.load(run / "fold_012", "trishula")
    assert {"lstm_p_buy", "tcn_p_sell", "rsi_14"} <= set(served.meta["features"])
    assert not {"lemb_0", "emb_15"} & set(served.meta["features"])  # stack.embeddings is off by default
    assert served.meta["extractor_versions"]["lstm"] and served.meta["confidence"]["thresholds"].keys() == {
        "SELL", "HOLD", "BUY"}
    rows = decision_rows(frames, "label_3d")
    frame = assemble_stack_frame(rows, store, ["lstm", "tcn"], allow_mixed_versions=True)
    frame = frame[complete_rows(frame, ["lstm", "tcn"])]
    schema = served.meta["feature_schema_hash"]
    assert np.isfinite(served.raw_scores(frame, schema)).all()
    with pytest.raises(MissingFeatureError, match="tcn_p_hold"):
        served.raw_scores(frame.drop(columns="tcn_p_hold"), schema)


# -- backtest and report (issue 6) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid(run_dir):
    """The run's hourly bars after the gap policy, as the backtest stage traded them."""
    return apply_gap_policy(load_hourly(SAMPLE / "hourly.parquet"))


def test_ranked_book_is_the_book_of_the_runs_signals_without_look_ahead(run_dir, grid):
    """The default strategy: positions.parquet and backtest.json equal the ranked book of signals.parquet,
    and every position is held from the day after the decision that made it."""
    backtest = json.loads((run_dir / "backtest.json").read_text())
    positions = pd.read_parquet(run_dir / "positions.parquet")
    signals = pd.read_parquet(run_dir / "signals.parquet")
    assert backtest["strategy"] == "ranked" and len(positions) > 100
    config = RankedBookConfig(**compose().backtest.book)
    book = run_ranked_book(signals, grid, config)
    pd.testing.assert_frame_equal(positions, book.positions)
    assert backtest["summary"]["return"] == pytest.approx(book.daily["equity"].iloc[-1] / config.capital - 1)
    assert positions["date"].min() == signals["date"].min() + pd.Timedelta(days=1)
    # Each long held on day t was in the top k (a quintile, at least min_names) of a decision of t-1, t-2 or t-3.
    coins = signals.groupby("date")["symbol"].transform("size")
    k = (coins * config.quantile).astype(int).clip(lower=1)
    k = k.where(coins < 2 * config.min_names, k.clip(lower=config.min_names))
    ranks = signals.assign(top=signals.groupby("date")["score"].rank(ascending=False, method="first") <= k)
    tops = set(zip(ranks.loc[ranks["top"], "symbol"], ranks.loc[ranks["top"], "date"], strict=True))
    longs = positions[positions["weight"] > 0]
    day = pd.Timedelta(days=1)
    assert all(any((symbol, date - k * day) in tops for k in (1, 2, 3))
               for symbol, date in zip(longs["symbol"], longs["date"], strict=True))


def test_trailing_j_trades_follow_the_signals_without_look_ahead(run_dir, grid):
    """Trailing J (backtest=trailing_j) on the run's signals: trades happened, each on a fired signal, entered at
    the first bar at or after its decision, never before."""
    cfg = compose("backtest=trailing_j")
    signals = pd.read_parquet(run_dir / "signals.parquet")
    daily = pd.read_parquet(run_dir / "daily_features.parquet")
    regime_inputs = daily.groupby("ts")[list(REGIME_FEATURES)].first()
    result = run_strategy(OmegaConf.to_container(cfg.backtest, resolve=True), signals, grid, regime_inputs)
    trades, backtest = result.trades, result.to_json_dict()
    assert tuple(trades.columns) == TRADE_COLUMNS and len(trades) > 10
    assert backtest["summary"]["trades"] == len(trades)
    assert backtest["summary"]["trades_long"] == int((trades["side"] == "long").sum())
    fired = signals[signals["signal"] != "HOLD"]
    side = fired["signal"].map({"BUY": "long", "SELL": "short"})
    allowed = set(zip(fired["symbol"], fired["decision_time"], side, strict=True))
    assert set(zip(trades["symbol"], trades["decision_time"], trades["side"], strict=True)) <= allowed
    # Entries: the first real bar at or after the decision (the day's close), on the real rows of the grid.
    real = grid[~grid["is_filled"]].set_index(["symbol", "ts"])
    assert (trades["entry_time"] >= trades["decision_time"]).all()
    assert (trades["entry_time"] - trades["decision_time"] < pd.Timedelta(hours=24)).all()
    np.testing.assert_allclose(trades["entry_price"],
                               real.loc[list(zip(trades["symbol"], trades["entry_time"], strict=True)), "open"])
    assert (trades["exit_time"] > trades["entry_time"]).all()
    assert set(trades["exit_type"]) <= set(EXIT_TYPES)
    np.testing.assert_allclose(sum(v["pnl"] for v in backtest["per_symbol"].values()),
                               backtest["summary"]["net_pnl"], rtol=1e-9, atol=1e-9)


def test_report_numbers_equal_the_json_files(run_dir, metrics):
    html = (run_dir / "report.html").read_text()
    backtest = json.loads((run_dir / "backtest.json").read_text())
    assert not re.search(r"(src|href)=[\"']https?://", html)
    assert html.count("data:image/png;base64,") >= 8
    for name in ("ic_over_time", "roc", "calibration", "confusion_matrix", "strategy_equity", "cost_sweep",
                 "drawdown", "payoff_quintiles"):
        assert (run_dir / "figures" / f"{name}.png").stat().st_size > 1000
    # The win-rate chart is drawn only when some call reaches a bin (on the sample, none does).
    calls = any(entry["count"] for model in metrics["models"] for entry in metrics["pooled"][model]["win_rate_by_bin"]
                or [])
    assert (run_dir / "figures" / "win_rate_by_bin.png").exists() == calls != ("no chart is drawn" in html)
    cells = re.findall(r'data-key="([^"]+)" data-value="([^"]*)"', html)
    assert len(cells) > 50
    sources = {"comparison": {row["model"]: row for row in metrics["comparison"]},
               "per_fold": metrics["per_fold"], "backtest": backtest, "verdict": metrics["verdict"],
               "payoff": metrics["payoff"]}
    checked = set()
    for key, value in cells:
        head, *path = key.split(".")
        node = sources[head]
        for part in path:
            node = node[part]
        assert value.replace("&#x27;", "'") == repr(node), key
        checked.add(head if head != "backtest" else f"backtest.{path[0]}")
    assert {"comparison", "verdict", "payoff", "backtest.summary", "backtest.benchmark",
            "backtest.performance"} <= checked
    assert "Does the stack work on this run?" in html and html.index("Does the stack") < html.index("Per fold")
    # The served strategy opens the report, and the sample says it is a smoke test.
    assert html.index("The strategy: the ranked") < html.index("Does the stack")
    assert "a smoke test, not evidence: 8 coins" in html


def test_rerun_skips_every_unchanged_stage(run_dir, artifacts_dir, tmp_path, predictions):
    done = _run(tmp_path, *E2E, f"paths.artifacts_dir={artifacts_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    out = " ".join(done.stdout.split())
    assert "extractors: 8 of 8 unchanged" in out and "reused, made by source" in out
    assert "embed: 8 extractor backfill(s) unchanged since their commit: skipped" in out
    assert "inputs unchanged since run" in out and "report:" in out
    again = pd.read_parquet(tmp_path / "predictions.parquet")
    pd.testing.assert_frame_equal(again, predictions)


def test_the_readme_retrain_cycle_and_daily_run_work_as_written(run_dir, artifacts_dir, tmp_path):
    """The README's runnable blocks after the main job, each command as written plus the main job's test dates
    and a folder of its own: a new LSTM version, its backfill, Trishula retrained on Dask (then reused in
    process) and promoted only by the rule, then the daily run serving the latest day. On a copy of the main
    job's artifacts: the other tests read them as the main job left them."""
    artifacts = shutil.copytree(artifacts_dir, tmp_path / "artifacts")
    commands = [words for runnable, words in readme_commands() if runnable]
    extra = {"train.py": ["trainer.max_epochs=1", E2E[0]], "embed.py": [], "stack.py": [E2E[0]], "daily.py": list(E2E)}
    outputs = []
    for i, (script, *args) in enumerate(commands):
        done = subprocess.run(
            [sys.executable, script, *args, *extra[script], f"hydra.run.dir={tmp_path / str(i)}",
             f"paths.artifacts_dir={artifacts}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{script} {args}: " + done.stdout[-3000:] + done.stderr[-3000:]
        outputs.append(" ".join(done.stdout.split()))
    train, embed, dask, local, daily = outputs
    assert "train: lstm fold 12:" in train and "epochs (best" in train
    assert "the store holds 1 lstm version(s) the champion" in dask and "retraining on them" in dask
    assert "inputs unchanged since run" in local
    [state] = [json.loads(p.read_text()) for p in (artifacts / "trishula" / "scopes").glob("*.json")]
    latest = state["promotions"][-1]
    assert latest["champion"] is not None and latest["metric"] == "ic_mean"
    assert latest["challenger_value"] is not None and latest["champion_value"] is not None
    # Promoted only by a margin on the metric and a paired t-stat of the per-day difference (stack.promotion).
    beats = (latest["challenger_value"] - latest["champion_value"] > latest["margin"]
             and latest["paired_t_stat"] is not None and latest["paired_t_stat"] >= latest["min_t"])
    assert latest["margin"] == 0.005 and latest["min_t"] == 1.0
    assert latest["promoted"] == beats
    champion = state["champion"]  # one file with the log: they always agree
    assert champion["run_id"] == (latest["challenger"] if latest["promoted"] else latest["champion"])
    assert (tmp_path / "2" / "report.html").is_file()
    # The daily run served the sample's last day: signals, the ranked book and its orders.
    assert "serving 2023-12-31" in daily and "ranked book: equity" in daily
    served = artifacts / "daily"
    assert len(list(served.glob("*/days/2023-12-31/book.parquet"))) == 1
    assert len(list(served.glob("*/days/2023-12-31/orders.parquet"))) == 1


def test_the_whole_pipeline_runs_on_other_coins_and_years(shared_data, tmp_path):
    """Any data of the schema: 2021 bars of five coins the sample lacks (SHIB listed in May), and no
    BTCUSDT, so the backtest has no benchmark to compare with and says so."""
    coins = ["LTCUSDT", "TRXUSDT", "ETCUSDT", "XLMUSDT", "SHIBUSDT"]
    hourly = pd.read_parquet(shared_data / "hourly.parquet", filters=[("symbol", "in", coins)])
    hourly = hourly[(hourly["ts"] >= "2021-01-01") & (hourly["ts"] < "2022-01-01")]
    hourly.to_parquet(tmp_path / "hourly.parquet", index=False)
    out = tmp_path / "out"
    done = _run(out, f"data.hourly_path={tmp_path / 'hourly.parquet'}",
                f"data.fear_greed_path={shared_data / 'fear_greed.parquet'}", f"paths.artifacts_dir={tmp_path / 'art'}",
                "split.first_test_date=2021-11-15", "pipeline.retrain_every_folds=4", "trainer.max_epochs=1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "no BTCUSDT in the data to compare with" in " ".join(done.stdout.split())
    predictions = pd.read_parquet(out / "predictions.parquet")
    assert set(predictions["symbol"]) == set(coins)
    assert predictions["date"].min() >= pd.Timestamp("2021-11-15", tz="UTC")
    classifiers = predictions[~predictions["model"].isin([*FACTORS, "blend_parts", "trishula_rank_objective"])]
    np.testing.assert_allclose(classifiers[["p_sell", "p_hold", "p_buy"]].sum(axis=1), 1.0, rtol=1e-9)
    backtest = json.loads((out / "backtest.json").read_text())
    assert backtest["benchmark"]["in_data"] is False and backtest["benchmark"]["return"] is None
    assert (out / "report.html").is_file()

