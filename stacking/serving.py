"""Serving a Trishula run: the walk-forward's own prediction path, on any rows, for any day.

A run holds one saved model per meta fold. The walk-forward scores each test day with the model of
the fold whose test window holds it, and a day's z compares its score s with the symbol's scores of
the previous `zscore_days` days, which earlier folds' models scored (`stack.signals.scale=rolling`),
or with the day's scores across symbols (`cross_section`: the served day's rows hold every symbol
the batch scores that day, so its z is the batch's). `walkforward_signals` does
exactly that for given stacked rows: each row through its fold's saved model (`predict_fold`), then
Trishula's score anchored on the blend of its parts with the run's per-fold weights (`stacking/anchor.py`,
when the run anchors), then `build_signals` with the run's thresholds. The daily command serves the latest
day with it, on the rows of that day and the z window before it, so live signals are the backtest's by
construction
(and `tests/test_daily.py` checks it against a batch backfill and walk-forward).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console

from splits.walkforward import Fold
from stacking.anchor import anchor_enabled, anchor_predictions, correction_model
from stacking.registry import Registry
from stacking.run import anchor_weights, build_signals
from stacking.walkforward import BLEND, StackSettings, predict_fold

DAY = pd.Timedelta(days=1)


@dataclass
class ServedRun:
    run_id: str
    run_dir: Path
    meta: dict                      # run.json
    folds: list[Fold]               # its meta folds, oldest first
    thresholds: dict[int, Mapping]  # fold -> Trishula's confidence thresholds

    @classmethod
    def load(cls, registry: Registry, run_id: str) -> ServedRun:
        meta = registry.run_meta(run_id)
        folds = [Fold.from_dict(summary["fold"]) for summary in meta["folds"]]
        return cls(run_id, registry.run_dir(run_id), meta, folds, fold_thresholds(meta))

    @property
    def versions(self) -> dict[str, list[str]]:
        """Per extractor kind, the store versions the run was trained on (the ones it serves with)."""
        return {kind: [row["version"] for row in rows] for kind, rows in self.meta["store"].items()}

    @property
    def signal_cfg(self) -> Mapping:
        return self.meta["stack"]["signals"]

    def fold_for(self, day: pd.Timestamp) -> Fold | None:
        """The meta fold whose test window holds `day` (None: the run has no model for it)."""
        return next((f for f in self.folds if f.test_start <= day <= f.test_end), None)

    def window_start(self, day: pd.Timestamp) -> pd.Timestamp:
        """The first day whose score day `day`'s z reads."""
        return day - int(self.signal_cfg["zscore_days"]) * DAY

    def settings(self, label: str) -> StackSettings:
        stack = self.meta["stack"]
        # Only the models the served signals are made of: Trishula, the parts of the blend it is anchored on
        # (tabular and any extra parts), and the anchor's correction (the ranking objective's score); ablations
        # trained beside them are not served.
        extra_parts = list(stack.get("extra_parts", ()))
        needed = {"trishula", "tabular", *extra_parts}
        if anchor_enabled(stack):
            needed.add(correction_model(stack["anchor"]))
        models = [name for name in self.meta["folds"][0]["models"] if name in needed]
        return StackSettings(label=label, params=stack["lgbm"], early_stopping_rounds=stack["early_stopping_rounds"],
                             confidence=stack["confidence"], kinds=list(stack["kinds"]),
                             feature_schema_hash=self.meta["schema"], models=models, extra_parts=extra_parts,
                             console=Console(quiet=True))


def fold_thresholds(run_meta: Mapping) -> dict[int, Mapping]:
    """Fold -> Trishula's confidence thresholds, from a run's run.json."""
    return {int(s["fold"]["index"]): s["models"]["trishula"]["thresholds"] for s in run_meta["folds"]}


def walkforward_signals(frame: pd.DataFrame, run: ServedRun, label: str) -> pd.DataFrame:
    """The walk-forward's signals for the stacked rows `frame` (complete rows, with label and
    fwd_ret_3d columns, NaN where unknown) that lie in the run's test windows."""
    settings = run.settings(label)
    parts = [
        predict_fold(frame, fold, run.run_dir / f"fold_{fold.index:03d}", settings)
        for fold in run.folds if fold.mask(frame["date"], "test").any()
    ]
    if not parts:
        raise ValueError(f"run {run.run_id} has no model for the days {frame['date'].min().date()} .. "
                         f"{frame['date'].max().date()}")
    predictions = pd.concat(parts, ignore_index=True)
    if anchor_enabled(run.meta["stack"]):  # the score anchored as the walk-forward anchored it, fold by fold
        predictions = anchor_predictions(predictions, anchor_weights(run.meta["folds"]), BLEND,
                                         correction_model(run.meta["stack"]["anchor"]))
    return build_signals(predictions, run.thresholds, run.signal_cfg)
