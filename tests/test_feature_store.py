"""The feature store and embed.py on the shipped sample: safe, idempotent, point in time, raw logits."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pytest
import torch
from deltalake import DeltaTable
from hydra.utils import get_class
from omegaconf import OmegaConf

from backfill import make_plan
from features.build import load_feature_frames
from store.extractors import input_spec, list_extractors, schema_hash
from store.feature_store import LOGIT_COLUMNS, FeatureStore, InSampleReadError, eligible_from
from tests.conftest import ROOT, compose

KEYS = ["version", "symbol", "decision_time"]


def _run(script, *args, timeout=400, check=True):
    done = subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Two LSTM versions (folds 4 and 5) and a TCN (fold 5), one epoch each."""
    base = tmp_path_factory.mktemp("extractors")
    for model, fold in (("lstm", 4), ("lstm", 5), ("tcn", 5)):
        _run("train.py", f"model={model}", f"fold={fold}", "trainer.max_epochs=1",
             f"hydra.run.dir={base / f'run_{model}_{fold}'}", f"paths.artifacts_dir={base}")
    return base


def _embed(artifacts, store, *overrides, check=True, popen=False):
    args = ["embed.py", f"paths.artifacts_dir={artifacts}", f"store.root={store}", f"hydra.run.dir={store}_run",
            *overrides]
    if popen:
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    return _run(*args, check=check)


def _table(store, kind="lstm"):
    frame = FeatureStore(store).read(kind).drop(columns="written_at")
    return frame.sort_values(KEYS, ignore_index=True)


@pytest.fixture(scope="module")
def clean(artifacts, tmp_path_factory):
    store = tmp_path_factory.mktemp("clean") / "store"
    _embed(artifacts, store, "embed.kinds=[lstm]", "embed.chunk_size=100")
    return store


def test_backfill_covers_each_version_from_its_eligibility(artifacts, clean):
    table = _table(clean)
    assert not table.duplicated(KEYS).any()
    fold4, fold5 = list_extractors(artifacts / "extractors")[:2]
    versions = FeatureStore(clean).versions("lstm")
    assert list(versions["version"]) == [fold4.version, fold5.version]
    # fold 4 stands for [its eligibility, fold 5's); fold 5 from its own to the end of the data.
    rows4 = table[table["version"] == fold4.version]
    rows5 = table[table["version"] == fold5.version]
    assert rows4["decision_time"].min() == eligible_from(fold4.meta)
    assert rows4["decision_time"].max() < eligible_from(fold5.meta) == rows5["decision_time"].min()
    assert rows5["ts"].max() == pd.Timestamp("2023-12-31", tz="UTC")
    # Lineage on every row.
    assert (rows5["artifact_sha256"] == fold5.meta["weights_sha256"]).all()
    assert (rows5["feature_schema_hash"] == fold5.meta["feature_schema_hash"]).all()
    assert (rows5["fold"] == 5).all() and (rows5["eligible_from"] == eligible_from(fold5.meta)).all()
    assert [f"lemb_{i}" for i in range(12)] == [c for c in table.columns if c.startswith("lemb_")]


def test_a_killed_backfill_leaves_the_store_as_it_was_and_resumes(artifacts, clean, tmp_path):
    store = tmp_path / "store"
    fold4 = list_extractors(artifacts / "extractors")[0]
    _embed(artifacts, store, "embed.kinds=[lstm]", f"embed.versions=[{fold4.version}]")
    before, version_before = FeatureStore(store).read("lstm"), FeatureStore(store).table_version("lstm")

    process = _embed(artifacts, store, "embed.kinds=[lstm]", "embed.chunk_size=20", popen=True)
    staging = store / ".staging" / "lstm"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(staging.glob("*/chunk-*.done"))) < 12:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert len(list(staging.glob("*/chunk-*.done"))) >= 12, "the backfill did not get under way"
    # Exactly as before: same table version, same rows, fully readable.
    assert FeatureStore(store).table_version("lstm") == version_before
    pd.testing.assert_frame_equal(FeatureStore(store).read("lstm"), before)

    done = _embed(artifacts, store, "embed.kinds=[lstm]", "embed.chunk_size=20")
    assert "resumed" in done.stdout
    pd.testing.assert_frame_equal(_table(store), _table(clean))
    assert not list(staging.glob("*"))


