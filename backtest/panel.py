"""The daily price panel every strategy trades on: the day's close, the fill price, close-to-close returns.

Days are UTC calendar days. A decision on day d is made at d's close (d + 1 00:00), knowing the bars
through d's 23:00 bar; its trades fill at the open of the bar `fill_delay_hours` after that close
(default 1: the 01:00 bar, the first a daily run can reach once the 23:00 bar has closed).

- `close[t, s]`: the close of s's last bar of day t (the 23:00 bar's, unless the coin's data ends inside
  the day): the reference price of day t's decision and the mark of day t's equity; NaN when s has no
  bar that day;
- `fill[t, s]`: the open of s's bar at t 00:00 + fill_delay_hours, where the decision of day t - 1
  fills (NaN when there is no such bar: the coin's data ended, or the bars do not reach it yet);
- `returns[t, s]` = close(t) / close(t - 1) - 1: day t's return, known at t's close;
- `quote_volume[t, s]`: s's mean quote volume (close x volume) over the `volume_days` days through t,
  known at t's close (bars without a volume column: 1);
- `market[t]`: the volume-weighted market return of day t, weights = `quote_volume` of t - 1 (known at
  t - 1's close), over the coins with a return;
- `volatility[t, s]`, `skew[t, s]` and `beta[t, s]`: the std and skewness of s's daily returns and their
  beta to the market over the `risk_days` days through t: known at t's close, the decision's time, so a
  live run deciding at t's close has exactly the backtest's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)
HOUR = pd.Timedelta(hours=1)


@dataclass(frozen=True)
class DailyPanel:
    """Wide day x symbol frames, one shared index of UTC days and one column per symbol."""

    close: pd.DataFrame  # the close of each day's last bar: the decision's reference price and the day's mark
    fill: pd.DataFrame  # the open of the bar fill_delay_hours after the day starts: the previous decision's fill
    returns: pd.DataFrame  # close-to-close return of each day
    quote_volume: pd.DataFrame  # trailing mean quote volume, known at the day's close
    market: pd.Series  # volume-weighted market return of each day
    volatility: pd.DataFrame  # trailing std of daily returns, known at the day's close
    skew: pd.DataFrame  # trailing skewness of daily returns, known at the day's close
    beta: pd.DataFrame  # trailing beta to the market, known at the day's close
    fill_delay_hours: int = 1

    @property
    def days(self) -> pd.DatetimeIndex:
        return self.returns.index

    @property
    def symbols(self) -> pd.Index:
        return self.returns.columns


def daily_panel(hourly: pd.DataFrame, volume_days: int = 30, risk_days: int = 60,
                fill_delay_hours: int = 1) -> DailyPanel:
    """The panel of `hourly` bars (symbol, ts tz-aware bar open, open, close; optional volume).

    A gap-filled bar (a flat copy of the previous close) stands for the last traded price: a book holding
    through a gap earns nothing over it and the move once trading resumes, and stays in the book.
    """
    missing = [c for c in ("symbol", "ts", "open", "close") if c not in hourly.columns]
    if missing:
        raise ValueError(f"hourly bars are missing column(s) {missing}")
    if volume_days < 1 or risk_days < 3:
        raise ValueError(f"need volume_days >= 1 and risk_days >= 3, got {volume_days}, {risk_days}")
    if not 0 <= fill_delay_hours < 24:
        raise ValueError(f"fill_delay_hours must lie in [0, 24), got {fill_delay_hours}")
    day = hourly["ts"].dt.floor("D").rename("date")
    days = pd.date_range(day.min(), day.max(), freq="D", name="date")
    by_day = [day, hourly["symbol"]]
    # The bars are (symbol, ts) ordered within each group: the last is the day's close.
    close = hourly["close"].groupby(by_day).last().unstack("symbol").reindex(days)
    at_fill = (hourly["ts"] - day) == fill_delay_hours * HOUR
    fill = hourly.loc[at_fill.to_numpy()].pivot(index="ts", columns="symbol", values="open")
    fill = fill.set_axis(fill.index.floor("D").rename("date")).reindex(index=days, columns=close.columns)
    volume = hourly["volume"] if "volume" in hourly.columns else 1.0
    quote = (hourly["close"] * volume).groupby(by_day).sum().unstack("symbol").reindex(index=days,
                                                                                       columns=close.columns)
    returns = close / close.shift(1) - 1.0  # (days, symbols) day t: close t - 1 -> close t
    trailing_quote = quote.rolling(volume_days, min_periods=1).mean()
    weight = trailing_quote.shift(1).where(returns.notna())
    market = (returns * weight).sum(axis=1, min_count=1) / weight.sum(axis=1, min_count=1)
    window = {"window": risk_days, "min_periods": risk_days // 2}
    return DailyPanel(
        close=close,
        fill=fill,
        returns=returns,
        quote_volume=trailing_quote,
        market=market.rename("market"),
        volatility=returns.rolling(**window).std(),
        skew=returns.rolling(**window).skew(),
        beta=_rolling_beta(returns, market, risk_days),
        fill_delay_hours=fill_delay_hours,
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
