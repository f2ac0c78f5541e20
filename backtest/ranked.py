"""The ranked book: a market-neutral long-short of the served score's cross-section (`backtest=ranked`).

The models forecast each coin's return relative to the others over the next H = 3 days (the labels are
excess returns), and the daily rank IC measures how well a day's scores order the coins. This book
trades exactly that order:

- each decision day d (known at d's close, d + 1 00:00) the coins with a score are ranked; a tranche
  goes long the top `k` and short the bottom `k` (`select: quantile`: k = floor(quantile x coins of the
  day), at least 1; `select: names`: k = `names`, an error on a day with fewer than 2 k coins);
- entry/keep band: a name the tranche already holds stays ahead of new entrants while it ranks within
  the keep share (`keep_quantile` / `keep_names` >= the entry one), so small rank changes do not trade;
- H overlapping tranches (`holding_days`): the tranche decided on day d holds its names over days
  d + 1 .. d + H (open to open) and is decided again on day d + H; the book is the mean of the H live
  tranches, so a 1/H slice of it turns over each day;
- weights within a leg: `equal`, or `inverse_vol` (1 / each coin's trailing daily volatility);
  leg sizes: `dollar` neutral (gross/2 a leg) or `beta` neutral against the volume-weighted market
  (each leg's size set so that the legs' betas cancel, the ratio held within [1/3, 3]);
- the book is held at its target weights: each day's open trades from the drifted weights of the day
  before to the day's targets, at a one-way cost of fee_rate + slippage on the traded value; shorts
  pay `borrow_rate` a year on their value; a coin without a price for a day is out of the book that day.

Vectorised over coins; the only loop walks the decision days (the band makes each tranche's names
depend on its previous ones), a few vector operations each.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from backtest.config import RankedBookConfig
from backtest.panel import DailyPanel, daily_panel
from backtest.performance import max_drawdown, performance

DAY = pd.Timedelta(days=1)
BETA_RATIO_LIMIT = 3.0  # beta-neutral legs: the larger at most 3x the smaller (a beta near 0 would explode it)

@dataclass(frozen=True)
class RankedBookResult:
    """daily: per day the bars price (index `date`, the day held from its 00:00 open) the performance
    columns, equity (after the day) and btc_equity; positions: the book's target weight per (date, symbol)
    held from that day's open, nonzero only, through the last decision's last holding day (past the bars:
    the book a live run trades next); tranches: per decision day and symbol, the tranche's side (+1 / -1)."""

    config: RankedBookConfig
    daily: pd.DataFrame
    positions: pd.DataFrame
    tranches: pd.DataFrame

    def to_json_dict(self) -> dict[str, Any]:
        """strategy, config, summary, performance, benchmark and equity_curve; JSON-serialisable. summary is
        performance's with the mean names a leg; performance: `backtest.performance`'s blocks."""
        cfg, daily = self.config, self.daily
        block = performance(daily, cfg.annualisation_days)
        names = float(self.tranches.groupby(["date", "side"]).size().mean())
        out: dict[str, Any] = {"strategy": "ranked", "config": asdict(cfg),
                               "summary": {**block["summary"], "names_per_leg": names}, "performance": block}
        btc = daily["btc_equity"].to_numpy()
        known = bool(np.isfinite(btc).all())
        out["benchmark"] = {"symbol": cfg.benchmark_symbol, "in_data": known,
                            "return": float(btc[-1] / cfg.capital - 1.0) if known else None,
                            "max_drawdown": max_drawdown(btc) if known else None}
        market = cfg.capital * np.cumprod(1.0 + daily["market"].fillna(0.0).to_numpy())
        out["equity_curve"] = [
            {"date": f"{date:%Y-%m-%d}", "equity": float(e), "drawdown": float(d),
             "btc_equity": float(b) if np.isfinite(b) else None, "market_equity": float(m)}
            for date, e, d, b, m in zip(daily.index, daily["equity"], daily["drawdown"], btc, market, strict=True)
        ]
        return out


