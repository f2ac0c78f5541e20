"""Tabular features for the Trishula meta-learner: point in time, scale-free, one row per daily bar.

The set follows chapter 10 of the reference report (price and momentum, oscillators, volume and flow,
risk ratios, Fear & Greed) without its news-sentiment table, which our data does not have; calendar
terms stand in as cheap context. Every column is

- point in time: the row (symbol, d) reads that symbol's bars up to and including day d, the market
  return up to d and Fear & Greed as `fear_greed_for_days` releases it. Windows are trailing, never
  centred; there is no full-history statistic, no backward fill, nothing a later row can change;
- scale-free: a log return, a ratio of prices or of volumes, a bounded oscillator or a count, so a coin
  the model has never seen, priced 1e-6 or 40,000, or counting its volume in other units, gives
  comparable values. No raw price, volume or OBV level appears;
- per symbol: TA-Lib and the rolling windows run on one symbol's series at a time (a loop over symbols,
  never over rows), so nothing crosses a symbol boundary; a short history just gives NaN warm-up rows.

TA-Lib (>= 0.6) gets the raw prices: its indicators are exactly scale-equivariant (checked for price
factors 2^-120 .. 2^60, no absolute near-zero threshold), so the ratios built on them are scale-free.

Column names carry their windows (`rsi_14` for `rsi_period=14`); `TABULAR_FEATURES` lists them, in
order, for the default windows. Divisions by zero give NaN, never inf.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import talib
from numpy.lib.stride_tricks import sliding_window_view

from features.fear_greed import fear_greed_features
from features.market import market_return

DAY = pd.Timedelta(days=1)
REQUIRED_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume")

TABULAR_FEATURES: tuple[str, ...] = (
    # returns and risk
    "ret_1d", "ret_3d", "ret_7d", "ret_14d", "ret_30d",
    "volatility_7d", "volatility_30d", "var_5pct_30d", "cvar_5pct_30d",
    # momentum and oscillators (TA-Lib)
    "rsi_14", "cmo_9", "willr_14", "mom_10_rel", "stoch_k_14",
    "macd_hist_rel", "macd_cross", "cci_20", "adx_14", "ultosc_7_14_28", "awesome_osc_rel", "trix_15",
    # volume and flow
    "obv_flow_7d", "sma9_sma18", "sma21_sma108", "ema9_ema18", "ema21_ema108",
    "cmf_20", "mfi_14", "volume_zscore_30d",
    # risk ratios against the market
    "alpha_30d", "beta_30d", "sharpe_30d", "sortino_30d", "treynor_30d", "information_ratio_30d",
    "win_rate_30d", "win_loss_ratio_30d", "gain_to_pain_30d", "pain_index_30d",
    # Fear & Greed
    "fear_greed", "fear_greed_change_7d",
    # calendar
    "dow_sin", "dow_cos",
)

# The columns that read the market return (default names); every other column reads only its own coin.
MARKET_RELATIVE_FEATURES: tuple[str, ...] = ("alpha_30d", "beta_30d", "treynor_30d", "information_ratio_30d")


@dataclass(frozen=True)
class _Windows:
    return_windows: tuple[int, ...]
    volatility_windows: tuple[int, ...]
    tail_window: int
    tail_alpha: float
    rsi_period: int
    cmo_period: int
    willr_period: int
    mom_period: int
    stoch_period: int
    stoch_smooth: int
    macd_periods: tuple[int, int, int]
    cci_period: int
    adx_period: int
    ultosc_periods: tuple[int, int, int]
    awesome_periods: tuple[int, int]
    trix_period: int
    obv_window: int
    ma_pairs: tuple[tuple[int, int], ...]
    cmf_window: int
    mfi_period: int
    volume_zscore_window: int
    ratio_window: int


@dataclass(frozen=True)
class _Bars:
    """One symbol's bars as contiguous float arrays, with its daily log returns."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    log_ret: np.ndarray


