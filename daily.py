"""Daily operation: the champion's signals for the day that just closed, as the backtest has them.

    python daily.py                                             # the shipped sample, after the main job
    python daily.py data.hourly_path=/data/new.parquet daily.append=true    # an append of new bars
    python daily.py data=full data.max_data_age_hours=2 daily.retrain=skip
    python daily.py daily.retrain=only                          # the scheduled retrain as a batch job

1. bars: the whole file, or an append, ending with a day's 23:00 bar (a partial day exits 2, nothing
   taken), merged into the dataset's bar history; every bar an
   earlier run used must be unchanged (else exit 5 naming symbol and time; `data.restate=true`
   takes the new values and rebuilds the store rows after them); stale data exits 2, and so does a
   symbol that traded in the last 24 hours without a bar at the latest hour;
2. features over the whole history (point in time: a day's features are the backtest's);
3. the champion of this dataset and task (none: exit 3); if it has no model for the latest day
   (a new fold's test window has begun), the scheduled retrain (`daily.retrain`, exit 4 if skipped);
   if it serves with anything the current code would make differently (the Trishula run's code, an
   extractor's, the backfill code of its store rows: their recorded source hashes against the code
   now), the same retrain rebuilds what is stale and the current code's challenger serves (exit 8
   naming the stale artifact if skipped, or if the challenger is not promoted);
4. backfill of the decision times the store lacks, for the extractors the champion serves with;
5. signals of the latest closed day through the walk-forward's own path (`stacking/serving.py`),
   with the regime and size multiplier, written to `<out>/<dataset>/signals/<date>.parquet`;
6. the orders of the configured strategy for the next bar (`orders/<date>.parquet`, printed):
   `backtest=ranked`: the ranked book's (backtest/live.py: the backtest's own code on every day served
   so far), the delta from the book held now to the target, with the target kept in `book/<date>.parquet`
   (a kept book that differs from what the served signals give stops the run, exit 6);
   `backtest=trailing_j`: a fresh Trailing J book's entries with their exit levels.
Re-running a day rewrites the same files with the same numbers (nothing is appended twice); a re-run
whose signals, orders or book differ (other settings, other data) is refused (exit 7), nothing written.

Exit codes: 0 served; 2 stale or incomplete data; 3 no champion; 4 no model for the day (retrain
skipped or not promoted); 5 a changed or late past bar; 6 the kept position book disagrees with the
signals; 7 the day was served already with other numbers; 8 the champion's lineage is stale (made by
code that changed since; retrain skipped or not promoted).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.table import Table

from backfill import run_backfill
from backtest import (
    BacktestConfig,
    RankedBookConfig,
    RegimeConfig,
    classify_regime,
    regime_for_decisions,
    strategy_name,
)
from backtest.live import BookMismatchError, LiveBook, check_kept_book, live_book, served_signals
from backtest.panel import daily_panel
from backtest.trailing_j import exit_levels
from cli import command, console
from features.build import FeatureFrames, build_feature_frames
from marketdata.load import read_bars
from splits.artifacts import folds_from_config
from stacking.frame import assemble_stack_frame, complete_rows, decision_rows
from stacking.lineage import StaleInput, replace_stale, stale_lineage, task_scope
from stacking.registry import PromotionDecision, Registry
from stacking.run import StackRun, run_stack
from stacking.serving import ServedRun, walkforward_signals
from store.extractors import list_extractors
from store.feature_store import FeatureStore, eligible_from
from store.files import write_parquet_atomic
from store.lineage import BarHistory, HistoryChangedError, checked_market_data

HOUR, DAY = pd.Timedelta(hours=1), pd.Timedelta(days=1)
EXIT_STALE, EXIT_NO_CHAMPION, EXIT_NO_MODEL, EXIT_HISTORY, EXIT_BOOK, EXIT_SERVED, EXIT_LINEAGE = 2, 3, 4, 5, 6, 7, 8
REBUILD = "`python daily.py daily.retrain=only` (or `python pipeline.py`)"
SIDE = {"BUY": "long", "SELL": "short"}


class DailyStop(Exception):
    """The daily run cannot serve; `code` is the process exit status."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class DailyResult:
    day: pd.Timestamp | None
    dataset: str
    run_id: str | None
    signals: pd.DataFrame | None
    orders: pd.DataFrame | None
    retrained: bool
    book: LiveBook | None = None  # the ranked book after the day (backtest=ranked)


