"""The evaluation report: one self-contained HTML file (opens offline) plus every figure as a PNG.

Every figure is embedded as a base64 PNG and styles are inline, so the file references nothing outside
itself. Every number in a table is rendered by `shown_value` (`format_percent` for the fractions a reader
reads as percentages: returns, drawdowns, turnover, win rates; `format_number` for the rest) and its cell carries
`data-key="<json path>"` and `data-value="<repr of the value>"`, so a test can check that the report
shows exactly the numbers in the JSON files. Key scheme (segments joined by "."; names must not hold "."):

- `comparison.<model>.<field>`: the entry of metrics["comparison"] whose "model" is <model>;
- `verdict.<field>`: metrics["verdict"] (the reference's IC and t);
- `per_fold.<model>.<fold>.<path>`: metrics["per_fold"][model][fold] followed by a dotted path (`ic.mean`);
- `backtest.<section>.<field>` and `backtest.<section>.<name>.<field>`: the backtest dict
  (summary, benchmark; Trailing J's exits, per_symbol, per_month);
- `backtest.performance.<block>.<field>`: the strategy's performance (`backtest.performance`: summary,
  market, legs, cost_sweep by its cost in bps, per_month).

The report opens with the strategy a user would trade (its net equity beside BTC and the market, the cost
sweep, the months), then the models' evidence, then the strategy's detail.

Figures are drawn on `matplotlib.figure.Figure` objects with an explicit Agg canvas: no pyplot, no
global backend state, safe to call from any process or thread.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from evaluation.metrics import LABELS, PROBA_COLUMNS, hac_lags, ic_over_time, labelled_predictions
from features.labels import CLASS_NAMES
from store.files import write_bytes_atomic, write_text_atomic

ROLLING_IC_WINDOW = "30D"
DPI = 100
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
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; }
td { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: #f0f0f0; }
tbody th { text-align: left; font-weight: normal; }
img { max-width: 100%; display: block; margin: 0.5rem 0 1.5rem; }
.note { color: #555; font-size: 0.9rem; }
pre { background: #f7f7f7; padding: 0.5rem; font-size: 0.8rem; }
"""


def format_number(value: float | int | None) -> str:
    """The one formatter for every number in the report: 4 significant digits, None (undefined) -> "—".

    Integers (counts) print in full; floats of magnitude >= 10,000 print as whole numbers with separators
    rather than in exponent notation.
    """
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if abs(value) >= 1e4:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def format_percent(value: float | None, signed: bool = True) -> str:
    """A fraction as a percentage with one decimal (0.0153 -> "+1.5 %"; unsigned "1.5 %"), None -> "—"."""
    if value is None or not np.isfinite(value):
        return "—"
    return f"{100 * value:+.1f} %" if signed else f"{100 * value:.1f} %"


# --- HTML pieces ------------------------------------------------------------------------------------------------


def _get(data: Mapping, path: str) -> object:
    """The value at a dotted path inside nested dicts; None when a segment is missing."""
    for segment in path.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(segment)
    return data


PERCENT_FIELDS = frozenset({"return", "gross_return", "annualised_return", "max_drawdown", "drawdown",
                            "turnover_per_day", "excess_return", "win_rate", "costs", "borrow"})


def shown_value(key: str, value: object) -> str:
    """The text a report cell shows for the value at `key`: returns and other fractions of equity in percent
    (`backtest.*` keys whose field is one of PERCENT_FIELDS, and the monthly returns), the rest as numbers."""
    if isinstance(value, str):
        return value
    parts = key.split(".")
    is_percent = parts[0] == "backtest" and (parts[-1] in PERCENT_FIELDS or parts[-2:-1] == ["per_month"])
    if is_percent and isinstance(value, float | int) and not isinstance(value, bool):
        return format_percent(float(value), signed=parts[-1] not in ("turnover_per_day", "win_rate", "costs", "borrow"))
    return format_number(value)


