"""The "Trailing J" backtest of SPEC §7: daily signals, hourly exits, slot-limited book.

Rules (every number is a `BacktestConfig` field):

- Entry: at the OPEN of the first real hourly bar whose open time is >= the signal's decision time +
  `fill_delay_hours` (the decision is known at day d's close = d + 1 day 00:00; a daily run first reaches
  the 01:00 bar, the default; 0 fills at the 00:00 bar's open, with zero latency).
  Gap-filled bars (`is_filled`, flat copies of the previous close) are skipped: no trade happened at
  that price. No such bar (the data ends): no trade. A symbol absent from `hourly` is an error.
- Levels (`exit_scale: fixed`; `volatility` sets each trade's own, symmetric ones: `exit_levels`),
  relative to the entry bar's open P: take profit P·(1 ± take_profit), stop loss P·(1 ∓ stop_loss),
  trailing stop once the best price reaches P·(1 ± activation): long stop = peak high·(1 - trail), short
  stop = trough low·(1 + trail). Upper signs for longs, lower for shorts.
- Worst case inside a bar (the order of high and low within an hour is unknown):
  * the trailing peak is the best price of EARLIER bars of the trade (and P), never the current bar's,
    so a bar cannot both raise the stop and hit it at the raised level;
  * when a bar touches a stop (stop loss or trailing) and the take profit, the stop is taken;
  * a stop fills at the level, or at the bar's open if the bar opens through it (gap): the worse price;
  * a take profit fills at the level even when the bar opens beyond it (the gap is never credited).
  The active stop is the tighter of stop loss and trailing stop; it is reported as `trailing_stop` when
  the trailing level is the one that binds.
- Expiry: a trade not exited after `max_hold_hours` bars (the entry bar included) closes at the CLOSE of
  its last bar, so exit_time = entry_time + max_hold_hours. A trade still open when its symbol's data
  ends closes the same way at the last bar (exit_type "expiry").
- exit_time is the close of the exit bar (bar open + 1 h): the first moment the exit is known for sure.
- Costs on both sides: slippage worsens each fill (buy at price·(1 + slippage), sell at price·(1 - slippage));
  the fee is fee_rate × the fill notional of each side. Financing (`backtest.costs`, as the ranked book
  pays it): a short's borrow, or each side's funding, on the notional from entry to exit (`financing`, money
  paid; open trades are marked net of what they have accrued). entry_price / exit_price are the bar or
  level prices BEFORE slippage; pnl and return_pct are after all costs; fees holds both sides' fees.
- Sizing: at each decision time t, equity_t = capital + realised P&L of trades exited by t (open trades
  are not marked for sizing). One slot = equity_t × deploy_rate / (max_long + max_short); a trade's
  notional (cash at the entry fill) = slot × its regime multiplier, and the sum of open notionals never
  exceeds equity_t × deploy_rate (the candidate that would cross it is cut to the remaining budget; the
  ones after it get nothing). A multiplier of 0 blocks the entry and takes no slot.
- Admission (`admission`): independent (each side on its own) or neutral (per decision time, as many
  longs as shorts: the n strongest of each side, n = the smaller side's count).
- Limits: at most max_long open longs and max_short open shorts, and at most one open position per
  (symbol, side) (a long and a short of one symbol may coexist). Candidates of one decision time are
  taken by |score| (highest first; ties and missing scores by symbol); a position frees its slot at
  its exit_time, for decisions at or after it.

Only the admission walks in time (a loop over decision times); every trade's exit is computed before,
vectorised over a (candidates, max_hold_hours) matrix of bar rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from backtest.config import BacktestConfig
from backtest.costs import funding_between, pro_rata
from backtest.panel import DailyPanel, daily_panel
from backtest.performance import drawdown_path
from backtest.regime import RegimeConfig, size_multiplier
from backtest.report import BacktestResult, trailing_daily

HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS
EXIT_TYPES: tuple[str, ...] = ("take_profit", "stop_loss", "trailing_stop", "expiry")
TRADE_COLUMNS: tuple[str, ...] = (
    "symbol", "side", "decision_time", "entry_time", "entry_price", "exit_time", "exit_price", "exit_type",
    "notional", "quantity", "fees", "financing", "pnl", "return_pct", "regime", "size_multiplier",
)
_CHUNK = 16_384  # candidates per exit matrix: bounds memory at 16k × max_hold_hours × a few float64 arrays


@dataclass(frozen=True)
class _Bars:
    """The hourly frame as flat arrays (rows in (symbol, ts) order) and each symbol's block of rows."""

    ts: np.ndarray  # (rows,) int64 ns, bar open
    open: np.ndarray  # (rows,) float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    blocks: pd.DataFrame  # index symbol; columns start, end: the symbol's rows are [start, end)