def _append_target(cfg: DictConfig) -> str | None:
    """The dataset an append file extends (None: the file is the whole history)."""
    if not cfg.daily.append:
        return None
    if cfg.daily.dataset:
        return str(cfg.daily.dataset)
    known = BarHistory.datasets(cfg.store.root)
    if len(known) != 1:
        raise ValueError(f"daily.append=true: the store at {cfg.store.root} holds {len(known)} bar histories "
                         f"{known}; name the one to extend with daily.dataset=<id>")
    return known[0]


def _check_fresh(bars: pd.DataFrame, max_age_hours) -> None:
    if max_age_hours is None:
        return
    latest = bars["ts"].max()
    age = (pd.Timestamp.now(tz="UTC") - (latest + HOUR)) / HOUR
    if age > float(max_age_hours):
        stale = bars.groupby("symbol")["ts"].max().sort_values().index[0]
        raise DailyStop(EXIT_STALE, f"stale data: the latest bar closed {age:.1f} h ago ({latest + HOUR}, e.g. "
                                    f"{stale}), more than data.max_data_age_hours={max_age_hours}; no signal served")


def check_complete_day(bars: pd.DataFrame, source: str) -> None:
    """The bars end with a 23:00 bar: the day served is the one that closed. A file that ends inside a day
    would serve its partial day, or re-serve the day before with orders for a bar already hours past;
    refused before any bar enters the history."""
    latest = bars["ts"].max()
    if latest.hour != 23:
        day = latest.floor("D")
        raise DailyStop(EXIT_STALE, f"partial day: the latest bar in {source} is {latest}; {day.date()} closes with "
                                    f"its 23:00 bar (known at {day + DAY}); the day before was the last to close. "
                                    f"Run once the day has closed; no bar taken, no signal served")


def check_complete_hour(bars: pd.DataFrame) -> None:
    """Every symbol that traded in the last 24 hours has its bar of the latest hour. Each hour's market
    return and the extractors' cross-sectional inputs average the coins present at that hour: served
    without a late coin's bars, the other coins' inputs would differ from what the backfill computes
    once the bars are in, and the day would not be the backtest's."""
    latest = bars["ts"].max()
    last_bar = bars.groupby("symbol", sort=True)["ts"].max()
    late = last_bar[(last_bar < latest) & (last_bar > latest - DAY)].sort_values()
    if not late.empty:
        named = ", ".join(f"{symbol} (last bar {ts})" for symbol, ts in late.head(5).items())
        raise DailyStop(EXIT_STALE, f"incomplete data: {len(late)} symbol(s) that traded in the last 24 h have no "
                                    f"bar at {latest}: {named}{' ...' if len(late) > 5 else ''}; every hour's "
                                    f"market and cross-sectional inputs need all of them; no signal served "
                                    f"(daily.require_complete_hour=false serves without them)")


def _champion(cfg: DictConfig, dataset: str) -> tuple[Registry, ServedRun | None]:
    registry = Registry(cfg.stack.root, task_scope(cfg, dataset))
    champion = registry.champion()
    if champion is None or not registry.has_run(champion["run_id"]):
        return registry, None
    return registry, ServedRun.load(registry, champion["run_id"])


def retrain(cfg: DictConfig, frames: FeatureFrames, out: Path) -> StackRun:
    """The scheduled retrain: the main job's extractor, backfill and Trishula stages on the history, with the
    current code (content keys hold the source hashes: whatever old code made is made again)."""
    from pipeline import extractor_folds, train_stage  # the main job's stages, not a copy

    longest = max(frames.horizons)
    evaluated = folds_from_config(frames.daily, cfg.split, longest)
    all_folds = folds_from_config(frames.daily, {**OmegaConf.to_container(cfg.split), "first_test_date": None,
                                                 "last_test_date": None}, longest)
    in_use = train_stage(cfg, frames, extractor_folds(cfg, evaluated, all_folds), out)
    artifacts = [a for kind in in_use for a in in_use[kind]]
    run_backfill(cfg, frames, artifacts, artifacts, frames.dataset, out=console)
    return run_stack(cfg, frames, console, out, among={k: [a.version for a in v] for k, v in in_use.items()})


