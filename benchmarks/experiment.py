"""What the offline experiment scripts (anchor.py, parts.py, seeds.py) share: the periods a run scores, the
default anchor settings, per model its daily rank IC of the 3-day forward return and per pair the paired
difference by day (Newey-West t with 3 and >= 10 lags), the served ranked book on each score, their markdown,
and where the figures go."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from backtest import DailyPanel, RankedBookConfig, daily_panel
from benchmarks.quality import in_period
from benchmarks.strategy import figures, paired, period_book
from evaluation.metrics import daily_rank_ic, ic_summary, paired_ic_comparison
from marketdata import apply_gap_policy, load_hourly
from store.files import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]


def scored_periods(rows: pd.DataFrame, confirm: bool) -> list[str]:
    """The development days, and 2023 with `confirm` (scored once per adopted change), where `rows` has test days
    (the shipped sample has no development days)."""
    return [p for p in ("development", *(["confirmation_2023"] if confirm else [])) if not in_period(rows, p).empty]


def default_anchor() -> dict:
    """`stack.anchor` as conf/stack/default.yaml sets it."""
    return OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "stack" / "default.yaml").anchor)


def first_test_days(predictions: pd.DataFrame) -> dict[int, pd.Timestamp]:
    """Fold -> its first test day with rows (the anchor's purge boundary, as the walk-forward's test_start)."""
    return predictions.groupby("fold")["date"].min().to_dict()


def served_book(hourly: Path) -> tuple[DailyPanel, RankedBookConfig]:
    """The daily panel of `hourly`'s bars and the served ranked book's config (conf/backtest/ranked.yaml)."""
    book = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "backtest" / "ranked.yaml"))["book"]
    return daily_panel(apply_gap_policy(load_hourly(hourly))), RankedBookConfig(**book)


def book_table(rows: pd.DataFrame, models: Sequence[str], pairs: Iterable[tuple[str, str]], panel: DailyPanel,
               config: RankedBookConfig, period: str) -> dict:
    """The ranked book on each of `models` present in `rows` over `period`; per pair (a, b) of them, a's daily net
    return minus b's."""
    books = {m: period_book(rows.loc[rows["model"] == m, ["symbol", "date", "score"]].reset_index(drop=True),
                            panel, config, period)
             for m in dict.fromkeys(models) if (rows["model"] == m).any()}
    return {"figures": {m: figures(daily) for m, daily in books.items()},
            "paired": {f"{a} - {b}": paired(books[a]["net"], books[b]["net"]) for a, b in pairs
                       if a in books and b in books}}


def period_markdown(name: str, period: dict) -> list[str]:
    """A period's section: its IC tables and its book's."""
    return [f"## {name}", "", *ic_markdown(period["ic"]), "", *book_markdown(period["book"]), ""]


def write_results(result: dict, results_dir: Path, name: str, markdown: Callable[[dict], str]) -> None:
    """`result` to `<name>.json`, its markdown to `<name>.md` (and the console)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(result, results_dir / f"{name}.json")
    write_text_atomic(markdown(result), results_dir / f"{name}.md")
    print(markdown(result))


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
