"""Lineage: which data and which code made a result, so caches and store reads cannot mix them up.

- **Dataset**: a data lineage is named by its genesis, the bars at the file's first timestamp
  (`dataset_id`). Appending new bars keeps the id; other coins, another span or another source
  give another id. Every store row, extractor artifact, Trishula run and champion carries it.
- **Bar history** (`BarHistory`): every bar a run has used, per dataset, beside the store
  (`<store>/history/<dataset>/bars.parquet`, and the Fear & Greed values in `fear_greed.parquet`
  beside it). A later run's bars must equal the ones already used: a changed or vanished past
  bar, or a late one (a bar for an hour already used, which that run filled or went without), is
  an error naming the symbol and the time (results made from the old bars would be mixed with
  new ones), unless the run explicitly restates history. This makes
  "append only" checkable, so backfills may add only what is missing.
- **Code**: `source_hash(*parts)` hashes the source files that shape a result; content keys
  include it, so a fix in those files makes the next run recompute instead of reusing what the
  old code made. `library_versions()`: the Python and library versions a result was made with
  (recorded beside it, in a Trishula run's run.json and a served day's manifest).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from marketdata.load import BAR_COLUMNS, MarketData, dataset_id, market_data_from_config
from store.feature_store import FeatureStore
from store.files import write_parquet_atomic

__all__ = ["BAR_COLUMNS", "BarHistory", "HistoryChangedError", "checked_market_data", "dataset_id", "library_versions",
           "source_hash"]

ROOT = Path(__file__).resolve().parents[1]
# The source that shapes each kind of result (packages or files, relative to the repo root).
SOURCES = {
    "features": ("marketdata", "features", "splits"),
    "extractor": ("marketdata", "features", "splits", "models", "datamodules", "train.py"),
    "backfill": ("marketdata", "features", "splits", "models", "datamodules", "backfill", "store"),
    "trishula": ("marketdata", "features", "splits", "store", "backfill", "models/trishula.py", "stacking",
                 "evaluation"),
}
# Files inside those parts that do not shape that kind: the meta-learner's model sits in models/ beside
# the networks, and a change to it must not retrain the extractors or redo their backfill; fetching bars
# from an exchange (marketdata/fetch.py) shapes no result (the bars it writes are checked when read), nor
# does choosing the champion that serves a day (stacking/champion.py).
NOT_SOURCES = {"features": ("marketdata/fetch.py",),
               "extractor": ("models/trishula.py", "marketdata/fetch.py"),
               "backfill": ("models/trishula.py", "marketdata/fetch.py"),
               "trishula": ("marketdata/fetch.py", "stacking/champion.py")}
# The libraries whose versions shape results (the networks, the meta-learner, the frames and numbers).
LIBRARIES = ("torch", "lightning", "lightgbm", "pandas", "numpy", "pyarrow", "scikit-learn")


class HistoryChangedError(ValueError):
    """The bars differ from what earlier runs used: a used bar changed or is gone, or a bar arrived late for an
    hour already used; the message names the symbol and the time."""


# How each kind of change to the used bars reads in HistoryChangedError.
CHANGES = {
    "changed": "was used by an earlier run and has changed",
    "missing from the new file": "was used by an earlier run and is missing from the new file",
    "late": "arrived late: an earlier run used that hour without it (gap-filled, or the coin left out)",
}


def _files(part: str) -> list[Path]:
    path = ROOT / part
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


def source_hash(kind: str) -> str:
    """sha256 over the source files that shape results of `kind` (a key of SOURCES), path and bytes."""
    skipped = {ROOT / part for part in NOT_SOURCES.get(kind, ())}
    return _source_hash(tuple((str(p), p.stat().st_mtime_ns) for part in SOURCES[kind] for p in _files(part)
                              if p not in skipped))


@functools.lru_cache(maxsize=32)
def _source_hash(files: tuple[tuple[str, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _ in files:
        path = Path(name)
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def library_versions() -> dict[str, str]:
    """The Python version and each of LIBRARIES' installed versions ("absent" when not installed)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def row_hashes(bars: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_pandas_object(bars[list(BAR_COLUMNS[2:])], index=False).to_numpy()


