"""The ranked book: a long-short of the served score's cross-section (`backtest=ranked`).

The models forecast each coin's return relative to the others over the next H = 3 days (the labels are
excess returns), and the daily rank IC measures how well a day's scores order the coins. This book
trades that order, as an account would:

- each decision day d (at d's close, knowing the bars through d's 23:00 bar) the coins with a score are
  ranked (`neutralize: volatility` ranks what the score's day rank holds beyond the coins' trailing-
  volatility rank: its residual from a least-squares line on it, that day); a tranche goes long the top `k`
  and short the bottom `k` (`select: quantile`: k = floor(quantile x coins of the day), at least 1, and at
  least `min_names` on a day with 2 x min_names coins; `select: names`: k = `names`, an error on a day with
  fewer than 2 k coins);
- entry/keep band: a name the tranche already holds stays ahead of new entrants while it ranks within
  the keep share (`keep_quantile` / `keep_names` >= the entry one), so small rank changes do not trade;
- the short leg (`short_leg`): the ranked bottom names (`wild_short` leaves the day's wildest
  `wild_share` of the coins, by trailing volatility or skewness, out of it), or a hedge: the
  volume-weighted market basket or the benchmark coin, sized like the long leg (a long-tilted book);
- H overlapping tranches (`holding_days`): the tranche decided on day d is held H days and decided again
  on day d + H; the book's target is the mean of the H live tranches, so a 1/H slice turns over a day;
- weights within a leg: `equal`, or `inverse_vol` (1 / each coin's trailing daily volatility);
  leg sizes: `dollar` neutral (gross/2 a leg) or `beta` neutral against the volume-weighted market
  (each leg's size set so that the legs' betas cancel, the ratio held within [1/3, 3]);
  `vol_target`: the whole book scaled so that its predicted volatility (its weights on the trailing
  `risk_days` of daily returns) is vol_target a year, its gross at most `max_gross`;
- the account (quantities, not weights): at d's close the book held is marked at the reference prices
  (each coin's close of d); the orders move it to the target: quantity = (target - held weight) x equity
  / reference price; they fill at the open of the bar `fill_delay_hours` after the close (d + 1 01:00 by
  default), paying fee_rate + slippage on the traded value; a coin without that bar (its data ended) is
  traded at its reference price, its last known price: a rule known at the decision, never future data;
  a coin without a close at the decision (its data ended earlier) is closed at its last price and not
  entered;
- each day t's return runs from the mark at t - 1's close to t's close, the fill of t - 1's decision
  inside it; financing (`backtest.costs`: short borrow or perpetual funding) is charged on the book held
  after the fill.

Vectorised over coins; the loops walk the decision days (the band makes each tranche's names depend on
its previous ones; the equity each day's quantities are sized on depends on the days before).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from backtest.config import RankedBookConfig
from backtest.costs import daily_funding, pro_rata
from backtest.panel import DailyPanel, daily_panel
from backtest.performance import drawdown_path, max_drawdown, performance

DAY = pd.Timedelta(days=1)
HOUR = pd.Timedelta(hours=1)
BETA_RATIO_LIMIT = 3.0  # beta-neutral legs: the larger at most 3x the smaller (a beta near 0 would explode it)
TRADE_COLUMNS = ("date", "symbol", "side", "current_weight", "target_weight", "delta_weight", "reference_price",
                 "equity", "notional", "quantity", "fill_time", "fill_price")
DAILY_COLUMNS = ("gross", "long", "short", "turnover", "cost", "borrow", "net", "market", "equity", "drawdown",
                 "btc_equity")


@dataclass(frozen=True)
class RankedBookResult:
    """daily: per day t (index `date`) the performance columns of the day from t - 1's close to t's, equity
    (marked at t's close, after costs and financing), drawdown (from the running peak, the starting capital
    included) and btc_equity; positions: the target weight per (date, symbol) held from that day's fill
    (decided the day before), nonzero only, through the last decision's (past the bars: the book a live run
    trades next); tranches: per decision day and symbol, the tranche's side (+1 / -1); trades: per decision
    day and symbol whose weight changes, the order (`TRADE_COLUMNS`: the held weight marked at the reference
    price, the target, the quantity at the reference price, the fill; fill_price NaN where the bars do not
    reach the fill yet); holdings: per decision day and symbol, the quantity (coin units) held once its
    orders filled."""

    config: RankedBookConfig
    daily: pd.DataFrame
    positions: pd.DataFrame
    tranches: pd.DataFrame
    trades: pd.DataFrame
    holdings: pd.DataFrame

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
                            "max_drawdown": max_drawdown(np.append(cfg.capital, btc)) if known else None}
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
    if panel is None:
        panel = daily_panel(hourly, config.volume_days, config.risk_days, config.fill_delay_hours)
    elif panel.fill_delay_hours != config.fill_delay_hours:
        raise ValueError(f"the panel fills {panel.fill_delay_hours} h after the close, the book "
                         f"(backtest.book.fill_delay_hours) {config.fill_delay_hours} h")
    if config.short_leg == "btc" and config.benchmark_symbol not in panel.symbols:
        raise ValueError(f"backtest.book.short_leg=btc: no bars of {config.benchmark_symbol} "
                         f"(backtest.book.benchmark_symbol) to hedge with")
    scores = _score_panel(signals, panel, config.score_column)
    if config.neutralize == "volatility":
        scores = _residual_ranks(scores, panel.volatility)
    decided = scores.index[scores.notna().any(axis=1).to_numpy()]
    # Every decision day from the first to the last one's last holding day, as far as the bars reach.
    calendar = pd.date_range(decided[0], min(decided[-1] + config.holding_days * DAY, panel.days[-1]), freq="D",
                             name="date")
    tranche = _tranche_weights(scores, panel, config).reindex(calendar, fill_value=0.0)  # decided each day
    target = tranche.rolling(config.holding_days, min_periods=1).sum() / config.holding_days
    if config.vol_target is not None:
        target = target.mul(_vol_scale(target, panel, config), axis=0)
    daily, trades, holdings = _account(target, panel, config)
    positions = target.set_axis(calendar + DAY).rename_axis(index="date", columns="symbol").stack()
    sides = np.sign(tranche.loc[decided[0]:decided[-1]]).rename_axis(columns="symbol").stack()
    return RankedBookResult(
        config=config, daily=daily,
        positions=positions[positions != 0].rename("weight").reset_index(),
        tranches=sides[sides != 0].astype("int8").rename("side").reset_index(),
        trades=trades, holdings=holdings,
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


def _residual_ranks(scores: pd.DataFrame, volatility: pd.DataFrame) -> pd.DataFrame:
    """Per day, the scores' percentile ranks less their least-squares fit on the volatilities' ranks, over the
    coins with both (a coin without a known volatility keeps no score that day)."""
    both = scores.notna() & volatility.reindex_like(scores).notna()
    x = volatility.reindex_like(scores).where(both).rank(axis=1, pct=True)
    y = scores.where(both).rank(axis=1, pct=True)
    x_dev, y_dev = x.sub(x.mean(axis=1), axis=0), y.sub(y.mean(axis=1), axis=0)
    slope = (x_dev * y_dev).sum(axis=1) / (x_dev**2).sum(axis=1).where(lambda v: v > 0)
    return y_dev.sub(x_dev.mul(slope.fillna(0.0), axis=0))


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
    if coins >= 2 * config.min_names:
        k = max(k, config.min_names)
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
    wildness = {"volatility": volatility, "skew": panel.skew.to_numpy()}.get(config.wild_short)
    hedge = _hedge_weights(panel, config)
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
        longs = _pick(down, eligible, held_long[tranche], k, keep)
        raw = 1.0 / _known_or_median(volatility[i]) if config.weighting == "inverse_vol" else np.ones(n_symbols)
        if hedge is None:
            shortable = eligible & ~longs & ~_wild(wildness, i, eligible, config.wild_share)
            up = np.argsort(np.argsort(np.where(shortable, score, np.inf), kind="stable"), kind="stable")
            shorts = _pick(up, shortable, held_short[tranche], k, keep)
            short_raw = np.where(shorts, raw, 0.0)
        else:
            shorts = hedge[i] > 0
            short_raw = hedge[i]
        held_long[tranche], held_short[tranche] = longs, shorts
        if shorts.any():
            out[i] = _leg_weights(np.where(longs, raw, 0.0), short_raw, beta[i], config)
    return pd.DataFrame(out, index=scores.index, columns=scores.columns)


def _known_or_median(volatility: np.ndarray) -> np.ndarray:
    """The day's volatilities, the median of the known ones where a coin's is unknown (1 if none is)."""
    known = np.isfinite(volatility) & (volatility > 0)
    return np.where(known, volatility, np.nanmedian(volatility[known]) if known.any() else 1.0)


def _wild(wildness: np.ndarray | None, day: int, eligible: np.ndarray, share: float) -> np.ndarray:
    """The day's wildest floor(share x eligible coins) coins by `wildness` (unknown: not wild)."""
    out = np.zeros(len(eligible), dtype=bool)
    if wildness is None:
        return out
    value = np.where(eligible & np.isfinite(wildness[day]), wildness[day], -np.inf)
    count = min(int(share * eligible.sum()), int(np.isfinite(value).sum()))
    out[np.argsort(-value, kind="stable")[:count]] = True
    return out


