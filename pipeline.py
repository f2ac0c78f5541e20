"""The main job: the whole walk-forward in one command.

    python pipeline.py                                      # the shipped sample, CPU (a few minutes)
    python pipeline.py data=full trainer=gpu                # the production run
    python pipeline.py split.first_test_date=2023-10-01     # evaluate later folds only
    python pipeline.py pipeline.retrain_every_folds=1 stack.promotion.metric=log_loss

Stages, all from one config (so `data.*` and `paths.*` given once reach every stage):
1. data plane: load and validate the bars, apply the gap policy, build features, labels and folds;
2. extractors: train the LSTM and the TCN on every `pipeline.retrain_every_folds`-th fold up to the
   last evaluated one (earlier folds too: their out-of-sample outputs are the meta-learner's
   training rows), each warm-started from the previous one with `pipeline.warm_start` (per kind:
   `extractors.<kind>.warm_start`); an artifact with the same content key (config, data, fold, seed,
   initial weights) is reused;
3. backfill: their embeddings and raw logits into the feature store (a plan already committed is
   skipped);
4. Trishula: the meta-learner per evaluated fold, the evaluation against its parts and the factor
   baselines (paired by day), and promotion (a run with unchanged inputs is reused);
5. backtest: the configured strategy on the signals (`backtest=ranked`: the market-neutral book of the
   day's ranks; `backtest=trailing_j`: SPEC §7's rules, gated and sized by the regime detector);
6. report: report.html with every figure, also saved as PNG.
Every skipped stage says so. Outputs go to `paths.output_dir`; artifacts that outlive a run
(extractors, the store, Trishula runs) to `paths.artifacts_dir`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import warnings
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from backfill import run_backfill
from backtest import BacktestResult, DailyPanel, run_strategy, write_backtest
from cli import command, console
from evaluation import run_payoff, served_panel, write_report
from evaluation.cells import format_number, format_percent
from evaluation.report import blend_line
from features.build import FeatureFrames, build_feature_frames
from features.labels import CLASS_NAMES
from marketdata.gaps import summarise_gaps
from splits.artifacts import fold_record, folds_from_config
from stacking.run import run_stack
from store import write_json_atomic, write_parquet_atomic
from store.extractors import ExtractorArtifact, list_extractors
from store.files import write_text_atomic
from store.lineage import checked_market_data
from train import content_key, fit_epochs, fit_line, train_extractor

STAGES = ("data", "extractors", "backfill", "stack", "backtest", "report")


def _gap_table(grid: pd.DataFrame, gaps: pd.DataFrame) -> Table:
    summary = summarise_gaps(grid[~grid["is_filled"]], gaps)
    table = Table(title="Hourly bars and gaps per symbol (gaps filled by policy)")
    for column in ["symbol", *summary.columns]:
        table.add_column(column, justify="left" if column == "symbol" else "right")
    for symbol, row in summary.iterrows():
        table.add_row(symbol, *(f"{v:,}" for v in row))
    return table


def _feature_table(frames: FeatureFrames) -> Table:
    table = Table(title="Features (share missing = warm-up rows and unlabelled tails)")
    for column in ("frame", "column", "missing", "mean", "std"):
        table.add_column(column, justify="left" if column in ("frame", "column") else "right")
    for name, frame in (("daily", frames.daily), ("hourly", frames.hourly)):
        for column in frame.columns.drop(["symbol", "ts", "is_filled"], errors="ignore"):
            values = frame[column].to_numpy(dtype="float64", na_value=np.nan)
            table.add_row(
                name, column, f"{np.isnan(values).mean():.1%}", f"{np.nanmean(values):.4g}", f"{np.nanstd(values):.4g}"
            )
    return table


def write_feature_table(frames: FeatureFrames, path: Path) -> None:
    """The feature table (a line per column) into the run's `path`; the console gets one line."""
    text = io.StringIO()
    Console(file=text, width=140).print(_feature_table(frames))
    write_text_atomic(text.getvalue(), path)
    console.print(f"features: {frames.daily.shape[1]} daily and {frames.hourly.shape[1]} hourly columns; each "
                  f"one's missing share, mean and std in {path}", soft_wrap=True)