def test_backfill_is_idempotent_and_versions_sit_side_by_side(artifacts, clean, tmp_path):
    store = tmp_path / "store"
    fold4, fold5 = list_extractors(artifacts / "extractors")[:2]
    _embed(artifacts, store, "embed.kinds=[lstm]", f"embed.versions=[{fold4.version}]")
    first = FeatureStore(store).read("lstm")
    _embed(artifacts, store, "embed.kinds=[lstm]", f"embed.versions=[{fold5.version}]")
    both = FeatureStore(store).read("lstm")
    # Adding fold 5 left fold 4's rows untouched, down to when they were written.
    kept = both[both["version"] == fold4.version].sort_values(KEYS, ignore_index=True)
    pd.testing.assert_frame_equal(kept, first.sort_values(KEYS, ignore_index=True))
    _embed(artifacts, store, "embed.kinds=[lstm]")
    again = _table(store)
    assert len(again) == len(both) and not again.duplicated(KEYS).any()
    pd.testing.assert_frame_equal(again, _table(clean))


def test_a_version_rewritten_in_place_changes_the_stacks_store_key(artifacts, clean, tmp_path):
    """embed.force=true rewrites a version's rows (same count): the Trishula run key must see new input."""
    from stacking.run import store_versions

    store = tmp_path / "store"
    fold4 = list_extractors(artifacts / "extractors")[0]
    _embed(artifacts, store, "embed.kinds=[lstm]", f"embed.versions=[{fold4.version}]")
    before = store_versions(FeatureStore(store), ["lstm"], None)
    _embed(artifacts, store, "embed.kinds=[lstm]", f"embed.versions=[{fold4.version}]")  # idempotent: no write
    assert store_versions(FeatureStore(store), ["lstm"], None) == before
    _embed(artifacts, store, "embed.kinds=[lstm]", f"embed.versions=[{fold4.version}]", "embed.force=true")
    after = store_versions(FeatureStore(store), ["lstm"], None)
    [old], [new] = before["lstm"], after["lstm"]
    assert {k: old[k] for k in ("version", "rows", "sources")} == {k: new[k] for k in ("version", "rows", "sources")}
    assert new["written"] > old["written"] and after != before


def test_reads_are_point_in_time_and_in_sample_reads_are_refused(artifacts, clean):
    cfg = compose()
    groups = {k: OmegaConf.to_container(cfg[k]) for k in ("data", "features", "labels")}
    frames = load_feature_frames(groups["data"], groups["features"], groups["labels"])
    decisions = frames.daily[["symbol", "ts"]].assign(decision_time=frames.daily["ts"] + pd.Timedelta(days=1))
    read = FeatureStore(clean).read_asof(decisions, "lstm")
    found = read["lstm_version"].notna()
    assert found.sum() == len(_table(clean))
    metas = {a.version: a.meta for a in list_extractors(artifacts / "extractors")}
    for version, rows in read[found].groupby("lstm_version"):
        meta = metas[version]
        train_end = pd.Timestamp(meta["train_end"], tz="UTC")
        labels_end = pd.Timestamp(meta["val_end"], tz="UTC") + pd.Timedelta(days=1 + meta["label_horizon_days"])
        assert (train_end + pd.Timedelta(days=meta["purge_days"]) < rows["decision_time"]).all()
        assert (labels_end + pd.Timedelta(days=meta["purge_days"]) <= rows["decision_time"]).all()
    # Each row takes the newest eligible extractor: fold 5 wherever it is eligible.
    fold5 = list_extractors(artifacts / "extractors")[1]
    late = read["decision_time"] >= eligible_from(fold5.meta)
    assert (read.loc[late & found, "lstm_version"] == fold5.version).all()
    # Before any extractor is eligible there is no output, never a fill.
    assert read.loc[~found, [c for c in read.columns if c.startswith("lemb_")]].isna().all().all()
    with pytest.raises(InSampleReadError, match=f"version {fold5.version} is eligible from"):
        FeatureStore(clean).read_asof(decisions, "lstm", version=fold5.version)


