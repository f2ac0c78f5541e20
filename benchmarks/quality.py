"""The quality benchmark: does the stack earn its place on real data, by more than noise?

    python benchmarks/quality.py --fresh                           # ../shared/data, the knobs below
    python benchmarks/quality.py --retrain-every 4 -- trainer=gpu  # more extractor refits, on a GPU

Runs the whole walk-forward (pipeline.py's stages, in process) on `../shared/data` with the
default config and a few cost knobs, then scores every model and baseline on the same rows.

Research protocol (it keeps our numbers honest; issue 32's Decisions):
- Every modelling and trading choice is made on the DEVELOPMENT period: the test folds from 2021-02-20 to
  2023-12-31, all of ../shared/data (`benchmarks/periods.py`), with its candidates and adoption rule written
  down before the run (`benchmarks/harness.py`).
- There is no confirmation year any more: the hidden holdouts (later dates, unseen coins, independent
  code) confirm; nothing is tuned to anything after the shared data ends (2023-12-31).
- Models are compared on the same (symbol, day) rows, paired by day: Trishula's daily rank IC of
  the 3-day forward return minus each other model's and baseline's, with a Newey-West t-stat
  (3 lags: the 3-day returns of consecutive days overlap; and with at least 10). A figure without its
  t-stat and its day count is not a result.

Printed and written: every model's and baseline's daily rank IC-3d (mean, ICIR, HAC t, days), the paired
difference against Trishula (mean, HAC t, share of days Trishula wins); the served book (`book`: its
summary and beta, `book_by_half_year`) beside BTC buy & hold, and Trailing J on Trishula's gated signals
by z scale; what the book is paid on every model's and factor's score (`payoff`, `evaluation.payoff`:
quintile and decile mean and median forward returns, raw and per unit of trailing volatility, the
top-minus-bottom spread and the legs with their HAC t, each score's book, overall, per half-year and per
market state; `quintiles`: each model's quintile means and medians); per extractor kind, its fits' best
epochs, validation loss against the class prior's and learning curves (train and validation loss per epoch,
from each artifact); and the seconds of each stage.
The models: `trishula` (its score anchored on the blend of its parts, `stack.anchor`; the weights per fold
are written too), `trishula_meta` (the meta-learner's own score), its parts (`lstm`, `tcn`, `tabular`), its
ablations (`trishula_with_embeddings`, or `trishula_no_embeddings` when `stack.embeddings` is on;
`trishula_no_lstm`, `trishula_no_tcn`: the same LightGBM with those inputs changed;
`trishula_rank_objective`: its inputs under a regression of the return's day rank; `stack.ablations`) and
the baselines (`blend_parts`: the equal-weight mean of the parts' per-day ranks; `reversal_3d`,
`lowvol_30d`, `mom_30d`: features/factors.py).

The config is the default (`conf/pipeline.yaml`: extractors refit every 12th fold, 7 refits per kind
over 2020-2023, each on all the history before its validation window; the meta-learner's 365-day
rolling window and LightGBM parameters) plus the ablations;
about 16 minutes on 2 CPU cores from nothing (12-07: the stack, six LightGBM models a fold, 561 s; TCN training
on its expanding windows about 320 s, the LSTM's 45 s, the backfill 35 s, as measured in runs 32-36).
`--retrain-every N` sets pipeline.retrain_every_folds (between refits the store's as-of rule serves
the newest earlier extractor).
Extra Hydra overrides after `--` are passed through (e.g. `trainer=gpu`). Artifacts go to
`artifacts/quality` (a re-run reuses unchanged extractors, backfills and stack runs: fast for a
change to the meta-learner only; `--fresh` starts from nothing, for stage seconds that count), outputs to
`outputs/quality/<time>/` (report.html of the development period, with every figure), figures to
`benchmarks/results/quality.json` and `benchmarks/results/quality.md` (committed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # the repo's packages, not this folder's scripts

import pandas as pd  # noqa: E402
from omegaconf import OmegaConf, open_dict  # noqa: E402
from rich.table import Table  # noqa: E402

import pipeline  # noqa: E402
from benchmarks import stages  # noqa: E402
from benchmarks.periods import PERIODS, in_period  # noqa: E402
from benchmarks.tables import half_years_markdown, payoff_markdown  # noqa: E402
from evaluation import (  # noqa: E402
    PREDICTION_COLUMNS,
    evaluate_predictions,
    format_number,
    run_payoff,
    served_panel,
    write_report,
)
from evaluation.payoff import by_half_year  # noqa: E402
from stacking.registry import RUN_FILE  # noqa: E402
from stacking.run import build_signals  # noqa: E402
from stacking.serving import fold_thresholds  # noqa: E402
from stacking.signals import Z_SCALES  # noqa: E402
from store.files import write_json_atomic, write_text_atomic  # noqa: E402

console = pipeline.console


# quality.json's per-model fields <- evaluation's comparison row (plus the paired day count).
MODEL_FIELDS = {"ic_mean": "ic_mean", "icir": "icir", "ic_t_stat": "ic_t_stat", "ic_t_stat_long": "ic_t_stat_long",
                "days": "ic_days", "days_dropped": "ic_days_dropped", "paired_diff": "paired_diff",
                "paired_t_stat": "paired_t_stat", "paired_t_stat_long": "paired_t_stat_long",
                "paired_win_share": "paired_win_share"}


def _model_rows(metrics: dict) -> list[dict]:
    """One row per model: its IC figures and the paired comparison against Trishula."""
    return [
        {"model": row["model"], "baseline": row["model"] in metrics["baselines"],
         **{field: row[source] for field, source in MODEL_FIELDS.items()},
         "paired_days": metrics["paired"].get(row["model"], {}).get("days")}
        for row in metrics["comparison"]
    ]


@dataclass
class Scored:
    """A period's figures for quality.json, and what its report is made of."""

    result: dict
    metrics: dict
    predictions: pd.DataFrame
    backtest: dict