def stale_inputs(cfg: DictConfig, run_meta: dict, dataset: str) -> list[StaleInput]:
    """What a run serves with that the current code would make differently: the run, the extractors it was
    trained on and their store rows (`stacking.lineage.stale_lineage`)."""
    artifacts = {a.version: a.meta for a in list_extractors(Path(cfg.paths.artifacts_dir) / "extractors")}
    return stale_lineage(run_meta, artifacts, FeatureStore(cfg.store.root), dataset)


def _named(stale: list[StaleInput]) -> str:
    return str(stale[0]) + (f" (and {len(stale) - 1} more stale input(s))" if len(stale) > 1 else "")


def serving_champion(cfg: DictConfig, frames: FeatureFrames, dataset: str, day: pd.Timestamp) -> tuple[ServedRun, bool]:
    """The champion that serves `day`, and whether a retrain made it. The scheduled retrain runs when the
    champion has no model for the day (a new fold's test window has begun) or serves with anything the
    current code would make differently: signals from code that no longer exists are never served silently."""
    registry, run = _champion(cfg, dataset)
    if run is None:
        raise DailyStop(EXIT_NO_CHAMPION, f"no eligible champion for dataset {dataset} and this task (scope "
                                          f"{registry.scope}) under {cfg.stack.root}: run `python pipeline.py` "
                                          f"with the same data and config first")
    stale = stale_inputs(cfg, run.meta, dataset)
    if run.fold_for(day) is not None and not stale:
        return run, False
    if str(cfg.daily.retrain) == "skip":
        if run.fold_for(day) is None:
            raise DailyStop(EXIT_NO_MODEL, f"the champion {run.run_id} has no model for {day.date()} (its last test "
                                           f"window ends {run.folds[-1].test_end.date()}): a new fold's retrain is "
                                           f"due (daily.retrain=only, or python pipeline.py)")
        raise DailyStop(EXIT_LINEAGE, f"stale lineage: {_named(stale)}; the champion {run.run_id} serves with it, so "
                                      f"the current code would not make these signals. Rebuild what is stale with "
                                      f"{REBUILD}; nothing served")
    why = (f"{day.date()} is past the champion's folds" if run.fold_for(day) is None else
           f"the champion's lineage is stale: the {stale[0].source} code of {stale[0].artifact} changed")
    console.rule(f"scheduled retrain: {why}")
    stack = retrain(cfg, frames, Path(cfg.paths.output_dir))
    replace_stale_champion(cfg, registry, stack.decision, dataset)
    registry, run = _champion(cfg, dataset)
    if run.fold_for(day) is None:
        raise DailyStop(EXIT_NO_MODEL, f"after the retrain the champion {run.run_id} still has no model for "
                                       f"{day.date()}: the challenger was not promoted (see the promotion log)")
    stale = stale_inputs(cfg, run.meta, dataset)
    if stale:
        raise DailyStop(EXIT_LINEAGE, f"after the retrain the champion {run.run_id} still serves with stale "
                                      f"lineage: {_named(stale)}: the current code's challenger was not promoted "
                                      f"(see the promotion log in {registry.state_path}); nothing served")
    return run, True


def replace_stale_champion(cfg: DictConfig, registry: Registry, decision: PromotionDecision, dataset: str) -> None:
    """After a retrain whose challenger the rule kept out: the current code's challenger replaces a champion
    whose lineage is stale unless it is worse by more than the margin (`replace_stale`). run_stack judges
    what run.json records (the run's own code, the backfill code of its store rows); only the artifacts
    record their extractors' code, so an extractor-only change (train.py) is judged here."""
    if decision.promoted or decision.champion in (None, decision.challenger) or not registry.has_run(decision.champion):
        return
    if stale_inputs(cfg, registry.run_meta(decision.challenger), dataset):
        return
    replaced = replace_stale(decision, stale_inputs(cfg, registry.run_meta(decision.champion), dataset))
    if replaced.promoted:
        registry.record(replaced)