def _hedge_weights(panel: DailyPanel, config: RankedBookConfig) -> np.ndarray | None:
    """(days, symbols) the hedge short leg's raw weights (None: a ranked short leg): the market basket
    (each coin with a close that day by its trailing quote volume) or the benchmark coin alone."""
    if config.short_leg == "ranked":
        return None
    listed = panel.close.notna().to_numpy()
    if config.short_leg == "market":
        return np.where(listed, np.nan_to_num(panel.quote_volume.to_numpy()), 0.0)
    return np.where(listed & (panel.symbols == config.benchmark_symbol)[None, :], 1.0, 0.0)


def _pick(rank: np.ndarray, eligible: np.ndarray, held: np.ndarray, k: int, keep: int) -> np.ndarray:
    """The k names of a leg: held names still ranked within `keep` first, then the best-ranked others."""
    kept = held & eligible & (rank < keep)
    priority = np.where(eligible, rank + np.where(kept, 0, len(rank)), np.iinfo(np.int64).max)
    chosen = np.zeros(len(rank), dtype=bool)
    chosen[np.argsort(priority, kind="stable")[:k]] = True
    return chosen & eligible


def _leg_weights(long_raw: np.ndarray, short_raw: np.ndarray, beta: np.ndarray,
                 config: RankedBookConfig) -> np.ndarray:
    """Signed weights of one tranche from each leg's raw weights (0: not in the leg): each leg sums to its
    size, longs positive, shorts negative."""
    w_long = long_raw / long_raw.sum()
    w_short = short_raw / short_raw.sum()
    long_size = short_size = config.gross / 2
    if config.neutral == "beta":
        b = np.where(np.isfinite(beta), beta, 1.0)
        beta_long, beta_short = float(w_long @ b), float(w_short @ b)
        if beta_long > 0 and beta_short > 0:
            share = np.clip(beta_short / (beta_long + beta_short), 1 / (1 + BETA_RATIO_LIMIT),
                            BETA_RATIO_LIMIT / (1 + BETA_RATIO_LIMIT))
            long_size, short_size = config.gross * share, config.gross * (1 - share)
    return long_size * w_long - short_size * w_short