def data_stage(cfg: DictConfig, out: Path):
    """Load, validate, build features and folds; write them. (frames, hourly grid, evaluated folds, all folds)"""
    started = time.perf_counter()
    with console.status("loading and validating market data"):
        market, dataset = checked_market_data(OmegaConf.to_container(cfg.data, resolve=True), cfg.store.root,
                                              console=console)
    grid, gaps, fear_greed = market.grid, market.gaps, market.fear_greed
    console.print(_gap_table(grid, gaps))
    if cfg.labels.primary not in cfg.labels.thresholds:
        raise ValueError(f"labels.primary={cfg.labels.primary} is not among labels.thresholds")
    with console.status("building features and labels"):
        frames = build_feature_frames(
            grid, fear_greed, OmegaConf.to_container(cfg.features), OmegaConf.to_container(cfg.labels)
        )
    write_feature_table(frames, out / "features.txt")

    longest = max(frames.horizons)
    evaluated = folds_from_config(frames.daily, cfg.split, longest)
    if not evaluated:
        raise ValueError(
            f"no walk-forward fold fits in {frames.daily['ts'].min().date()} .. {frames.daily['ts'].max().date()} "
            f"with split={OmegaConf.to_container(cfg.split)}"
        )
    unrestricted = {**OmegaConf.to_container(cfg.split), "first_test_date": None, "last_test_date": None}
    all_folds = folds_from_config(frames.daily, unrestricted, longest)
    records = [
        fold_record(f, frames.daily, frames.hourly, frames.columns["lstm"], frames.columns["tcn"]) for f in evaluated
    ]
    write_parquet_atomic(frames.daily, out / "daily_features.parquet")
    write_parquet_atomic(frames.hourly, out / "hourly_features.parquet")
    write_parquet_atomic(gaps, out / "gaps.parquet")
    write_json_atomic({"folds": records}, out / "folds.json")
    label = cfg.labels.primary
    summary = {
        "dataset": dataset,
        **data_span(frames),
        "dropped_symbols": market.dropped.astype({"ts": str}).to_dict("records"),
        "daily_rows": len(frames.daily),
        "hourly_rows": len(frames.hourly),
        "feature_columns": {name: list(cols) for name, cols in frames.columns.items()},
        "filled_hours": int(frames.hourly["is_filled"].sum()),
        "primary_label_counts": {
            name: int((frames.daily[label] == code).sum()) for code, name in enumerate(CLASS_NAMES)
        },
        "folds": len(records),
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_json_atomic(summary, out / "summary.json")
    console.print(
        f"{summary['daily_rows']:,} daily and {summary['hourly_rows']:,} hourly rows for "
        f"{len(summary['symbols'])} symbols; {len(records)} evaluated folds "
        f"(test {records[0]['test_start']} .. {records[-1]['test_end']}); "
        f"{label}: {summary['primary_label_counts']}; data plane written to {out} in {summary['seconds']} s"
    )
    return frames, grid, evaluated, all_folds


def data_span(frames: FeatureFrames) -> dict:
    """The coins and the first and last day of the built frames (summary.json, the report, benchmarks)."""
    days = frames.daily["ts"]
    return {"symbols": sorted(frames.daily["symbol"].unique()),
            "days": [str(days.min().date()), str(days.max().date())]}


SMOKE_COINS, SMOKE_DAYS = 20, 365


def smoke_note(coins: int, test_days: int) -> str | None:
    """The plain warning a run on too little data must carry (None: enough coins and test days to read)."""
    if coins >= SMOKE_COINS and test_days >= SMOKE_DAYS:
        return None
    return (f"a smoke test, not evidence: {coins} coins and {test_days} test days are too few for these figures "
            f"to say whether the models or the strategy work (that takes >= {SMOKE_COINS} coins and a year of "
            f"test days; see benchmarks/results/ for the full data's figures).")


REPORTED_SETTINGS = ("backtest", "stack", "extractors", "trainer", "labels", "split", "pipeline")


def report_context(cfg: DictConfig, frames: FeatureFrames, evaluated: list, predictions: pd.DataFrame) -> dict:
    """What the report's opening names: the data (coins, days, evaluated folds), a digest of the config and the
    configuration by group. The smoke-test note counts the test days the models scored (the report's count)."""
    resolved = OmegaConf.to_container(cfg, resolve=False)
    span = data_span(frames)
    test_days = int(predictions["date"].nunique())
    return {
        "data": {**span, "folds": [str(f.test_start.date()) for f in evaluated],
                 "smoke_test": smoke_note(len(span["symbols"]), test_days)},
        "config": {
            "digest": hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:12],
            "hourly bars": cfg.data.hourly_path,
            "label": f"{cfg.labels.primary} ±{cfg.labels.thresholds[cfg.labels.primary]}",
            "extractors retrained every": f"{cfg.pipeline.retrain_every_folds} folds",
            "extractor epochs at most": extractor_epochs(cfg),
            "meta train window": cfg.stack.split.train_days or "expanding",
            "promotion": f"{cfg.stack.promotion.metric} by > {cfg.stack.promotion.margin}, "
                         f"paired t >= {cfg.stack.promotion.min_t}",
        },
        # The configuration that ran, by group (the report's last section).
        "settings": {group: OmegaConf.to_container(cfg[group], resolve=True) for group in REPORTED_SETTINGS},
    }