def serve_backfill(cfg: DictConfig, frames: FeatureFrames, run: ServedRun, first_day: pd.Timestamp) -> None:
    """Append what the store lacks for the extractors the champion serves with, from `first_day` on."""
    by_version = {a.version: a for a in list_extractors(Path(cfg.paths.artifacts_dir) / "extractors")}
    served = [by_version[v] for versions in run.versions.values() for v in versions if v in by_version]
    missing = sorted({v for versions in run.versions.values() for v in versions} - set(by_version))
    if missing:
        raise DailyStop(EXIT_NO_CHAMPION, f"the champion {run.run_id} serves with extractor versions {missing} that "
                                          f"are not under {cfg.paths.artifacts_dir}/extractors")
    # Only versions that can stand for a decision from `first_day` on: each serves until the next
    # of its kind becomes eligible.
    needed = []
    for kind in run.versions:
        mine = sorted((a for a in served if a.meta["kind"] == kind), key=lambda a: (eligible_from(a.meta), a.version))
        starts = [eligible_from(a.meta) for a in mine]
        needed += [a for i, a in enumerate(mine) if i + 1 == len(mine) or starts[i + 1] > first_day + DAY]
    run_backfill(cfg, frames, needed, served, frames.dataset, out=console)


def latest_signals(cfg: DictConfig, frames: FeatureFrames, run: ServedRun, day: pd.Timestamp) -> pd.DataFrame:
    """Day `day`'s signals: its rows and the z window before it, through the walk-forward's path."""
    rows = decision_rows(frames, cfg.labels.primary)
    rows = rows[(rows["date"] >= run.window_start(day)) & (rows["date"] <= day)].reset_index(drop=True)
    kinds = list(run.meta["stack"]["kinds"])
    frame = assemble_stack_frame(rows, FeatureStore(cfg.store.root), kinds, allow_mixed_versions=True,
                                 max_staleness_hours=cfg.store.max_staleness_hours, among=run.versions,
                                 dataset=frames.dataset)
    frame = frame[complete_rows(frame, kinds)].reset_index(drop=True)
    signals = walkforward_signals(frame, run, cfg.labels.primary)
    return signals[signals["date"] == day].reset_index(drop=True)


def with_regime(cfg: DictConfig, frames: FeatureFrames, signals: pd.DataFrame) -> pd.DataFrame:
    """The regime known at each decision and Trailing J's size multiplier of the signal's side (the ranked book,
    which has no gate, reports both for information, under the SPEC's regime settings)."""
    settings = cfg.backtest.get("regime")
    regime_cfg = RegimeConfig(**OmegaConf.to_container(settings, resolve=True)) if settings else RegimeConfig()
    inputs = frames.daily.groupby("ts")[list(frames.columns["regime"])].first()
    out = signals.copy()
    out["regime"] = regime_for_decisions(classify_regime(inputs, regime_cfg), out["decision_time"]).to_numpy()
    multipliers = regime_cfg.multipliers()
    long_m = out["regime"].map({regime: m[0] for regime, m in multipliers.items()})
    short_m = out["regime"].map({regime: m[1] for regime, m in multipliers.items()})
    out["size_multiplier"] = np.where(out["signal"] == "SELL", short_m, np.where(out["signal"] == "BUY", long_m, 0.0))
    return out