def _vol_scale(target: pd.DataFrame, panel: DailyPanel, config: RankedBookConfig) -> np.ndarray:
    """Per decision day, the factor that brings the book's predicted volatility (the std of its target
    weights applied to the trailing risk_days of daily returns, through the day's close) to vol_target a
    year, capped so the gross stays within max_gross; 1 where the history is too short to predict."""
    returns = panel.returns.reindex(columns=target.columns).fillna(0.0).to_numpy()
    windows = sliding_window_view(returns, config.risk_days, axis=0)  # (days - risk + 1, symbols, risk)
    at = panel.days.get_indexer(target.index) - (config.risk_days - 1)  # each decision's window
    have = at >= 0
    book = np.full((len(target), config.risk_days), np.nan)
    book[have] = np.einsum("ds,dsk->dk", target.to_numpy()[have], windows[at[have]])  # (days, risk)
    predicted = np.std(book, axis=1, ddof=1) * np.sqrt(config.annualisation_days)
    gross = np.abs(target.to_numpy()).sum(axis=1)
    scale = np.where(np.isfinite(predicted) & (predicted > 0), config.vol_target / predicted, 1.0)
    cap = np.divide(config.max_gross, gross, out=np.full(len(gross), np.inf), where=gross > 0)
    return np.minimum(scale, cap)


