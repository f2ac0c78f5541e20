"""The report's section on what the book is paid (`evaluation.payoff`'s tables): quantile returns, spreads, legs
and each model's book, overall, per market state and per half-year. Cells are keyed `payoff.<path>`."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from evaluation.cells import grid
from evaluation.figures import quantile_figure
from evaluation.payoff import STATES

QUINTILES = tuple(f"Q{b}" for b in range(1, 6))


def _columns(scope: str, fields: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((f"{scope}.{path}", header) for path, header in fields)


def _rows(payoff: Mapping, models: Sequence[str]) -> list[tuple[str, str, Mapping]]:
    return [(model, model, payoff["models"][model]) for model in models]


def payoff_blocks(payoff: Mapping, models: Sequence[str], served: str) -> list:
    """The section's HTML blocks and its figure, models in `models`' order, `served` the score the book trades."""
    shown = [m for m in models if m in payoff["models"]]
    rows = _rows(payoff, shown)
    prefix = "payoff.models"
    h = payoff["horizon_days"]
    days = payoff["decision_days"]
    spread = (("spread.mean", "Q5 − Q1"), ("spread.t_stat", "t"), ("spread.days", "days"))
    blocks: list = [
        "<h2>What the book is paid: each score's quintiles</h2>",
        f'<p class="note">Each decision day the coins are sorted into quintiles of each score (Q1 lowest); the mean '
        f"is the mean over days of each quintile's equal-weight {h}-day forward return (what a book holding it "
        "earns), the median that of all its coin-days (the typical coin). A rank IC counts order over all coins; "
        "a long-short book is paid the means of the extremes. t: Newey–West with at least 10 lags on the daily "
        f"series. Market state: the volume-weighted market's return over the 30 days before the decision, up "
        f"({days['up']} decision days) or at or below zero, down ({days['down']}); {days['unknown_state']} days "
        f"before 30 days of market returns have no state.</p>",
        "<h3>Mean forward return per quintile</h3>",
        grid(prefix, "model", rows, _columns("overall.quintiles", (*((f"{q}.mean", q) for q in QUINTILES),
                                                                   *spread))),
        "<h3>Median forward return per quintile</h3>",
        grid(prefix, "model", rows, _columns("overall.quintiles", tuple((f"{q}.median", q) for q in QUINTILES))),
        f"<h3>Per unit of trailing volatility (return / (σ √{h}), σ the coin's daily volatility at the decision)</h3>",
        grid(prefix, "model", rows, _columns("overall.quintiles", (
            *((f"{q}.mean_vol", f"{q} mean") for q in QUINTILES), *((f"{q}.median_vol", f"{q} median")
                                                                    for q in ("Q1", "Q5")),
            ("spread_vol.mean", "Q5 − Q1"), ("spread_vol.t_stat", "t")))),
        "<h3>The legs: each extreme against the day's cross-section mean</h3>",
        grid(prefix, "model", rows, _columns("overall.quintiles", (
            ("long_leg.mean", "Q5 − mean"), ("long_leg.t_stat", "t"), ("short_leg.mean", "mean − Q1"),
            ("short_leg.t_stat", "t"), ("Q5.names", "coins in Q5"), ("Q1.names", "coins in Q1")))),
    ]
    if any(payoff["models"][m]["overall"]["deciles"] for m in shown):
        blocks += ["<h3>Deciles: the extremes</h3>",
                   grid(prefix, "model", rows, _columns("overall.deciles", (
                       ("D1.mean", "D1 mean"), ("D10.mean", "D10 mean"), ("D1.median", "D1 median"),
                       ("D10.median", "D10 median"), ("spread.mean", "D10 − D1"), ("spread.t_stat", "t"),
                       ("spread.days", "days"))))]
    book = payoff["book"]
    blocks += [
        f"<h3>The served book on each score (top and bottom {book['quantile']:.0%}, {book['holding_days']} "
        "tranches; net of costs)</h3>",
        grid(prefix, "model", rows, _columns("overall.book", (
            ("return", "net return"), ("sharpe", "net Sharpe"), ("net_t_stat", "t of daily net"),
            ("max_drawdown", "max drawdown"), ("beta", "beta"), ("long_return", "long leg"),
            ("short_return", "short leg"), ("turnover_per_day", "turnover a day"), ("days", "days")))),
        "<h3>Which model's book earns in which market state</h3>",
        grid("payoff.by_state", "model", [(m, m, payoff["by_state"][m]) for m in shown], tuple(
            (f"{state}.{field}", f"{state}: {header}") for state in STATES for field, header in (
                ("return", "net return"), ("sharpe", "Sharpe"), ("net_t_stat", "t"), ("days", "days"),
                ("verdict", "verdict")))),
    ]
    halves = sorted({part for m in shown for part in payoff["models"][m]["half_years"]})
    if halves:
        served_halves = payoff["models"][served]["half_years"] if served in payoff["models"] else {}
        blocks += [
            "<h3>Each model's book per half-year (net return)</h3>",
            grid(prefix, "model", rows, tuple((f"half_years.{half}.book.return", half) for half in halves)),
            f"<h3>Each score's Q5 − Q1 spread per half-year (mean {h}-day return)</h3>",
            grid(prefix, "model", rows, tuple((f"half_years.{half}.quintiles.spread.mean", half) for half in halves)),
        ]
        if served_halves:
            blocks += [
                f"<h3>{html.escape(served)}, half-year by half-year</h3>",
                grid(f"{prefix}.{served}.half_years", "half-year", [(p, p, served_halves[p]) for p in halves
                                                                    if p in served_halves], (
                    ("quintiles.Q1.mean", "Q1 mean"), ("quintiles.Q5.mean", "Q5 mean"),
                    ("quintiles.spread.mean", "Q5 − Q1"), ("quintiles.spread.t_stat", "t"),
                    ("book.return", "book net return"), ("book.sharpe", "Sharpe"), ("book.net_t_stat", "t"),
                    ("book.max_drawdown", "max drawdown"), ("book.beta", "beta"), ("book.days", "days"))),
            ]
    figure = quantile_figure(payoff, served) if served in payoff["models"] else None
    return blocks + ([("payoff_quintiles", figure)] if figure is not None else [])