def next_bar_orders(cfg: DictConfig, signals: pd.DataFrame, grid: pd.DataFrame) -> pd.DataFrame:
    """Trailing J orders for the bar after the decision: side, notional, and the exit levels at the
    reference price (the day's close in `grid`, the bars up to it; the fill is the next bar's open, so
    levels move with it), each as the backtest sets it (`exit_levels`).

    Sized as the backtest sizes a fresh book: slot = capital x deploy_rate / (max_long + max_short),
    times the regime multiplier; at most max_long longs and max_short shorts, highest |z| first.
    """
    trading = BacktestConfig(**OmegaConf.to_container(cfg.backtest.trading, resolve=True))
    column = str(cfg.backtest.signal_column)
    fired = signals[signals[column].isin(list(SIDE)) & (signals["size_multiplier"] > 0)].copy()
    fired["side"] = fired[column].map(SIDE)
    fired = fired.assign(strength=fired["z"].abs()).sort_values(["strength", "symbol"], ascending=[False, True])
    limit = np.where(fired["side"] == "long", trading.max_long, trading.max_short)
    fired = fired[fired.groupby("side").cumcount().to_numpy() < limit].sort_values(["side", "symbol"])
    slot = trading.capital * trading.deploy_rate / (trading.max_long + trading.max_short)
    sign = pd.Series(np.where(fired["side"] == "long", 1.0, -1.0), index=fired.index)
    day = fired["decision_time"] - DAY
    closes = grid[grid["ts"] == day.max() + 23 * HOUR].set_index("symbol")["close"]
    price = fired["symbol"].map(closes).to_numpy()
    levels = exit_levels(fired["symbol"], day, sign, trading, daily_panel(grid))  # the backtest's levels
    sign = sign.to_numpy()
    return pd.DataFrame({
        "symbol": fired["symbol"].to_numpy(), "side": fired["side"].to_numpy(),
        "entry_time": (fired["decision_time"]).to_numpy(), "entry": "open of the next bar",
        "notional": slot * fired["size_multiplier"].to_numpy(), "reference_price": price,
        "take_profit": price * (1 + sign * levels["take_profit"]),
        "stop_loss": price * (1 - sign * levels["stop_loss"]),
        "trail_activation": price * (1 + sign * levels["trail_activation"]),
        "trail_pct": levels["trail"],
        "expires_after_hours": trading.max_hold_hours, "z": fired["z"].to_numpy(),
        "regime": fired["regime"].to_numpy(), "size_multiplier": fired["size_multiplier"].to_numpy(),
    })


def run_daily(cfg: DictConfig) -> DailyResult:
    from pipeline import quiet_lightning

    quiet_lightning()
    started = time.perf_counter()
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    check_complete_day(read_bars(data_cfg["hourly_path"]), data_cfg["hourly_path"])
    try:
        market, dataset = checked_market_data(data_cfg, cfg.store.root, append_to=_append_target(cfg),
                                              console=console)
    except HistoryChangedError as err:
        raise DailyStop(EXIT_HISTORY, str(err)) from err
    history = BarHistory.of(cfg.store.root, dataset)
    with open_dict(cfg):  # every later stage (fingerprints, a retrain) reads the whole history
        cfg.data.hourly_path = str(history.path)
    _check_fresh(market.bars, cfg.data.max_data_age_hours)
    if cfg.daily.require_complete_hour:
        check_complete_hour(market.bars)
    groups = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("features", "labels")}
    frames = build_feature_frames(market.grid, market.fear_greed, groups["features"], groups["labels"])
    day = frames.daily["ts"].max()
    console.print(f"daily: dataset {dataset}, {market.bars['symbol'].nunique()} symbols, bars up to "
                  f"{market.bars['ts'].max() + HOUR} UTC: serving {day.date()} (decided at {day + DAY})")

    run, retrained = serving_champion(cfg, frames, dataset, day)
    if str(cfg.daily.retrain) == "only":
        console.print(f"daily: retrain {'done' if retrained else 'not due'}; nothing served (daily.retrain=only)")
        return DailyResult(None, dataset, run.run_id, None, None, retrained)

    serve_backfill(cfg, frames, run, run.window_start(day))
    signals = with_regime(cfg, frames, latest_signals(cfg, frames, run, day))
    signals.insert(0, "run_id", run.run_id)
    signals.insert(1, "dataset", dataset)
    out = Path(cfg.daily.out_dir) / dataset
    book = None
    if strategy_name(cfg.backtest) == "ranked":
        book = ranked_orders(cfg, signals, market.grid, day, out)
        orders = book.orders
    else:
        orders = next_bar_orders(cfg, signals, market.grid)
    served = {"signals": signals, "orders": orders, **({"book": book.book} if book is not None else {})}
    check_served_day(served, out, day)
    for name, frame in served.items():
        write_parquet_atomic(frame, out / name / f"{day.date()}.parquet")
    _print(signals, orders, day, run.run_id, book)
    console.print(f"daily: {len(signals)} signal rows and {len(orders)} order(s) in {out} "
                  f"({time.perf_counter() - started:.1f} s)")
    return DailyResult(day, dataset, run.run_id, signals, orders, retrained, book)