def run_backtest(
    signals: pd.DataFrame,
    hourly: pd.DataFrame,
    config: BacktestConfig | None = None,
    regime_config: RegimeConfig | None = None,
    panel: DailyPanel | None = None,
) -> BacktestResult:
    """Trade `signals` on `hourly` bars under the rules of the module docstring.

    signals: symbol, decision_time (tz-aware), direction (+1 / -1 / 0), optional score and regime; at most
    one row per (symbol, decision_time). Without a `regime` column every multiplier is 1 (no gate).
    hourly: symbol, ts (tz-aware bar open), open, high, low, close, optional is_filled; one block per
    symbol, hour-contiguous. `panel`: the bars' daily panel (`backtest.panel`), when the caller has it.
    """
    config = BacktestConfig() if config is None else config
    regime_config = RegimeConfig() if regime_config is None else regime_config
    bars = _bars(hourly)
    candidates = _candidates(signals, hourly, bars, regime_config, config.fill_delay_hours)
    if config.admission == "neutral":
        candidates = _balanced(candidates)
    panel = daily_panel(hourly) if panel is None else panel
    days = pd.to_datetime(candidates["decision_ns"], utc=True) - pd.Timedelta(days=1)
    candidates = candidates.assign(**exit_levels(candidates["symbol"], days, candidates["side"], config, panel))
    candidates = candidates.assign(**_exits(candidates, bars, config))
    candidates["notional"] = _admit(candidates, config)
    taken = candidates[candidates["notional"] > 0].reset_index(drop=True)
    decisions = _utc_ns(signals["decision_time"], "signals.decision_time")
    equity = _equity(taken, bars, (decisions.min(), decisions.max()), config)
    trades = _trades(taken, bars, config)
    return BacktestResult(config=config, regime=regime_config, trades=trades, equity=equity,
                          daily=trailing_daily(trades, equity, panel.market))


def _utc_ns(values: pd.Series, name: str) -> np.ndarray:
    """Tz-aware timestamps as int64 ns since the epoch (UTC); naive times are refused, not guessed."""
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        raise ValueError(f"{name} must be tz-aware (UTC), got dtype {values.dtype}")
    return pd.DatetimeIndex(values).tz_convert("UTC").as_unit("ns").asi8