@dataclass
class BarHistory:
    """The bars used so far for one dataset (symbol, ts and the OHLCV values)."""

    path: Path

    @classmethod
    def of(cls, store_root: str | Path, dataset: str) -> BarHistory:
        return cls(Path(store_root) / "history" / dataset / "bars.parquet")

    @staticmethod
    def datasets(store_root: str | Path) -> list[str]:
        """The datasets whose bar history the store keeps."""
        return sorted(p.parent.name for p in (Path(store_root) / "history").glob("*/bars.parquet"))

    def exists(self) -> bool:
        return self.path.is_file()

    def read(self) -> pd.DataFrame:
        return pd.read_parquet(self.path) if self.exists() else pd.DataFrame(columns=list(BAR_COLUMNS))

    def merge(self, bars: pd.DataFrame, *, appended: bool, restate: bool = False, source: str = "") -> MergeResult:
        """The history with `bars` added, checked: every used bar present in `bars` must be unchanged.

        appended: `bars` hold new bars only (an append file), so used bars missing from it are fine;
        otherwise `bars` is the whole file and a used bar missing from it, before the symbol's last bar
        in the file, is a change too (a file that ends earlier, or lacks a coin, changes no bar).
        A bar the history lacks at or before its latest hour is late, a change too: the earlier runs
        built that hour's features and extractor outputs without it (a gap fill, or the cross-section
        without the coin), so taking it as new would mix those outputs with features that see it.
        restate: accept the changes (they are returned, earliest first, for the caller to rebuild from).
        """
        used = self.read()
        bars = bars[list(BAR_COLUMNS)]
        if used.empty:
            return MergeResult(bars.reset_index(drop=True), pd.DataFrame(columns=["symbol", "ts", "change"]), len(bars))
        joined = used.merge(bars, on=["symbol", "ts"], how="outer", suffixes=("_used", ""), indicator=True)
        both = joined["_merge"] == "both"
        value_cols = list(BAR_COLUMNS[2:])
        old = joined.loc[both, [f"{c}_used" for c in value_cols]].set_axis(value_cols, axis=1)
        changed_rows = joined.loc[both].loc[row_hashes(old) != row_hashes(joined.loc[both])]
        new_rows = joined["_merge"] == "right_only"
        late = joined[new_rows & (joined["ts"] <= used["ts"].max())]
        changes = [changed_rows.assign(change="changed")[["symbol", "ts", "change"]],
                   late.assign(change="late")[["symbol", "ts", "change"]]]
        if not appended:
            last = bars.groupby("symbol")["ts"].max()
            gone = joined[(joined["_merge"] == "left_only") & (joined["ts"] <= joined["symbol"].map(last))]
            changes.append(gone.assign(change="missing from the new file")[["symbol", "ts", "change"]])
        changes = pd.concat(changes, ignore_index=True).sort_values(["ts", "symbol"], ignore_index=True)
        if not changes.empty and not restate:
            first = changes.iloc[0]
            raise HistoryChangedError(
                f"{source}: the bar of {first['symbol']} at {first['ts']} {CHANGES[first['change']]} "
                f"({len(changes)} such bar(s)); results made without the new values would mix with ones made "
                f"from them. Fix the file, or restate history explicitly (data.restate=true) to rebuild "
                f"everything that depends on it"
            )
        kept = joined.loc[~new_rows].copy()
        if restate:  # the file's values win where it has the bar
            for column in value_cols:
                kept[column] = kept[column].where(kept["_merge"] == "both", kept[f"{column}_used"])
        else:
            for column in value_cols:
                kept[column] = kept[f"{column}_used"]
        merged = pd.concat([kept[list(BAR_COLUMNS)], joined.loc[new_rows, list(BAR_COLUMNS)]], ignore_index=True)
        merged = merged.sort_values(["symbol", "ts"], kind="stable", ignore_index=True)
        return MergeResult(merged, changes, int(new_rows.sum()))

    def write(self, bars: pd.DataFrame) -> None:
        write_parquet_atomic(bars[list(BAR_COLUMNS)], self.path)


@dataclass
class MergeResult:
    bars: pd.DataFrame       # the whole history, sorted by (symbol, ts)
    changes: pd.DataFrame    # symbol, ts, change: used bars changed, gone or late (only with restate)
    new_bars: int


