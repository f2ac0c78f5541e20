"""Lineage on the shipped sample: code changes invalidate reuse, data lineages stay apart, one bad
coin does not stop the fleet, a late bar is a change, the registry never loses a run or disagrees with
its log, and a champion whose code no longer exists gives way to the current code's challenger."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import sys

import lightgbm
import numpy as np
import pandas as pd
import pytest
import torch

import store.lineage as lineage
from evaluation import evaluate_predictions
from marketdata import DataValidationError
from marketdata.load import dataset_id, load_market
from stacking.lineage import library_changes, roll_forward
from stacking.registry import Registry, decide_promotion
from store.extractors import data_fingerprint, data_prefix_fingerprint
from store.lineage import BarHistory, HistoryChangedError
from tests.conftest import ROOT, SAMPLE, compose


def test_a_touched_source_file_invalidates_reuse(source_copy, tmp_path):
    from pipeline import _train_cfg
    from train import content_key

    cfg = _train_cfg(compose(), "lstm", 8, tmp_path)
    before = {kind: lineage.source_hash(kind) for kind in lineage.SOURCES}
    key = content_key(cfg)
    assert content_key(cfg) == key  # stable while nothing changes
    tcn = source_copy / "models" / "tcn.py"
    tcn.write_text(tcn.read_text() + "\n# a fix\n")
    after = {kind: lineage.source_hash(kind) for kind in lineage.SOURCES}
    # The networks shape extractors and their backfill, and the meta-learner reads their outputs.
    assert after["extractor"] != before["extractor"] and after["backfill"] != before["backfill"]
    assert after["features"] == before["features"]  # the feature code did not change
    assert content_key(cfg) != key  # so the extractor is retrained, not reused
    signals = source_copy / "stacking" / "signals.py"
    signals.write_text(signals.read_text() + "\n# another fix\n")
    assert lineage.source_hash("trishula") != after["trishula"]  # the Trishula run key holds it
    # The meta-learner's model lives in models/ too, but shapes neither the extractors nor their backfill.
    meta = {kind: lineage.source_hash(kind) for kind in lineage.SOURCES}
    trishula = source_copy / "models" / "trishula.py"
    trishula.write_text(trishula.read_text() + "\n# a meta-learner fix\n")
    assert lineage.source_hash("trishula") != meta["trishula"]
    assert lineage.source_hash("extractor") == meta["extractor"] and lineage.source_hash("backfill") == meta["backfill"]
    # The backfill code writes the rows the meta-learner reads: a change there is a new Trishula input.
    trishula_before = lineage.source_hash("trishula")
    plan = source_copy / "backfill" / "plan.py"
    plan.write_text(plan.read_text() + "\n# a backfill fix\n")
    assert lineage.source_hash("trishula") != trishula_before
    # Fetching bars and choosing the champion that serves a day shape no result: no retrain after a fix there.
    shaped = {kind: lineage.source_hash(kind) for kind in lineage.SOURCES}
    for part in ("marketdata/fetch.py", "stacking/champion.py"):
        touched = source_copy / part
        touched.write_text(touched.read_text() + "\n# a fix\n")
    assert {kind: lineage.source_hash(kind) for kind in lineage.SOURCES} == shaped


def test_fingerprints_follow_the_content_and_appends_keep_the_past(tmp_path):
    data = {"hourly_path": SAMPLE / "hourly.parquet", "fear_greed_path": SAMPLE / "fear_greed.parquet"}
    hourly = pd.read_parquet(data["hourly_path"])
    hourly.sample(frac=1, random_state=0).to_parquet(tmp_path / "shuffled.parquet", index=False)
    hourly[hourly["ts"] < "2023-11-01"].to_parquet(tmp_path / "shorter.parquet", index=False)
    cut = pd.Timestamp("2023-10-01", tz="UTC")
    assert data_fingerprint({**data, "hourly_path": tmp_path / "shuffled.parquet"}) == data_fingerprint(data)
    shorter = {**data, "hourly_path": tmp_path / "shorter.parquet"}
    assert data_fingerprint(shorter) != data_fingerprint(data)
    assert data_prefix_fingerprint(shorter, cut) == data_prefix_fingerprint(data, cut)
    changed = hourly.copy()
    changed.loc[(changed["ts"] == "2023-09-30 05:00") & (changed["symbol"] == "BTCUSDT"), "volume"] += 1
    changed.to_parquet(tmp_path / "changed.parquet", index=False)
    assert data_prefix_fingerprint({**data, "hourly_path": tmp_path / "changed.parquet"}, cut) != \
        data_prefix_fingerprint(data, cut)
    # The dataset id: the same for an append, another one without a coin.
    assert dataset_id(hourly) == dataset_id(hourly[hourly["ts"] < "2023-11-01"])
    assert dataset_id(hourly) != dataset_id(hourly[hourly["symbol"] != "ADAUSDT"])


def test_the_bar_history_refuses_a_changed_or_vanished_past_bar(tmp_path, sample_hourly_raw):
    history = BarHistory.of(tmp_path, "x")
    first = sample_hourly_raw[sample_hourly_raw["ts"] < "2023-12-01"]
    history.write(history.merge(first, appended=False).bars)
    appended = sample_hourly_raw[sample_hourly_raw["ts"] >= "2023-12-01"]
    merged = history.merge(appended, appended=True)
    assert merged.new_bars == len(appended) and len(merged.bars) == len(sample_hourly_raw)
    changed = sample_hourly_raw.copy()
    changed.loc[(changed["symbol"] == "SOLUSDT") & (changed["ts"] == "2023-11-20 07:00"), "open"] *= 1.001
    with pytest.raises(HistoryChangedError, match=r"SOLUSDT at 2023-11-20 07:00:00\+00:00 .* has changed"):
        history.merge(changed, appended=False, source="f.parquet")
    gone = sample_hourly_raw.drop(sample_hourly_raw.index[100])
    with pytest.raises(HistoryChangedError, match="missing from the new file"):
        history.merge(gone, appended=False)
    restated = history.merge(changed, appended=False, restate=True)
    assert list(restated.changes["symbol"]) == ["SOLUSDT"]
    bar = restated.bars[(restated.bars["symbol"] == "SOLUSDT") & (restated.bars["ts"] == "2023-11-20 07:00")]
    assert bar["open"].iloc[0] == changed.loc[(changed["symbol"] == "SOLUSDT") & (changed["ts"] == "2023-11-20 07:00"),
                                              "open"].iloc[0]


def test_a_late_bar_for_an_hour_already_used_is_a_change(tmp_path, sample_hourly_raw):
    """A bar the history lacks for an hour it has used (that run filled the gap) is refused, naming symbol and
    time, in an append and in the whole file; restated, it is taken and returned as a change to rebuild from."""
    history = BarHistory.of(tmp_path, "x")
    used = sample_hourly_raw[sample_hourly_raw["ts"] < "2023-12-01"]
    late = (used["symbol"] == "ETHUSDT") & (used["ts"] == "2023-11-20 07:00")
    history.write(history.merge(used[~late], appended=False).bars)
    later = sample_hourly_raw[sample_hourly_raw["ts"] >= "2023-12-01"]
    assert history.merge(later, appended=True).new_bars == len(later)  # after the used hours: new, not late
    append = pd.concat([used[late], later], ignore_index=True)
    refused = r"append\.parquet: the bar of ETHUSDT at 2023-11-20 07:00:00\+00:00 arrived late: an earlier run used"
    with pytest.raises(HistoryChangedError, match=refused):
        history.merge(append, appended=True, source="append.parquet")
    with pytest.raises(HistoryChangedError, match=r"ETHUSDT at 2023-11-20 07:00:00\+00:00 arrived late"):
        history.merge(sample_hourly_raw, appended=False)
    restated = history.merge(append, appended=True, restate=True)
    assert restated.changes[["symbol", "change"]].values.tolist() == [["ETHUSDT", "late"]]
    assert restated.changes["ts"].iloc[0] == pd.Timestamp("2023-11-20 07:00", tz="UTC")
    assert len(restated.bars) == len(sample_hourly_raw)
    assert ((restated.bars["symbol"] == "ETHUSDT") & (restated.bars["ts"] == "2023-11-20 07:00")).sum() == 1


def _bad_sample(tmp_path):
    hourly = pd.read_parquet(SAMPLE / "hourly.parquet")
    gap = (hourly["symbol"] == "XRPUSDT") & hourly["ts"].between("2023-03-01 00:00", "2023-03-02 05:00")
    hourly = hourly[~gap].copy()  # a 30-hour gap
    hourly.loc[(hourly["symbol"] == "SOLUSDT") & (hourly["ts"] == "2023-05-05 05:00"), "volume"] = -1.0
    path = tmp_path / "bad.parquet"
    hourly.to_parquet(path, index=False)
    return path


def test_one_bad_coin_does_not_stop_the_fleet(tmp_path):
    path = _bad_sample(tmp_path)
    with pytest.raises(DataValidationError, match="negative volume for SOLUSDT at 2023-05-05 05:00"):
        load_market(path, SAMPLE / "fear_greed.parquet")
    market = load_market(path, SAMPLE / "fear_greed.parquet", on_bad_symbol="drop")
    assert sorted(market.dropped["symbol"]) == ["SOLUSDT", "XRPUSDT"]
    assert set(market.grid["symbol"]) == {"ADAUSDT", "ARBUSDT", "BNBUSDT", "BTCUSDT", "ETHUSDT", "PEPEUSDT"}
    assert any("gap of 30 missing hourly bar(s) for XRPUSDT" in m for m in market.dropped["message"])
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "pipeline.py", f"hydra.run.dir={out}", f"data.hourly_path={path}",
                           "data.on_bad_symbol=drop", "pipeline.until=data", f"paths.artifacts_dir={tmp_path / 'a'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dropped" in done.stdout and "negative volume for SOLUSDT" in " ".join(done.stdout.split())
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(d["symbol"] for d in summary["dropped_symbols"]) == ["SOLUSDT", "XRPUSDT"]
    assert "SOLUSDT" not in summary["symbols"]


def test_a_crash_in_a_forced_rerun_never_loses_the_run_and_the_log_agrees(tmp_path):
    registry = Registry(tmp_path, "scope-a")
    registry.write_run("abc", lambda tmp: {"n": 1})
    # A crash after the old run was moved aside and before the new one arrived:
    aside = tmp_path / "runs" / ".old-abc-xyz"
    (tmp_path / "runs" / "abc").rename(aside)
    assert Registry(tmp_path, "scope-a").has_run("abc") and not aside.exists()
    registry.write_run("abc", lambda tmp: {"n": 2})
    assert registry.run_meta("abc")["n"] == 2 and not list((tmp_path / "runs").glob(".*"))
    # A failing re-run leaves the old run in place.
    with pytest.raises(RuntimeError):
        registry.write_run("abc", lambda tmp: (_ for _ in ()).throw(RuntimeError("killed")))
    assert registry.run_meta("abc")["n"] == 2
    # The champion and the log are one file: per scope, always in agreement.
    predictions = pd.DataFrame({"symbol": ["A", "B", "C"] * 4, "date": pd.Timestamp("2023-01-01", tz="UTC"),
                                "fold": 1, "model": "trishula", "p_sell": 0.2, "p_hold": 0.5, "p_buy": 0.3,
                                "score": [0.1, 0.2, 0.3] * 4, "label": [0.0, 1.0, 2.0] * 4,
                                "fwd_ret_3d": [-0.1, 0.0, 0.1] * 4})
    decision = decide_promotion("abc", predictions, None, None, "ic_mean", _no_metrics)
    registry.record(decision)
    state = json.loads(registry.state_path.read_text())
    assert state["champion"]["run_id"] == "abc" and state["promotions"][-1]["challenger"] == "abc"
    assert Registry(tmp_path, "scope-b").champion() is None  # another dataset or task: its own champion


def test_a_run_records_the_library_versions_it_was_made_with(tmp_path, monkeypatch):
    registry = Registry(tmp_path, "scope")
    registry.write_run("abc", lambda tmp: {"n": 1})
    recorded = registry.run_meta("abc")["libraries"]
    assert set(recorded) == {"python", *lineage.LIBRARIES}
    assert recorded["python"] == platform.python_version() and recorded["pandas"] == pd.__version__
    assert recorded["lightgbm"] == lightgbm.__version__ and recorded["numpy"] == np.__version__
    assert recorded["torch"] == torch.__version__
    assert library_changes(registry.run_meta("abc")) == []
    installed = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.9.9" if name == "lightgbm" else installed(name))
    assert library_changes(registry.run_meta("abc")) == [f"lightgbm {lightgbm.__version__} -> 9.9.9"]


def test_a_restate_deletes_the_dependent_store_rows_before_the_history_takes_the_new_bar(tmp_path, monkeypatch):
    """The history is a restate's commit: when the store's rows after the changed bar are deleted, the history still
    holds the old bar (a kill then leaves a change the rerun sees again), and it takes the new one only after."""
    from store.lineage import checked_market_data

    hourly = pd.read_parquet(SAMPLE / "hourly.parquet")
    first = tmp_path / "first.parquet"
    hourly[hourly["ts"] < "2023-03-01"].to_parquet(first, index=False)
    data = {"hourly_path": str(first), "fear_greed_path": str(SAMPLE / "fear_greed.parquet"), "gaps": "fill_flat",
            "max_gap_hours": 23, "on_bad_symbol": "error"}
    _, dataset = checked_market_data(data, tmp_path / "store")
    history = BarHistory.of(tmp_path / "store", dataset)
    bar = (hourly["symbol"] == "SOLUSDT") & (hourly["ts"] == "2023-02-20 07:00")
    changed = hourly[hourly["ts"] < "2023-03-01"].copy()
    changed.loc[bar, ["open", "high"]] *= 1.01
    changed_path = tmp_path / "changed.parquet"
    changed.to_parquet(changed_path, index=False)
    seen = []

    def delete_from(store, of, since):
        used = history.read().set_index(["symbol", "ts"]).loc[("SOLUSDT", pd.Timestamp("2023-02-20 07:00", tz="UTC"))]
        seen.append((of, since, used["open"]))
        return 0

    monkeypatch.setattr(lineage.FeatureStore, "delete_from", delete_from)
    checked_market_data({**data, "hourly_path": str(changed_path), "restate": True}, tmp_path / "store")
    old = hourly.loc[bar, "open"].iloc[0]
    assert seen == [(dataset, pd.Timestamp("2023-02-20 07:00", tz="UTC"), old)]  # deleted while the old bar stood
    now = history.read().set_index(["symbol", "ts"]).loc[("SOLUSDT", pd.Timestamp("2023-02-20 07:00", tz="UTC"))]
    assert now["open"] == pytest.approx(old * 1.01)


def _no_metrics(predictions):
    return {"comparison": [{"model": "trishula", "ic_mean": 0.1}]}


def test_a_changed_past_fear_greed_value_is_refused_too(tmp_path):
    from store.lineage import checked_market_data

    data = {"hourly_path": str(SAMPLE / "hourly.parquet"), "fear_greed_path": str(SAMPLE / "fear_greed.parquet"),
            "gaps": "fill_flat", "max_gap_hours": 23}
    market, dataset = checked_market_data(data, tmp_path)
    fear_greed = pd.read_parquet(SAMPLE / "fear_greed.parquet")
    fear_greed.loc[fear_greed["date"] == pd.Timestamp("2023-06-01").date(), "value"] += 1
    fear_greed.to_parquet(tmp_path / "fg.parquet", index=False)
    with pytest.raises(HistoryChangedError, match="Fear & Greed value of 2023-06-01"):
        checked_market_data({**data, "fear_greed_path": str(tmp_path / "fg.parquet")}, tmp_path)
    checked_market_data(data, tmp_path)  # the values used before still pass
    assert checked_market_data({**data, "fear_greed_path": str(tmp_path / "fg.parquet"), "restate": True},
                               tmp_path)[1] == dataset


DAYS = pd.date_range("2023-09-01", periods=40, tz="UTC")
KEYS = pd.MultiIndex.from_product([DAYS, [f"C{i}" for i in range(10)]], names=["date", "symbol"]).to_frame(index=False)
RETURNS = np.random.default_rng(0).normal(0, 0.05, len(KEYS))


def _predictions(quality: float, seed: int) -> pd.DataFrame:
    """Trishula-shaped predictions of 10 coins on 40 days (folds 6 and 7): `quality` x the return plus noise."""
    score = np.tanh(quality * RETURNS * 10 + np.random.default_rng(seed).normal(0, 0.3, len(KEYS)))
    p_buy, p_sell = np.clip(score, 0, None) * 0.8 + 0.1, np.clip(-score, 0, None) * 0.8 + 0.1
    return KEYS.assign(fold=np.where(KEYS["date"] < DAYS[20], 6, 7), model="trishula", p_sell=p_sell,
                       p_hold=1 - p_buy - p_sell, p_buy=p_buy, score=p_buy - p_sell,
                       label=np.select([RETURNS < -0.03, RETURNS > 0.03], [0.0, 2.0], 1.0), fwd_ret_3d=RETURNS)


def _run(registry: Registry, run_id: str, predictions: pd.DataFrame, **lineage_fields) -> None:
    """A run in the registry with its predictions and run.json's lineage fields (the current code's by default)."""
    meta = {"run_id": run_id, "config_key": run_id, "folds": [{"fold": {"index": 6}}, {"fold": {"index": 7}}],
            "source_hash": lineage.source_hash("trishula"),
            "store": {"lstm": [{"version": "v1", "sources": lineage.source_hash("backfill")}]}, **lineage_fields}

    def fill(tmp):
        predictions.to_parquet(tmp / "predictions.parquet", index=False)
        return meta

    registry.write_run(run_id, fill)


def _challenge(registry: Registry, challenger: str, champion: str):
    """run_stack's decision: the rule on the common rows (margin 0.005, min_t 1), then `roll_forward`."""
    def predictions(run_id):
        return pd.read_parquet(registry.run_dir(run_id) / "predictions.parquet")

    decision = decide_promotion(challenger, predictions(challenger), champion, predictions(champion), "ic_mean",
                                evaluate_predictions, margin=0.005, min_t=1.0)
    return decision, roll_forward(decision, registry, config_key=challenger)


