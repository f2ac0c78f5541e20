"""Markdown of what the book is paid (`evaluation.payoff`'s tables), for quality.md and the experiment
harness's result.md: each model's quintiles, its book, the market states and the half-years."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from evaluation.cells import format_percent as pct  # the report's one percent format

QUINTILES = tuple(f"Q{b}" for b in range(1, 6))


def num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _head(headers: Sequence[str]) -> list[str]:
    return [_row(headers), _row(["---", *("---:" for _ in headers[1:])])]


def quintile_markdown(payoff: Mapping, models: Sequence[str]) -> list[str]:
    """Per model: the mean and the median forward return per quintile (Q1 = lowest score), the Q5 − Q1 spread
    of means with its t, and the same spread per unit of trailing volatility."""
    h = payoff["horizon_days"]
    lines = [f"Mean (equal weight per day) / median (all coin-days) {h}-day forward return per quintile of each "
             "score, Q1 lowest; spread = Q5 − Q1 of the means, t = Newey-West (≥ 10 lags) on the daily spread; "
             f"spread/σ: the same per unit of each coin's trailing volatility (r / (σ √{h})).", "",
             *_head(["model", *(f"{q} mean / median" for q in QUINTILES), "spread", "t", "spread/σ", "t", "days"])]
    for model in models:
        table = payoff["models"][model]["overall"]["quintiles"]
        if table is None:
            continue
        means = (f"{pct(table[q]['mean'], digits=2)} / {pct(table[q]['median'], digits=2)}" for q in QUINTILES)
        lines.append(_row([model, *means,
                           pct(table["spread"]["mean"], digits=2), num(table["spread"]["t_stat"]),
                           num(table["spread_vol"]["mean"], 3), num(table["spread_vol"]["t_stat"]),
                           str(table["spread"]["days"])]))
    return lines


def book_markdown(payoff: Mapping, models: Sequence[str]) -> list[str]:
    """Per model: the served ranked book on its score, net of costs, and its legs against the cross-section."""
    lines = _head(["book on", "net return", "net Sharpe", "t (daily net)", "max DD", "beta", "long leg",
                   "short leg", "Q5 − mean (t)", "mean − Q1 (t)", "days"])
    for model in models:
        overall = payoff["models"][model]["overall"]
        book, table = overall["book"], overall["quintiles"]
        if book is None:
            continue
        legs = (["—", "—"] if table is None else
                [f"{pct(table[leg]['mean'], digits=2)} ({num(table[leg]['t_stat'])})"
                 for leg in ("long_leg", "short_leg")])
        lines.append(_row([model, pct(book["return"]), num(book["sharpe"]), num(book["net_t_stat"]),
                           pct(book["max_drawdown"]), num(book["beta"]), pct(book["long_return"]),
                           pct(book["short_return"]), *legs, str(book["days"])]))
    return lines


def state_markdown(payoff: Mapping, models: Sequence[str]) -> list[str]:
    """Which model's book earns in which market state: net return, Sharpe, t and verdict per state."""
    days = payoff["decision_days"]
    lines = [f"Market state at the decision: the volume-weighted market's {payoff['market_state_days']}-day return "
             f"up ({days['up']} decision days) or at or below zero, down ({days['down']}); a book day belongs to "
             "the state of the decision before it.", "",
             *_head(["book on", "up: net", "Sharpe", "t", "days", "verdict", "down: net", "Sharpe", "t", "days",
                     "verdict"])]
    for model in models:
        cells = payoff["by_state"][model]
        lines.append(_row([model, *(value for state in ("up", "down") for value in (
            pct(cells[state]["return"]), num(cells[state]["sharpe"]), num(cells[state]["net_t_stat"]),
            str(cells[state]["days"] or 0), cells[state]["verdict"]))]))
    return lines


def half_year_markdown(payoff: Mapping, models: Sequence[str]) -> list[str]:
    """Per model and half-year: the book's net return and the Q5 − Q1 spread (with its t)."""
    halves = sorted({half for model in models for half in payoff["models"][model]["half_years"]})
    lines = _head(["model", *halves])
    for model in models:
        entry = payoff["models"][model]["half_years"]
        cells = []
        for half in halves:
            figures = entry.get(half, {})
            book, table = figures.get("book"), figures.get("quintiles")
            spread = ("—" if table is None
                      else f"{pct(table['spread']['mean'], digits=2)} ({num(table['spread']['t_stat'])})")
            cells.append(f"{pct(None if book is None else book['return'])}; {spread}")
        lines.append(_row([model, *cells]))
    return ["Per half-year: the book's net return; the Q5 − Q1 spread of means (t).", "", *lines]


def half_years_markdown(rows: Sequence[Mapping]) -> list[str]:
    """A book's figures half-year by half-year (`evaluation.payoff.by_half_year`)."""
    lines = _head(["half-year", "start", "end", "net return", "Sharpe", "t (daily net)", "max DD", "beta", "days"])
    return lines + [_row([r["half_year"], r["start"], r["end"], pct(r["return"]), num(r["sharpe"]),
                          num(r["net_t_stat"]), pct(r["max_drawdown"]), num(r["beta"]), str(r["days"])])
                    for r in rows]


def payoff_markdown(payoff: Mapping, models: Sequence[str]) -> list[str]:
    """Every payoff table for `models`, under level-3 headings."""
    shown = [m for m in models if m in payoff["models"]]
    return ["### Quintiles of each score", "", *quintile_markdown(payoff, shown), "",
            "### The served book on each score", "", *book_markdown(payoff, shown), "",
            "### Which model's book earns in which market state", "", *state_markdown(payoff, shown), "",
            "### Half-years", "", *half_year_markdown(payoff, shown), ""]