def _print_results(metrics: dict, backtest: dict) -> None:
    table = Table(title="Out-of-sample, pooled over the evaluated folds (paired: Trishula minus the model, by day)")
    columns = ("model", "ic_mean", "icir", "ic_t_stat", "paired_diff", "paired_t_stat", "auc_buy", "auc_sell",
               "macro_f1", "log_loss", "rows")
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in metrics["comparison"]:
        table.add_row(*(row["model"] if c == "model" else format_number(row[c]) for c in columns))
    console.print(table)
    judged = metrics["verdict"]
    if judged["reference"] is not None:
        console.print(
            f"{judged['reference']}: IC {format_number(judged['ic_mean'])} (t {format_number(judged['ic_t_stat'])}); "
            f"paired |t| >= {judged['t_threshold']:g}: ahead of {judged['beats'] or 'none'}, "
            f"behind {judged['behind'] or 'none'}, no clear difference from {judged['inconclusive'] or 'none'}",
            soft_wrap=True,
        )
    blend = blend_line(judged.get("against_blend"))
    if blend:
        console.print(blend, soft_wrap=True)
    console.print(strategy_line(backtest), soft_wrap=True)  # one line, however long: logs and greps see it whole


def strategy_line(backtest: dict) -> str:
    """The backtest in one line: the strategy's net figures, its market exposure and the benchmark."""
    summary, market, benchmark = backtest["performance"]["summary"], backtest["performance"]["market"], \
        backtest["benchmark"]
    held = (f"{benchmark['symbol']} buy & hold {format_percent(benchmark['return'])}" if benchmark["in_data"]
            else f"no {benchmark['symbol']} in the data to compare with")
    return (f"backtest ({backtest['strategy']}) {summary['start']} .. {summary['end']}: net return "
            f"{format_percent(summary['return'])} (gross {format_percent(summary['gross_return'])}), Sharpe "
            f"{format_number(summary['sharpe'])}, max drawdown {format_percent(summary['max_drawdown'])}, turnover "
            f"{format_percent(summary['turnover_per_day'], signed=False)} a day, breakeven cost "
            f"{format_number(summary['breakeven_cost_bps'])} bps a side, beta to the market "
            f"{format_number(market['beta'])}; {held}")


def extractor_epochs(cfg: DictConfig) -> str:
    """Each kind's most epochs a fit: its model's max_epochs, else the shared trainer's ("lstm 4, tcn 1")."""
    return ", ".join(f"{kind} {fit_epochs(cfg.extractors[kind], cfg.trainer)}" for kind in cfg.stack.kinds)


def _train_cfg(cfg: DictConfig, kind: str, fold: int, out: Path) -> DictConfig:
    """train.py's config for one extractor fold, from the main job's config."""
    run_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    run_cfg.model = cfg.extractors[kind]
    run_cfg.fold = fold
    run_cfg.paths.output_dir = str(out / "train" / kind / f"fold_{fold:03d}")
    run_cfg.resume, run_cfg.ckpt_path, run_cfg.init_from = False, None, None
    # Every fold up to the last evaluated one is trained, whatever test dates the split selects.
    run_cfg.split.first_test_date = run_cfg.split.last_test_date = None
    run_cfg.trainer.enable_progress_bar = False
    run_cfg.trainer.enable_model_summary = False
    return run_cfg