def test_the_current_codes_challenger_replaces_a_champion_whose_code_is_gone_unless_worse(tmp_path):
    registry = Registry(tmp_path, "scope")
    good = _predictions(1.0, 1)
    _run(registry, "old", good, source_hash="0ld-trishula")
    registry.record(decide_promotion("old", good, None, None, "ic_mean", evaluate_predictions))
    _run(registry, "same", good.copy())  # a pure refactor: the same predictions
    rule, decision = _challenge(registry, "same", "old")
    assert not rule.promoted and "not better by more than the margin" in rule.reason
    assert decision.promoted
    assert decision.reason.startswith("the champion's code no longer exists (Trishula run old was made by trishula "
                                      f"source 0ld-trishula (the current code's is {lineage.source_hash('trishula')}))")
    assert "not worse by more than the margin 0.005 nor at a paired t below -1" in decision.reason
    registry.record(decision)
    assert registry.champion()["run_id"] == "same" and registry.promotions()[-1]["reason"] == decision.reason

    # A clearly worse challenger stays out, and the log says why.
    registry = Registry(tmp_path / "worse", "scope")
    _run(registry, "old", good, source_hash="0ld-trishula")
    _run(registry, "bad", _predictions(-1.0, 2))
    _, worse = _challenge(registry, "bad", "old")
    assert not worse.promoted and "the champion's code no longer exists" in worse.reason
    assert ", but the challenger is worse by" in worse.reason

    # Old backfill code behind the champion's store rows is old code too.
    registry = Registry(tmp_path / "backfill", "scope")
    _run(registry, "old", good, store={"lstm": [{"version": "v1", "sources": "0ld-backfill"}]})
    _run(registry, "same", good.copy())
    _, decision = _challenge(registry, "same", "old")
    assert decision.promoted and "lstm store rows of version v1 was made by backfill source 0ld-backfill" in \
        decision.reason