def check_served_day(served: dict[str, pd.DataFrame], out: Path, day: pd.Timestamp) -> None:
    """A day served before is served again only with the same numbers: signals, orders and the book a trader
    may have acted on are never overwritten by other ones (another config, other data)."""
    for name, frame in served.items():
        path = out / name / f"{day.date()}.parquet"
        if not path.is_file():
            continue
        before = pd.read_parquet(path)
        try:
            pd.testing.assert_frame_equal(before, frame, check_exact=False, rtol=1e-12, atol=1e-12)
        except AssertionError as diff:
            first = str(diff).strip().splitlines()[0]
            raise DailyStop(EXIT_SERVED, f"{day.date()} was served already and this run's {name} differ from "
                                         f"{path} ({first}); nothing written. Serve it under another "
                                         f"daily.out_dir, or move the day's files aside to replace them") from None


def ranked_orders(cfg: DictConfig, signals: pd.DataFrame, grid: pd.DataFrame, day: pd.Timestamp,
                  out: Path) -> LiveBook:
    """The ranked book after `day` from every day served so far, checked against the book kept before it."""
    config = RankedBookConfig(**OmegaConf.to_container(cfg.backtest.book, resolve=True))
    book = live_book(served_signals(out / "signals", day, signals), grid, config, day)
    kept = out / "book" / f"{(day - DAY).date()}.parquet"
    try:
        check_kept_book(pd.read_parquet(kept) if kept.is_file() else None, book, kept)
    except BookMismatchError as err:
        raise DailyStop(EXIT_BOOK, str(err)) from err
    return book


def _print(signals: pd.DataFrame, orders: pd.DataFrame, day: pd.Timestamp, run_id: str,
           book: LiveBook | None) -> None:
    table = Table(title=f"Signals for {day.date()} (champion {run_id}; decided at the close, traded from the next bar)")
    columns = ("symbol", "p_sell", "p_hold", "p_buy", "score", "z", "direction", "signal", "regime", "size_multiplier")
    for column in columns:
        table.add_column(column, justify="left" if column in ("symbol", "direction", "signal", "regime") else "right")
    for row in signals[list(columns)].itertuples(index=False):
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
    if book is not None:
        _print_book(book)
        return
    if orders.empty:
        console.print("orders: none (no confident BUY / SELL, or the regime blocks it)")
        return
    table = Table(title="Trailing J orders for the next bar (levels at the reference price)")
    columns = ("symbol", "side", "notional", "reference_price", "take_profit", "stop_loss", "trail_activation",
               "trail_pct", "expires_after_hours")
    for column in columns:
        table.add_column(column, justify="left" if column in ("symbol", "side") else "right")
    for row in orders[list(columns)].itertuples(index=False):
        table.add_row(*(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)


def _print_book(book: LiveBook) -> None:
    marked = "the start" if book.equity_through is None else f"{book.equity_through.date()}"
    console.print(f"ranked book: equity {book.equity:,.2f} (the backtest's through {marked}, marked at the "
                  f"reference prices); {len(book.book)} coins held from {(book.day + DAY).date()} 00:00 UTC")
    if book.orders.empty:
        console.print("orders: none (the target book equals the book held)")
        return
    table = Table(title=f"Ranked book orders, to fill at the open of {(book.day + DAY).date()} 00:00 UTC")
    columns = ("symbol", "side", "target_weight", "current_weight", "delta_weight", "reference_price", "notional",
               "quantity")
    for column in columns:
        table.add_column(column, justify="left" if column in ("symbol", "side") else "right")
    for row in book.orders[list(columns)].itertuples(index=False):
        table.add_row(*(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)


@hydra.main(version_base="1.3", config_path="conf", config_name="daily")
@command
def main(cfg: DictConfig) -> None:
    try:
        run_daily(cfg)
    except DailyStop as stop:
        console.print(f"[bold red]daily: {stop}[/]", soft_wrap=True)
        sys.exit(stop.code)


if __name__ == "__main__":
    main()
