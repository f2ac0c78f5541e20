"""A served day's signals: the store's missing rows backfilled, then the walk-forward's own prediction path.

- `serve_backfill`: the extractors the champion serves with append what the store lacks (the backfill
  of the main job, `backfill.run_backfill`), only the versions that can stand for a decision of the day;
- `day_signals`: the day's rows and the z window before it, stacked from the store as the walk-forward
  stacks them and scored through the champion's saved fold models (`stacking.serving`), with the regime
  known at the decision and Trailing J's size multiplier (the ranked book has no gate and reports both
  for information).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from rich.console import Console

from backfill import run_backfill
from backtest.regime import RegimeConfig, classify_regime, regime_for_decisions
from cli import Exit, Stop
from features.build import FeatureFrames
from stacking.frame import assemble_stack_frame, complete_rows, decision_rows
from stacking.serving import ServedRun, walkforward_signals
from store.extractors import list_extractors
from store.feature_store import FeatureStore, eligible_from

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class SignalSettings:
    label: str                    # labels.primary
    store_root: Path
    artifacts_dir: Path
    max_staleness_hours: float    # store.max_staleness_hours

    @classmethod
    def from_config(cls, cfg: DictConfig) -> SignalSettings:
        return cls(str(cfg.labels.primary), Path(cfg.store.root), Path(cfg.paths.artifacts_dir),
                   float(cfg.store.max_staleness_hours))


def serve_backfill(cfg: DictConfig, frames: FeatureFrames, run: ServedRun, first_day: pd.Timestamp,
                   console: Console) -> None:
    """Append what the store lacks for the extractors the champion serves with, from `first_day` on (`cfg`:
    the main job's, which the backfill reads)."""
    by_version = {a.version: a for a in list_extractors(Path(cfg.paths.artifacts_dir) / "extractors")}
    wanted = {v for versions in run.versions.values() for v in versions}
    missing = sorted(wanted - set(by_version))
    if missing:
        raise Stop(Exit.NO_CHAMPION, f"the champion {run.run_id} serves with extractor versions {missing} that are "
                                     f"not under {cfg.paths.artifacts_dir}/extractors")
    served = [by_version[v] for versions in run.versions.values() for v in versions]
    # Only versions that can stand for a decision from `first_day` on: each serves until the next of its
    # kind becomes eligible.
    needed = []
    for kind in run.versions:
        mine = sorted((a for a in served if a.meta["kind"] == kind), key=lambda a: (eligible_from(a.meta), a.version))
        starts = [eligible_from(a.meta) for a in mine]
        needed += [a for i, a in enumerate(mine) if i + 1 == len(mine) or starts[i + 1] > first_day + DAY]
    run_backfill(cfg, frames, needed, served, frames.dataset, out=console)


def day_signals(settings: SignalSettings, frames: FeatureFrames, run: ServedRun, day: pd.Timestamp,
                regime: RegimeConfig) -> pd.DataFrame:
    """Day `day`'s signals through the walk-forward's path, with the regime and the size multiplier."""
    rows = decision_rows(frames, settings.label)
    rows = rows[(rows["date"] >= run.window_start(day)) & (rows["date"] <= day)].reset_index(drop=True)
    kinds = list(run.meta["stack"]["kinds"])
    frame = assemble_stack_frame(rows, FeatureStore(settings.store_root), kinds, allow_mixed_versions=True,
                                 max_staleness_hours=settings.max_staleness_hours, among=run.versions,
                                 dataset=frames.dataset)
    frame = frame[complete_rows(frame, kinds)].reset_index(drop=True)
    signals = walkforward_signals(frame, run, settings.label)
    return with_regime(signals[signals["date"] == day].reset_index(drop=True), frames, regime)


def with_regime(signals: pd.DataFrame, frames: FeatureFrames, regime: RegimeConfig) -> pd.DataFrame:
    """The regime known at each decision and Trailing J's size multiplier of the signal's side."""
    inputs = frames.daily.groupby("ts")[list(frames.columns["regime"])].first()
    out = signals.copy()
    out["regime"] = regime_for_decisions(classify_regime(inputs, regime), out["decision_time"]).to_numpy()
    multipliers = regime.multipliers()
    long_m = out["regime"].map({name: m[0] for name, m in multipliers.items()})
    short_m = out["regime"].map({name: m[1] for name, m in multipliers.items()})
    out["size_multiplier"] = np.where(out["signal"] == "SELL", short_m, np.where(out["signal"] == "BUY", long_m, 0.0))
    return out
