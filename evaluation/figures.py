"""The report's figures, drawn on `matplotlib.figure.Figure` objects with an explicit Agg canvas: no pyplot,
no global backend state, safe to call from any process or thread. A figure with nothing to show is not drawn
(its maker returns None)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from evaluation.cells import format_number
from evaluation.classification import LABELS, PROBA_COLUMNS
from evaluation.metrics import ic_over_time, labelled_predictions
from features.labels import CLASS_NAMES

ROLLING_IC_WINDOW = "30D"
DPI = 100
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def new_figure(width: float, height: float, rows: int = 1, cols: int = 1,
               **kwargs: object) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, cols, squeeze=False, **kwargs)
    return figure, axes.ravel()


def to_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def colour_map(models: Sequence[str]) -> dict[str, str]:
    return {model: f"C{i % 10}" for i, model in enumerate(models)}


def floats(items: Sequence[object]) -> np.ndarray:
    """Floats for plotting, NaN where a value is undefined (None)."""
    return np.array([np.nan if item is None else float(item) for item in items], dtype=float)


def ic_figure(predictions: pd.DataFrame, models: Sequence[str]) -> Figure:
    daily = ic_over_time(predictions)
    figure, (axis,) = new_figure(10, 3.8)
    colours = colour_map(models)
    for model, rows in daily.groupby("model", sort=False):
        series = rows.set_index("date")["ic"].sort_index()
        rolling = series.rolling(ROLLING_IC_WINDOW, min_periods=5).mean()
        axis.plot(series.index, series.to_numpy(), color=colours.get(model), alpha=0.15, linewidth=0.8)
        axis.plot(rolling.index, rolling.to_numpy(), color=colours.get(model), label=f"{model} (30-day mean)")
    axis.axhline(0.0, color="black", linewidth=0.8)
    axis.set(title="Daily cross-sectional rank IC (faint) and its 30-day rolling mean", ylabel="Spearman IC")
    axis.legend(fontsize=8)
    return figure


def roc_figure(predictions: pd.DataFrame, metrics: Mapping) -> Figure:
    labelled = labelled_predictions(predictions)
    figure, axes = new_figure(13, 4.2, 1, len(LABELS))
    colours = colour_map(metrics["models"])
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


def same_probabilities(metrics: Mapping) -> list[list[str]]:
    """The models grouped by identical calibration curves (Trishula's probabilities are the meta-learner's:
    its anchor changes only the score), in the models' order: one line each, named after every member."""
    groups: dict[str, list[str]] = {}
    for model in metrics["models"]:
        groups.setdefault(json.dumps(metrics["pooled"][model]["calibration"], sort_keys=True), []).append(model)
    return list(groups.values())


def calibration_figure(metrics: Mapping) -> Figure:
    figure, axes = new_figure(13, 4.2, 1, len(CLASS_NAMES))
    colours = colour_map(metrics["models"])
    groups = same_probabilities(metrics)
    for axis, name in zip(axes, CLASS_NAMES, strict=True):
        axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
        for i, models in enumerate(groups):
            curve = metrics["pooled"][models[0]]["calibration"][name]
            label = " = ".join(models) + (" (the same probabilities)" if len(models) > 1 else "")
            axis.plot(curve["mean_predicted"], curve["observed"], marker=MARKERS[i % len(MARKERS)],
                      color=colours[models[0]], label=label)
        axis.set(title=f"Calibration {name}", xlabel="mean predicted probability", ylabel="observed frequency",
                 xlim=(0, 1), ylim=(0, 1))
        axis.legend(fontsize=8, loc="upper left")
    return figure


def confusion_figure(metrics: Mapping) -> Figure:
    models = metrics["models"]
    figure, axes = new_figure(3.6 * len(models), 3.6, 1, len(models))
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


def win_rate_figure(metrics: Mapping) -> Figure | None:
    """Win rate per probability bin of each model that made calls in some bin; None when no model did (the
    top probability of three classes rarely reaches 0.5)."""
    models = [m for m in metrics["models"] if any(entry["count"] for entry in metrics["pooled"][m]["win_rate_by_bin"])]
    if not models:
        return None
    figure, (axis,) = new_figure(10, 3.8)
    colours = colour_map(metrics["models"])
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        bins = metrics["pooled"][model]["win_rate_by_bin"]
        positions = np.arange(len(bins)) + (i - (len(models) - 1) / 2) * width
        rates = floats([entry["win_rate"] for entry in bins])
        axis.bar(positions, np.nan_to_num(rates), width=width, color=colours[model], label=model)
        for x, rate, entry in zip(positions, rates, bins, strict=True):
            axis.text(x, np.nan_to_num(rate), f"n={entry['count']}", ha="center", va="bottom", fontsize=7)
        axis.set_xticks(np.arange(len(bins)), [entry["bin"] for entry in bins])
    axis.axhline(0.5, color="black", linewidth=0.8, linestyle="--")
    axis.set(title="Win rate of BUY/SELL calls by probability of the called class", xlabel="probability bin",
             ylabel="win rate", ylim=(0, 1.1))
    axis.legend(fontsize=8)
    return figure


