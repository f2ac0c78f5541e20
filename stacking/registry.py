"""Trishula runs, the champion, and promotion.

A run is one walk-forward training of the meta-learner (every evaluated fold) on given store
contents and config; it lives in `<root>/runs/<run_id>/`, written under a temporary name and
renamed into place (whole or absent). `run_id` is a hash of everything the run depends on (the
config, the data fingerprint and the extractor versions in the store), so an unchanged input
finds its run and is not retrained.

A forced re-run of the same id moves the old run aside before the new one is renamed in, and
removes it only after: a crash at any point leaves one of them in place (an old run left aside is
put back by the next `Registry`).

The champion is the run signals are served from, one per scope: the dataset (data lineage) and the
task config (label, split, extractor kinds), `<root>/scopes/<scope>.json`. Runs on other data or
for another task never compete with it; runs with other model settings do. A challenger replaces
it only if, on the same out-of-sample rows (the folds and (symbol, day) rows both were tested on
and both know the label of), it beats it on the configured metric by more than `margin` AND the
paired t-stat of the per-day difference (challenger minus champion, HAC with h lags;
`evaluation.daily_metric_series`) reaches `min_t`. A point estimate alone is noise: over a few
months of daily ICs a 0.01 difference is well inside one standard error. Two exceptions, in
`stacking/lineage.py`: a roll-forward (the champion's own config carried to later folds), and a
champion whose code no longer exists (its source hash, or its store rows' backfill code, differs from
the current code's) giving way to the current code's challenger unless that is worse by more than
`margin`. The champion and the log of every decision (with both figures, the margin, the paired t-stat
and the reason) are one file, written atomically: they always agree.
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

from evaluation.metrics import DAILY_SERIES_METRICS, daily_metric_series
from evaluation.statistics import paired_ic_comparison
from store.files import write_json_atomic
from store.lineage import library_versions

RUN_FILE = "run.json"
# Metric name in evaluation's comparison table -> whether higher is better.
PROMOTION_METRICS = {
    "ic_mean": True, "icir": True, "ic_t_stat": True, "auc_buy": True, "auc_sell": True,
    "macro_f1": True, "accuracy": True, "log_loss": False, "brier": False,
}


def run_key(spec: Mapping) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def scope_key(dataset: str, task: Mapping) -> str:
    """The champion's scope: the dataset and a hash of the task config (what makes runs comparable)."""
    return f"{dataset}-{run_key(task)[:8]}"