def _period_result(cfg, frames, grid, panel, run, by_scale_signals: dict, out: Path, period: str) -> Scored | None:
    """The period's figures (`panel`: the served book's daily panel of `grid`); None when no test row falls in it."""
    predictions = in_period(run.predictions, period)
    if predictions.empty:
        return None
    metrics = evaluate_predictions(predictions[list(PREDICTION_COLUMNS)], horizon_days=3)
    book = pipeline.backtest_stage(cfg, frames, grid, in_period(run.signals, period), out / period, panel)
    backtest = book.to_json_dict()
    payoff = run_payoff(predictions, grid, cfg.backtest, panel=panel)
    # Trailing J on the same scores and thresholds, z-scored each way (stack.signals.scale).
    trailing = cfg.copy()
    with open_dict(trailing):
        trailing.backtest = OmegaConf.load(ROOT / "conf" / "backtest" / "trailing_j.yaml")
    by_scale = {scale: pipeline.backtest_stage(trailing, frames, grid, in_period(scaled, period),
                                               out / period / scale).to_json_dict()["summary"]
                for scale, scaled in by_scale_signals.items()}
    folds = sorted(map(int, predictions["fold"].unique()))
    result = {
        "test_dates": [str(predictions["date"].min().date()), str(predictions["date"].max().date())],
        "folds": [folds[0], folds[-1]], "fold_count": len(folds), "symbols": int(predictions["symbol"].nunique()),
        "models": _model_rows(metrics), "verdict": metrics["verdict"],
        "book": {"strategy": backtest["strategy"], "summary": backtest["performance"]["summary"],
                 "beta": backtest["performance"]["market"]["beta"], "benchmark": backtest["benchmark"],
                 "trailing_j_by_scale": by_scale},
        "book_by_half_year": by_half_year(book.daily),
        "quintiles": quintiles(payoff),
        "payoff": payoff,
    }
    return Scored(result, {**metrics, "payoff": payoff}, predictions, backtest)