def equity_figure(backtest: Mapping) -> Figure:
    curve = pd.DataFrame(backtest["equity_curve"])
    dates = pd.to_datetime(curve["date"])
    figure, (axis,) = new_figure(10, 4)
    axis.plot(dates, floats(curve["equity"].tolist()), label="strategy, net of costs")
    benchmark = backtest["benchmark"]
    if benchmark["in_data"]:
        axis.plot(dates, floats(curve["btc_equity"].tolist()), color="grey", label=f"{benchmark['symbol']} buy & hold")
    axis.plot(dates, floats(curve["market_equity"].tolist()), color="C1", alpha=0.7, label="market (volume-weighted)")
    axis.set(title="Net equity", ylabel="equity (log scale)", yscale="log")
    axis.legend(fontsize=8)
    return figure


def drawdown_figure(backtest: Mapping) -> Figure:
    curve = pd.DataFrame(backtest["equity_curve"])
    figure, (axis,) = new_figure(10, 2.2)
    axis.fill_between(pd.to_datetime(curve["date"]), floats(curve["drawdown"].tolist()), 0.0, color="C3", alpha=0.5)
    axis.set(title="Drawdown of the net equity", ylabel="drawdown")
    return figure


def bar_figure(title: str, names: Sequence[str], pnl: np.ndarray, horizontal: bool = False) -> Figure:
    colours = np.where(np.nan_to_num(pnl) >= 0, "C2", "C3")
    if horizontal:
        figure, (axis,) = new_figure(8, max(2.5, 0.3 * len(names) + 1))
        # Positions, not the names: names like "2023-09" would be parsed as dates by matplotlib.
        axis.barh(np.arange(len(names)), np.nan_to_num(pnl), color=colours, tick_label=list(names))
        axis.axvline(0.0, color="black", linewidth=0.8)
        axis.set(title=title, xlabel="P&L")
    else:
        figure, (axis,) = new_figure(10, 3.5)
        axis.bar(np.arange(len(names)), np.nan_to_num(pnl), color=colours, tick_label=list(names))
        axis.axhline(0.0, color="black", linewidth=0.8)
        axis.set(title=title, ylabel="P&L")
        axis.tick_params(axis="x", labelrotation=45)
    return figure


def breakdown_figure(backtest: Mapping, section: str, title: str, horizontal: bool = False) -> Figure:
    entries = backtest[section]
    names = list(entries)
    pnl = floats([entries[name].get("pnl") for name in names])
    if horizontal:
        order = np.argsort(np.nan_to_num(pnl))
        names, pnl = [names[i] for i in order], pnl[order]
    return bar_figure(title, names, pnl, horizontal)


def trade_returns_figure(trades: pd.DataFrame) -> Figure:
    figure, (axis,) = new_figure(10, 3.5)
    for side, rows in trades.groupby("side", sort=True):
        axis.hist(rows["return_pct"].to_numpy(dtype=float), bins=40, alpha=0.6, label=f"{side} ({len(rows)})")
    axis.axvline(0.0, color="black", linewidth=0.8)
    axis.set(title="Trade returns by side", xlabel="return", ylabel="trades")
    axis.legend(fontsize=8)
    return figure


def cost_sweep_figure(sweep: Mapping[str, Mapping]) -> Figure:
    figure, (left, right) = new_figure(10, 3.2, 1, 2)
    bps, rows = [float(b) for b in sweep], list(sweep.values())
    left.plot(bps, 100 * floats([row["return"] for row in rows]), marker="o")
    left.axhline(0.0, color="black", linewidth=0.8)
    left.set(title="Net return against cost", xlabel="bps a side", ylabel="net return (%)")
    right.plot(bps, floats([row["sharpe"] for row in rows]), marker="o", color="C1")
    right.axhline(0.0, color="black", linewidth=0.8)
    right.set(title="Net Sharpe against cost", xlabel="bps a side", ylabel="Sharpe")
    return figure


def quantile_figure(payoff: Mapping, model: str) -> Figure | None:
    """`model`'s quintiles, lowest score first: mean and median forward return over all days (left), the mean in
    each market state (right); None without quintiles (fewer than 5 coins a day)."""
    entry = payoff["models"][model]
    overall = entry["overall"]["quintiles"]
    if overall is None:
        return None
    names = [f"Q{b}" for b in range(1, 6)]
    positions = np.arange(len(names))
    figure, (left, right) = new_figure(11, 3.4, 1, 2)
    for offset, field in ((-0.2, "mean"), (0.2, "median")):
        left.bar(positions + offset, 100 * floats([overall[n][field] for n in names]), width=0.4, label=field)
    for offset, state in ((-0.2, "up"), (0.2, "down")):
        table = entry["market_states"].get(state, {}).get("quintiles")
        if table is not None:
            right.bar(positions + offset, 100 * floats([table[n]["mean"] for n in names]), width=0.4,
                      label=f"market {state}")
    for axis, title in ((left, f"{model}: forward return per quintile of the score"),
                        (right, f"{model}: mean per quintile, by market state")):
        axis.axhline(0.0, color="black", linewidth=0.8)
        axis.set_xticks(positions, names)
        axis.set(title=title, xlabel="quintile (Q1 = lowest score)", ylabel=f"{payoff['horizon_days']}-day return (%)")
        axis.legend(fontsize=8)
    return figure