def _account(target: pd.DataFrame, panel: DailyPanel, config: RankedBookConfig
             ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Trade `target` (decision days x symbols) as an account: (daily, trades, holdings) of the module's rules."""
    days, symbols = target.index, target.columns
    reference = panel.close.ffill().reindex(days).to_numpy()  # the last known price of each coin
    listed = panel.close.reindex(days).notna().to_numpy()  # a close at the decision: tradeable
    wanted = np.where(listed, target.to_numpy(), 0.0)
    after = panel.days.get_indexer(days + DAY)  # the next day's row in the panel (-1: past the bars)
    marks = panel.close.ffill().to_numpy()
    fills = panel.fill.to_numpy()
    funding = (daily_funding(config.funding_rate, config.funding_path, panel.days, symbols,
                             config.annualisation_days).to_numpy() if config.financing == "funding" else None)
    borrow_day = pro_rata(config.borrow_rate, 24.0, config.annualisation_days)
    held = np.zeros(len(symbols))  # weights of the book held, marked at the day's reference prices
    equity = config.capital
    rows, orders, books = [], [], []
    for i in range(len(days)):
        w = wanted[i]
        ref = np.where(np.isfinite(reference[i]), reference[i], 1.0)  # unpriced coins hold nothing
        delta = w - held
        j = after[i]
        reached = j >= 0 and np.isfinite(marks[j]).any()
        fill = np.where(np.isfinite(fills[j]), fills[j], ref) if reached else np.full(len(ref), np.nan)
        moved = np.flatnonzero(np.abs(delta) > 1e-12)
        orders.append((np.full(len(moved), i), moved, held[moved], w[moved], ref[moved], np.full(len(moved), equity),
                       fill[moved]))
        kept = np.flatnonzero(w)
        books.append((np.full(len(kept), i), kept, w[kept] * equity / ref[kept]))
        if not reached:
            break
        close = np.where(np.isfinite(marks[j]), marks[j], fill)
        before_fill = held * (fill / ref - 1.0)  # the old book from the reference to the fill
        after_fill = w * (close - fill) / ref  # the new book from the fill to the day's close
        turnover = float(np.abs(delta) @ (fill / ref))
        cost = config.one_way_cost * turnover
        financing = (float(w @ funding[j]) if funding is not None
                     else borrow_day * float(np.clip(-w, 0.0, None).sum()))
        gross = float(before_fill.sum() + after_fill.sum())
        net = gross - cost - financing
        rows.append((panel.days[j], gross, float(before_fill[held > 0].sum() + after_fill[w > 0].sum()),
                     float(before_fill[held < 0].sum() + after_fill[w < 0].sum()), turnover, cost, financing, net))
        equity *= 1.0 + net
        held = w * (close / ref) / (1.0 + net)
    daily = pd.DataFrame(rows, columns=["date", "gross", "long", "short", "turnover", "cost", "borrow", "net"])
    daily = daily.set_index(pd.DatetimeIndex(daily["date"], name="date")).drop(columns="date")
    daily["market"] = panel.market.reindex(daily.index).to_numpy()
    daily["equity"] = config.capital * np.cumprod(1.0 + daily["net"].to_numpy())
    daily["drawdown"] = drawdown_path(daily["equity"].to_numpy(), config.capital)
    daily["btc_equity"] = _benchmark_equity(panel, daily.index, config)
    return daily, _trade_frame(orders, days, symbols, config), _holding_frame(books, days, symbols)


def _trade_frame(orders: list[tuple[np.ndarray, ...]], days: pd.DatetimeIndex, symbols: pd.Index,
                 config: RankedBookConfig) -> pd.DataFrame:
    """`TRADE_COLUMNS` from the account's per-day (day, symbol, held, target, reference, equity, fill) arrays."""
    day, symbol, held, target, ref, equity, fill = (np.concatenate(parts) for parts in zip(*orders, strict=True))
    delta = target - held
    date = days[day]
    return pd.DataFrame({
        "date": date, "symbol": symbols[symbol], "side": np.where(delta > 0, "buy", "sell"), "current_weight": held,
        "target_weight": target, "delta_weight": delta, "reference_price": ref, "equity": equity,
        "notional": np.abs(delta) * equity, "quantity": delta * equity / ref,
        "fill_time": date + DAY + config.fill_delay_hours * HOUR, "fill_price": fill}, columns=list(TRADE_COLUMNS))


def _holding_frame(books: list[tuple[np.ndarray, ...]], days: pd.DatetimeIndex, symbols: pd.Index) -> pd.DataFrame:
    """(date, symbol, quantity) from the account's per-day (day, symbol, quantity) arrays."""
    day, symbol, quantity = (np.concatenate(parts) for parts in zip(*books, strict=True))
    return pd.DataFrame({"date": days[day], "symbol": symbols[symbol], "quantity": quantity})


def _benchmark_equity(panel: DailyPanel, days: pd.DatetimeIndex, config: RankedBookConfig) -> np.ndarray:
    """Buy & hold of the benchmark symbol from the first decision's close, marked at each day's close (NaN:
    no data)."""
    if config.benchmark_symbol not in panel.symbols:
        return np.full(len(days), np.nan)
    btc = panel.returns[config.benchmark_symbol].reindex(days).to_numpy()
    return config.capital * np.cumprod(1.0 + btc)
