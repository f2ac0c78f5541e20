"""What a quant reads first, from a strategy's daily returns: one definition for every strategy.

The input is a day-indexed frame of returns as fractions of the equity at the day's start:
- `gross`: the book's return before costs; `long`, `short`: the two legs' parts of it (sum = gross);
- `turnover`: value traded that day (buys and sells) over equity; `cost = one-way cost x turnover`;
- `borrow`: the short borrow (funding) charged that day; `net = gross - cost - borrow`;
- `market`: the market's return over the same day (NaN where none).

Definitions (an undefined ratio is None, never inf or NaN):
- sharpe = mean / std (ddof 1) x sqrt(annualisation_days); sortino = mean / sqrt(mean(min(r, 0)^2)) x sqrt(...);
- return = prod(1 + r) - 1; annualised = (1 + return)^(annualisation_days / days) - 1; calmar =
  annualised / |max drawdown|; max_drawdown <= 0, the deepest fall of the net equity from its peak, the
  starting capital included (a book that only falls from its start has fallen that far);
- beta, correlation: OLS of net on market returns; alpha: its intercept x annualisation_days, with its t
  from heteroskedasticity- and autocorrelation-consistent (Newey-West, HAC_LAGS lags) errors;
- excess_return: prod(1 + net - market) - 1, the P&L in excess of holding the market;
- breakeven_cost_bps: the one-way cost (bps of the traded value) at which the summed net return is zero,
  sum(gross - borrow) / sum(turnover); negative when the book loses before costs;
- cost_sweep: net return, annualised and Sharpe at each one-way cost (keyed by its bps), the borrow unchanged;
- per_month: the net return compounded within each UTC month.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm

DAILY_COLUMNS = ("gross", "long", "short", "turnover", "cost", "borrow", "net", "market")
COST_SWEEP_BPS = (0, 5, 10, 15, 20, 25, 30)
HAC_LAGS = 10  # overlapping 3-day holdings and persistent scores: daily P&L is autocorrelated


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None where it is undefined (missing parts, zero or non-finite)."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    value = numerator / denominator
    return float(value) if math.isfinite(value) else None


def total_return(returns: np.ndarray) -> float:
    return float(np.prod(1.0 + returns) - 1.0)


def annualised(total: float | None, days: int, year: int) -> float | None:
    if total is None or days <= 0:
        return None
    return float(max(1.0 + total, 0.0) ** (year / days) - 1.0)


def sharpe(returns: np.ndarray, year: int) -> float | None:
    if returns.size < 2:
        return None
    return ratio(float(returns.mean()) * math.sqrt(year), float(returns.std(ddof=1)))


def sortino(returns: np.ndarray, year: int) -> float | None:
    if returns.size < 2:
        return None
    return ratio(float(returns.mean()) * math.sqrt(year), math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2))))


def drawdown_path(equity: np.ndarray, start: float) -> np.ndarray:
    """Each day's fall of `equity` from its running peak, the starting capital `start` the first peak (<= 0)."""
    return equity / np.maximum(np.maximum.accumulate(equity), start) - 1.0


def max_drawdown(curve: np.ndarray) -> float:
    """The deepest fall from the running peak, a fraction <= 0 (0 for an empty or rising curve)."""
    if curve.size == 0:
        return 0.0
    return float((curve / np.maximum.accumulate(curve) - 1.0).min())


def performance(daily: pd.DataFrame, year: int = 365, sweep_bps: Sequence[float] = COST_SWEEP_BPS) -> dict[str, Any]:
    """The summary, market, legs, cost sweep and monthly blocks of a strategy's `daily` returns."""
    missing = [c for c in DAILY_COLUMNS if c not in daily.columns]
    if missing:
        raise ValueError(f"daily returns are missing column(s) {missing}")
    if daily.empty:
        raise ValueError("no trading day to measure: the strategy's daily returns are empty")
    net = daily["net"].to_numpy(dtype="float64")
    days = len(net)
    net_total = total_return(net)
    ann = annualised(net_total, days, year)
    drawdown = max_drawdown(np.cumprod(np.append(1.0, 1.0 + net)))
    turnover = float(daily["turnover"].sum())
    before_cost = float((daily["gross"] - daily["borrow"]).sum())
    return {
        "summary": {
            "start": f"{daily.index[0]:%Y-%m-%d}",
            "end": f"{daily.index[-1]:%Y-%m-%d}",
            "days": days,
            "gross_return": total_return(daily["gross"].to_numpy()),
            "return": net_total,
            "annualised_return": ann,
            "sharpe": sharpe(net, year),
            "sortino": sortino(net, year),
            "calmar": ratio(ann, abs(drawdown)),
            "max_drawdown": drawdown,
            "gross_sharpe": sharpe(daily["gross"].to_numpy(), year),
            "turnover_per_day": turnover / days,
            "costs": float(daily["cost"].sum()),
            "borrow": float(daily["borrow"].sum()),
            "breakeven_cost_bps": ratio(before_cost * 1e4, turnover),
        },
        "market": _market_block(daily, year),
        "legs": {leg: {"return": total_return(daily[leg].to_numpy()), "sharpe": sharpe(daily[leg].to_numpy(), year)}
                 for leg in ("long", "short")},
        "cost_sweep": cost_sweep(daily, year, sweep_bps),
        "per_month": per_month(daily["net"]),
    }


def cost_sweep(daily: pd.DataFrame, year: int, sweep_bps: Sequence[float]) -> dict[str, dict[str, float | None]]:
    """Per one-way cost in bps ("10"), the net return, annualised and Sharpe (the day's borrow as charged)."""
    rows = {}
    for bps in sweep_bps:
        net = (daily["gross"] - daily["borrow"] - float(bps) / 1e4 * daily["turnover"]).to_numpy()
        total = total_return(net)
        rows[f"{bps:g}"] = {"return": total, "annualised_return": annualised(total, len(net), year),
                            "sharpe": sharpe(net, year)}
    return rows


def per_month(net: pd.Series) -> dict[str, float]:
    """Net return compounded within each UTC month, oldest first."""
    monthly = (1.0 + net).groupby(net.index.strftime("%Y-%m")).prod() - 1.0
    return {month: float(value) for month, value in monthly.items()}


def _market_block(daily: pd.DataFrame, year: int) -> dict[str, Any]:
    """Beta, correlation and alpha of the net returns against the market, on the days both are known."""
    known = daily["market"].notna().to_numpy()
    net, market = daily["net"].to_numpy()[known], daily["market"].to_numpy()[known]
    block: dict[str, Any] = {"days": int(known.sum()), "return": total_return(market) if known.any() else None,
                             "excess_return": total_return(net - market) if known.any() else None,
                             "beta": None, "correlation": None, "alpha": None, "alpha_t_stat": None}
    if known.sum() < 3 or market.std() == 0:
        return block
    fit = sm.OLS(net, sm.add_constant(market)).fit(cov_type="HAC", cov_kwds={"maxlags": HAC_LAGS})
    block.update(beta=float(fit.params[1]), correlation=float(np.corrcoef(net, market)[0, 1]),
                 alpha=float(fit.params[0]) * year, alpha_t_stat=ratio(float(fit.params[0]), float(fit.bse[0])))
    return block
