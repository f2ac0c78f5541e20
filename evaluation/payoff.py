"""What a book is paid: each model's score sorted into quantiles per day, the forward return of each quantile,
the top-minus-bottom spread and the legs, and the served ranked book traded on the score, overall, per
half-year and per market state.

A rank IC counts order over all coins; a long-short book is paid the MEAN return of the extremes. A bottom
quantile full of a few exploding coins can have the lowest median and the highest mean: these tables show both.

Definitions (h = the label's horizon, 3 days; every figure of a day uses only what is known at its decision):
- quantiles: each decision day, the coins with a score and a known h-day forward return are ranked by score
  (ties share their mean rank) into q quantiles (quintiles q = 5, deciles q = 10) of equal size up to rounding,
  the top as large as the bottom (`quantile_of_day`); a day with fewer than q coins is left out of that scheme;
- `mean` of a quantile: the mean over days of the day's equal-weight mean forward return (what an equal-weight
  portfolio of the quantile earns per h days); `median`: the median over all its coin-days (the typical coin);
  `_vol`: the same of the return per unit of the coin's trailing volatility at the decision, r / (sigma x
  sqrt(h)), sigma the daily volatility of the book's own panel (`DailyPanel.volatility`, known at the decision);
- `spread`: the day's top-quantile mean minus its bottom-quantile mean; `long_leg`: the top's mean minus the
  day's cross-section mean; `short_leg`: the cross-section mean minus the bottom's (what the short leg earns);
  each as a daily series with its mean and Newey-West t (`statistics.mean_t`, at least 10 lags);
- market state of a decision day: "up" when the volume-weighted market's compounded return over the 30 days
  through the day's own close-to-close return is above zero, "down" at or below it (known at the decision,
  the day's close); unknown before 30 such days;
- half-year: January-June ("H1") or July-December ("H2") of the decision day's year;
- `book`: the ranked book (`backtest.run_ranked_book`, the served config) traded on the model's scores, its
  net figures (`backtest.performance`) over the book's days in the subset: a day held belongs to the
  half-year of its date and to the market state of the decision made at the close before it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from backtest import DailyPanel, RankedBookConfig, daily_panel, run_ranked_book
from backtest.performance import performance
from evaluation.statistics import TARGET, mean_t, plain_float

QUANTILES = {"quintiles": ("Q", 5), "deciles": ("D", 10)}
MARKET_STATE_DAYS = 30
STATES = ("up", "down")
SUBSETS = ("overall", "half_years", "market_states")
# A book whose daily net P&L has a t at or beyond this earns (or loses) clearly; between, within noise.
CLEAR_T = 2.0


def market_state(market: pd.Series, days: int = MARKET_STATE_DAYS) -> pd.Series:
    """Per day d of the panel: "up" / "down" by the sign of the market's compounded return over the `days`
    returns through d's own (the panel's close-to-close return of d is known at d's close, the decision; NaN
    until `days` are known)."""
    trailing = np.log1p(market).rolling(days, min_periods=days).sum()
    return pd.Series(np.where(trailing > 0, "up", "down"), index=market.index, name="state").where(trailing.notna())


def half_year(dates: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """'2023-H1' for January-June, '2023-H2' for July-December."""
    dates = pd.DatetimeIndex(dates)
    return np.char.add(dates.year.astype(str).to_numpy(), np.where(dates.month <= 6, "-H1", "-H2"))


def scored_rows(predictions: pd.DataFrame, panel: DailyPanel, horizon_days: int = 3) -> pd.DataFrame:
    """The rows with a score and a known forward return: model, symbol, date, score, `ret`, the coin's trailing
    `volatility` at the decision, `scaled` = ret / (volatility x sqrt(h)), the day's `half_year` and `state`."""
    rows = predictions.loc[:, ["model", "symbol", "date", "score", TARGET]].dropna(subset=["score", TARGET])
    rows = rows.rename(columns={TARGET: "ret"}).astype({"model": str})
    volatility = panel.volatility.rename_axis(index="date", columns="symbol").stack().rename("volatility")
    rows = rows.join(volatility, on=["date", "symbol"])
    rows["scaled"] = rows["ret"] / (rows["volatility"] * np.sqrt(horizon_days))
    rows["half_year"] = half_year(rows["date"])
    rows["state"] = rows["date"].map(market_state(panel.market))
    return rows.reset_index(drop=True)


def quantile_of_day(rows: pd.DataFrame, q: int) -> pd.Series:
    """Each row's quantile (1 = lowest score) of q within its (model, date): with p = (r - 1/2) / n (r the mean
    rank, n the day's coins), floor(q p) + 1 in the lower half and its mirror q - floor(q (1 - p)) in the upper,
    so the top quantile holds as many coins as the bottom; NaN on a day with fewer than q coins. In integers
    (2 r is one: a mean rank of ties is a whole or half number), so a coin on a quantile's edge is not moved
    by rounding."""
    day = rows.groupby(["model", "date"], sort=False)["score"]
    names = day.transform("size").to_numpy()
    twice = np.rint(2 * day.rank(method="average").to_numpy()).astype(np.int64)  # 2 r
    lower = (twice - 1) * q // (2 * names) + 1
    upper = q - (2 * names - twice + 1) * q // (2 * names)
    bucket = np.where(twice <= names + 1, lower, upper)
    return pd.Series(bucket, index=rows.index, dtype="float64").where(names >= q)


