"""Lineage on the shipped sample: code changes invalidate reuse, data lineages stay apart, one bad
coin does not stop the fleet, and the registry never loses a run or disagrees with its log."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

import store.lineage as lineage
from marketdata import DataValidationError
from marketdata.load import dataset_id, load_market
from stacking.registry import Registry, decide_promotion
from store.extractors import data_fingerprint, data_prefix_fingerprint
from store.lineage import BarHistory, HistoryChangedError
from tests.conftest import ROOT, SAMPLE, compose


@pytest.fixture
def source_copy(tmp_path, monkeypatch):
    """A copy of the repo's source, which `store.lineage` hashes instead of the real one."""
    for part in {p for parts in lineage.SOURCES.values() for p in parts}:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        else:
            (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, tmp_path / part)
    monkeypatch.setattr(lineage, "ROOT", tmp_path)
    return tmp_path


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
    assert registry.run_meta("abc") == {"n": 2} and not list((tmp_path / "runs").glob(".*"))
    # A failing re-run leaves the old run in place.
    with pytest.raises(RuntimeError):
        registry.write_run("abc", lambda tmp: (_ for _ in ()).throw(RuntimeError("killed")))
    assert registry.run_meta("abc") == {"n": 2}
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
