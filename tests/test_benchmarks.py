"""Smoke tests of the benchmark scripts, on the shipped sample with tiny costs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from store.extractors import list_extractors
from tests.conftest import SAMPLE

# A cut-down walk-forward: the folds from November 2023, the extractors of every 4th fold, one epoch each.
TINY = ("trainer.max_epochs=1", "split.first_test_date=2023-11-01", "pipeline.retrain_every_folds=4")


@pytest.mark.slow
def test_walkforward_times_every_stage_of_the_main_job(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts the repo root at sys.path[0]
    from benchmarks import walkforward

    artifacts, results = tmp_path / "artifacts", tmp_path / "results"
    walkforward.main(["--data-dir", str(SAMPLE), "--artifacts-dir", str(artifacts), "--results-dir", str(results),
                      "--outputs-dir", str(tmp_path / "outputs"), "--fresh", "--matmul-size", "256",
                      "--matmul-rounds", "2", "--", *TINY])

    result = json.loads((results / "walkforward.json").read_text())
    stages = result["stages"]
    assert list(stages) == ["data", "extractors_lstm", "extractors_tcn", "backfill", "stack", "backtest", "report"]
    assert all(entry["seconds"] > 0 for entry in stages.values())
    assert sum(entry["share"] for entry in stages.values()) == pytest.approx(1, abs=0.01)
    # Each stage's seconds are rounded to the millisecond; the time between stages is not theirs.
    assert result["total_seconds"] >= sum(entry["seconds"] for entry in stages.values()) - 0.001 * len(stages)
    assert result["fresh"] is True and result["overrides"][-len(TINY):] == list(TINY)
    assert result["matmul_gflops"] > 0

    for kind in ("lstm", "tcn"):
        entry = stages[f"extractors_{kind}"]
        saved = [a for a in list_extractors(artifacts / "extractors") if a.meta["kind"] == kind]
        assert entry["epochs"] == [a.meta["metrics"]["epochs"] for a in saved] == [1] * len(saved)
        assert entry["best_epochs"] == [a.meta["metrics"].get("best_epoch") for a in saved]
        assert entry["fits"] == entry["trained"] == len(saved) > 0
        assert entry["samples_trained"] == sum(a.meta["samples"]["train"] for a in saved)
        assert entry["train_samples_per_s"] == pytest.approx(entry["samples_trained"] / entry["seconds"])
        assert entry["gflops"] > 0 and entry["matmul_share"] > 0
    assert stages["backfill"]["windows"] > 0 and stages["stack"]["models"] > 0 and stages["backtest"]["orders"] > 0
    assert (results / "walkforward.md").read_text().count("| extractors_") == 2


@pytest.mark.slow
def test_quality_scores_every_model_and_reads_each_fits_learning_curve(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts the repo root at sys.path[0]
    from benchmarks import quality

    artifacts, results = tmp_path / "artifacts", tmp_path / "results"
    quality.main(["--data-dir", str(SAMPLE), "--artifacts-dir", str(artifacts), "--results-dir", str(results),
                  "--outputs-dir", str(tmp_path / "outputs"), "--retrain-every", "4", "--", *TINY,
                  "stack.extra_parts=[tabular_1d,tabular_7d,tabular_rank]"])  # every part run 30 measures

    result = json.loads((results / "quality.json").read_text())
    assert result["retrain_every_folds"] == 4
    # The sample's test folds are all in 2023: the confirmation period only.
    [period] = result["periods"].values()
    models = {row["model"] for row in period["models"]}
    assert {"trishula", "tabular", "lstm", "tcn", "blend_parts", "lowvol_30d"} <= models
    # The default Trishula reads no embeddings: its ablations add them, or leave an extractor out.
    assert {"trishula_with_embeddings", "trishula_no_lstm", "trishula_no_tcn", "trishula_rank_objective",
            "trishula_meta"} <= models
    # Trishula's anchor weight per fold is written and shown (the sample's folds have too few earlier days).
    assert result["anchor_weights"] and all(a["weight"] == 0.0 for a in result["anchor_weights"].values())
    assert "## Trishula's anchor on the blend of its parts" in (results / "quality.md").read_text()
    for kind, fits in result["extractor_learning"].items():
        saved = [a for a in list_extractors(artifacts / "extractors") if a.meta["kind"] == kind]
        curves = [a.meta["metrics"]["learning_curve"] for a in saved]
        assert fits["learning_curves"] == curves and all(len(c) == 1 for c in curves)  # one epoch each
        assert fits["train_loss_change"] == [0.0] * len(saved)  # first epoch = last epoch
        starts = [a.meta["metrics"]["start_val_loss"] for a in saved]
        assert fits["start_val_loss"] == [round(s, 4) for s in starts]
        assert fits["first_epoch_val_change"] == [round(c[0]["val_loss"] - s, 4)
                                                  for c, s in zip(curves, starts, strict=True)]
    fits_table = (results / "quality.md").read_text().split("## Extractor fits")[1].split("##")[0]
    for kind, fits in result["extractor_learning"].items():
        assert f"| {kind} | {len(fits['epochs'])} | {fits['best_epochs']} |" in fits_table

    # The combiners of the parts, fitted on the run's earlier predictions (a short history: the sample's).
    from benchmarks import combiners
    from evaluation.metrics import daily_rank_ic

    path = Path(result["output_dir"]) / "predictions.parquet"
    combiners.main(["--predictions", str(path), "--results-dir", str(results), "--train-days", "30",
                    "--min-train-days", "10", "--", "stack.lgbm.min_child_samples=5"])
    combined = json.loads((results / "combiners.json").read_text())
    [body] = combined["periods"].values()
    rows = {row["model"]: row for row in body["models"]}
    assert set(rows) == {"blend_parts", "trishula", "ols", "lgbm_probas", "lgbm_scores", "lgbm_regression",
                         "stumps_regression"}
    assert {row["days"] for row in rows.values()} == {body["days"]} and body["days"] > 0
    # The first fold has no history before it: it is left out, for every combiner alike.
    predictions = pd.read_parquet(path)
    blend = predictions[(predictions["model"] == "blend_parts") & (predictions["fold"] > predictions["fold"].min())]
    ic = daily_rank_ic(blend, target="fwd_ret_3d")
    assert body["days"] == len(ic) and rows["blend_parts"]["mean"] == pytest.approx(ic.mean())
    assert rows["blend_parts"]["minus_blend_parts"] == 0 and rows["trishula"]["minus_trishula"] == 0

    # Run 29's figures on the same run: on the sample no fold has 60 earlier days, so Trishula is the blend.
    from benchmarks import anchor

    anchor.main(["--quality", str(results / "quality.json"), "--data", str(SAMPLE / "hourly.parquet"),
                 "--results-dir", str(results), "--confirm"])
    body = json.loads((results / "anchor.json").read_text())
    assert body["decisions"] is None and list(body["periods"]) == ["confirmation_2023"]
    period = body["periods"]["confirmation_2023"]
    assert period["ic"]["paired"]["trishula - blend_parts"]["diff_mean"] == 0
    assert period["ic"]["paired"]["trishula_rank_objective - trishula_meta"]["days"] > 0
    assert period["book"]["paired"]["trishula - blend_parts"]["mean_daily_diff"] == 0
    assert "| trishula_meta |" in (results / "anchor.md").read_text()

    # Run 30's candidate blends from the same run, whose blend_parts holds every extra part (candidate HR).
    from benchmarks import parts

    parts.main(["--quality", str(results / "quality.json"), "--data", str(SAMPLE / "hourly.parquet"),
                "--results-dir", str(results), "--confirm"])
    body = json.loads((results / "parts.json").read_text())
    assert body["decision"] is None and list(body["periods"]) == ["confirmation_2023"]
    ic = body["periods"]["confirmation_2023"]["ic"]
    run_blend = daily_rank_ic(predictions[predictions["model"] == "blend_parts"], target="fwd_ret_3d")
    assert ic["models"]["blend_HR"]["mean"] == pytest.approx(run_blend.mean(), abs=1e-12)
    assert ic["models"]["blend_HR"]["days"] == len(run_blend)
    assert ic["models"]["blend_B0"]["mean"] != pytest.approx(run_blend.mean())  # three parts, not six
    # No fold has 60 earlier days on the sample: each candidate's Trishula is its blend.
    assert all(ic["paired"][f"trishula_{c} - blend_{c}"]["diff_mean"] == 0 for c in parts.CANDIDATES)
    # Run 31's seed ensembles: the run's own extractors as the base and as two "seeds" average to themselves.
    from benchmarks import seeds

    run_dir = Path(result["output_dir"])
    seeds.main(["--base", str(run_dir), "--runs", str(run_dir), str(run_dir), "--results-dir", str(results),
                "--confirm"])
    body = json.loads((results / "seeds.json").read_text())
    assert body["decision"] is None and list(body["periods"]) == ["confirmation_2023"]
    ic = body["periods"]["confirmation_2023"]
    blend_b0 = ic["models"]["blend_B0"]["mean"]
    assert ic["models"]["blend_S3"]["mean"] == pytest.approx(blend_b0)
    assert ic["paired"]["blend_S3 - blend_B0"]["diff_mean"] == pytest.approx(0, abs=1e-12)
    assert blend_b0 != pytest.approx(run_blend.mean())  # tabular, lstm and tcn only: not the run's six parts
    lstm = daily_rank_ic(predictions[predictions["model"] == "lstm"], target="fwd_ret_3d")
    assert ic["models"]["lstm_B0"]["mean"] == pytest.approx(lstm.mean())

    # A run that trained no extra part is refused, naming them.
    no_parts = tmp_path / "no_parts"
    no_parts.mkdir()
    predictions[~predictions["model"].str.startswith("tabular_")].to_parquet(no_parts / "predictions.parquet")
    (tmp_path / "no_parts.json").write_text(json.dumps({**result, "output_dir": str(no_parts)}))
    with pytest.raises(SystemExit, match="tabular_rank"):
        parts.main(["--quality", str(tmp_path / "no_parts.json")])


def test_a_development_only_quality_run_scores_no_2023_day(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts the repo root at sys.path[0]
    from benchmarks import quality

    assert quality.periods_in_run("2022-12-31") == ["development"]
    assert quality.periods_in_run("2023-01-01") == quality.periods_in_run(None) == list(quality.PERIODS)


# -- benchmarks/drift.py ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lstm_versions(tmp_path_factory):
    """The extractors root of an LSTM of fold 3 and one of fold 5 warm-started from it, one epoch each."""
    from tests.test_train import _train

    base = tmp_path_factory.mktemp("drift")
    _train(base / "run3", base, "model=lstm", "trainer.max_epochs=1", "fold=3")
    [first] = list_extractors(base / "extractors")
    _train(base / "run5", base, "model=lstm", "trainer.max_epochs=1", "fold=5", f"init_from={first.path}")
    return base / "extractors"


def test_drift_compares_consecutive_versions_on_the_rows_the_newer_serves(lstm_versions, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts the repo root at sys.path[0]
    from benchmarks import drift

    drift.main(["--artifacts-dir", str(lstm_versions), "--data-dir", str(SAMPLE), "--results-dir", str(tmp_path)])

    result = json.loads((tmp_path / "drift.json").read_text())
    assert result["artifacts_dir"] == str(lstm_versions) and result["seconds"] > 0
    assert result["min_coins"] == drift.MIN_COINS and result["agreeing_at"] == drift.AGREEING
    entry = result["kinds"]["lstm"]
    [pair] = entry["pairs"]
    older, newer = list_extractors(lstm_versions)
    assert pair["older"]["version"] == older.version and pair["newer"]["version"] == newer.version
    assert pair["warm_started_from_older"] and pair["rows"] > 0 and pair["days_ranked"] > 0
    groups = [column["group"] for column in pair["columns"].values()]
    assert groups.count("probability") == 3 and groups.count("embedding") == newer.meta["net"]["embedding_dim"]
    figures = [column[way] for column in pair["columns"].values() for way in drift.WAYS]
    assert all(-1 <= value <= 1 for value in figures)
    assert entry["summary"]["pairs"] == 1 and set(drift.FIGURE_COLUMNS) <= entry["summary"].keys()
    assert "| lstm | 1 | embedding |" in (tmp_path / "drift.md").read_text()


def test_drift_of_a_version_with_itself_is_exactly_one(lstm_versions, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    from benchmarks import drift

    older, newer = list_extractors(lstm_versions)
    scoring = drift.Scoring.build(SAMPLE, [])
    agreement = drift.compare_pair(newer, newer, [older, newer], scoring)["agreement"]
    assert len(agreement) > 3 and (agreement[list(drift.WAYS)] == 1.0).all().all()