def _by_subset(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` three times, keyed by `subset` ("overall", "half_years", "market_states") and `part` (all, the
    half-year, the state); rows of an unknown state are left out of the state copy."""
    copies = [frame.assign(subset="overall", part="all"),
              frame.assign(subset="half_years", part=frame["half_year"]),
              frame.dropna(subset=["state"]).assign(subset="market_states", part=lambda f: f["state"])]
    return pd.concat(copies, ignore_index=True)


def quantile_tables(rows: pd.DataFrame, scheme: str) -> dict[tuple[str, str, str], dict]:
    """(model, subset, part) -> the scheme's quantile figures, spread and legs (module docstring)."""
    prefix, q = QUANTILES[scheme]
    ranked = rows.assign(bucket=quantile_of_day(rows, q)).dropna(subset=["bucket"]).astype({"bucket": int})
    if ranked.empty:
        return {}
    keys = ["model", "subset", "part"]
    daily = _by_subset(ranked.groupby(["model", "date", "bucket"], sort=False).agg(
        mean=("ret", "mean"), mean_vol=("scaled", "mean"), names=("ret", "size"), half_year=("half_year", "first"),
        state=("state", "first")).reset_index())
    cross = _by_subset(ranked.groupby(["model", "date"], sort=False).agg(
        all=("ret", "mean"), half_year=("half_year", "first"), state=("state", "first")).reset_index())
    levels = daily.groupby([*keys, "bucket"]).agg(mean=("mean", "mean"), mean_vol=("mean_vol", "mean"),
                                                   names=("names", "mean"))
    medians = _by_subset(ranked).groupby([*keys, "bucket"]).agg(median=("ret", "median"),
                                                                median_vol=("scaled", "median"))
    levels = levels.join(medians)
    wide = daily.set_index([*keys, "date", "bucket"])[["mean", "mean_vol"]].unstack("bucket")
    wide = wide.reindex(columns=pd.MultiIndex.from_product([["mean", "mean_vol"], range(1, q + 1)]))
    xs = cross.set_index([*keys, "date"])["all"].reindex(wide.index)
    series = pd.DataFrame({"spread": wide["mean"][q] - wide["mean"][1],
                           "spread_vol": wide["mean_vol"][q] - wide["mean_vol"][1],
                           "long_leg": wide["mean"][q] - xs, "short_leg": xs - wide["mean"][1]})
    daily_figures = {key: {name: mean_t(days[name].droplevel(keys).sort_index()) for name in series.columns}
                     for key, days in series.groupby(level=keys, sort=False)}
    return {key: {f"{prefix}{b}": {field: plain_float(group.at[(*key, b), field]) if (*key, b) in group.index
                                   else None for field in ("mean", "median", "mean_vol", "median_vol", "names")}
                  for b in range(1, q + 1)} | daily_figures[key]
            for key, group in levels.groupby(level=keys, sort=False)}


def model_books(predictions: pd.DataFrame, panel: DailyPanel, config: RankedBookConfig) -> dict[str, pd.DataFrame]:
    """Per model, the ranked book's daily frame traded on its scores (every scored day, labelled or not)."""
    scored = predictions.dropna(subset=["score"]).astype({"model": str})
    return {model: run_ranked_book(rows[["symbol", "date", "score"]].rename(columns={"score": config.score_column})
                                   .reset_index(drop=True), pd.DataFrame(), config, panel=panel).daily
            for model, rows in scored.groupby("model", sort=False)}


def book_figures(daily: pd.DataFrame, year: int = 365) -> dict[str, object]:
    """The served book's net figures over `daily`'s days: return, Sharpe, max drawdown, turnover, beta, and the
    mean daily net P&L with its Newey-West t (at least 10 lags)."""
    block = performance(daily, year)
    summary = block["summary"]
    net = mean_t(daily["net"])
    return {"start": summary["start"], "end": summary["end"], "days": summary["days"], "return": summary["return"],
            "gross_return": summary["gross_return"], "sharpe": summary["sharpe"],
            "max_drawdown": summary["max_drawdown"], "turnover_per_day": summary["turnover_per_day"],
            "beta": block["market"]["beta"], "long_return": block["legs"]["long"]["return"],
            "short_return": block["legs"]["short"]["return"], "net_mean": net["mean"], "net_t_stat": net["t_stat"],
            "net_t_lags": net["lags"]}


def book_subsets(daily: pd.DataFrame, state: pd.Series, year: int = 365) -> dict[tuple[str, str], dict]:
    """(subset, part) -> `book_figures` of the book's days in it; a day's state is the decision's before it."""
    held = state.shift(1).reindex(daily.index).to_numpy()
    figures = {("overall", "all"): book_figures(daily, year)}
    figures |= {("half_years", row.pop("half_year")): row for row in by_half_year(daily, year)}
    return figures | {("market_states", s): book_figures(daily[held == s], year) for s in STATES if (held == s).any()}


def by_half_year(daily: pd.DataFrame, year: int = 365) -> list[dict[str, object]]:
    """A book's `book_figures` per half-year of its days, oldest first (any strategy's performance frame)."""
    halves = half_year(daily.index)
    return [{"half_year": half, **book_figures(daily[halves == half], year)} for half in pd.unique(halves)]


def verdict(book: Mapping | None) -> str:
    """One word on a book's daily net P&L: earns / loses (|t| >= CLEAR_T), or within noise."""
    if book is None or book["net_t_stat"] is None:
        return "no figure"
    t = book["net_t_stat"]
    if t >= CLEAR_T:
        return "earns"
    if t <= -CLEAR_T:
        return "loses"
    return "positive, within noise" if t > 0 else "negative, within noise"


def payoff_tables(predictions: pd.DataFrame, panel: DailyPanel, config: RankedBookConfig, horizon_days: int = 3,
                  books: Mapping[str, pd.DataFrame] | None = None) -> dict[str, object]:
    """Every model's quantile tables and book, overall, per half-year and per market state (module docstring);
    `by_state`: per model and state, its book's net return, Sharpe, t and verdict (which model earns where).
    `books`: each model's book already traded (its daily frame), else `config`'s book on `panel`."""
    rows = scored_rows(predictions, panel, horizon_days)
    schemes = {scheme: quantile_tables(rows, scheme) for scheme in QUANTILES}
    states = market_state(panel.market)
    traded = model_books(predictions, panel, config) if books is None else books
    books = {model: book_subsets(daily, states, config.annualisation_days) for model, daily in traded.items()}
    models: dict[str, dict] = {}
    for model in pd.unique(rows["model"]):
        parts = {key[1:] for scheme in schemes.values() for key in scheme if key[0] == model} | set(books[model])
        entry: dict[str, dict] = {subset: {} for subset in SUBSETS}
        for subset, part in sorted(parts):
            figures = {scheme: tables.get((model, subset, part)) for scheme, tables in schemes.items()}
            figures["book"] = books[model].get((subset, part))
            if subset == "overall":
                entry["overall"] = figures
            else:
                entry[subset][part] = figures
        models[model] = entry
    decided = rows.drop_duplicates("date")
    return {
        "horizon_days": horizon_days, "market_state_days": MARKET_STATE_DAYS,
        "decision_days": {"all": int(len(decided)),
                          **{s: int((decided["state"] == s).sum()) for s in STATES},
                          "unknown_state": int(decided["state"].isna().sum())},
        "book": {"quantile": config.quantile, "holding_days": config.holding_days},
        "models": models,
        "by_state": {model: {state: _state_cell(entry["market_states"].get(state, {}).get("book"))
                             for state in STATES} for model, entry in models.items()},
    }


def _state_cell(book: Mapping | None) -> dict[str, object]:
    fields = ("return", "sharpe", "net_t_stat", "days")
    return {**{f: None if book is None else book[f] for f in fields}, "verdict": verdict(book)}


def served_book_config(backtest_cfg: Mapping) -> RankedBookConfig:
    """The ranked book a run serves (`backtest.book` of `backtest=ranked`); with another strategy, the ranked
    book's defaults, so that every run's payoff tables trade the same kind of book."""
    return RankedBookConfig(**backtest_cfg["book"]) if backtest_cfg["strategy"] == "ranked" else RankedBookConfig()


def book_panel(hourly: pd.DataFrame, config: RankedBookConfig) -> DailyPanel:
    """The daily panel `run_ranked_book` builds for `config` (its volume and risk windows, its fill delay)."""
    return daily_panel(hourly, config.volume_days, config.risk_days, config.fill_delay_hours)


def served_panel(hourly: pd.DataFrame, backtest_cfg: Mapping) -> DailyPanel:
    """The daily panel of a run's served book (`served_book_config`): what its backtest and its payoff tables
    both read, built once (Trailing J's panel is the ranked book's default one)."""
    return book_panel(hourly, served_book_config(backtest_cfg))


def run_payoff(predictions: pd.DataFrame, hourly: pd.DataFrame, backtest_cfg: Mapping,
               horizon_days: int = 3, panel: DailyPanel | None = None) -> dict[str, object]:
    """`payoff_tables` of a run: its predictions, the daily panel of its hourly bars (`panel`: `served_panel`'s,
    when the caller has it), its served book."""
    panel = served_panel(hourly, backtest_cfg) if panel is None else panel
    return payoff_tables(predictions, panel, served_book_config(backtest_cfg), horizon_days)