def quiet_lightning() -> None:
    """Lightning's per-run banners (seed, devices, tips, checkpoint restores) would repeat for every
    fold; the job prints its own line per fold instead. Warnings and errors still show."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Lightning 2.6 calls a torch pytree API that torch deprecates; nothing for us to act on.
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)


def warm_starts(cfg: DictConfig, kind: str) -> bool:
    """Whether a kind's fits start from its previous fold's weights: its model's warm_start, else the job's."""
    own = cfg.extractors[kind].get("warm_start")
    return bool(cfg.pipeline.warm_start if own is None else own)


def train_stage(cfg: DictConfig, frames: FeatureFrames, folds: list, out: Path) -> dict[str, list[ExtractorArtifact]]:
    """The extractors the run uses, per kind: reused when their content key is known, else trained."""
    if str(cfg.trainer.get("strategy", "")).startswith("ddp"):
        raise ValueError("the main job trains in process: use train.py / embed.py for trainer=ddp")
    registry = Path(cfg.paths.artifacts_dir) / "extractors"
    known = {a.meta.get("content_key"): a for a in list_extractors(registry)}
    in_use: dict[str, list[ExtractorArtifact]] = {}
    reused = []
    console.print(f"extractors: trainer {cfg.trainer.accelerator}, precision {cfg.trainer.precision}, "
                  f"epochs at most {extractor_epochs(cfg)}; every {int(cfg.pipeline.retrain_every_folds)}-th fold")
    for kind in cfg.stack.kinds:
        in_use[kind] = []
        for fold in folds:
            run_cfg = _train_cfg(cfg, kind, fold.index, out)
            if warm_starts(cfg, kind) and in_use[kind]:
                run_cfg.init_from = str(in_use[kind][-1].path)  # the previous trained fold's weights
            key = content_key(run_cfg)
            if key in known:
                in_use[kind].append(known[key])
                reused.append(known[key])
                continue
            started = time.perf_counter()
            with console.status(f"training {kind} on fold {fold.index} (test from {fold.test_start.date()})"):
                artifact = train_extractor(run_cfg, frames)
            console.print(f"extractors: {fit_line(artifact)} ({time.perf_counter() - started:.0f} s)", soft_wrap=True)
            in_use[kind].append(artifact)
    if reused:
        made_by = sorted({f"source {a.meta.get('source_hash')} at revision {a.meta.get('code_revision')}"
                          for a in reused})
        console.print(f"extractors: {len(reused)} of {sum(map(len, in_use.values()))} unchanged "
                      f"(same config, data, code, fold and seed): reused, made by {'; '.join(made_by)}")
    return in_use


def extractor_folds(cfg: DictConfig, evaluated: list, all_folds: list) -> list:
    """The folds whose extractors the run uses: every `pipeline.retrain_every_folds`-th up to the last evaluated."""
    every = int(cfg.pipeline.retrain_every_folds)
    if every < 1:
        raise ValueError(f"pipeline.retrain_every_folds must be >= 1, got {every}")
    last = max(f.index for f in evaluated)
    return [f for f in all_folds if f.index <= last and f.index % every == 0]


def backtest_stage(cfg: DictConfig, frames: FeatureFrames, grid: pd.DataFrame, signals: pd.DataFrame, out: Path,
                   panel: DailyPanel | None = None):
    """The configured strategy (`backtest=ranked` or `trailing_j`) on the signals; backtest.json and its table.
    `panel`: the bars' daily panel for the strategy (`evaluation.served_panel`), when the caller has built it."""
    bt_cfg = OmegaConf.to_container(cfg.backtest, resolve=True)
    regime_inputs = frames.daily.groupby("ts")[list(frames.columns["regime"])].first()
    result = run_strategy(bt_cfg, signals, grid, regime_inputs, panel=panel)
    write_backtest(result, out)
    return result


@hydra.main(version_base="1.3", config_path="conf", config_name="pipeline")
@command
def main(cfg: DictConfig) -> None:
    quiet_lightning()
    out = Path(cfg.paths.output_dir)
    started = time.perf_counter()
    until = str(cfg.pipeline.until)
    if until not in STAGES:
        raise ValueError(f"pipeline.until must be one of {STAGES}, got {until!r}")
    frames, grid, evaluated, all_folds = data_stage(cfg, out)
    if until == "data":
        return
    training_folds = extractor_folds(cfg, evaluated, all_folds)
    console.rule("extractors")
    in_use = train_stage(cfg, frames, training_folds, out)
    if until == "extractors":
        return
    console.rule("backfill")
    artifacts = [a for kind in in_use for a in in_use[kind]]
    run_backfill(cfg, frames, artifacts, artifacts, frames.dataset)
    if until == "backfill":
        return
    console.rule("Trishula")
    run = run_stack(cfg, frames, console, out, among={k: [a.version for a in v] for k, v in in_use.items()})
    if until == "stack":
        return
    console.rule("backtest")
    panel = served_panel(grid, cfg.backtest)  # read by the backtest and by the payoff tables
    result = backtest_stage(cfg, frames, grid, run.signals, out, panel)
    backtest = result.to_json_dict()
    if until == "backtest":
        return
    console.rule("report")
    context = report_context(cfg, frames, evaluated, run.predictions)
    trades = result.trades if isinstance(result, BacktestResult) else None  # the ranked book holds positions
    # What the book is paid on each model's score (evaluation.payoff), beside the stack's metrics.
    metrics = {**run.metrics, "payoff": run_payoff(run.predictions, grid, cfg.backtest, panel=panel)}
    write_json_atomic(metrics, out / "metrics.json")
    report = write_report(out, metrics, run.predictions, backtest, trades, context=context)
    _print_results(run.metrics, backtest)
    if context["data"]["smoke_test"]:
        console.print(f"[bold yellow]note[/]: {context['data']['smoke_test']}", soft_wrap=True)
    console.print(f"pipeline finished in {time.perf_counter() - started:.0f} s; outputs in {out}")
    console.print(f"report: {report.resolve()}")


if __name__ == "__main__":
    main()