def test_a_refactor_promotes_nothing_while_the_champions_code_exists_or_the_challengers_does_not(tmp_path):
    good = _predictions(1.0, 1)
    registry = Registry(tmp_path / "current", "scope")
    _run(registry, "champ", good)
    _run(registry, "same", good.copy())
    rule, decision = _challenge(registry, "same", "champ")
    assert not decision.promoted and decision.reason == rule.reason  # the rule alone: better by the margin
    # A challenger made by old code too (its store rows' backfill) never takes a stale champion's place.
    registry = Registry(tmp_path / "both_old", "scope")
    _run(registry, "old", good, source_hash="0ld-trishula")
    _run(registry, "also_old", good.copy(), store={"lstm": [{"version": "v1", "sources": "0ld-backfill"}]})
    assert not _challenge(registry, "also_old", "old")[1].promoted


def test_daily_promotes_over_a_champion_whose_extractors_old_code_made(tmp_path):
    """Only the artifacts record their extractors' code: after daily's retrain, a champion served with an
    extractor of old code gives way to the current code's challenger that is not worse (run_stack cannot see it)."""
    from stacking.champion import ChampionSettings, replace_stale_champion

    extractors = tmp_path / "artifacts" / "extractors" / "lstm" / "fold_000"
    for version, source in (("v1", "0ld-extractor"), ("v2", lineage.source_hash("extractor"))):
        (extractors / version).mkdir(parents=True)
        (extractors / version / "artifact.json").write_text(json.dumps(
            {"kind": "lstm", "fold": 0, "version": version, "source_hash": source}))
    registry = Registry(tmp_path / "artifacts" / "trishula", "scope")
    art = tmp_path / "artifacts"
    settings = ChampionSettings(registry.root, art, art / "store", "scope", "auto")
    good = _predictions(1.0, 1)
    _run(registry, "old", good)
    registry.record(decide_promotion("old", good, None, None, "ic_mean", evaluate_predictions))
    current = {"lstm": [{"version": "v2", "sources": lineage.source_hash("backfill")}]}
    _run(registry, "bad", _predictions(-1.0, 2), store=current)
    _, worse = _challenge(registry, "bad", "old")
    replace_stale_champion(settings, registry, worse, "dataset")
    assert registry.champion()["run_id"] == "old"
    _run(registry, "same", good.copy(), store=current)
    _, decision = _challenge(registry, "same", "old")
    assert not decision.promoted  # run.json shows no old code
    replace_stale_champion(settings, registry, decision, "dataset")
    assert registry.champion()["run_id"] == "same"
    assert "lstm extractor v1 was made by extractor source 0ld-extractor" in registry.promotions()[-1]["reason"]