def _bars(hourly: pd.DataFrame) -> _Bars:
    """Check the layout the index arithmetic relies on (one block per symbol, no missing hour)."""
    missing = [c for c in ("symbol", "ts", "open", "high", "low", "close") if c not in hourly.columns]
    if missing:
        raise ValueError(f"hourly is missing column(s) {missing}")
    ts = _utc_ns(hourly["ts"], "hourly.ts")
    codes, names = pd.factorize(hourly["symbol"])
    same = codes[1:] == codes[:-1]  # (rows - 1,) row i + 1 continues row i's symbol
    if (~same).sum() != len(names) - 1:
        raise ValueError("hourly must hold one contiguous block per symbol (sort by symbol, ts)")
    broken = np.flatnonzero(same & (np.diff(ts) != HOUR_NS))
    if broken.size:
        row = broken[0] + 1
        raise ValueError(
            f"hourly bars of {names[codes[row]]} are not hour-contiguous at {hourly['ts'].iloc[row]} "
            "(apply the gap policy first)"
        )
    ends = np.append(np.flatnonzero(~same) + 1, len(codes))  # (symbols,) in block order
    starts = np.append(0, ends[:-1])
    return _Bars(
        ts=ts,
        open=hourly["open"].to_numpy(dtype="float64"),
        high=hourly["high"].to_numpy(dtype="float64"),
        low=hourly["low"].to_numpy(dtype="float64"),
        close=hourly["close"].to_numpy(dtype="float64"),
        blocks=pd.DataFrame({"start": starts, "end": ends}, index=pd.Index(names, dtype="str")),
    )


def _candidates(
    signals: pd.DataFrame, hourly: pd.DataFrame, bars: _Bars, regime_config: RegimeConfig, fill_delay_hours: int
) -> pd.DataFrame:
    """Signals that can trade: direction != 0, multiplier > 0 and an entry bar; in admission order."""
    missing = [c for c in ("symbol", "decision_time", "direction") if c not in signals.columns]
    if missing:
        raise ValueError(f"signals is missing column(s) {missing}")
    if signals.empty:
        raise ValueError("signals holds no rows: the backtest period is undefined")
    unknown = sorted(set(signals["symbol"]) - set(bars.blocks.index))
    if unknown:
        raise ValueError(f"signals name symbol(s) without hourly bars: {unknown}")
    duplicated = signals.duplicated(["symbol", "decision_time"])
    if duplicated.any():
        row = signals[duplicated].iloc[0]
        raise ValueError(f"two signals for {row['symbol']} at {row['decision_time']}")
    direction = np.sign(signals["direction"].to_numpy(dtype="float64"))
    gated = "regime" in signals.columns
    frame = pd.DataFrame(
        {
            "symbol": signals["symbol"].astype("str").to_numpy(),
            "decision_ns": _utc_ns(signals["decision_time"], "signals.decision_time"),
            "side": direction,
            "score": signals["score"].to_numpy(dtype="float64") if "score" in signals.columns else 0.0,
            "regime": signals["regime"].astype("str").to_numpy() if gated else None,
            "size_multiplier": (
                size_multiplier(signals["regime"], signals["direction"], regime_config) if gated else 1.0
            ),
        }
    )
    frame["regime"] = frame["regime"].astype("str")
    frame = frame[(frame["side"] != 0) & (frame["size_multiplier"] > 0)]
    frame = frame.assign(entry_row=_entry_rows(frame, hourly, bars, fill_delay_hours)).dropna(subset=["entry_row"])
    frame["entry_row"] = frame["entry_row"].astype("int64")
    frame["priority"] = -frame["score"].abs().fillna(-np.inf)  # NaN score: last
    return frame.sort_values(["decision_ns", "priority", "symbol"], kind="stable", ignore_index=True)


def _balanced(candidates: pd.DataFrame) -> pd.DataFrame:
    """Per decision time, the first n longs and n shorts in priority order, n = the smaller side's count."""
    is_long = candidates["side"] > 0
    by_time = candidates["decision_ns"]
    longs = is_long.groupby(by_time).transform("sum")
    shorts = (~is_long).groupby(by_time).transform("sum")
    rank = candidates.groupby([by_time, is_long], sort=False).cumcount()
    return candidates[rank < np.minimum(longs, shorts)].reset_index(drop=True)


