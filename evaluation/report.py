"""The evaluation report: one self-contained HTML file (opens offline) plus every figure as a PNG.

Every figure is embedded as a base64 PNG and styles are inline, so the file references nothing outside
itself. Every number in a table is tagged with its JSON path (`evaluation.cells`). Key scheme (segments
joined by "."; names must not hold "."):

- `comparison.<model>.<field>`: the entry of metrics["comparison"] whose "model" is <model>;
- `verdict.<field>`: metrics["verdict"] (the reference's IC and t);
- `per_fold.<model>.<fold>.<path>`: metrics["per_fold"][model][fold] followed by a dotted path (`ic.mean`);
- `payoff.<path>`: metrics["payoff"] (`evaluation.payoff`: quantiles, spreads, legs, each model's book);
- `backtest.<section>.<field>` and `backtest.<section>.<name>.<field>`: the backtest dict
  (summary, benchmark; Trailing J's exits, per_symbol, per_month);
- `backtest.performance.<block>.<field>`: the strategy's performance (`backtest.performance`: summary,
  market, legs, cost_sweep by its cost in bps, per_month).

The report opens with the strategy a user would trade (its net equity beside BTC and the market, the cost
sweep, the months), then the models' evidence (what the book is paid on each score first), then the
strategy's detail and the configuration that ran. A figure with nothing to show is left out.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from evaluation import figures
from evaluation.cells import STYLE, field_table, format_number, grid, image, span
from evaluation.metrics import labelled_predictions
from evaluation.payoff_section import payoff_blocks
from evaluation.statistics import hac_lags
from store.files import write_bytes_atomic, write_text_atomic

ANSWER_COLUMNS = (
    ("ic_mean", "IC mean"),
    ("ic_t_stat", "IC t (HAC)"),
    ("ic_days", "days"),
    ("paired_diff", "Trishula − model"),
    ("paired_t_stat", "paired t"),
    ("paired_t_stat_long", "paired t (≥ 10 lags)"),
    ("paired_win_share", "Trishula wins (share of days)"),
)
COMPARISON_COLUMNS = (
    ("ic_mean", "IC mean"),
    ("icir", "ICIR"),
    ("ic_t_stat", "IC t (HAC)"),
    ("ic_t_stat_long", "IC t (≥ 10 lags)"),
    ("ic_days_dropped", "days dropped"),
    ("paired_t_stat", "paired t vs Trishula"),
    ("pooled_rank_ic", "pooled rank IC"),
    ("auc_buy", "AUC BUY"),
    ("auc_sell", "AUC SELL"),
    ("macro_f1", "macro-F1"),
    ("accuracy", "accuracy"),
    ("log_loss", "log-loss"),
    ("brier", "Brier"),
    ("rows", "rows"),
)
FOLD_COLUMNS = (
    ("rows", "rows"),
    ("days", "days"),
    ("ic.mean", "IC mean"),
    ("ic.icir", "ICIR"),
    ("ic.t_stat", "IC t (HAC)"),
    ("pooled_rank_ic", "pooled rank IC"),
    ("auc.BUY", "AUC BUY"),
    ("auc.SELL", "AUC SELL"),
    ("macro_f1", "macro-F1"),
    ("accuracy", "accuracy"),
    ("log_loss", "log-loss"),
    ("brier", "Brier"),
)
BREAKDOWN_COLUMNS = {
    "exits": (("trades", "trades"), ("pnl", "P&L"), ("win_rate", "win rate")),
    "per_symbol": (("trades", "trades"), ("pnl", "P&L"), ("win_rate", "win rate")),
    "per_month": (("trades", "trades"), ("pnl", "P&L"), ("return", "return")),
}
STRATEGY_NAMES = {"ranked": "the ranked market-neutral book of Trishula's daily scores",
                  "trailing_j": "Trailing J on Trishula's gated signals"}
COST_SWEEP_COLUMNS = (("return", "net return"), ("annualised_return", "annualised"), ("sharpe", "Sharpe"))

# A report is a sequence of blocks: HTML text, or a named figure rendered in place (and saved as <name>.png);
# a figure maker that had nothing to draw gives None, and the block is left out.
Block = str | tuple[str, Figure | None]


def _names(models: list[str]) -> str:
    return ", ".join(models) if models else "none"


def day_counts(metrics: Mapping, predictions: pd.DataFrame, backtest: Mapping | None) -> str:
    """The day counts of the run in one sentence, each with what it counts, so that they add up: the test days
    scored, those with a known forward return, the reference's IC days (and why the rest have none), and the
    days the book held positions."""
    dates = predictions["date"]
    labelled = labelled_predictions(predictions)["date"]
    horizon = metrics["horizon_days"]
    said = (f"{format_number(int(dates.nunique()))} test days scored ({dates.min():%Y-%m-%d} .. "
            f"{dates.max():%Y-%m-%d}), {format_number(int(labelled.nunique()))} of them with a known "
            f"{horizon}-day forward return (the last {horizon} have none yet)")
    reference = metrics.get("reference")
    if reference is not None:
        ic = metrics["pooled"][reference]["ic"]
        said += (f"; {html.escape(reference)}'s daily rank IC on {span('verdict.days', metrics['verdict']['days'])} "
                 f"of those ({format_number(ic['days_dropped'])} left out: fewer than 3 coins or a constant score)")
    if backtest is not None:
        summary = backtest["performance"]["summary"]
        said += (f"; the book, trading each test day's scores after its close, held positions on "
                 f"{format_number(summary['days'])} days ({summary['start']} .. {summary['end']}, as far as the "
                 "bars reach)")
    return said + "."


def _answer_blocks(metrics: Mapping, predictions: pd.DataFrame, backtest: Mapping | None,
                   context: Mapping) -> list[Block]:
    """The report's opening: the data, the config, and whether Trishula beat its parts and the factors.

    Without a data context (stack.py) the coins and days are those of the predictions."""
    tested = [str(predictions["date"].min().date()), str(predictions["date"].max().date())]
    data = context.get("data", {"symbols": sorted(map(str, predictions["symbol"].unique())), "days": tested})
    symbols = data.get("symbols", [])
    reference = metrics.get("reference")
    scored = sorted(map(int, metrics["per_fold"][reference])) if reference else []
    folds = f" (folds {scored[0]} .. {scored[-1]})" if scored else ""
    lines = [
        f"<b>Data</b>: {len(symbols)} coins ({html.escape(', '.join(symbols))}), "
        f"{html.escape(' .. '.join(data.get('days', [])))}; {len(data.get('folds', []))} walk-forward folds "
        f"selected, {len(scored)} scored{folds}: {day_counts(metrics, predictions, backtest)}",
    ]
    if context.get("config"):
        digest = "; ".join(f"{html.escape(str(k))} = {html.escape(str(v))}" for k, v in context["config"].items())
        lines.append(f"<b>Config</b>: {digest}.")
    blocks: list[Block] = ["<h2>Does the stack work on this run?</h2>", *(f"<p>{line}</p>" for line in lines)]
    judged = metrics.get("verdict", {})
    if reference is not None:
        t = judged["t_threshold"]
        blocks.append(
            f"<p><b>Answer</b>: {html.escape(reference)} scored a daily rank IC of "
            f"{span('verdict.ic_mean', judged['ic_mean'])} (HAC t {span('verdict.ic_t_stat', judged['ic_t_stat'])}). "
            f"Paired against each model and baseline on the days both are scored (|t| ≥ {format_number(t)} counts): "
            f"ahead of {html.escape(_names(judged['beats']))}; behind {html.escape(_names(judged['behind']))}; "
            f"no clear difference from {html.escape(_names(judged['inconclusive']))}.</p>"
        )
        blocks += _blend_blocks(judged.get("against_blend"), metrics.get("anchor_weights"))
    rows = [(entry["model"], entry["model"] + (" (baseline)" if entry["model"] in metrics.get("baselines", []) else ""),
             entry) for entry in metrics["comparison"]]
    blocks.append(grid("comparison", "model", rows, ANSWER_COLUMNS))
    return blocks


def blend_line(against: Mapping | None) -> str | None:
    """Trishula against the blend of its parts in one line of plain text (the console's), None without it."""
    if against is None or against["diff_mean"] is None:
        return None
    if against["diff_mean"] == 0:
        return "trishula ranked the coins exactly as the blend of its parts (the anchor gave the meta-learner no say)"
    figures_ = (f"{format_number(against['diff_mean'])} of daily IC (paired t {format_number(against['t_stat'])}, "
                f"long-memory t {format_number(against['t_stat_long'])}, {against['days']} days)")
    return (f"trishula TRAILS the blend of its own parts by {figures_}" if against["trails"]
            else f"trishula is ahead of the blend of its own parts by {figures_}")


def _blend_blocks(against: Mapping | None, weights: Mapping | None) -> list[Block]:
    """Trishula against the blend of its parts, said plainly, and the meta-learner's weight per fold."""
    if against is None or against["diff_mean"] is None:
        return []
    said_figures = (f"{span('verdict.against_blend.diff_mean', against['diff_mean'])} of daily IC (paired t "
                    f"{span('verdict.against_blend.t_stat', against['t_stat'])}, long-memory t "
                    f"{span('verdict.against_blend.t_stat_long', against['t_stat_long'])}, "
                    f"{span('verdict.against_blend.days', against['days'])} days)")
    if against["trails"]:
        said = (f"<b>Trishula trails the blend of its own parts</b> by {said_figures}: the equal-weight blend of the "
                f"parts' day ranks ranked the coins better on these days.")
    elif against["diff_mean"] == 0:
        said = "Trishula's score ranked the coins exactly as the blend of its own parts on these days."
    else:
        said = f"Against the blend of its own parts Trishula is ahead by {said_figures}."
    blocks: list[Block] = [f"<p>{said}</p>"]
    if weights:
        shown = ", ".join(f"{fold}: {format_number(w['weight'])}" for fold, w in weights.items())
        blocks.append(f"<p>Trishula's score is anchored on that blend (stack.anchor): per fold, the meta-learner's "
                      f"weight fitted on earlier folds' out-of-sample days (0 = the blend): {html.escape(shown)}.</p>")
    return blocks


def _strategy_blocks(backtest: Mapping, context: Mapping) -> list[Block]:
    """The report's opening: what trading the signals earned, net of costs, against BTC and the market."""
    perf = backtest["performance"]
    summary, market = perf["summary"], perf["market"]
    key = "backtest.performance"
    said = ", ".join(f"{label} {span(f'{key}.summary.{field}', summary[field])}" for field, label in (
        ("return", "net return"), ("gross_return", "gross return"), ("sharpe", "net Sharpe"),
        ("max_drawdown", "max drawdown"), ("turnover_per_day", "turnover a day"),
        ("breakeven_cost_bps", "breakeven cost (bps a side)")))
    smoke = context.get("data", {}).get("smoke_test")
    return [
        f"<h2>The strategy: {html.escape(STRATEGY_NAMES.get(backtest['strategy'], backtest['strategy']))}</h2>",
        f"<p><b>{html.escape(str(summary['start']))} .. {html.escape(str(summary['end']))}</b>, "
        f"{span(f'{key}.summary.days', summary['days'])} days held: {said}; beta to the "
        f"market {span(f'{key}.market.beta', market['beta'])}, P&amp;L in excess of the market "
        f"{span(f'{key}.market.excess_return', market['excess_return'])}.</p>",
        f"<p><b>In words</b>: {html.escape(strategy_verdict(summary, smoke))}</p>",
        ("strategy_equity", figures.equity_figure(backtest)),
        "<h3>Cost sweep (one-way cost in bps of the traded value; borrow as charged)</h3>",
        grid(f"{key}.cost_sweep", "bps a side", [(bps, bps, row) for bps, row in perf["cost_sweep"].items()],
             COST_SWEEP_COLUMNS),
        ("cost_sweep", figures.cost_sweep_figure(perf["cost_sweep"])),
        "<h3>Net return per month</h3>",
        field_table(f"{key}.per_month", perf["per_month"]),
    ]


def strategy_verdict(summary: Mapping, smoke: str | None) -> str:
    """Plain sentences: whether the strategy made or lost money after costs, how surely, and, on too little
    data, that the figures are a smoke test."""
    made = "made" if summary["return"] > 0 else "lost"
    said = f"the book {made} money after costs: {100 * summary['return']:+.1f} % net over {summary['days']} days"
    sharpe, breakeven = summary["sharpe"], summary["breakeven_cost_bps"]
    if sharpe is not None:
        t = abs(sharpe) * (summary["days"] / 365) ** 0.5
        said += f" (net Sharpe {sharpe:.2f}: |Sharpe| x sqrt(years) = {t:.1f}, about the t-stat of its mean)"
    if breakeven is not None:
        said += (f"; it pays costs up to {breakeven:.1f} bps a side" if breakeven > 0
                 else "; it lost before costs, so no cost level makes it pay")
    return said + "." + (f" This run is {smoke}" if smoke else "")


def _metric_blocks(metrics: Mapping, predictions: pd.DataFrame) -> list[Block]:
    models = metrics["models"]
    # Probability figures are for the classifiers; the factor baselines have a score only.
    classifiers = {**metrics, "models": [m for m in models if m not in metrics.get("baselines", [])]}
    labelled = labelled_predictions(predictions)
    with_proba = labelled[labelled["model"].astype(str).isin(classifiers["models"])]
    comparison = [(entry["model"], entry["model"], entry) for entry in metrics["comparison"]]
    folds = [(f"{model}.{fold}", f"{model} / fold {fold}", values)
             for model in models for fold, values in metrics["per_fold"][model].items()]
    horizon = metrics["horizon_days"]
    same = [group for group in figures.same_probabilities(classifiers) if len(group) > 1]
    win_rates = figures.win_rate_figure(classifiers)
    return [
        "<h2>Model comparison (all test folds pooled)</h2>",
        grid("comparison", "model", comparison, COMPARISON_COLUMNS),
        f'<p class="note">IC = mean of the daily cross-sectional Spearman rank IC of s = P(buy) − P(sell) '
        f"(a factor baseline: its own score) against the {horizon}-day forward return; ICIR = mean / std of the "
        f"daily ICs; the t-statistic uses a Newey–West standard error with {hac_lags(horizon)} lags because daily "
        f"ICs of {horizon}-day returns overlap. The paired t tests Trishula's daily IC minus the model's on the "
        "days both are scored; days dropped are days with a constant score. "
        "The pooled rank IC is one Spearman over all coin-days: a diagnostic, not the IC.</p>",
        "<h2>Per fold</h2>",
        grid("per_fold", "model / fold", folds, FOLD_COLUMNS),
        "<h2>IC over time</h2>",
        ("ic_over_time", figures.ic_figure(predictions, models)),
        "<h2>ROC (one vs rest)</h2>",
        ("roc", figures.roc_figure(with_proba, classifiers)),
        "<h2>Calibration</h2>",
        *([f'<p class="note">One line for models with the same probabilities: '
           f"{html.escape('; '.join(' = '.join(group) for group in same))} (an anchor changes the score, "
           "not the probabilities).</p>"] if same else []),
        ("calibration", figures.calibration_figure(classifiers)),
        '<h2>Confusion matrices</h2><p class="note">Rows = true class, columns = predicted class (argmax); '
        "counts, shaded by share of the true class.</p>",
        ("confusion_matrix", figures.confusion_figure(classifiers)),
        '<h2>Win rate per probability bin</h2><p class="note">Calls whose top probability is below 0.5 are '
        "outside the bins; a BUY wins when the forward return is &gt; 0, a SELL when it is &lt; 0."
        + ("" if win_rates is not None else " No model's top probability reached 0.5 on a BUY or SELL call: "
           "no call falls in a bin, and no chart is drawn.") + "</p>",
        ("win_rate_by_bin", win_rates),
    ]


def _backtest_blocks(backtest: Mapping, trades: pd.DataFrame | None) -> list[Block]:
    """The strategy's detail: its summary, benchmark, legs and market exposure; Trailing J's trade breakdowns."""
    perf = backtest["performance"]
    legs = [(leg, leg, values) for leg, values in perf["legs"].items()]
    blocks: list[Block] = [
        "<h2>Strategy detail</h2><h3>Summary</h3>",
        field_table("backtest.summary", backtest["summary"]),
        "<h3>Against the market</h3>",
        field_table("backtest.performance.market", perf["market"]),
        "<h3>Legs (each side's return, a fraction of equity)</h3>",
        grid("backtest.performance.legs", "leg", legs, (("return", "return"), ("sharpe", "Sharpe"))),
        "<h3>Benchmark</h3>",
        field_table("backtest.benchmark", backtest["benchmark"]),
        "<h3>Drawdown</h3>",
        ("drawdown", figures.drawdown_figure(backtest)),
    ]
    if backtest["strategy"] == "trailing_j":
        for section, title, horizontal in (
            ("exits", "P&L by exit type", False),
            ("per_symbol", "P&L per coin", True),
            ("per_month", "P&L per month", False),
        ):
            rows = [(str(name), str(name), values) for name, values in backtest[section].items()]
            blocks += [
                f"<h3>{html.escape(title)}</h3>",
                grid(f"backtest.{section}", section.replace("_", " "), rows, BREAKDOWN_COLUMNS[section]),
                (f"pnl_{section}", figures.breakdown_figure(backtest, section, title, horizontal)),
            ]
        if trades is not None and not trades.empty:
            blocks += ["<h3>Trade returns</h3>", ("trade_returns", figures.trade_returns_figure(trades))]
    return blocks


def _configuration_blocks(backtest: Mapping | None, context: Mapping) -> list[Block]:
    """What ran: the run's settings by group (the book, the stack, the extractors, ... from `context["settings"]`),
    and the strategy's own config as the backtest recorded it."""
    settings = dict(context.get("settings", {}))
    if backtest is not None:
        settings["backtest (as traded)"] = {key: backtest[key] for key in ("config", "regime") if key in backtest}
    if not settings:
        return []
    return ["<h2>Configuration that ran</h2>",
            *(f"<h3>{html.escape(group)}</h3><pre>{html.escape(json.dumps(values, indent=2, default=str))}</pre>"
              for group, values in settings.items())]


def write_report(
    out_dir: Path,
    metrics: dict,
    predictions: pd.DataFrame,
    backtest: dict | None = None,
    trades: pd.DataFrame | None = None,
    context: Mapping | None = None,
) -> Path:
    """Write `out_dir/report.html` and `out_dir/figures/<name>.png`; return the report's path.

    `metrics` is `evaluate_predictions(predictions)`, with `payoff` (`evaluation.payoff.payoff_tables`) when the
    run traded; `backtest` / `trades` come from the backtest and may be None (the backtest sections are then left
    out). `context` ({"data": summary with symbols, days and the evaluated folds' test starts, "config": a digest,
    "settings": the run's config by group}) feeds the opening answer and the configuration section. Each file is
    written atomically (temporary file, then rename), the report last, so a reader never sees a half-written
    report. PNGs of an earlier report in the same folder that this one does not draw (e.g. trade returns, once
    there are no trades) are removed, so `figures/` always matches `report.html`.
    """
    out_dir = Path(out_dir)
    context = context or {}
    blocks = [] if backtest is None else _strategy_blocks(backtest, context)
    blocks += _answer_blocks(metrics, predictions, backtest, context)
    if metrics.get("payoff"):
        blocks += payoff_blocks(metrics["payoff"], metrics["models"], metrics.get("reference") or "trishula")
    blocks += _metric_blocks(metrics, predictions)
    if backtest is not None:
        blocks += _backtest_blocks(backtest, trades)
    blocks += _configuration_blocks(backtest, context)
    body, drawn = [], set()
    for block in blocks:
        if isinstance(block, str):
            body.append(block)
            continue
        name, figure = block
        if figure is None:
            continue
        png = figures.to_png(figure)
        drawn.add(write_bytes_atomic(png, out_dir / "figures" / f"{name}.png"))
        body.append(image(png, name.replace("_", " ")))
    for stale in set((out_dir / "figures").glob("*.png")) - drawn:
        stale.unlink()
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Trishula evaluation</title>'
        f"<style>{STYLE}</style></head><body><h1>Trishula evaluation</h1>{''.join(body)}</body></html>\n"
    )
    return write_text_atomic(document, out_dir / "report.html")