def test_a_restate_deletes_the_rows_after_a_bar_and_leaves_a_readable_table(clean, tmp_path):
    # A copy of the backfilled store; the restated bar falls inside the files an earlier backfill wrote.
    store_root = tmp_path / "store"
    shutil.copytree(clean, store_root)
    store = FeatureStore(store_root)
    before = _table(store_root)
    dataset = before["dataset"].iloc[0]
    since = before["decision_time"].sort_values().iloc[len(before) // 2]
    version = before.loc[before["decision_time"] > since, "version"].iloc[0]
    store.record_committed("lstm", {version: "plan"})
    deleted = store.delete_from(dataset, since)
    after = _table(store_root)
    assert deleted == int((before["decision_time"] > since).sum()) > 0
    pd.testing.assert_frame_equal(after, before[before["decision_time"] <= since].reset_index(drop=True))
    assert version not in store.committed_runs().get("lstm", {})  # its plan is forgotten: it is rebuilt
    # Every file of the table keeps one schema (the rewritten ones too): comparisons and as-of reads work.
    uris = DeltaTable(str(store.table_path("lstm"))).file_uris()
    files = [pads.dataset(uri).schema.field("version").type for uri in uris]
    assert len(set(map(str, files))) == 1
    decisions = after[["symbol"]].assign(decision_time=after["decision_time"])
    assert store.read_asof(decisions, "lstm")["lstm_version"].notna().all()


def test_store_holds_raw_logits_and_reads_apply_softmax_once(artifacts, tmp_path):
    store = tmp_path / "store"
    _embed(artifacts, store, "embed.kinds=[tcn]", "embed.stride_hours=24")
    table = FeatureStore(store).read("tcn")
    logits = table[list(LOGIT_COLUMNS)].to_numpy(dtype="float64")
    assert not np.allclose(logits.sum(axis=1), 1.0, atol=1e-3)
    assert (table["ts"].dt.hour == 23).all()
    # The model's own output on the same windows.
    [tcn] = [a for a in list_extractors(artifacts / "extractors") if a.meta["kind"] == "tcn"]
    cfg = compose()
    groups = {k: OmegaConf.to_container(cfg[k]) for k in ("data", "features", "labels")}
    frames = load_feature_frames(groups["data"], groups["features"], groups["labels"])
    spec = input_spec("hourly", frames.columns["tcn"], 168, groups["features"], groups["data"])
    plan = make_plan(tcn, [tcn], frames, schema_hash(spec), "x", stride_hours=24)
    net = get_class(tcn.meta["net"]["_target_"])(**{k: v for k, v in tcn.meta["net"].items() if k != "_target_"})
    net.load_state_dict(tcn.load_state_dict())
    net.eval()
    pick = np.array([0, 100, len(plan.ends) - 1])
    x = plan.values.unfold(0, 168, 1)[torch.from_numpy(plan.ends[pick] - 167)]
    with torch.inference_mode():
        out = net(x)
    keys = plan.keys.iloc[pick].reset_index(drop=True)
    stored = keys.merge(table, on=["symbol", "decision_time"], how="left")
    np.testing.assert_allclose(stored[list(LOGIT_COLUMNS)].to_numpy(), out.logits.numpy(), rtol=1e-5, atol=1e-6)
    embedding = FeatureStore(store).embedding_columns("tcn")
    assert embedding == [f"emb_{i}" for i in range(out.embedding.shape[1])]  # in order, as many as the network's
    np.testing.assert_allclose(stored[embedding].to_numpy(), out.embedding.numpy(), rtol=1e-5, atol=1e-6)
    read = FeatureStore(store).read_asof(keys, "tcn")
    probs = read[["tcn_p_sell", "tcn_p_hold", "tcn_p_buy"]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(probs, torch.softmax(out.logits.double(), dim=1).numpy(), rtol=1e-5)


def test_bad_input_is_refused_and_the_store_is_untouched(artifacts, clean, tmp_path):
    version = FeatureStore(clean).table_version("lstm")
    before = FeatureStore(clean).read("lstm")
    bad = [
        (("embed.kinds=[lstm]", "embed.versions=[19990101T000000-deadbeef]"), "unknown extractor version"),
        (("embed.kinds=[lstm]", "features.daily.short_window=5"), "differ from the ones it was trained on"),
    ]
    for overrides, message in bad:
        done = _embed(artifacts, clean, *overrides, check=False)
        assert done.returncode != 0 and message in done.stderr, done.stderr[-2000:]
    # Data that ends before the newest extractor is eligible does not cover its windows.
    cut = pd.read_parquet(ROOT / "data" / "sample" / "hourly.parquet")
    cut = cut[cut["ts"] < pd.Timestamp("2023-08-25", tz="UTC")]
    path = tmp_path / "cut.parquet"
    cut.to_parquet(path, index=False)
    done = _embed(artifacts, clean, "embed.kinds=[lstm]", f"data.hourly_path={path}", check=False)
    assert done.returncode != 0 and "holds no complete 30-bar window" in done.stderr, done.stderr[-2000:]
    done = _embed(tmp_path / "nothing", clean, check=False)
    assert done.returncode != 0 and "no trained extractor" in done.stderr
    assert FeatureStore(clean).table_version("lstm") == version
    pd.testing.assert_frame_equal(FeatureStore(clean).read("lstm"), before)


@pytest.mark.slow
def test_ddp_backfill_equals_the_single_process_one(artifacts, clean, tmp_path):
    store = tmp_path / "store"
    _embed(artifacts, store, "embed.kinds=[lstm]", "embed.chunk_size=100", "trainer=ddp", "trainer.accelerator=cpu",
           "trainer.devices=2", "trainer.precision=32-true")
    pd.testing.assert_frame_equal(_table(store), _table(clean))