def _tagged(tag: str, key: str, value: object) -> str:
    """An element showing one value, tagged with its JSON path and the exact repr of the value."""
    value = value.item() if isinstance(value, np.generic) else value
    text = html.escape(shown_value(key, value))
    return f'<{tag} data-key="{html.escape(key)}" data-value="{html.escape(repr(value))}">{text}</{tag}>'


def _cell(key: str, value: object) -> str:
    return _tagged("td", key, value)


def _span(key: str, value: object) -> str:
    return _tagged("span", key, value)


def _grid(
    prefix: str, row_header: str, rows: Sequence[tuple[str, str, Mapping]], columns: Sequence[tuple[str, str]]
) -> str:
    """A table with one row per (key segment, display name, values) and one column per (dotted path, header)."""
    head = "".join(f"<th>{html.escape(header)}</th>" for header in (row_header, *(h for _, h in columns)))
    body = "".join(
        f"<tr><th>{html.escape(display)}</th>"
        + "".join(_cell(f"{prefix}.{segment}.{path}", _get(values, path)) for path, _ in columns)
        + "</tr>"
        for segment, display, values in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _field_table(prefix: str, values: Mapping) -> str:
    """A two-column table (field, value) over a flat dict, in the dict's own order."""
    body = "".join(f"<tr><th>{html.escape(str(field))}</th>{_cell(f'{prefix}.{field}', value)}</tr>"
                   for field, value in values.items())
    return f"<table><tbody>{body}</tbody></table>"


def _image(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


# --- figures ----------------------------------------------------------------------------------------------------


def _figure(width: float, height: float, rows: int = 1, cols: int = 1, **kwargs: object) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, cols, squeeze=False, **kwargs)
    return figure, axes.ravel()


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _colours(models: Sequence[str]) -> dict[str, str]:
    return {model: f"C{i % 10}" for i, model in enumerate(models)}


def _values(items: Sequence[object]) -> np.ndarray:
    """Floats for plotting, NaN where a value is undefined (None)."""
    return np.array([np.nan if item is None else float(item) for item in items], dtype=float)


def _ic_figure(predictions: pd.DataFrame, models: Sequence[str]) -> Figure:
    daily = ic_over_time(predictions)
    figure, (axis,) = _figure(10, 3.8)
    colours = _colours(models)
    for model, rows in daily.groupby("model", sort=False):
        series = rows.set_index("date")["ic"].sort_index()
        rolling = series.rolling(ROLLING_IC_WINDOW, min_periods=5).mean()
        axis.plot(series.index, series.to_numpy(), color=colours.get(model), alpha=0.15, linewidth=0.8)
        axis.plot(rolling.index, rolling.to_numpy(), color=colours.get(model), label=f"{model} (30-day mean)")
    axis.axhline(0.0, color="black", linewidth=0.8)
    axis.set(title="Daily cross-sectional rank IC (faint) and its 30-day rolling mean", ylabel="Spearman IC")
    axis.legend(fontsize=8)
    return figure


def _roc_figure(predictions: pd.DataFrame, metrics: Mapping) -> Figure:
    labelled = labelled_predictions(predictions)
    figure, axes = _figure(13, 4.2, 1, len(LABELS))
    colours = _colours(metrics["models"])
    for model, rows in labelled.groupby(labelled["model"].astype(str), sort=False):
        y_true = rows["label"].to_numpy(dtype=int)
        proba = rows.loc[:, list(PROBA_COLUMNS)].to_numpy(dtype=float)
        for axis, code, name in zip(axes, LABELS, CLASS_NAMES, strict=True):
            positive = y_true == code
            if 0 < positive.sum() < len(positive):
                fpr, tpr, _ = roc_curve(y_true=positive, y_score=proba[:, code])
                auc = metrics["pooled"][model]["auc"][name]
                axis.plot(fpr, tpr, color=colours[model], label=f"{model} AUC {format_number(auc)}")
    for axis, name in zip(axes, CLASS_NAMES, strict=True):
        axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
        axis.set(title=f"ROC {name} vs rest", xlabel="false positive rate", ylabel="true positive rate")
        axis.legend(fontsize=8, loc="lower right")
    return figure


def _calibration_figure(metrics: Mapping) -> Figure:
    figure, axes = _figure(13, 4.2, 1, len(CLASS_NAMES))
    colours = _colours(metrics["models"])
    for axis, name in zip(axes, CLASS_NAMES, strict=True):
        axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
        for model in metrics["models"]:
            curve = metrics["pooled"][model]["calibration"][name]
            axis.plot(curve["mean_predicted"], curve["observed"], marker="o", color=colours[model], label=model)
        axis.set(title=f"Calibration {name}", xlabel="mean predicted probability", ylabel="observed frequency",
                 xlim=(0, 1), ylim=(0, 1))
        axis.legend(fontsize=8, loc="upper left")
    return figure


def _confusion_figure(metrics: Mapping) -> Figure:
    models = metrics["models"]
    figure, axes = _figure(3.6 * len(models), 3.6, 1, len(models))
    for axis, model in zip(axes, models, strict=True):
        confusion = metrics["pooled"][model]["confusion_matrix"]
        counts = np.asarray(confusion["matrix"], dtype=float)
        row_share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
        axis.imshow(row_share, cmap="Blues", vmin=0.0, vmax=1.0)
        for (row, col), count in np.ndenumerate(counts):
            colour = "white" if row_share[row, col] > 0.6 else "black"
            axis.text(col, row, format_number(int(count)), ha="center", va="center", color=colour)
        ticks = range(len(confusion["labels"]))
        axis.set_xticks(ticks, confusion["labels"])
        axis.set_yticks(ticks, confusion["labels"])
        axis.set(title=model, xlabel="predicted", ylabel="true")
    return figure


def _win_rate_figure(metrics: Mapping) -> Figure:
    models = metrics["models"]
    figure, (axis,) = _figure(10, 3.8)
    colours = _colours(models)
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        bins = metrics["pooled"][model]["win_rate_by_bin"]
        positions = np.arange(len(bins)) + (i - (len(models) - 1) / 2) * width
        rates = _values([entry["win_rate"] for entry in bins])
        axis.bar(positions, np.nan_to_num(rates), width=width, color=colours[model], label=model)
        for x, rate, entry in zip(positions, rates, bins, strict=True):
            axis.text(x, np.nan_to_num(rate), f"n={entry['count']}", ha="center", va="bottom", fontsize=7)
        axis.set_xticks(np.arange(len(bins)), [entry["bin"] for entry in bins])
    axis.axhline(0.5, color="black", linewidth=0.8, linestyle="--")
    axis.set(title="Win rate of BUY/SELL calls by probability of the called class", xlabel="probability bin",
             ylabel="win rate", ylim=(0, 1.1))
    axis.legend(fontsize=8)
    return figure


def _equity_figure(backtest: Mapping) -> Figure:
    curve = pd.DataFrame(backtest["equity_curve"])
    dates = pd.to_datetime(curve["date"])
    figure, (axis,) = _figure(10, 4)
    axis.plot(dates, _values(curve["equity"].tolist()), label="strategy, net of costs")
    benchmark = backtest["benchmark"]
    if benchmark["in_data"]:
        axis.plot(dates, _values(curve["btc_equity"].tolist()), color="grey", label=f"{benchmark['symbol']} buy & hold")
    axis.plot(dates, _values(curve["market_equity"].tolist()), color="C1", alpha=0.7, label="market (volume-weighted)")
    axis.set(title="Net equity", ylabel="equity (log scale)", yscale="log")
    axis.legend(fontsize=8)
    return figure


def _drawdown_figure(backtest: Mapping) -> Figure:
    curve = pd.DataFrame(backtest["equity_curve"])
    figure, (axis,) = _figure(10, 2.2)
    axis.fill_between(pd.to_datetime(curve["date"]), _values(curve["drawdown"].tolist()), 0.0, color="C3", alpha=0.5)
    axis.set(title="Drawdown of the net equity", ylabel="drawdown")
    return figure


def _bar_figure(title: str, names: Sequence[str], pnl: np.ndarray, horizontal: bool = False) -> Figure:
    colours = np.where(np.nan_to_num(pnl) >= 0, "C2", "C3")
    if horizontal:
        figure, (axis,) = _figure(8, max(2.5, 0.3 * len(names) + 1))
        # Positions, not the names: names like "2023-09" would be parsed as dates by matplotlib.
        axis.barh(np.arange(len(names)), np.nan_to_num(pnl), color=colours, tick_label=list(names))
        axis.axvline(0.0, color="black", linewidth=0.8)
        axis.set(title=title, xlabel="P&L")
    else:
        figure, (axis,) = _figure(10, 3.5)
        axis.bar(np.arange(len(names)), np.nan_to_num(pnl), color=colours, tick_label=list(names))
        axis.axhline(0.0, color="black", linewidth=0.8)
        axis.set(title=title, ylabel="P&L")
        axis.tick_params(axis="x", labelrotation=45)
    return figure


def _breakdown_figure(backtest: Mapping, section: str, title: str, horizontal: bool = False) -> Figure:
    entries = backtest[section]
    names = list(entries)
    pnl = _values([entries[name].get("pnl") for name in names])
    if horizontal:
        order = np.argsort(np.nan_to_num(pnl))
        names, pnl = [names[i] for i in order], pnl[order]
    return _bar_figure(title, names, pnl, horizontal)


def _trade_returns_figure(trades: pd.DataFrame) -> Figure:
    figure, (axis,) = _figure(10, 3.5)
    for side, rows in trades.groupby("side", sort=True):
        axis.hist(rows["return_pct"].to_numpy(dtype=float), bins=40, alpha=0.6, label=f"{side} ({len(rows)})")
    axis.axvline(0.0, color="black", linewidth=0.8)
    axis.set(title="Trade returns by side", xlabel="return", ylabel="trades")
    axis.legend(fontsize=8)
    return figure


# --- assembly ---------------------------------------------------------------------------------------------------

# A report is a sequence of blocks: HTML text, or a named figure rendered in place (and saved as <name>.png).
Block = str | tuple[str, Figure]


def _names(models: Sequence[str]) -> str:
    return ", ".join(models) if models else "none"


def _answer_blocks(metrics: Mapping, predictions: pd.DataFrame, context: Mapping) -> list[Block]:
    """The report's opening: the data, the config, and whether Trishula beat its parts and the factors.

    Without a data context (stack.py) the coins and days are those of the predictions."""
    tested = [str(predictions["date"].min().date()), str(predictions["date"].max().date())]
    data = context.get("data", {"symbols": sorted(map(str, predictions["symbol"].unique())), "days": tested})
    symbols = data.get("symbols", [])
    reference = metrics.get("reference")
    scored = sorted(map(int, metrics["per_fold"][reference])) if reference else []
    lines = [
        f"<b>Data</b>: {len(symbols)} coins ({html.escape(', '.join(symbols))}), "
        f"{html.escape(' .. '.join(data.get('days', [])))}; {len(data.get('folds', []))} walk-forward folds "
        f"selected, {len(scored)} scored" + (f" (folds {scored[0]} .. {scored[-1]}, "
                                             f"{format_number(metrics['pooled'][reference]['days'])} test days)"
                                             if scored else "") + ".",
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
            f"{_span('verdict.ic_mean', judged['ic_mean'])} (HAC t {_span('verdict.ic_t_stat', judged['ic_t_stat'])}, "
            f"{_span('verdict.days', judged['days'])} days). "
            f"Paired against each model and baseline on the days both are scored (|t| ≥ {format_number(t)} counts): "
            f"ahead of {html.escape(_names(judged['beats']))}; behind {html.escape(_names(judged['behind']))}; "
            f"no clear difference from {html.escape(_names(judged['inconclusive']))}.</p>"
        )
        blocks += _blend_blocks(judged.get("against_blend"), metrics.get("anchor_weights"))
    rows = [(entry["model"], entry["model"] + (" (baseline)" if entry["model"] in metrics.get("baselines", []) else ""),
             entry) for entry in metrics["comparison"]]
    blocks.append(_grid("comparison", "model", rows, ANSWER_COLUMNS))
    return blocks


def blend_line(against: Mapping | None) -> str | None:
    """Trishula against the blend of its parts in one line of plain text (the console's), None without it."""
    if against is None or against["diff_mean"] is None:
        return None
    if against["diff_mean"] == 0:
        return "trishula ranked the coins exactly as the blend of its parts (the anchor gave the meta-learner no say)"
    figures = (f"{format_number(against['diff_mean'])} of daily IC (paired t {format_number(against['t_stat'])}, "
               f"long-memory t {format_number(against['t_stat_long'])}, {against['days']} days)")
    return (f"trishula TRAILS the blend of its own parts by {figures}" if against["trails"]
            else f"trishula is ahead of the blend of its own parts by {figures}")


def _blend_blocks(against: Mapping | None, weights: Mapping | None) -> list[Block]:
    """Trishula against the blend of its parts, said plainly, and the meta-learner's weight per fold."""
    if against is None or against["diff_mean"] is None:
        return []
    figures = (f"{_span('verdict.against_blend.diff_mean', against['diff_mean'])} of daily IC (paired t "
               f"{_span('verdict.against_blend.t_stat', against['t_stat'])}, long-memory t "
               f"{_span('verdict.against_blend.t_stat_long', against['t_stat_long'])}, "
               f"{_span('verdict.against_blend.days', against['days'])} days)")
    if against["trails"]:
        said = (f"<b>Trishula trails the blend of its own parts</b> by {figures}: the equal-weight blend of the "
                f"parts' day ranks ranked the coins better on these days.")
    elif against["diff_mean"] == 0:
        said = "Trishula's score ranked the coins exactly as the blend of its own parts on these days."
    else:
        said = f"Against the blend of its own parts Trishula is ahead by {figures}."
    blocks: list[Block] = [f"<p>{said}</p>"]
    if weights:
        shown = ", ".join(f"{fold}: {format_number(w['weight'])}" for fold, w in weights.items())
        blocks.append(f"<p>Trishula's score is anchored on that blend (stack.anchor): per fold, the meta-learner's "
                      f"weight fitted on earlier folds' out-of-sample days (0 = the blend): {html.escape(shown)}.</p>")
    return blocks


STRATEGY_NAMES = {"ranked": "the ranked market-neutral book of Trishula's daily scores",
                  "trailing_j": "Trailing J on Trishula's gated signals"}
COST_SWEEP_COLUMNS = (("return", "net return"), ("annualised_return", "annualised"), ("sharpe", "Sharpe"))


def _strategy_blocks(backtest: Mapping, context: Mapping) -> list[Block]:
    """The report's opening: what trading the signals earned, net of costs, against BTC and the market."""
    perf = backtest["performance"]
    summary, market = perf["summary"], perf["market"]
    key = "backtest.performance"
    figures = ", ".join(f"{label} {_span(f'{key}.summary.{field}', summary[field])}" for field, label in (
        ("return", "net return"), ("gross_return", "gross return"), ("sharpe", "net Sharpe"),
        ("max_drawdown", "max drawdown"), ("turnover_per_day", "turnover a day"),
        ("breakeven_cost_bps", "breakeven cost (bps a side)")))
    smoke = context.get("data", {}).get("smoke_test")
    blocks: list[Block] = [
        f"<h2>The strategy: {html.escape(STRATEGY_NAMES.get(backtest['strategy'], backtest['strategy']))}</h2>",
        f"<p><b>{html.escape(str(summary['start']))} .. {html.escape(str(summary['end']))}</b>, "
        f"{_span(f'{key}.summary.days', summary['days'])} days: {figures}; beta to the "
        f"market {_span(f'{key}.market.beta', market['beta'])}, P&amp;L in excess of the market "
        f"{_span(f'{key}.market.excess_return', market['excess_return'])}.</p>",
        f"<p><b>In words</b>: {html.escape(_strategy_verdict(summary, market, smoke))}</p>",
        ("strategy_equity", _equity_figure(backtest)),
        "<h3>Cost sweep (one-way cost in bps of the traded value; borrow as charged)</h3>",
        _grid(f"{key}.cost_sweep", "bps a side", [(bps, bps, row) for bps, row in perf["cost_sweep"].items()],
              COST_SWEEP_COLUMNS),
        ("cost_sweep", _cost_sweep_figure(perf["cost_sweep"])),
        "<h3>Net return per month</h3>",
        _field_table(f"{key}.per_month", perf["per_month"]),
    ]
    return blocks


def _strategy_verdict(summary: Mapping, market: Mapping, smoke: str | None) -> str:
    """One plain sentence on whether the strategy made money after costs, and how surely."""
    if smoke:
        return smoke
    sharpe, breakeven = summary["sharpe"], summary["breakeven_cost_bps"]
    if sharpe is None or breakeven is None:
        return "undefined: too few days or no trading."
    verdict = ("it made money after costs" if summary["return"] > 0 else "it lost money after costs")
    costs = (f"it pays costs up to {breakeven:.1f} bps a side" if breakeven > 0
             else "it lost before costs, so no cost level makes it pay")
    return (f"{verdict} (net Sharpe {sharpe:.2f} over {summary['days']} days: |Sharpe| x sqrt(years) "
            f"= {abs(sharpe) * (summary['days'] / 365) ** 0.5:.1f}, about the t-stat of its mean); {costs}.")


def _cost_sweep_figure(sweep: Mapping[str, Mapping]) -> Figure:
    figure, (left, right) = _figure(10, 3.2, 1, 2)
    bps, rows = [float(b) for b in sweep], list(sweep.values())
    left.plot(bps, 100 * _values([row["return"] for row in rows]), marker="o")
    left.axhline(0.0, color="black", linewidth=0.8)
    left.set(title="Net return against cost", xlabel="bps a side", ylabel="net return (%)")
    right.plot(bps, _values([row["sharpe"] for row in rows]), marker="o", color="C1")
    right.axhline(0.0, color="black", linewidth=0.8)
    right.set(title="Net Sharpe against cost", xlabel="bps a side", ylabel="Sharpe")
    return figure


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
    return [
        "<h2>Model comparison (all test folds pooled)</h2>",
        _grid("comparison", "model", comparison, COMPARISON_COLUMNS),
        f'<p class="note">IC = mean of the daily cross-sectional Spearman rank IC of s = P(buy) − P(sell) '
        f"(a factor baseline: its own score) against the {horizon}-day forward return; ICIR = mean / std of the "
        f"daily ICs; the t-statistic uses a Newey–West standard error with {hac_lags(horizon)} lags because daily "
        f"ICs of {horizon}-day returns overlap. The paired t tests Trishula's daily IC minus the model's on the "
        "days both are scored; days dropped are days with a constant score. "
        "The pooled rank IC is one Spearman over all coin-days: a diagnostic, not the IC.</p>",
        "<h2>Per fold</h2>",
        _grid("per_fold", "model / fold", folds, FOLD_COLUMNS),
        "<h2>IC over time</h2>",
        ("ic_over_time", _ic_figure(predictions, models)),
        "<h2>ROC (one vs rest)</h2>",
        ("roc", _roc_figure(with_proba, classifiers)),
        "<h2>Calibration</h2>",
        ("calibration", _calibration_figure(classifiers)),
        '<h2>Confusion matrices</h2><p class="note">Rows = true class, columns = predicted class (argmax); '
        "counts, shaded by share of the true class.</p>",
        ("confusion_matrix", _confusion_figure(classifiers)),
        '<h2>Win rate per probability bin</h2><p class="note">Calls whose top probability is below 0.5 are '
        "outside the bins; a BUY wins when the forward return is &gt; 0, a SELL when it is &lt; 0.</p>",
        ("win_rate_by_bin", _win_rate_figure(classifiers)),
    ]


def _backtest_blocks(backtest: Mapping, trades: pd.DataFrame | None) -> list[Block]:
    """The strategy's detail: its summary, benchmark, legs and market exposure; Trailing J's trade breakdowns."""
    perf = backtest["performance"]
    legs = [(leg, leg, values) for leg, values in perf["legs"].items()]
    blocks: list[Block] = [
        "<h2>Strategy detail</h2><h3>Summary</h3>",
        _field_table("backtest.summary", backtest["summary"]),
        "<h3>Against the market</h3>",
        _field_table("backtest.performance.market", perf["market"]),
        "<h3>Legs (each side's return, a fraction of equity)</h3>",
        _grid("backtest.performance.legs", "leg", legs, (("return", "return"), ("sharpe", "Sharpe"))),
        "<h3>Benchmark</h3>",
        _field_table("backtest.benchmark", backtest["benchmark"]),
        "<h3>Drawdown</h3>",
        ("drawdown", _drawdown_figure(backtest)),
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
                _grid(f"backtest.{section}", section.replace("_", " "), rows, BREAKDOWN_COLUMNS[section]),
                (f"pnl_{section}", _breakdown_figure(backtest, section, title, horizontal)),
            ]
        if trades is not None and not trades.empty:
            blocks += ["<h3>Trade returns</h3>", ("trade_returns", _trade_returns_figure(trades))]
    settings = {key: backtest[key] for key in ("config", "regime") if key in backtest}
    config = json.dumps(settings, indent=2, default=str)
    return [*blocks, "<h3>Configuration</h3>", f"<pre>{html.escape(config)}</pre>"]


def write_report(
    out_dir: Path,
    metrics: dict,
    predictions: pd.DataFrame,
    backtest: dict | None = None,
    trades: pd.DataFrame | None = None,
    context: Mapping | None = None,
) -> Path:
    """Write `out_dir/report.html` and `out_dir/figures/<name>.png`; return the report's path.

    `metrics` is `evaluate_predictions(predictions)`; `backtest` / `trades` come from the backtest and may
    be None (the backtest sections are then left out). `context` ({"data": summary with symbols, days and
    the evaluated folds' test starts, "config": a digest}) feeds the opening answer. Each file is written
    atomically (temporary file, then rename), the report last, so a reader never sees a half-written
    report. PNGs of an earlier report in the same folder that this one does not draw (e.g. trade
    returns, once there are no trades) are removed, so `figures/` always matches `report.html`.
    """
    out_dir = Path(out_dir)
    context = context or {}
    blocks = [] if backtest is None else _strategy_blocks(backtest, context)
    blocks += [*_answer_blocks(metrics, predictions, context), *_metric_blocks(metrics, predictions)]
    if backtest is not None:
        blocks += _backtest_blocks(backtest, trades)
    body, drawn = [], set()
    for block in blocks:
        if isinstance(block, str):
            body.append(block)
            continue
        name, figure = block
        png = _png(figure)
        drawn.add(write_bytes_atomic(png, out_dir / "figures" / f"{name}.png"))
        body.append(_image(png, name.replace("_", " ")))
    for stale in set((out_dir / "figures").glob("*.png")) - drawn:
        stale.unlink()
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Trishula evaluation</title>'
        f"<style>{STYLE}</style></head><body><h1>Trishula evaluation</h1>{''.join(body)}</body></html>\n"
    )
    return write_text_atomic(document, out_dir / "report.html")
