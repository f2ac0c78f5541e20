"""What the experiment scripts (anchor.py, parts.py, seeds.py) share: per model its daily rank IC of the 3-day
forward return, per pair the paired difference by day (Newey-West t with 3 and >= 10 lags), the ranked book's
figures, and their markdown."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from benchmarks.quality import in_period
from evaluation.metrics import daily_rank_ic, ic_summary, paired_ic_comparison


def ic_table(predictions: pd.DataFrame, pairs: Iterable[tuple[str, str]], period: str) -> dict:
    """Per model of `predictions` (key, model, score, fwd_ret_3d) its IC summary over `period`; per pair (a, b)
    of models both present, a minus b by day."""
    rows = in_period(predictions, period).dropna(subset=["fwd_ret_3d", "score"])
    daily = {model: daily_rank_ic(group) for model, group in rows.groupby("model", sort=False)}
    return {"models": {model: ic_summary(ic) for model, ic in daily.items()},
            "paired": {f"{a} - {b}": paired_ic_comparison(daily[a], daily[b]) for a, b in pairs
                       if a in daily and b in daily}}


def signed(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def ic_markdown(ic: dict) -> list[str]:
    """`ic_table`'s two tables."""
    lines = ["| model | IC | ICIR | t3 | t10 | days |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {m} | {signed(s['mean'])} | {signed(s['icir'], 2)} | {signed(s['t_stat'], 2)} | "
              f"{signed(s['t_stat_long'], 2)} | {s['days']} |" for m, s in ic["models"].items()]
    lines += ["", "| paired | mean diff | t3 | t10 | wins | days |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {pair} | {signed(p['diff_mean'], 4)} | {signed(p['t_stat'], 2)} | {signed(p['t_stat_long'], 2)} | "
              f"{p['win_share']:.0%} | {p['days']} |" for pair, p in ic["paired"].items()]
    return lines


def book_markdown(book: dict) -> list[str]:
    """The ranked book's figures per score and the paired daily net differences (benchmarks.strategy's)."""
    lines = ["| book on | net return | gross | net Sharpe | max DD | beta | long leg | short leg |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {m} | {f['return']:+.1%} | {f['gross_return']:+.1%} | {f['sharpe']:+.2f} | "
              f"{f['max_drawdown']:.1%} | {signed(f['beta'], 2)} | {f['long_return']:+.1%} | {f['short_return']:+.1%} |"
              for m, f in book["figures"].items()]
    return lines + [""] + [f"- book, {pair}: mean daily net difference {p['mean_daily_diff']:+.5f}, t10 "
                           f"{signed(p['t_stat'], 2)}, {p['days']} days" for pair, p in book["paired"].items()]