def quintiles(payoff: dict) -> dict[str, dict[str, list]]:
    """Per model, its quintiles' mean and median forward return over the period, Q1 (lowest score) first."""
    return {model: {field: [table[f"Q{b}"][field] for b in range(1, 6)] for field in ("mean", "median")}
            for model, entry in payoff["models"].items() if (table := entry["overall"]["quintiles"]) is not None}


def signals_by_scale(run) -> dict[str, pd.DataFrame]:
    """The run's Trishula signals with its own thresholds, z-scored each way (`stack.signals.scale`)."""
    meta = json.loads((run.run_dir / RUN_FILE).read_text())
    thresholds = fold_thresholds(meta)
    return {scale: build_signals(run.predictions, thresholds, {**meta["stack"]["signals"], "scale": scale})
            for scale in Z_SCALES}


def extractor_fits(in_use: dict) -> dict:
    """Per kind, the issue-12 learning checks: best epochs, the share stopped at epoch 0, the share whose
    validation loss beat the class prior's, and whether the first epoch improved on the weights the fit
    started from (a warm-started fit whose best epoch is 0 still learned if it did)."""
    fits = {}
    for kind, artifacts in in_use.items():
        metrics = [a.meta["metrics"] for a in artifacts]
        # The artifacts in use are the current training code's (content keys): every one has these metrics.
        best = [m["best_epoch"] for m in metrics]
        curves = [m["learning_curve"] for m in metrics]
        first_step = [round(c[0]["val_loss"] - m["start_val_loss"], 4) for c, m in zip(curves, metrics, strict=True)]
        fits[kind] = {"epochs": [m["epochs"] for m in metrics], "best_epochs": best,
                      "best_epoch_0_share": sum(b == 0 for b in best) / len(best),
                      "below_prior_share": _share_of([m["val/loss"] - m["prior_val_loss"] for m in metrics]),
                      "val_loss": [round(m["val/loss"], 4) for m in metrics],
                      "start_val_loss": [round(m["start_val_loss"], 4) for m in metrics],
                      # Epoch 0's validation loss less the start's: below 0, the first pass learned.
                      "first_epoch_val_change": first_step,
                      "first_epoch_below_start_share": _share_of(first_step),
                      # The kept weights' validation loss less the start's: did the refit beat its parent?
                      "kept_below_start_share": _share_of([m["val/loss"] - m["start_val_loss"] for m in metrics]),
                      # Over the fit, first epoch -> last: training loss falling while validation loss rises
                      # is a fit learning its own fold (over-fitting), not the market.
                      "train_loss_change": [_change(c, "train_loss") for c in curves],
                      "val_loss_change": [_change(c, "val_loss") for c in curves],
                      "learning_curves": curves}
    return fits


def _share_of(changes: list[float]) -> float:
    """The share of negative changes (losses that fell)."""
    return sum(c < 0 for c in changes) / len(changes)


def _change(curve: list[dict], loss: str) -> float | None:
    first, last = curve[0][loss], curve[-1][loss]
    return None if first is None or last is None else round(last - first, 4)


def _print_period(name: str, result: dict) -> None:
    table = Table(title=f"{name}: test {result['test_dates'][0]} .. {result['test_dates'][1]}, folds "
                        f"{result['folds'][0]}..{result['folds'][1]} ({result['fold_count']}), "
                        f"{result['symbols']} coins; paired = Trishula minus the model, by day")
    columns = ("model", "ic_mean", "icir", "ic_t_stat", "ic_t_stat_long", "days", "paired_diff", "paired_t_stat",
               "paired_t_stat_long", "paired_win_share")
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in result["models"]:
        table.add_row(*(row[c] if c == "model" else format_number(row[c]) for c in columns))
    console.print(table)
    console.print(f"{name}: {_strategy_text(result['book'])}", soft_wrap=True)