def _entry_rows(candidates: pd.DataFrame, hourly: pd.DataFrame, bars: _Bars, fill_delay_hours: int) -> pd.Series:
    """Row of the first real bar with open time >= the decision time + the fill delay, per candidate (NaN: none)."""
    real = np.ones(len(bars.ts), dtype=bool)
    if "is_filled" in hourly.columns:
        real = ~hourly["is_filled"].to_numpy(dtype=bool)
    rows = np.flatnonzero(real)
    table = pd.DataFrame({"symbol": hourly["symbol"].astype("str").to_numpy()[rows], "bar_ns": bars.ts[rows],
                          "row": rows.astype("float64")})
    left = candidates[["symbol", "decision_ns"]].reset_index()
    left["fill_ns"] = left["decision_ns"] + fill_delay_hours * HOUR_NS
    left = left.sort_values("fill_ns", kind="stable")
    joined = pd.merge_asof(
        left, table.sort_values("bar_ns", kind="stable"), left_on="fill_ns", right_on="bar_ns",
        by="symbol", direction="forward", allow_exact_matches=True,
    )
    return pd.Series(joined["row"].to_numpy(), index=joined["index"].to_numpy()).reindex(candidates.index)


def exit_levels(symbols: pd.Series, days: pd.Series, sides: pd.Series, config: BacktestConfig,
                panel: DailyPanel) -> dict[str, np.ndarray]:
    """Per trade, its take_profit, stop_loss, trail_activation and trail as fractions of the entry price.

    fixed: the config's (long and short apart); volatility: symmetric, from the coin's daily volatility of
    its decision day `days` (the panel's, known at that day's close) scaled to the holding period.
    """
    is_long = sides.to_numpy(dtype="float64") > 0
    levels = {"take_profit": np.full(len(is_long), config.take_profit),
              "stop_loss": np.full(len(is_long), config.stop_loss),
              "trail_activation": np.where(is_long, config.trail_activation_long, config.trail_activation_short),
              "trail": np.where(is_long, config.trail_long, config.trail_short)}
    if config.exit_scale == "fixed":
        return levels
    vol = panel.volatility.stack().rename("vol")
    keys = pd.MultiIndex.from_arrays([pd.DatetimeIndex(days).as_unit(vol.index.levels[0].unit), symbols.to_numpy()])
    sigma = vol.reindex(keys).to_numpy() * np.sqrt(config.max_hold_hours / 24)
    level = np.clip(config.exit_sigmas * sigma, 0.0, 0.95)  # a level must stay a price move below 100 %
    known = np.isfinite(level) & (level > 0)
    for name, scaled in (("take_profit", level), ("stop_loss", level), ("trail_activation", level / 2),
                         ("trail", level / 2)):
        levels[name] = np.where(known, scaled, levels[name])
    return levels


def _exits(candidates: pd.DataFrame, bars: _Bars, config: BacktestConfig) -> dict[str, np.ndarray]:
    """exit_row, exit_price, exit_type and return (per unit notional, after costs) per candidate."""
    entry_row = candidates["entry_row"].to_numpy()
    end_row = candidates["symbol"].map(bars.blocks["end"]).to_numpy(dtype="int64")
    side = candidates["side"].to_numpy()
    levels = candidates[["take_profit", "stop_loss", "trail_activation", "trail"]].to_numpy()  # (n, 4)
    parts = [  # at least one (maybe empty) chunk, so the concatenations below have an input
        _exit_chunk(entry_row[i:i + _CHUNK], end_row[i:i + _CHUNK], side[i:i + _CHUNK], levels[i:i + _CHUNK], bars,
                    config.max_hold_hours)
        for i in range(0, max(len(entry_row), 1), _CHUNK)
    ]
    exit_row, exit_price, exit_code = (np.concatenate([part[j] for part in parts]) for j in range(3))
    exit_ns = bars.ts[exit_row] + HOUR_NS  # the close of the exit bar
    financing = financing_rate(candidates["symbol"].to_numpy(), side, bars.ts[entry_row], exit_ns, config)
    return {
        "exit_row": exit_row,
        "exit_ns": exit_ns,
        "exit_price": exit_price,
        "exit_type": np.asarray(EXIT_TYPES)[exit_code],
        "financing_rate": financing,
        "unit_return": trade_return(bars.open[entry_row], exit_price, side, config) - financing,
    }