def build_tabular_features(
    daily: pd.DataFrame,
    fear_greed: pd.DataFrame,
    *,
    return_windows: tuple[int, ...] = (1, 3, 7, 14, 30),
    volatility_windows: tuple[int, ...] = (7, 30),
    tail_window: int = 30,
    tail_alpha: float = 0.05,
    rsi_period: int = 14,
    cmo_period: int = 9,
    willr_period: int = 14,
    mom_period: int = 10,
    stoch_period: int = 14,
    stoch_smooth: int = 3,
    macd_periods: tuple[int, int, int] = (12, 26, 9),
    cci_period: int = 20,
    adx_period: int = 14,
    ultosc_periods: tuple[int, int, int] = (7, 14, 28),
    awesome_periods: tuple[int, int] = (5, 34),
    trix_period: int = 15,
    obv_window: int = 7,
    ma_pairs: tuple[tuple[int, int], ...] = ((9, 18), (21, 108)),
    cmf_window: int = 20,
    mfi_period: int = 14,
    volume_zscore_window: int = 30,
    ratio_window: int = 30,
    market_weight_window: int = 30,
    fear_greed_lag_days: int = 1,
    fear_greed_change_days: int = 7,
    fear_greed_max_stale_days: int = 3,
) -> pd.DataFrame:
    """Float features aligned row for row with `daily` (same index), NaN during each symbol's warm-up.

    `daily` is long daily bars (symbol, ts, open, high, low, close, volume), one contiguous run of days
    per symbol, as `marketdata.daily_from_hourly` gives them. `fear_greed` has columns date, value.
    The market return is `features.market.market_return(daily, market_weight_window)`; Fear & Greed is
    read with `fear_greed_lag_days` of lag. Windows are in days (= bars).
    """
    _check_daily(daily)
    windows = _Windows(
        return_windows=tuple(return_windows), volatility_windows=tuple(volatility_windows),
        tail_window=tail_window, tail_alpha=tail_alpha, rsi_period=rsi_period, cmo_period=cmo_period,
        willr_period=willr_period, mom_period=mom_period, stoch_period=stoch_period,
        stoch_smooth=stoch_smooth, macd_periods=tuple(macd_periods), cci_period=cci_period,
        adx_period=adx_period, ultosc_periods=tuple(ultosc_periods), awesome_periods=tuple(awesome_periods),
        trix_period=trix_period, obv_window=obv_window,
        ma_pairs=tuple((int(short), int(long)) for short, long in ma_pairs), cmf_window=cmf_window,
        mfi_period=mfi_period, volume_zscore_window=volume_zscore_window, ratio_window=ratio_window,
    )
    market = market_return(daily, weight_window=market_weight_window).reindex(daily["ts"]).to_numpy()

    columns: dict[str, np.ndarray] = {}
    for positions in daily.groupby("symbol", sort=False).indices.values():
        block = _symbol_features(_symbol_bars(daily, positions), market[positions], windows)
        for name, values in block.items():
            columns.setdefault(name, np.full(len(daily), np.nan))[positions] = values

    frame = pd.DataFrame(columns, index=daily.index)
    fear_greed_columns = fear_greed_features(
        fear_greed, daily["ts"], fear_greed_lag_days, fear_greed_change_days, fear_greed_max_stale_days
    )
    for name, values in fear_greed_columns.items():
        frame[name] = values.to_numpy(dtype="float64")
    for name, values in _calendar_features(daily["ts"]).items():
        frame[name] = values
    return frame


# --- input checks and array helpers ----------------------------------------------------------------


def _check_daily(daily: pd.DataFrame) -> None:
    """Windows count bars, so each symbol must be a run of consecutive days in time order."""
    missing = [column for column in REQUIRED_COLUMNS if column not in daily.columns]
    if missing:
        raise ValueError(f"daily bars lack columns {missing}")
    step = daily.groupby("symbol", sort=False)["ts"].diff()
    bad = step.notna() & (step != DAY)
    if bad.any():
        row = daily.loc[bad.idxmax()]
        raise ValueError(
            f"daily bars of {row['symbol']} are not consecutive days in time order at {row['ts']} "
            f"(step {step[bad.idxmax()]}); apply the gap policy and sort by symbol, ts first"
        )