def _strategy_text(backtest: dict) -> str:
    """The default strategy's net figures and Trailing J's by z scale, as fractions (0.05 = 5 %)."""
    summary, benchmark = backtest["summary"], backtest["benchmark"]
    shown = {"return": "return", "gross_return": "gross", "sharpe": "Sharpe", "max_drawdown": "max drawdown",
             "turnover_per_day": "turnover a day", "breakeven_cost_bps": "breakeven bps a side"}
    figures = ", ".join(f"{label} {format_number(summary[key])}" for key, label in shown.items())
    scales = "; ".join(f"{scale}: return {format_number(s['return'])}, Sharpe {format_number(s['sharpe'])}, "
                       f"{s['trades']} trades" for scale, s in backtest["trailing_j_by_scale"].items())
    return (f"{backtest['strategy']} book on Trishula's scores, net of costs: {figures}, beta "
            f"{format_number(backtest['beta'])}; {benchmark['symbol']} buy & hold {format_number(benchmark['return'])}."
            f" Trailing J by z scale (stack.signals.scale; same scores and thresholds): {scales}")


def _markdown(result: dict) -> str:
    lines = [
        "# Quality benchmark (benchmarks/quality.py)",
        "",
        f"Run {result['finished_at']} on {result['data']['symbols']} coins, "
        f"{result['data']['days'][0]} .. {result['data']['days'][1]}; overrides: "
        f"`{' '.join(result['overrides'][2:])}`; extractors refit every {result['retrain_every_folds']} folds "
        f"({', '.join(f'{n} {kind}' for kind, n in result['extractor_fits'].items())} fits); "
        f"{result['total_seconds']:.0f} s in all.",
        "Daily rank IC of the 3-day forward return; t = Newey-West (3 lags), beside it with at least 10 lags "
        "(the scores' persistence); paired = Trishula minus the model on the days both are scored, the blend of "
        "its parts first. Development = the test folds 2021-02-20 .. 2023-12-31, where every choice is made; the "
        "hidden holdouts confirm.",
        "",
    ]
    for name, period in result["periods"].items():
        lines += [
            f"## {name}: test {period['test_dates'][0]} .. {period['test_dates'][1]} "
            f"({period['fold_count']} folds, {period['symbols']} coins)",
            "",
            "| model | IC | ICIR | t | t (≥10 lags) | days | Trishula − model | paired t | paired t (≥10 lags) "
            "| Trishula wins |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in period["models"]:
            name_cell = row["model"] + (" (baseline)" if row["baseline"] else "")
            cells = [format_number(row[c]) for c in ("ic_mean", "icir", "ic_t_stat", "ic_t_stat_long", "days",
                                                     "paired_diff", "paired_t_stat", "paired_t_stat_long",
                                                     "paired_win_share")]
            lines.append(f"| {name_cell} | " + " | ".join(cells) + " |")
        models = [row["model"] for row in period["models"]]
        lines += ["", _strategy_text(period["book"]) + ".", "", "### The served book, half-year by half-year", "",
                  *half_years_markdown(period["book_by_half_year"]), "", *payoff_markdown(period["payoff"], models)]
    if result.get("anchor_weights"):
        lines += ["## Trishula's anchor on the blend of its parts", "",
                  "Per meta fold, the meta-learner's weight in Trishula's score (0 = the blend of the parts), fitted "
                  "on earlier folds' out-of-sample days (stack.anchor): the best grid weight w*, its paired t against "
                  "the blend t*, and the shrunk weight w = w* max(0, 1 - 1/t*^2).", "",
                  "| fold | earlier days | w* | t* | w |", "| ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {fold} | {a['days']} | {format_number(a['w_star'])} | {format_number(a['t_star'])} | "
                  f"{format_number(a['weight'])} |" for fold, a in result["anchor_weights"].items()]
        lines += [""]
    lines += ["## Extractor fits", "",
              "| kind | fits | best epochs | best epoch 0 | val loss below the prior's | epoch 0 below the start's "
              "| kept weights below the start's | val loss change, start -> epoch 0 | train loss change (first -> "
              "last epoch) | val loss change |", "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- | --- | --- |"]
    for kind, fits in result["extractor_learning"].items():
        lines.append(f"| {kind} | {len(fits['epochs'])} | {fits['best_epochs']} | {fits['best_epoch_0_share']:.0%} | "
                     f"{fits['below_prior_share']:.0%} | {fits['first_epoch_below_start_share']:.0%} | "
                     f"{fits['kept_below_start_share']:.0%} | {fits['first_epoch_val_change']} | "
                     f"{fits['train_loss_change']} | {fits['val_loss_change']} |")
    lines += ["", "## Seconds per stage", "", "| stage | seconds | share |", "| --- | ---: | ---: |"]
    lines += [f"| {stage} | {seconds:.0f} | {seconds / result['total_seconds']:.0%} |"
              for stage, seconds in result["seconds"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    stages.add_run_arguments(parser, "quality")
    parser.add_argument("--retrain-every", type=int, default=None,
                        help="pipeline.retrain_every_folds (default: the config's)")
    args = parser.parse_args(argv)
    out = stages.prepare(args, "quality")
    retrain = [] if args.retrain_every is None else [f"pipeline.retrain_every_folds={args.retrain_every}"]
    cfg, overrides = stages.compose_quality(args, out, *retrain)
    timed = stages.StageTimer(digits=1)
    walk = stages.run_through_stack(cfg, out, timed)
    frames, grid, evaluated, in_use, run = walk.frames, walk.grid, walk.evaluated, walk.in_use, walk.run
    by_scale_signals = signals_by_scale(run)
    panel = served_panel(grid, cfg.backtest)  # one for every period: the served book's, on the same bars
    scored = timed("evaluation_and_backtest", lambda: {
        name: _period_result(cfg, frames, grid, panel, run, by_scale_signals, out, name) for name in PERIODS})
    periods = {name: entry.result for name, entry in scored.items() if entry is not None}
    for name in scored.keys() - periods.keys():
        console.print(f"{name}: no test rows in this run")
    reported = next(entry for entry in scored.values() if entry is not None)
    timed("report", lambda: write_report(out, {**reported.metrics, "anchor_weights": run.metrics.get("anchor_weights")},
                                         reported.predictions, reported.backtest, None,
                                         context=pipeline.report_context(cfg, frames, evaluated,
                                                                        reported.predictions)))
    total = timed.total()
    span = pipeline.data_span(frames)
    result = {
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "overrides": overrides,
        # Without --fresh, unchanged extractors, backfills and stack runs are reused and their stages are fast.
        "fresh": args.fresh,
        "data": {"symbols": len(span["symbols"]), "days": span["days"]},
        "retrain_every_folds": int(cfg.pipeline.retrain_every_folds),
        "extractor_fits": {kind: len(v) for kind, v in in_use.items()},
        "extractor_learning": extractor_fits(in_use),
        "stack_run": run.run_id,
        "anchor_weights": run.metrics.get("anchor_weights"),
        "periods": periods,
        "seconds": timed.seconds,
        "total_seconds": total,
        "output_dir": str(out),
    }
    for name, period in periods.items():
        _print_period(name, period)
    console.print(" | ".join(f"{stage} {s:.0f} s ({s / total:.0%})" for stage, s in timed.seconds.items())
                  + f" | total {total:.0f} s", soft_wrap=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(result, args.results_dir / "quality.json")
    write_text_atomic(_markdown(result), args.results_dir / "quality.md")
    console.print(f"figures in {args.results_dir / 'quality.json'} and quality.md; report {out / 'report.html'}")


if __name__ == "__main__":
    main()