class Registry:
    def __init__(self, root: str | Path, scope: str = "default"):
        self.root = Path(root)
        self.scope = scope
        self._recover()

    def _recover(self) -> None:
        """Put back a run a crash left aside during a forced re-run (the new one never arrived)."""
        for aside in (self.root / "runs").glob(".old-*"):
            run_id = aside.name.split("-")[1]
            if not self.run_dir(run_id).exists():
                os.replace(aside, self.run_dir(run_id))
            else:
                shutil.rmtree(aside, ignore_errors=True)

    @property
    def state_path(self) -> Path:
        return self.root / "scopes" / f"{self.scope}.json"

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def has_run(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / RUN_FILE).is_file()

    def write_run(self, run_id: str, fill: Callable[[Path], dict]) -> Path:
        """`fill(tmp_dir)` writes the run's files and returns run.json's content (the Python and library versions
        are added to it); then the folder is renamed in.

        An earlier run of the same id (a forced re-run) is moved aside first and removed only once the
        new one is in place."""
        final = self.run_dir(run_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{run_id}.", dir=final.parent))
        try:
            meta = {**fill(tmp), "libraries": library_versions()}  # the versions that made it, beside its lineage
            (tmp / RUN_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
            aside = final.parent / f".old-{run_id}-{tmp.name.rsplit('.', 1)[-1]}"
            if final.exists():
                os.replace(final, aside)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(aside, ignore_errors=True)
        return final

    def run_meta(self, run_id: str) -> dict:
        return json.loads((self.run_dir(run_id) / RUN_FILE).read_text())

    def _state(self) -> dict:
        path = self.state_path
        return json.loads(path.read_text()) if path.is_file() else {"scope": self.scope, "champion": None,
                                                                      "promotions": []}

    def champion(self) -> dict | None:
        return self._state()["champion"]

    def promotions(self) -> list[dict]:
        return self._state()["promotions"]

    def record(self, decision: PromotionDecision, extra: Mapping | None = None) -> None:
        """Log the decision and, if promoted, the new champion: one atomic write, so both always agree."""
        state = self._state()
        state["promotions"].append(asdict(decision))
        if decision.promoted:
            state["champion"] = {"run_id": decision.challenger, "metric": decision.metric,
                                 "value": decision.challenger_value, "promoted_at": decision.decided_at,
                                 **dict(extra or {})}
        write_json_atomic(state, self.state_path)


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
    margin: float = 0.0
    min_t: float = 0.0
    # The per-day difference (challenger minus champion, signed so that > 0 favours the challenger).
    paired_diff: float | None = None
    paired_t_stat: float | None = None
    paired_days: int = 0


def decide_promotion(
    challenger_id: str,
    challenger_predictions: pd.DataFrame,
    champion_id: str | None,
    champion_predictions: pd.DataFrame | None,
    metric: str,
    evaluate: Callable[[pd.DataFrame], dict],
    model: str = "trishula",
    *,
    margin: float = 0.0,
    min_t: float = 0.0,
    horizon_days: int = 3,
) -> PromotionDecision:
    """Compare the two runs' `model` predictions on the rows both tested; promote only a clear win.

    `evaluate` maps a predictions frame to evaluation's metrics dict (its "comparison" table). A win
    needs the metric better by more than `margin` and, when `min_t` > 0, the paired t-stat of the
    per-day metric difference at least `min_t` (the metric must then have a per-day series).
    """
    if metric not in PROMOTION_METRICS:
        raise ValueError(f"stack.promotion.metric must be one of {sorted(PROMOTION_METRICS)}, got {metric!r}")
    if margin < 0 or min_t < 0:
        raise ValueError(f"stack.promotion.margin and min_t must be >= 0, got {margin} and {min_t}")
    if min_t > 0 and metric not in DAILY_SERIES_METRICS:
        raise ValueError(
            f"stack.promotion.metric={metric} has no per-day series for the paired t-stat: use one of "
            f"{list(DAILY_SERIES_METRICS)} or set stack.promotion.min_t=0"
        )
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    rule = {"margin": float(margin), "min_t": float(min_t)}
    challenger = challenger_predictions[challenger_predictions["model"] == model]
    if champion_id is None or champion_predictions is None:
        return PromotionDecision(True, challenger_id, None, metric, _value(evaluate(challenger), metric, model), None,
                                 sorted(map(int, challenger["fold"].unique())), len(challenger),
                                 "no champion yet", now, **rule)
    if champion_id == challenger_id:
        return PromotionDecision(False, challenger_id, champion_id, metric, None, None, [], 0,
                                 "the challenger is the champion (inputs unchanged)", now, **rule)
    champion = champion_predictions[champion_predictions["model"] == model]
    keys = ["symbol", "date", "fold"]
    # Rows both runs know the label of: a run made before a label was known has it missing, and the
    # two runs must be scored on the same rows.
    common = challenger.loc[challenger["label"].notna(), keys].merge(
        champion.loc[champion["label"].notna(), keys], on=keys)
    if common.empty:
        return PromotionDecision(False, challenger_id, champion_id, metric, None, None, [], 0,
                                 "no out-of-sample rows in common: the champion stays", now, **rule)
    challenger_rows, champion_rows = challenger.merge(common, on=keys), champion.merge(common, on=keys)
    challenger_value = _value(evaluate(challenger_rows), metric, model)
    champion_value = _value(evaluate(champion_rows), metric, model)
    higher_better = PROMOTION_METRICS[metric]
    sign = 1.0 if higher_better else -1.0
    paired = (
        paired_ic_comparison(sign * daily_metric_series(challenger_rows, metric),
                             sign * daily_metric_series(champion_rows, metric), horizon_days)
        if metric in DAILY_SERIES_METRICS else {"diff_mean": None, "t_stat": None, "days": 0}
    )
    if challenger_value is None or champion_value is None:
        wins, why = False, "the metric is undefined on the common rows"
    elif sign * (challenger_value - champion_value) <= margin:
        wins, why = False, f"not better by more than the margin {margin:g}"
    elif min_t > 0 and (paired["t_stat"] is None or paired["t_stat"] < min_t):
        wins, why = False, f"paired t {_fmt(paired['t_stat'])} below min_t {min_t:g}"
    else:
        wins, why = True, f"better by more than {margin:g}" + (f" with paired t >= {min_t:g}" if min_t > 0 else "")
    reason = (
        f"{metric} {_fmt(challenger_value)} vs champion {_fmt(champion_value)} "
        f"({'higher' if higher_better else 'lower'} is better; paired t {_fmt(paired['t_stat'])} over "
        f"{paired['days']} days): {why}: " + ("challenger wins" if wins else "champion stays")
    )
    return PromotionDecision(wins, challenger_id, champion_id, metric, challenger_value, champion_value,
                             sorted(map(int, common["fold"].unique())), len(common), reason, now, **rule,
                             paired_diff=paired["diff_mean"], paired_t_stat=paired["t_stat"],
                             paired_days=int(paired["days"]))


def _value(metrics: dict, metric: str, model: str) -> float | None:
    row = next(r for r in metrics["comparison"] if r["model"] == model)
    return row[metric]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