def run_ranked_book(
    signals: pd.DataFrame, hourly: pd.DataFrame, config: RankedBookConfig | None = None,
    panel: DailyPanel | None = None,
) -> RankedBookResult:
    """Trade the daily cross-section of `signals` (symbol, date: the decision day, tz-aware UTC midnight,
    and the score column) on `hourly` bars (or their ready `panel`) under the module's rules."""
    config = RankedBookConfig() if config is None else config
    panel = daily_panel(hourly, config.volume_days, config.risk_days) if panel is None else panel
    scores = _score_panel(signals, panel, config.score_column)
    decided = scores.index[scores.notna().any(axis=1).to_numpy()]
    # Every day from the first decision to the last decision's last holding day, past the data if need be.
    calendar = pd.date_range(decided[0], decided[-1] + config.holding_days * DAY, freq="D", name="date")
    tranche = _tranche_weights(scores, panel, config).reindex(calendar, fill_value=0.0)  # decided each day
    held = (tranche.rolling(config.holding_days, min_periods=1).sum().shift(1) / config.holding_days).iloc[1:]
    priced = panel.returns.reindex(held.index)
    days = held.index[priced.notna().any(axis=1).to_numpy()]  # the days whose returns the bars hold
    weights = held.loc[days].where(priced.loc[days].notna(), 0.0)  # no price that day: out of the book
    daily = _daily_returns(weights, priced.loc[days].fillna(0.0), panel.market.loc[days], config)
    daily["equity"] = config.capital * np.cumprod(1.0 + daily["net"].to_numpy())
    daily["drawdown"] = daily["equity"] / daily["equity"].cummax() - 1.0
    daily["btc_equity"] = _benchmark_equity(panel, days, config)
    positions = held.rename_axis(columns="symbol").stack()
    sides = np.sign(tranche.loc[decided[0]:decided[-1]]).rename_axis(columns="symbol").stack()
    return RankedBookResult(
        config=config, daily=daily,
        positions=positions[positions != 0].rename("weight").reset_index(),
        tranches=sides[sides != 0].astype("int8").rename("side").reset_index(),
    )


def _score_panel(signals: pd.DataFrame, panel: DailyPanel, column: str) -> pd.DataFrame:
    missing = [c for c in ("symbol", "date", column) if c not in signals.columns]
    if missing:
        raise ValueError(f"signals are missing column(s) {missing} (backtest.book.score_column={column!r})")
    if signals.duplicated(["symbol", "date"]).any():
        first = signals[signals.duplicated(["symbol", "date"], keep=False)].iloc[0]
        raise ValueError(f"signals hold more than one row for {first['symbol']} on {first['date']:%Y-%m-%d}")
    unknown = sorted(set(signals["symbol"]) - set(panel.symbols))
    if unknown:
        raise ValueError(f"signals name symbol(s) without hourly bars: {unknown[:5]}")
    wide = signals.pivot(index="date", columns="symbol", values=column)
    outside = wide.index.difference(panel.days)
    if len(outside):
        raise ValueError(f"signals on {outside[0]:%Y-%m-%d} lie outside the hourly bars' days "
                         f"({panel.days[0]:%Y-%m-%d} .. {panel.days[-1]:%Y-%m-%d})")
    if wide.empty:
        raise ValueError("no signals to trade")
    return wide.reindex(index=panel.days, columns=panel.symbols).astype("float64")


