"""Smoke tests of the benchmark scripts, on the shipped sample with tiny costs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from evaluation import daily_rank_ic
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
    # The sample's test folds are all in 2023: inside the development period.
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

    # quality.json's served book, its half-years and every model's quintiles (the sample: 8 coins, 2023 only).
    assert {"sharpe", "return", "max_drawdown", "turnover_per_day"} <= period["book"]["summary"].keys()
    assert period["book"]["beta"] == period["payoff"]["models"]["trishula"]["overall"]["book"]["beta"]
    halves = period["book_by_half_year"]
    assert [h["half_year"] for h in halves] == ["2023-H2"] and halves[0]["days"] == period["book"]["summary"]["days"]
    assert {"start", "end", "return", "sharpe"} <= halves[0].keys()
    assert set(period["quintiles"]) == models  # every model and factor
    trishula = period["payoff"]["models"]["trishula"]["overall"]["quintiles"]
    assert period["quintiles"]["trishula"]["mean"] == [trishula[f"Q{b}"]["mean"] for b in range(1, 6)]
    assert "### Which model's book earns in which market state" in (results / "quality.md").read_text()

    # The harness on the same run: a plan written before, the default composed as quality.py composed it (every
    # stage reused), a book change, another model's score, and run 30's recombined blend of all the parts (the run's
    # own blend) against the blend.
    from benchmarks import harness

    predictions = pd.read_parquet(Path(result["output_dir"]) / "predictions.parquet")
    folder = tmp_path / "experiments" / "99_smoke"
    folder.mkdir(parents=True)
    (folder / "plan.md").write_text("# a smoke test of the harness\n")
    overrides = [*TINY, "pipeline.retrain_every_folds=4", "stack.extra_parts=[tabular_1d,tabular_7d,tabular_rank]"]
    (folder / "candidates.yaml").write_text(yaml.safe_dump({
        "default": {"overrides": overrides, "model": "blend_parts"},
        "rule": {"family": "holm"},
        "candidates": [{"name": "inverse_vol", "overrides": overrides, "model": "blend_parts",
                        "book": {"weighting": "inverse_vol"}},
                       {"name": "tabular", "overrides": overrides, "model": "tabular"},
                       {"name": "HR", "overrides": overrides, "model": "blend_parts",
                        "blend_parts": ["tabular_1d", "tabular_7d", "tabular_rank"], "decide": False}]}))
    arguments = [str(folder), "--data-dir", str(SAMPLE), "--artifacts-dir", str(artifacts), "--outputs-dir",
                 str(tmp_path / "harness")]
    harness.main(arguments)
    body = json.loads((folder / "result.json").read_text())
    default, candidates = body["default"], body["candidates"]
    assert body["rule"]["family"] == "holm" and body["plan"]["plan_commit"] is None  # a tmp folder: not committed
    assert default["source"]["stack_run"] == result["stack_run"]  # quality's stack run, reused
    assert {entry["rows"] for entry in candidates.values()} == {default["rows"]} and default["rows"] > 0
    # A book change trades the same score: the same IC, so the IC check passes by construction.
    assert candidates["inverse_vol"]["ic"] == default["ic"]
    assert candidates["inverse_vol"]["versus_default"]["ic"]["diff_mean"] == 0
    assert candidates["inverse_vol"]["versus_default"]["checks"]["ic"] is True
    assert candidates["inverse_vol"]["source"]["book"]["weighting"] == "inverse_vol"
    # The recombined blend of every part is the run's own blend: identical books, a zero difference every day.
    assert candidates["HR"]["book"] == default["book"]
    assert candidates["HR"]["versus_default"]["book"]["mean"] == 0 and candidates["HR"]["adopted"] is False
    run_blend = predictions[(predictions["model"] == "blend_parts") & predictions["fwd_ret_3d"].notna()]
    assert default["ic"]["mean"] == pytest.approx(daily_rank_ic(run_blend).mean())
    # Every table of what the book is paid, for every score; the decision coded, in the markdown too.
    assert set(body["payoff"]["models"]) == {"default", "inverse_vol", "tabular", "HR"}
    assert body["adopted"] == [name for name, c in candidates.items() if c["adopted"]]
    assert "reported only" in (folder / "result.md").read_text()
    with pytest.raises(SystemExit, match="a second look needs a new plan"):
        harness.main(arguments)

    # A plan run with extractor seeds: every entry once per seed (seed=42 is the run's own: every stage reused),
    # judged by its seeds' book and IC, each seed's own figures and payoff tables beside.
    folder = tmp_path / "experiments" / "98_seeds"
    folder.mkdir(parents=True)
    (folder / "plan.md").write_text("# seeds\n")
    (folder / "candidates.yaml").write_text(yaml.safe_dump({
        "seeds": [42], "default": {"overrides": overrides, "model": "blend_parts"},
        "candidates": [{"name": "tabular", "overrides": overrides, "model": "tabular"}]}))
    harness.main([str(folder), *arguments[1:]])
    seeded = json.loads((folder / "result.json").read_text())
    assert seeded["seeds"] == [42] and seeded["default"]["source"][0]["stack_run"] == result["stack_run"]
    assert seeded["default"]["book"] == seeded["default"]["seeds"]["42"]["book"] == default["book"]
    assert seeded["candidates"]["tabular"]["ic"] == candidates["tabular"]["ic"]
    assert set(seeded["payoff"]["models"]) == {"default@42", "tabular@42"}
    assert "Each seed's own score and book" in (folder / "result.md").read_text()


def test_a_seed_averaged_book_holds_equal_capital_in_each_seeds_book(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    from benchmarks.harness import AVERAGED, seed_average, seeded
    from benchmarks.plan import Candidate
    from evaluation.payoff import book_figures

    days = pd.date_range("2023-06-01", periods=3, tz="UTC", name="date")
    one = pd.DataFrame({c: [0.01, -0.02, 0.03] for c in AVERAGED}, index=days).assign(equity=1.0, drawdown=0.0)
    two = pd.DataFrame({c: [0.03, 0.00, -0.01] for c in AVERAGED}, index=days).assign(equity=2.0, drawdown=-0.1)
    both = seed_average([one, two])
    assert list(both.columns) == AVERAGED  # one book's equity path is not the average's
    assert both["net"].tolist() == pytest.approx([0.02, -0.01, 0.01])
    figures = book_figures(both)  # what the rule and result.md read of it
    assert figures["return"] == pytest.approx(1.02 * 0.99 * 1.01 - 1) and figures["days"] == 3
    assert seed_average([one]) is one
    assert seeded(Candidate(name="c", overrides=("a=1",)), 43).overrides == ("a=1", "seed=43")
    assert seeded(Candidate(name="c"), None) == Candidate(name="c")


def test_the_development_period_is_the_test_folds_from_2021_02_20_to_2023_12_31(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    from benchmarks.periods import in_period

    days = pd.DataFrame({"date": pd.to_datetime(["2021-02-19", "2021-02-20", "2023-12-31", "2024-01-01"], utc=True)})
    assert in_period(days)["date"].dt.strftime("%Y-%m-%d").tolist() == ["2021-02-20", "2023-12-31"]


# -- benchmarks/plan.py: the plan and the adoption rule -------------------------------------------------------
def test_a_plan_is_read_before_its_run_and_refused_after_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    from benchmarks.plan import Candidate, Rule, load_plan

    (tmp_path / "candidates.yaml").write_text(yaml.safe_dump({"candidates": [{"name": "iv", "book": {"weighting":
                                                                                                    "inverse_vol"}}]}))
    with pytest.raises(SystemExit, match="no plan.md"):
        load_plan(tmp_path)
    (tmp_path / "plan.md").write_text("why\n")
    plan = load_plan(tmp_path)
    assert plan.rule == Rule(book_t=2.0, ic_t=-2.0, half_year_shortfall=0.05, family="none")
    assert plan.default == Candidate(name="default")
    assert plan.candidates == (Candidate(name="iv", book={"weighting": "inverse_vol"}),)
    (tmp_path / "candidates.yaml").write_text("candidates: [{name: money, anchor: {objective: spread}}]")
    assert load_plan(tmp_path).candidates == (Candidate(name="money", anchor={"objective": "spread"}),)
    (tmp_path / "candidates.yaml").write_text("candidates: [{name: a, anchor: spread}]")
    with pytest.raises(ValueError, match="book and anchor mappings"):
        load_plan(tmp_path)
    (tmp_path / "candidates.yaml").write_text("candidates: [{name: a, modle: tabular}]")
    with pytest.raises(ValueError, match="unknown field"):
        load_plan(tmp_path)
    (tmp_path / "candidates.yaml").write_text("seeds: [42, 43]\ncandidates: [{name: a, overrides: [x=1]}]")
    assert load_plan(tmp_path).seeds == (42, 43) and plan.seeds == ()
    for seeds, entry, error in (("[42, 42]", "{name: a}", "distinct integers"), ("[4.2]", "{name: a}", "integers"),
                                ("[42]", "{name: a, overrides: [seed=7]}", "set seed= in their overrides")):
        (tmp_path / "candidates.yaml").write_text(f"seeds: {seeds}\ncandidates: [{entry}]")
        with pytest.raises(ValueError, match=error):
            load_plan(tmp_path)
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(SystemExit, match="a second look needs a new plan"):
        load_plan(tmp_path)


def test_the_rule_adopts_a_book_that_beats_the_default_without_a_bad_half_year(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    from benchmarks.plan import Rule, compare, decide

    days = pd.date_range("2023-04-01", periods=183, tz="UTC")  # 2023-H1 and 2023-H2
    rng = np.random.default_rng(0)
    default = pd.Series(rng.normal(0.0, 0.01, len(days)), index=days)
    ic = pd.Series(rng.normal(0.05, 0.1, len(days)), index=days)
    better = default + 0.002 + pd.Series(rng.normal(0, 0.002, len(days)), index=days)
    worse_ic = ic - 0.1
    # Far better in the first half-year, about 7 points behind in the second: beats the default at t > 2 overall.
    bad_half = default + np.where(days.month >= 7, -0.0008, 0.01) + rng.normal(0, 0.0005, len(days))
    rule = Rule()
    comparisons = {"better": compare(rule, better, default, ic, ic), "worse_ic": compare(rule, better, default,
                                                                                          worse_ic, ic),
                   "bad_half": compare(rule, bad_half.iloc[1:], default, ic, ic)}
    assert comparisons["better"]["book"]["t_stat"] > 2 and comparisons["better"]["checks"]["ic"]  # same IC: passes
    assert comparisons["better"]["book"]["lags"] == 10 and comparisons["bad_half"]["book"]["days"] == 182
    assert [h["half_year"] for h in comparisons["better"]["half_years"]] == ["2023-H1", "2023-H2"]
    assert comparisons["worse_ic"]["ic"]["t_stat_long"] < -2 and not comparisons["worse_ic"]["checks"]["ic"]
    assert comparisons["bad_half"]["book"]["t_stat"] > 2
    assert -0.09 < min(h["difference"] for h in comparisons["bad_half"]["half_years"]) < -0.05
    decision = decide(rule, comparisons, deciding=["better", "worse_ic", "bad_half"])
    assert decision == {"adopted": ["better"], "choice": "better"}
    assert comparisons["bad_half"]["checks"] == {"book": True, "ic": True, "half_years": False}
    assert comparisons["worse_ic"]["checks"] == {"book": True, "ic": False, "half_years": True}
    # A sensitivity outside the family is scored, never adopted.
    assert decide(rule, {"better": compare(rule, better, default, ic, ic)}, deciding=[])["adopted"] == []


def test_holms_step_down_raises_the_bar_for_a_family_of_candidates(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    from benchmarks.plan import Rule, book_passes

    holm = Rule(family="holm")
    # Three candidates, one-sided 5 %: the best needs t >= 2.13 (p <= 0.05/3), the next 1.96, the last 1.64, and
    # every one at least book_t = 2.
    assert book_passes(holm, {"a": 2.2, "b": 2.05, "c": 1.8}) == {"a": True, "b": True, "c": False}
    assert book_passes(holm, {"a": 2.1, "b": 2.05, "c": 1.8}) == {"a": False, "b": False, "c": False}  # step-down
    assert book_passes(Rule(), {"a": 2.1, "b": 2.05, "c": None}) == {"a": True, "b": True, "c": False}
    # Ten candidates: the best needs 2.58 (p <= 0.005).
    ten = {f"c{i}": 2.5 for i in range(10)}
    assert not any(book_passes(holm, ten).values())


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


# -- benchmarks/screen.py: recipes screened before the development period ----------------------------------------
def test_the_screen_refuses_data_without_a_fold_before_the_development_period(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    from benchmarks import screen

    assert screen.parse_variant("rc=model/objective=rank_corr,seed=1") == ("rc", ["model/objective=rank_corr",
                                                                                   "seed=1"])
    assert screen.parse_variant("default") == ("default", [])
    assert screen.parse_variant("h=model.objective.aux_labels=[label_1d,label_7d],model.objective.aux_weight=0.5") == (
        "h", ["model.objective.aux_labels=[label_1d,label_7d]", "model.objective.aux_weight=0.5"])
    with pytest.raises(SystemExit, match="nothing to screen on"):  # the sample starts in December 2022
        screen.main(["lstm", "--variant", "default", "--data-dir", str(SAMPLE), "--artifacts-dir", str(tmp_path),
                     "--results-dir", str(tmp_path)])


def test_the_screen_chains_warm_starts_unless_cold_and_says_whether_the_validation_ic_kept_rising(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    from types import SimpleNamespace

    from benchmarks import screen

    curves = iter([[0.05, 0.02], [0.01, 0.03, 0.04], [0.02]] * 2)  # best after the first epoch: 1 of 2 fits
    started_from = []

    def fit(cfg, frames):
        started_from.append(cfg.get("init_from"))
        curve = next(curves)
        return SimpleNamespace(path=f"fold{cfg.fold}", meta={"metrics": {
            "best_epoch": 0, "epochs": len(curve), "learning_curve": [{"val_ic": v} for v in curve]}})

    scores = {"ic": dict.fromkeys(screen.PARTS, 0.01), "spread": dict.fromkeys(screen.PARTS, 0.0),
              "lowvol": dict.fromkeys(screen.PARTS, 0.1)}
    monkeypatch.setattr(screen, "screened_folds", lambda cfg, frames: [SimpleNamespace(index=i) for i in (3, 4, 5)])
    monkeypatch.setattr(screen, "train_extractor", fit)
    monkeypatch.setattr(screen, "part_scores", lambda cfg, artifact, frames: scores)
    warm = screen.screen("lstm", "w", [], [42], None, Path("/tmp/unused"), [])
    assert started_from == [None, "fold3", "fold4"]
    started_from.clear()
    cold = screen.screen("lstm", "c", [], [42], None, Path("/tmp/unused"), [], cold=True)
    assert started_from == [None, None, None]
    for variant in (warm, cold):
        by_epoch, later = screen.learning(variant["fits"])
        assert by_epoch == pytest.approx([(0.05 + 0.01 + 0.02) / 3, (0.02 + 0.03) / 2, 0.04]) and later == 0.5
        assert screen.learning_cells(variant) == "+0.027 → +0.025 → +0.040 | 50 %"
    assert screen.learning([{"val_ic_by_epoch": [0.1]}]) == ([0.1], None)  # one epoch: nothing to say


@pytest.mark.slow
def test_the_screen_scores_each_fit_on_the_folds_before_the_development_period(shared_data, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    from benchmarks import screen

    screen.main(["lstm", "--variant", "default", "--variant", "twice=model.max_epochs=2",
                 "--variant", "money=model/objective=return_corr,model.objective.clip=3", "--seeds", "42",
                 "--name", "smoke", "--data-dir", str(shared_data), "--artifacts-dir", str(tmp_path / "artifacts"),
                 "--results-dir", str(tmp_path)])
    result = json.loads((tmp_path / "smoke.json").read_text())
    assert result["folds"] == [0, 1, 2, 3, 4, 5] and result["test_days"] == "2020-11-28 .. 2021-02-19"
    default, twice, money = result["variants"]
    assert [f["fold"] for f in default["fits"]] == result["folds"]
    assert {f["epochs"] for f in default["fits"]} == {1} and {f["epochs"] for f in twice["fits"]} == {2}
    assert all(len(f["val_ic_by_epoch"]) == f["epochs"] for f in twice["fits"])
    for variant in (default, twice, money):
        ics = pd.DataFrame([f["ic"] for f in variant["fits"]])
        assert ics.notna().all().all() and (ics.abs() < 1).all().all()
        assert variant["mean"]["test"] == pytest.approx(ics["test"].mean())
        spreads = pd.DataFrame([f["spread"] for f in variant["fits"]])  # 3-day returns: well inside +-20 %
        assert spreads.notna().all().all() and (spreads.abs() < 0.2).all().all()
        assert variant["test_spread"] == pytest.approx(spreads["test"].mean())
        lowvol = pd.DataFrame([f["lowvol"] for f in variant["fits"]])
        assert lowvol.notna().all().all() and (lowvol.abs() < 1).all().all()
        assert variant["test_lowvol"] == pytest.approx(lowvol["test"].mean())
    # A warm-started, seeded fit on its own train windows ranks them better than on days it never saw, and its
    # top fifth of them earns more than its bottom fifth.
    assert default["mean"]["train"] > default["mean"]["val"]
    assert pd.DataFrame([f["spread"] for f in money["fits"]])["train"].mean() > 0
    rows = (tmp_path / "smoke.md").read_text().splitlines()
    [twice_row] = [line for line in rows if line.startswith("| lstm | twice |")]
    assert twice_row.count(" → ") == 1 and " % |" in twice_row  # the validation IC after each of its 2 epochs


def test_the_named_experiment_is_the_candidate_run_41_measured():
    """conf/experiment/rank_volatility_neutral.yaml composes exactly run 41's candidate (its overrides and book),
    for the main job and the daily run alike, and leaves everything else the default's."""
    from omegaconf import OmegaConf

    from tests.conftest import ROOT, compose

    plan = yaml.safe_load((ROOT / "benchmarks/results/experiments/41_rank_extractors_volatility_neutral_book/"
                           "candidates.yaml").read_text())
    [candidate] = [c for c in plan["candidates"] if c["name"] == "rank_corr_volatility_neutral"]
    for config_name in ("pipeline", "daily"):
        measured = compose(*candidate["overrides"], config_name=config_name)
        for key, value in candidate["book"].items():
            measured.backtest.book[key] = value
        named = compose("stack.ablations=[]", "+experiment=rank_volatility_neutral", config_name=config_name)
        assert OmegaConf.to_container(named) == OmegaConf.to_container(measured)
    default = compose()
    assert default.extractors.lstm.objective.listwise_weight == 0 and default.backtest.book.neutralize == "none"