def checked_market_data(data_cfg: Mapping, store_root: str | Path, *, append_to: str | None = None,
                        console: Console | None = None) -> tuple[MarketData, str]:
    """The configured data, checked against the bars earlier runs used; (market data, dataset id).

    The whole file (or, with `append_to=<dataset>`, an append of new bars to that dataset's
    history) is merged into the bar history, which is written before anything uses the new bars.
    A changed, vanished or late past bar stops the run (HistoryChangedError naming symbol and time)
    unless `data.restate`: then the store's rows of this dataset from the first changed bar on are
    deleted, so the backfill rebuilds them, and only then does the history take the new values (and the
    late bars): the history is the restate's commit, so a restate killed half way is redone by the rerun.
    """
    if append_to is None:
        market = market_data_from_config(data_cfg)
        dataset = dataset_id(market.bars)
    else:
        appended = market_data_from_config({**data_cfg, "gaps": "fill_flat", "max_gap_hours": 10**9})
        dataset = append_to
    history = BarHistory.of(store_root, dataset)
    restate = bool(data_cfg.get("restate", False))
    new_bars = market.bars if append_to is None else appended.bars
    merged = history.merge(new_bars, appended=append_to is not None, restate=restate,
                           source=str(data_cfg["hourly_path"]))
    if append_to is not None:  # the gap policy and the bad-coin policy apply to the whole history
        market = market_data_from_config(data_cfg, hourly=merged.bars)
        market.dropped = pd.concat([appended.dropped, market.dropped], ignore_index=True)
    fg_path = history.path.with_name("fear_greed.parquet")
    fear_greed, restated_fg = _merge_fear_greed(fg_path, market.fear_greed, restate, str(data_cfg["fear_greed_path"]))
    firsts = [t for t in (None if merged.changes.empty else merged.changes["ts"].iloc[0], restated_fg)
              if t is not None]
    # A restate deletes what depends on the old values first and records the new values last: a kill in
    # between leaves the old history, so the rerun sees the change again and finishes the restate.
    if firsts:
        deleted = FeatureStore(store_root).delete_from(dataset, min(firsts))
        if console is not None:
            console.print(f"restated {len(merged.changes)} bar(s) and the Fear & Greed values from "
                          f"{restated_fg}: {deleted:,} store row(s) after {min(firsts)} deleted, to be rebuilt")
    if fear_greed is not None:
        write_parquet_atomic(fear_greed, fg_path)
    if merged.new_bars or not merged.changes.empty or not history.exists():
        history.write(merged.bars)
    if console is not None:
        for message in market.dropped["message"]:
            console.print(f"[bold yellow]dropped[/]: {message}")
    return market, dataset


def _merge_fear_greed(path: Path, fear_greed: pd.DataFrame, restate: bool,
                      source: str) -> tuple[pd.DataFrame | None, pd.Timestamp | None]:
    """Fear & Greed values used so far (`path`) must be unchanged, as bars must; the file is re-read
    whole every run, so a value it lacks up to its last date counts as changed. Returns the values now
    in use, to record at `path` (None: nothing new), and the first restated date (None: nothing changed)."""
    used = pd.read_parquet(path) if path.is_file() else fear_greed.iloc[:0]
    joined = used.merge(fear_greed, on="date", how="left", suffixes=("_used", ""))
    changed = joined[(joined["value"] != joined["value_used"]) & (joined["date"] <= fear_greed["date"].max())]
    if not changed.empty and not restate:
        raise HistoryChangedError(
            f"{source}: the Fear & Greed value of {changed['date'].iloc[0].date()} was used by an earlier run and has "
            f"changed or is missing ({len(changed)} such date(s)); fix the file, or restate history explicitly "
            f"(data.restate=true) to rebuild everything that depends on it")
    new = fear_greed[~fear_greed["date"].isin(used["date"])]
    if changed.empty and new.empty and path.is_file():
        return None, None
    kept = used[~used["date"].isin(fear_greed["date"])] if restate else used
    merged = pd.concat([kept, fear_greed if restate else new], ignore_index=True).sort_values("date")
    return merged[["date", "value"]], None if changed.empty else pd.Timestamp(changed["date"].iloc[0], tz="UTC")
