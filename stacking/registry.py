"""Trishula runs, the champion, and promotion.

A run is one walk-forward training of the meta-learner (every evaluated fold) on given store
contents and config; it lives in `<root>/runs/<run_id>/`, written under a temporary name and
renamed into place (whole or absent). `run_id` is a hash of everything the run depends on (the
config, the data fingerprint and the extractor versions in the store), so an unchanged input
finds its run and is not retrained.

The champion (`<root>/champion.json`) is the run signals are served from. A challenger replaces it
only if it beats it on the same out-of-sample rows (the folds and (symbol, day) rows both were
tested on) by the configured metric; a tie keeps the champion. Every decision is appended, with
both figures, to `<root>/promotions.json`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from store.files import write_json_atomic

RUN_FILE = "run.json"
# Metric name in evaluation's comparison table -> whether higher is better.
PROMOTION_METRICS = {
    "ic_mean": True, "icir": True, "ic_t_stat": True, "auc_buy": True, "auc_sell": True,
    "macro_f1": True, "accuracy": True, "log_loss": False, "brier": False,
}


def run_key(spec: Mapping) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Registry:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def has_run(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / RUN_FILE).is_file()

    def write_run(self, run_id: str, fill: Callable[[Path], dict]) -> Path:
        """`fill(tmp_dir)` writes the run's files and returns run.json's content; then the folder is renamed in."""
        final = self.run_dir(run_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{run_id}.", dir=final.parent))
        try:
            meta = fill(tmp)
            (tmp / RUN_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
            if final.exists():  # an earlier identical run (forced re-run): replace it whole
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def run_meta(self, run_id: str) -> dict:
        return json.loads((self.run_dir(run_id) / RUN_FILE).read_text())

    def champion(self) -> dict | None:
        path = self.root / "champion.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def record(self, decision: PromotionDecision) -> None:
        log_path = self.root / "promotions.json"
        history = json.loads(log_path.read_text()) if log_path.is_file() else []
        write_json_atomic([*history, asdict(decision)], log_path)
        if decision.promoted:
            write_json_atomic(
                {"run_id": decision.challenger, "metric": decision.metric, "value": decision.challenger_value,
                 "promoted_at": decision.decided_at},
                self.root / "champion.json",
            )


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    challenger: str
    champion: str | None
    metric: str
    challenger_value: float | None
    champion_value: float | None
    folds: list[int]
    rows: int
    reason: str
    decided_at: str


def decide_promotion(
    challenger_id: str,
    challenger_predictions: pd.DataFrame,
    champion_id: str | None,
    champion_predictions: pd.DataFrame | None,
    metric: str,
    evaluate: Callable[[pd.DataFrame], dict],
    model: str = "trishula",
) -> PromotionDecision:
    """Compare the two runs' `model` predictions on the rows both tested; promote only a strict win.

    `evaluate` maps a predictions frame to evaluation's metrics dict (its "comparison" table).
    """
    if metric not in PROMOTION_METRICS:
        raise ValueError(f"stack.promotion.metric must be one of {sorted(PROMOTION_METRICS)}, got {metric!r}")
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    challenger = challenger_predictions[challenger_predictions["model"] == model]
    if champion_id is None or champion_predictions is None:
        return PromotionDecision(True, challenger_id, None, metric, _value(evaluate(challenger), metric, model), None,
                                 sorted(map(int, challenger["fold"].unique())), len(challenger),
                                 "no champion yet", now)
    if champion_id == challenger_id:
        return PromotionDecision(False, challenger_id, champion_id, metric, None, None, [], 0,
                                 "the challenger is the champion (inputs unchanged)", now)
    champion = champion_predictions[champion_predictions["model"] == model]
    keys = ["symbol", "date", "fold"]
    common = challenger[keys].merge(champion[keys], on=keys)
    if common.empty:
        return PromotionDecision(False, challenger_id, champion_id, metric, None, None, [], 0,
                                 "no out-of-sample rows in common: the champion stays", now)
    challenger_value = _value(evaluate(challenger.merge(common, on=keys)), metric, model)
    champion_value = _value(evaluate(champion.merge(common, on=keys)), metric, model)
    higher_better = PROMOTION_METRICS[metric]
    if challenger_value is None or champion_value is None:
        wins = False
    else:
        wins = challenger_value > champion_value if higher_better else challenger_value < champion_value
    reason = (
        f"{metric} {_fmt(challenger_value)} vs champion {_fmt(champion_value)} "
        f"({'higher' if higher_better else 'lower'} is better): " + ("challenger wins" if wins else "champion stays")
    )
    return PromotionDecision(wins, challenger_id, champion_id, metric, challenger_value, champion_value,
                             sorted(map(int, common["fold"].unique())), len(common), reason, now)


def _value(metrics: dict, metric: str, model: str) -> float | None:
    row = next(r for r in metrics["comparison"] if r["model"] == model)
    return row[metric]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
