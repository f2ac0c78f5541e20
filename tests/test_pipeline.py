"""The main job on the shipped sample, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from features.build import LSTM_FEATURES, REGIME_FEATURES, TABULAR_FEATURES, TCN_CHANNELS
from tests.conftest import ROOT, SAMPLE, compose


def _run(tmp_path, *overrides):
    return subprocess.run(
        [sys.executable, "pipeline.py", f"hydra.run.dir={tmp_path}", *overrides],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline")
    done = _run(out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_pipeline_writes_features_labels_and_folds(run_dir):
    daily = pd.read_parquet(run_dir / "daily_features.parquet")
    hourly = pd.read_parquet(run_dir / "hourly_features.parquet")
    assert set(LSTM_FEATURES) <= set(daily.columns) and {"label_3d", "fwd_ret_3d"} <= set(daily.columns)
    assert set(TABULAR_FEATURES) <= set(daily.columns) and set(REGIME_FEATURES) <= set(daily.columns)
    assert daily.columns.is_unique
    assert list(hourly.columns)[:11] == ["symbol", "ts", "is_filled", *TCN_CHANNELS]
    assert {"label_3d", "fwd_ret_14d"} <= set(hourly.columns)
    assert sorted(daily["symbol"].unique()) == sorted(pd.read_parquet(SAMPLE / "hourly.parquet")["symbol"].unique())
    assert not daily.duplicated(["symbol", "ts"]).any() and not hourly.duplicated(["symbol", "ts"]).any()
    folds = json.loads((run_dir / "folds.json").read_text())["folds"]
    assert len(folds) == 13
    assert set(folds[0]["normalization"]) == {"daily", "hourly"}
    assert folds[0]["normalization"]["hourly"]["columns"] == list(TCN_CHANNELS)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["daily_rows"] == len(daily) and summary["folds"] == 13
    assert sum(summary["primary_label_counts"].values()) == int(daily["label_3d"].notna().sum())
    # Nothing half-written is left behind.
    assert not list(run_dir.glob(".*.tmp"))


def test_overrides_reach_the_stages(tmp_path):
    done = _run(tmp_path, "split.first_test_date=2023-10-01", "split.window=expanding")
    assert done.returncode == 0, done.stderr[-3000:]
    folds = json.loads((tmp_path / "folds.json").read_text())["folds"]
    assert [f["index"] for f in folds] == [8, 9, 10, 11, 12]
    assert {f["train_start"] for f in folds} == {"2022-12-01"}


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
