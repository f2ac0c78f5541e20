"""The daily price panel every strategy trades on: day-open prices, open-to-open returns, the market.

Days are UTC calendar days; a decision made at day d's close (d + 1 day 00:00) trades at the open of
d + 1's 00:00 bar, so a book decided on day d earns the open-to-open returns of days d + 1, d + 2, ...

- `returns[t, s]` = open(t + 1) / open(t) - 1 of symbol s, from the 00:00 bars (NaN when either bar
  is missing: not listed yet, or the data has ended; a gap-filled bar is the last traded price);
- `market[t]`: the volume-weighted market return of day t, weights = each coin's mean quote volume
  (close x volume) over the `volume_days` days before t (known at t's open), over the coins with a return
  (bars without a volume column: equal weights);
- `volatility[t, s]` and `beta[t, s]`: the std of s's daily returns and their beta to the market over
  the `risk_days` days before t (the last one ends at t's open): known when day t closes, before the
  00:00 bar of t + 1 exists, so a live run deciding at t's close has exactly the backtest's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class DailyPanel:
    """Wide day x symbol frames, one shared index of UTC days and one column per symbol."""

    open: pd.DataFrame  # the 00:00 bar's open of each day
    returns: pd.DataFrame  # open-to-open return of each day
    market: pd.Series  # volume-weighted market return of each day
    volatility: pd.DataFrame  # trailing std of daily returns, known at the day's close
    beta: pd.DataFrame  # trailing beta to the market, known at the day's close

    @property
    def days(self) -> pd.DatetimeIndex:
        return self.returns.index

    @property
    def symbols(self) -> pd.Index:
        return self.returns.columns


def daily_panel(hourly: pd.DataFrame, volume_days: int = 30, risk_days: int = 60) -> DailyPanel:
    """The panel of `hourly` bars (symbol, ts tz-aware bar open, open, close; optional volume).

    A gap-filled 00:00 bar (a flat copy of the previous close) stands for the last traded price: a book
    holding through a gap earns nothing over it and the move once trading resumes, and stays in the book.
    """
    missing = [c for c in ("symbol", "ts", "open", "close") if c not in hourly.columns]
    if missing:
        raise ValueError(f"hourly bars are missing column(s) {missing}")
    if volume_days < 1 or risk_days < 2:
        raise ValueError(f"need volume_days >= 1 and risk_days >= 2, got {volume_days}, {risk_days}")
    day = hourly["ts"].dt.floor("D")
    opens = hourly.loc[(hourly["ts"] == day).to_numpy()].pivot(index="ts", columns="symbol", values="open")
    days = pd.date_range(day.min(), day.max(), freq="D", name="date")
    opens = opens.reindex(days)
    volume = hourly["volume"] if "volume" in hourly.columns else 1.0
    quote = (hourly["close"] * volume).groupby([day.rename("date"), hourly["symbol"]]).sum()
    quote = quote.unstack("symbol").reindex(index=days, columns=opens.columns)
    returns = opens.shift(-1) / opens - 1.0  # (days, symbols) day t: open t -> open t + 1
    weight = quote.rolling(volume_days, min_periods=1).mean().shift(1).where(returns.notna())
    market = (returns * weight).sum(axis=1, min_count=1) / weight.sum(axis=1, min_count=1)
    return DailyPanel(
        open=opens,
        returns=returns,
        market=market.rename("market"),
        volatility=returns.rolling(risk_days, min_periods=risk_days // 2).std().shift(1),
        beta=_rolling_beta(returns, market, risk_days).shift(1),
    )


def _rolling_beta(returns: pd.DataFrame, market: pd.Series, days: int) -> pd.DataFrame:
    """cov(r_s, m) / var(m) over the trailing `days` days where both are known, per symbol."""
    both = returns.notna() & market.notna().to_numpy()[:, None]
    r = returns.where(both)
    m = pd.DataFrame(np.broadcast_to(market.to_numpy()[:, None], r.shape), index=r.index, columns=r.columns).where(both)
    window = {"window": days, "min_periods": days // 2}
    mean_r, mean_m = r.rolling(**window).mean(), m.rolling(**window).mean()
    cov = (r * m).rolling(**window).mean() - mean_r * mean_m
    var = (m * m).rolling(**window).mean() - mean_m**2
    return cov / var.where(var > 0)