def _leg_size(coins: int, config: RankedBookConfig, day: pd.Timestamp) -> tuple[int, int]:
    """(entry k, keep k) names a leg for a day with `coins` scored coins."""
    if config.select == "names":
        if coins and 2 * config.names > coins:
            raise ValueError(f"backtest.book.names={config.names}: {day:%Y-%m-%d} has {coins} coins with a score, "
                             f"fewer than the 2 x names a long and a short leg need")
        return (config.names, min(config.keep_count, coins // 2)) if coins else (0, 0)
    if coins < 2:
        return 0, 0
    k = max(1, int(config.quantile * coins))
    return k, max(k, int(config.keep_share * coins))


def _tranche_weights(scores: pd.DataFrame, panel: DailyPanel, config: RankedBookConfig) -> pd.DataFrame:
    """(days, symbols) the weights of the tranche decided each day (0 where nothing is decided)."""
    values = scores.to_numpy()
    n_days, n_symbols = values.shape
    out = np.zeros((n_days, n_symbols))
    held_long = np.zeros((config.holding_days, n_symbols), dtype=bool)  # each tranche's last names
    held_short = np.zeros_like(held_long)
    volatility = panel.volatility.to_numpy()
    beta = panel.beta.to_numpy()
    for i in range(n_days):
        tranche = i % config.holding_days
        score = values[i]
        eligible = np.isfinite(score)
        k, keep = _leg_size(int(eligible.sum()), config, scores.index[i])
        if k == 0:
            held_long[tranche] = held_short[tranche] = False
            continue
        # Rank positions (0 = best) for the long side; the short side ranks from the bottom.
        down = np.argsort(np.argsort(np.where(eligible, -score, np.inf), kind="stable"), kind="stable")
        up = np.argsort(np.argsort(np.where(eligible, score, np.inf), kind="stable"), kind="stable")
        longs = _pick(down, eligible, held_long[tranche], k, keep)
        shorts = _pick(up, eligible & ~longs, held_short[tranche], k, keep)
        held_long[tranche], held_short[tranche] = longs, shorts
        out[i] = _leg_weights(longs, shorts, volatility[i], beta[i], config)
    return pd.DataFrame(out, index=scores.index, columns=scores.columns)


def _pick(rank: np.ndarray, eligible: np.ndarray, held: np.ndarray, k: int, keep: int) -> np.ndarray:
    """The k names of a leg: held names still ranked within `keep` first, then the best-ranked others."""
    kept = held & eligible & (rank < keep)
    priority = np.where(eligible, rank + np.where(kept, 0, len(rank)), np.iinfo(np.int64).max)
    chosen = np.zeros(len(rank), dtype=bool)
    chosen[np.argsort(priority, kind="stable")[:k]] = True
    return chosen & eligible


def _leg_weights(longs: np.ndarray, shorts: np.ndarray, volatility: np.ndarray, beta: np.ndarray,
                 config: RankedBookConfig) -> np.ndarray:
    """Signed weights of one tranche: each leg sums to its size, longs positive, shorts negative."""
    raw = np.ones(len(longs))
    if config.weighting == "inverse_vol":
        known = np.isfinite(volatility) & (volatility > 0)
        fallback = np.nanmedian(volatility[known]) if known.any() else 1.0
        raw = 1.0 / np.where(known, volatility, fallback)
    w_long = np.where(longs, raw, 0.0) / raw[longs].sum()
    w_short = np.where(shorts, raw, 0.0) / raw[shorts].sum()
    long_size = short_size = config.gross / 2
    if config.neutral == "beta":
        b = np.where(np.isfinite(beta), beta, 1.0)
        beta_long, beta_short = float(w_long @ b), float(w_short @ b)
        if beta_long > 0 and beta_short > 0:
            share = np.clip(beta_short / (beta_long + beta_short), 1 / (1 + BETA_RATIO_LIMIT),
                            BETA_RATIO_LIMIT / (1 + BETA_RATIO_LIMIT))
            long_size, short_size = config.gross * share, config.gross * (1 - share)
    return long_size * w_long - short_size * w_short


def _daily_returns(weights: pd.DataFrame, returns: pd.DataFrame, market: pd.Series,
                   config: RankedBookConfig) -> pd.DataFrame:
    """The performance columns of `backtest.performance` for a book held at `weights` each day."""
    w, r = weights.to_numpy(), returns.to_numpy()
    contribution = w * r
    gross = contribution.sum(axis=1)
    # The weights each day opens with: yesterday's, moved by yesterday's returns (the book starts flat).
    drifted = np.vstack([np.zeros((1, w.shape[1])), (w * (1.0 + r))[:-1] / (1.0 + gross[:-1, None])])
    turnover = np.abs(w - drifted).sum(axis=1)
    short_value = np.clip(-w, 0.0, None).sum(axis=1)
    cost = config.one_way_cost * turnover
    borrow = config.borrow_rate / config.annualisation_days * short_value
    return pd.DataFrame({
        "gross": gross, "long": np.where(w > 0, contribution, 0.0).sum(axis=1),
        "short": np.where(w < 0, contribution, 0.0).sum(axis=1), "turnover": turnover, "cost": cost,
        "borrow": borrow, "net": gross - cost - borrow, "market": market.to_numpy(),
    }, index=weights.index.rename("date"))


def _benchmark_equity(panel: DailyPanel, days: pd.DatetimeIndex, config: RankedBookConfig) -> np.ndarray:
    """Buy & hold of the benchmark symbol from the first day's open, marked at each day's end (NaN: no data)."""
    if config.benchmark_symbol not in panel.symbols:
        return np.full(len(days), np.nan)
    btc = panel.returns[config.benchmark_symbol].loc[days].to_numpy()
    return config.capital * np.cumprod(1.0 + btc)