def _symbol_bars(daily: pd.DataFrame, positions: np.ndarray) -> _Bars:
    rows = daily.iloc[positions]
    close = rows["close"].to_numpy(dtype="float64")
    return _Bars(
        open=rows["open"].to_numpy(dtype="float64"),
        high=rows["high"].to_numpy(dtype="float64"),
        low=rows["low"].to_numpy(dtype="float64"),
        close=close,
        volume=rows["volume"].to_numpy(dtype="float64"),
        log_ret=np.log(close / _lag(close, 1)),
    )


def _lag(values: np.ndarray, periods: int) -> np.ndarray:
    """values[t - periods] at t; NaN for the first `periods` rows."""
    out = np.full(len(values), np.nan)
    if periods < len(values):
        out[periods:] = values[: len(values) - periods]
    return out


def _trailing(values: np.ndarray, window: int) -> np.ndarray:
    """(len, window) view of the trailing windows ending at each row; rows before a full window hold NaN.

    Every statistic is then computed from its own window only, so a row can never see a later value and
    NaN propagates (an incomplete window gives NaN).
    """
    padded = np.concatenate([np.full(window - 1, np.nan), values])
    return sliding_window_view(padded, window)


def _div(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is zero (never inf)."""
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, float), np.asarray(denominator, float))
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _rolling_sum(values: np.ndarray, window: int) -> np.ndarray:
    return _trailing(values, window).sum(axis=1)


def _rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    return _trailing(values, window).mean(axis=1)


def _rolling_std(values: np.ndarray, window: int) -> np.ndarray:
    return _trailing(values, window).std(axis=1, ddof=1)


def _pct_label(alpha: float) -> str:
    return f"{alpha * 100:g}".replace(".", "p") + "pct"


# --- feature groups --------------------------------------------------------------------------------


def _symbol_features(bars: _Bars, market: np.ndarray, w: _Windows) -> dict[str, np.ndarray]:
    return (
        _returns_and_risk(bars, w)
        | _momentum_and_oscillators(bars, w)
        | _volume_and_flow(bars, w)
        | _risk_ratios(bars, market, w)
    )


def _returns_and_risk(bars: _Bars, w: _Windows) -> dict[str, np.ndarray]:
    """Trailing log returns over several horizons, realised volatility and the historical tail.

    Log returns are additive over time and symmetric, the natural unit for a model that compares coins.
    Volatility is the sample std of daily log returns. VaR is the `tail_alpha` quantile of the daily log
    returns in the window (linear interpolation, a negative number in a loss), CVaR the mean of the
    returns at or below it.
    """
    out: dict[str, np.ndarray] = {}
    for window in w.return_windows:
        out[f"ret_{window}d"] = np.log(_div(bars.close, _lag(bars.close, window)))
    for window in w.volatility_windows:
        out[f"volatility_{window}d"] = _rolling_std(bars.log_ret, window)

    returns = _trailing(bars.log_ret, w.tail_window)
    complete = ~np.isnan(returns).any(axis=1)
    var = np.full(len(returns), np.nan)
    cvar = np.full(len(returns), np.nan)
    if complete.any():
        full = returns[complete]
        var[complete] = np.quantile(full, w.tail_alpha, axis=1)
        tail = full <= var[complete][:, None]
        cvar[complete] = np.where(tail, full, 0.0).sum(axis=1) / tail.sum(axis=1)
    label = _pct_label(w.tail_alpha)
    out[f"var_{label}_{w.tail_window}d"] = var
    out[f"cvar_{label}_{w.tail_window}d"] = cvar
    return out


def _momentum_and_oscillators(bars: _Bars, w: _Windows) -> dict[str, np.ndarray]:
    """Classic momentum and oscillator readings, all from TA-Lib on one symbol's series.

    Bounded oscillators (RSI, CMO, Williams %R, stochastic %K, CCI, ADX, Ultimate, TRIX in percent) are
    scale-free as TA-Lib returns them; the price-unit ones (momentum, MACD histogram, awesome oscillator)
    are divided by the close. CMO equals 2·RSI - 100 at equal periods, so it runs on a shorter period.
    ROC is left out: at the momentum period it is an exact function of `mom_*_rel`
    (ROC = 100·(1 / (1 - mom_rel) - 1)). `macd_cross` is +1 on the day the MACD line crosses above its
    signal, -1 when it crosses below, 0 otherwise.
    """
    high, low, close = bars.high, bars.low, bars.close
    fast, slow, signal = w.macd_periods
    _, _, hist = talib.MACD(close, fastperiod=fast, slowperiod=slow, signalperiod=signal)
    stoch_k, _ = talib.STOCH(high, low, close, fastk_period=w.stoch_period, slowk_period=w.stoch_smooth,
                             slowk_matype=0, slowd_period=w.stoch_smooth, slowd_matype=0)
    median = talib.MEDPRICE(high, low)
    ao_short, ao_long = w.awesome_periods
    awesome = talib.SMA(median, timeperiod=ao_short) - talib.SMA(median, timeperiod=ao_long)
    short, middle, long = w.ultosc_periods
    return {
        f"rsi_{w.rsi_period}": talib.RSI(close, timeperiod=w.rsi_period),
        f"cmo_{w.cmo_period}": talib.CMO(close, timeperiod=w.cmo_period),
        f"willr_{w.willr_period}": talib.WILLR(high, low, close, timeperiod=w.willr_period),
        f"mom_{w.mom_period}_rel": _div(talib.MOM(close, timeperiod=w.mom_period), close),
        f"stoch_k_{w.stoch_period}": stoch_k,
        "macd_hist_rel": _div(hist, close),
        "macd_cross": _crossover(hist),
        f"cci_{w.cci_period}": talib.CCI(high, low, close, timeperiod=w.cci_period),
        f"adx_{w.adx_period}": talib.ADX(high, low, close, timeperiod=w.adx_period),
        f"ultosc_{short}_{middle}_{long}": talib.ULTOSC(high, low, close, timeperiod1=short,
                                                        timeperiod2=middle, timeperiod3=long),
        "awesome_osc_rel": _div(awesome, close),
        f"trix_{w.trix_period}": talib.TRIX(close, timeperiod=w.trix_period),
    }


def _crossover(hist: np.ndarray) -> np.ndarray:
    """+1 where hist turns positive, -1 where it turns negative, 0 otherwise; NaN without a previous value."""
    previous = _lag(hist, 1)
    out = np.where((previous <= 0) & (hist > 0), 1.0, np.where((previous >= 0) & (hist < 0), -1.0, 0.0))
    return np.where(np.isnan(previous) | np.isnan(hist), np.nan, out)


def _volume_and_flow(bars: _Bars, w: _Windows) -> dict[str, np.ndarray]:
    """Who is pushing the price: volume flows and trend-following moving-average spreads.

    OBV and the accumulation/distribution line (TA-Lib) are cumulative volume levels, meaningless across
    coins; only their change over a window divided by the volume traded in that window is used
    (`obv_flow` in [-1, 1]; Chaikin money flow = (AD_t - AD_{t-n}) / sum(volume, n)). MFI is bounded.
    Moving averages enter as ratios (short / long - 1). The volume z-score compares today's volume with
    the trailing window that includes today.
    """
    high, low, close, volume = bars.high, bars.low, bars.close, bars.volume
    obv = talib.OBV(close, volume)
    ad = talib.AD(high, low, close, volume)
    out = {
        f"obv_flow_{w.obv_window}d": _div(obv - _lag(obv, w.obv_window), _rolling_sum(volume, w.obv_window)),
    }
    for average in (talib.SMA, talib.EMA):
        name = average.__name__.lower()
        for short, long in w.ma_pairs:
            ratio = _div(average(close, timeperiod=short), average(close, timeperiod=long)) - 1.0
            out[f"{name}{short}_{name}{long}"] = ratio
    out[f"cmf_{w.cmf_window}"] = _div(ad - _lag(ad, w.cmf_window), _rolling_sum(volume, w.cmf_window))
    out[f"mfi_{w.mfi_period}"] = talib.MFI(high, low, close, volume, timeperiod=w.mfi_period)
    window = w.volume_zscore_window
    out[f"volume_zscore_{window}d"] = _div(volume - _rolling_mean(volume, window),
                                           _rolling_std(volume, window))
    return out


def _risk_ratios(bars: _Bars, market: np.ndarray, w: _Windows) -> dict[str, np.ndarray]:
    """Performance and risk ratios of the coin's daily log returns over a trailing window.

    Daily, not annualised, risk-free rate 0 (a constant factor would change nothing for the trees).
    Against the market log return m: beta = cov(r, m) / var(m), Jensen's alpha = mean(r) - beta·mean(m),
    Treynor = mean(r) / beta, information ratio = mean(r - m) / std(r - m). On the coin alone: Sharpe,
    Sortino (downside deviation = sqrt(mean(min(r, 0)^2))), win rate, win/loss ratio (mean gain / mean
    loss, 0 without gains), gain-to-pain (sum(r) / sum of losses) and the pain index (mean over the window
    of the drawdown 1 - close / trailing max close, the max itself over the same window length). Ratios
    with a zero denominator (no losses, a flat market) are NaN.
    """
    n = w.ratio_window
    returns = _trailing(bars.log_ret, n)
    market_window = _trailing(market, n)
    own = ~np.isnan(returns).any(axis=1)
    both = own & ~np.isnan(market_window).any(axis=1)

    mean_r = returns.mean(axis=1)
    mean_m = market_window.mean(axis=1)
    dev_r = returns - mean_r[:, None]
    dev_m = market_window - mean_m[:, None]
    beta = _div((dev_r * dev_m).sum(axis=1), (dev_m**2).sum(axis=1))
    active = returns - market_window

    gains = np.where(returns > 0, returns, 0.0)
    losses = np.where(returns < 0, -returns, 0.0)
    n_gains = (returns > 0).sum(axis=1)
    n_losses = (returns < 0).sum(axis=1)
    mean_gain = _div(gains.sum(axis=1), n_gains)
    mean_gain = np.where(n_gains == 0, 0.0, mean_gain)
    mean_loss = _div(losses.sum(axis=1), n_losses)
    drawdown = 1.0 - _div(bars.close, _trailing(bars.close, n).max(axis=1))

    def coin_only(values: np.ndarray) -> np.ndarray:
        return np.where(own, values, np.nan)

    def with_market(values: np.ndarray) -> np.ndarray:
        return np.where(both, values, np.nan)

    return {
        f"alpha_{n}d": with_market(mean_r - beta * mean_m),
        f"beta_{n}d": with_market(beta),
        f"sharpe_{n}d": coin_only(_div(mean_r, returns.std(axis=1, ddof=1))),
        f"sortino_{n}d": coin_only(_div(mean_r, np.sqrt((losses**2).mean(axis=1)))),
        f"treynor_{n}d": with_market(_div(mean_r, beta)),
        f"information_ratio_{n}d": with_market(_div(active.mean(axis=1), active.std(axis=1, ddof=1))),
        f"win_rate_{n}d": coin_only(n_gains / n),
        f"win_loss_ratio_{n}d": coin_only(_div(mean_gain, mean_loss)),
        f"gain_to_pain_{n}d": coin_only(_div(returns.sum(axis=1), losses.sum(axis=1))),
        f"pain_index_{n}d": _rolling_mean(drawdown, n),
    }


def _calendar_features(days: pd.Series) -> dict[str, np.ndarray]:
    """Day of week on the unit circle, so Sunday sits next to Monday. No day of year: with a few years
    of history it would index the date, letting the trees key on when a row is rather than what it shows."""
    week_angle = 2 * np.pi * days.dt.day_of_week.to_numpy(dtype="float64") / 7.0
    return {"dow_sin": np.sin(week_angle), "dow_cos": np.cos(week_angle)}