def financing_rate(symbols: np.ndarray, side: np.ndarray, start_ns: np.ndarray, end_ns: np.ndarray,
                   config: BacktestConfig) -> np.ndarray:
    """Per trade, the financing paid from start to end (int ns) as a fraction of its notional (`backtest.costs`):
    a short's borrow, or the funding each side pays (a long pays the rate, a short receives it)."""
    if config.financing == "funding":
        return side * funding_between(config.funding_rate, config.funding_path, symbols, start_ns, end_ns,
                                      config.annualisation_days)
    hours = (end_ns - start_ns) / HOUR_NS
    return np.where(side < 0, pro_rata(config.borrow_rate, hours, config.annualisation_days), 0.0)


def _exit_chunk(
    entry_row: np.ndarray, end_row: np.ndarray, side: np.ndarray, levels: np.ndarray, bars: _Bars, max_hold: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exits of one chunk of candidates: (exit row, exit price, index into EXIT_TYPES).

    Longs and shorts share one computation in signed price space x = side·price, where a short's high
    is -low: every short rule is then the long rule (take profit above, stops below, peak = max).
    """
    hold = np.arange(max_hold)  # (H,)
    rows = entry_row[:, None] + hold  # (n, H) bar rows of the holding window
    valid = rows < end_row[:, None]  # False past the symbol's last bar
    rows = np.minimum(rows, end_row[:, None] - 1)
    s = side[:, None]  # (n, 1) ±1.0
    is_long = s > 0
    x_open = s * bars.open[rows]  # (n, H)
    x_high = np.where(is_long, bars.high[rows], -bars.low[rows])
    x_low = np.where(is_long, bars.low[rows], -bars.high[rows])
    x_entry = x_open[:, :1]  # (n, 1) side·P
    take_profit = x_entry * (1 + s * levels[:, :1])  # (n, 1) levels: take profit, stop, activation, trail
    stop_loss = x_entry * (1 - s * levels[:, 1:2])
    activation, trail = levels[:, 2:3], levels[:, 3:4]
    # Peak of the bars BEFORE each bar (the entry price for the entry bar).
    peak = np.maximum.accumulate(np.concatenate([x_entry, x_high[:, :-1]], axis=1), axis=1)  # (n, H)
    trail_stop = np.where(peak >= x_entry * (1 + s * activation), peak * (1 - s * trail), -np.inf)
    stop = np.maximum(stop_loss, trail_stop)
    stop_hit = (x_low <= stop) & valid
    hit = stop_hit | ((x_high >= take_profit) & valid)
    exited = hit.any(axis=1)
    last = valid.sum(axis=1) - 1  # (n,) last bar of the window (expiry)
    k = np.where(exited, hit.argmax(axis=1), last)
    n = np.arange(len(k))
    by_stop = stop_hit[n, k]
    x_exit = np.select(
        [~exited, by_stop],
        [s[:, 0] * bars.close[rows[n, k]], np.minimum(x_open[n, k], stop[n, k])],
        default=take_profit[:, 0],
    )
    code = np.select(
        [~exited, by_stop & (trail_stop[n, k] > stop_loss[:, 0]), by_stop],
        [EXIT_TYPES.index("expiry"), EXIT_TYPES.index("trailing_stop"), EXIT_TYPES.index("stop_loss")],
        default=EXIT_TYPES.index("take_profit"),
    )
    return rows[n, k], s[:, 0] * x_exit, code


def trade_return(
    entry_price: np.ndarray, exit_price: np.ndarray, side: np.ndarray, config: BacktestConfig
) -> np.ndarray:
    """P&L per unit of notional after slippage and both fees: notional buys quantity notional / entry fill.

    r = side·(exit_fill / entry_fill - 1) - fee·(1 + exit_fill / entry_fill); fills are the prices moved
    against the trader by `slippage`.
    """
    entry_fill = entry_price * (1 + side * config.slippage)
    exit_fill = exit_price * (1 - side * config.slippage)
    ratio = exit_fill / entry_fill
    return side * (ratio - 1) - config.fee_rate * (1 + ratio)


def _admit(candidates: pd.DataFrame, config: BacktestConfig) -> np.ndarray:
    """Notional per candidate (0 = not taken), walking the decision times in order. Shape (n,)."""
    decision = candidates["decision_ns"].to_numpy()
    key = candidates["symbol"].factorize()[0] * 2 + (candidates["side"].to_numpy() > 0)  # (symbol, side)
    is_long = candidates["side"].to_numpy() > 0
    multiplier = candidates["size_multiplier"].to_numpy(dtype="float64")
    unit_return = candidates["unit_return"].to_numpy()
    exit_ns = candidates["exit_ns"].to_numpy()
    notional = np.zeros(len(candidates))
    bounds = np.append(np.flatnonzero(np.diff(decision, prepend=-1) != 0), len(decision))  # one block per time
    slots = config.max_long + config.max_short
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        t = decision[a]
        taken = notional[:a] > 0
        closed = taken & (exit_ns[:a] <= t)
        held = taken & ~closed
        equity = config.capital + (notional[:a][closed] * unit_return[:a][closed]).sum()
        budget = equity * config.deploy_rate - notional[:a][held].sum()
        free = ~np.isin(key[a:b], key[:a][held])
        longs, shorts = free & is_long[a:b], free & ~is_long[a:b]
        pick = (longs & (np.cumsum(longs) <= config.max_long - (held & is_long[:a]).sum())) | (
            shorts & (np.cumsum(shorts) <= config.max_short - (held & ~is_long[:a]).sum())
        )
        want = np.where(pick, max(equity, 0.0) * config.deploy_rate / slots * multiplier[a:b], 0.0)
        notional[a:b] = np.clip(budget - (np.cumsum(want) - want), 0.0, want)
    return notional


def _trades(taken: pd.DataFrame, bars: _Bars, config: BacktestConfig) -> pd.DataFrame:
    """The trade list with the public columns (`TRADE_COLUMNS`), in admission order."""
    side = taken["side"].to_numpy()
    notional = taken["notional"].to_numpy()
    entry_price = bars.open[taken["entry_row"].to_numpy()]
    exit_price = taken["exit_price"].to_numpy()
    quantity = notional / (entry_price * (1 + side * config.slippage))
    exit_value = quantity * exit_price * (1 - side * config.slippage)
    utc = {"unit": "ns", "utc": True}
    return pd.DataFrame(
        {
            "symbol": taken["symbol"].astype("str"),
            "side": pd.Series(np.where(side > 0, "long", "short"), dtype="str"),
            "decision_time": pd.to_datetime(taken["decision_ns"], **utc),
            "entry_time": pd.to_datetime(bars.ts[taken["entry_row"].to_numpy()], **utc),
            "entry_price": entry_price,
            "exit_time": pd.to_datetime(taken["exit_ns"], **utc),
            "exit_price": exit_price,
            "exit_type": taken["exit_type"].astype("str"),
            "notional": notional,
            "quantity": quantity,
            "fees": config.fee_rate * (notional + exit_value),
            "financing": notional * taken["financing_rate"].to_numpy(),
            "pnl": notional * taken["unit_return"].to_numpy(),
            "return_pct": 100.0 * taken["unit_return"].to_numpy(),
            "regime": taken["regime"].astype("str"),
            "size_multiplier": taken["size_multiplier"].to_numpy(dtype="float64"),
        },
        columns=list(TRADE_COLUMNS),
    )


def _equity(taken: pd.DataFrame, bars: _Bars, decisions: tuple[int, int], config: BacktestConfig) -> pd.DataFrame:
    """Daily marked-to-market equity and BTC buy & hold from the first decision to the last exit or decision.

    Row `date` = D is marked at D + 1 day 00:00 UTC (the close of D's 23:00 bar): capital + P&L of trades
    exited by then + open trades valued as if closed at that bar's close (slippage and exit fee
    included, and the financing accrued to the mark, so a trade's mark at its exit is its realised P&L). The
    first row is the day whose close
    is the first decision time (equity = capital). `decisions` = (first, last) decision time, int ns.
    """
    first = _day_of(np.asarray(decisions[0]))
    exit_ns = taken["exit_ns"].to_numpy(dtype="int64")
    last = max(_day_of(np.asarray(decisions[1])), _day_of(exit_ns).max(initial=first))
    dates = np.arange(first, last + DAY_NS, DAY_NS)  # (days,) int ns, UTC midnight
    pnl = taken["notional"].to_numpy() * taken["unit_return"].to_numpy()
    realised = np.zeros(len(dates))
    np.add.at(realised, (_day_of(exit_ns) - first) // DAY_NS, pnl)
    # Marks of open trades: the day boundaries strictly inside (entry, exit); at most H // 24 + 1 of them.
    entry_row = taken["entry_row"].to_numpy(dtype="int64")
    entry_ns = bars.ts[entry_row]
    marks = (entry_ns // DAY_NS)[:, None] * DAY_NS + DAY_NS * np.arange(1, config.max_hold_hours // 24 + 2)
    held = marks < exit_ns[:, None]  # (trades, marks)
    mark_row = np.where(held, entry_row[:, None] + (marks - entry_ns[:, None]) // HOUR_NS - 1, entry_row[:, None])
    side = taken["side"].to_numpy()[:, None]
    per_mark = marks.shape[1]
    accrued = financing_rate(np.repeat(taken["symbol"].to_numpy(), per_mark), np.repeat(side[:, 0], per_mark),
                             np.repeat(entry_ns, per_mark), marks.ravel(), config).reshape(marks.shape)
    value = taken["notional"].to_numpy()[:, None] * (trade_return(
        bars.open[entry_row][:, None], bars.close[mark_row], side, config
    ) - accrued)
    unrealised = np.zeros(len(dates))
    np.add.at(unrealised, (marks[held] - DAY_NS - first) // DAY_NS, value[held])
    equity = config.capital + np.cumsum(realised) + unrealised
    return pd.DataFrame(
        {
            "date": pd.to_datetime(dates, unit="ns", utc=True),
            "equity": equity,
            "drawdown": drawdown_path(equity, config.capital),
            "btc_equity": config.capital * _benchmark(bars, dates, config.benchmark_symbol),
        }
    )


def _day_of(ns: np.ndarray) -> np.ndarray:
    """The day D (int ns, UTC midnight) whose end-of-day mark D + 1 day is the first at or after `ns`."""
    return -(-ns // DAY_NS) * DAY_NS - DAY_NS


def _benchmark(bars: _Bars, dates: np.ndarray, symbol: str) -> np.ndarray:
    """Buy & hold growth factor of `symbol` at each date's mark: the last close at or before it over the
    close at the first mark. No costs. Shape (days,); all NaN when the data holds no such symbol
    (other coins: the backtest still stands, its comparison is undefined)."""
    if symbol not in bars.blocks.index:
        return np.full(len(dates), np.nan)
    start, end = bars.blocks.loc[symbol]
    bar_close = bars.ts[start:end] + HOUR_NS  # (bars,) when each close is known
    row = start + np.searchsorted(bar_close, dates + DAY_NS, side="right") - 1
    if row[0] < start:
        raise ValueError(f"benchmark {symbol} has no bar closed by {pd.Timestamp(dates[0] + DAY_NS, tz='UTC')}")
    price = bars.close[row]
    return price / price[0]
