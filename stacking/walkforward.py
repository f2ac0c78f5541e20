"""Walk-forward training and out-of-sample prediction of the meta-learner and its baselines.

Per meta fold (stacking/folds.py) LightGBM models are trained with the same parameters on the
same rows: `tabular` (tabular + regime features), `trishula` (those plus the extractors'
probabilities, and their embeddings with `stack.embeddings`) and its configured ablations
(`stack.ablations`, e.g. `trishula_with_embeddings`). Each is saved with its feature list, feature schema hash,
confidence thresholds, the extractor versions its rows read and its validation metrics, then
LOADED BACK from disk to predict the fold's test rows: predictions go through the inference path a
served model takes, with its feature checks. The extractors alone (`lstm`, `tcn`) predict with
their read-time probabilities; the factor baselines (features/factors.py) and `blend_parts` (the
equal-weight mean of the parts' per-day ranks: tabular, any `stack.extra_parts`, lstm, tcn) with their score
alone (no probabilities). All are scored on the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from evaluation.metrics import BLEND
from features.factors import FACTORS
from features.labels import CLASS_NAMES
from models.trishula import TrishulaClassifier, TrishulaLambdaRanker, TrishulaRanker, softmax
from splits.walkforward import Fold
from stacking.frame import (
    LAMBDARANK_TARGETS,
    REGRESSION_TARGETS,
    SCORE_SIGN,
    blend_members,
    day_ranks,
    model_target,
    window_targets,
)
from stacking.signals import fit_confidence_thresholds, precision_targets, signal_score
from store.files import write_json_atomic, write_parquet_atomic

PREDICTION_COLUMNS = ("symbol", "date", "fold", "model", "p_sell", "p_hold", "p_buy", "score", "label", "fwd_ret_3d")
ARTIFACT_FILE = "artifact.json"
# Per fold: the (symbol, date, extractor versions) rows its models trained and validated on.
TRAINED_ROWS = "trained_rows.parquet"


@dataclass
class StackSettings:
    label: str
    params: Mapping
    early_stopping_rounds: int | None
    confidence: Mapping  # mode, target_precision, target_lift, min_support (conf/stack/default.yaml)
    kinds: Sequence[str]
    feature_schema_hash: str
    # The trained models, in order (the keys of stacking.frame.feature_sets).
    models: Sequence[str] = ("tabular", "trishula")
    # Inputs fed as per-day ranks (stacking.frame.ranked_inputs); each model records its own.
    ranked: Sequence[str] = ()
    # Inputs that enter additively (stack.additive_extractors: the extractor outputs); each model records its own.
    additive: Sequence[str] = ()
    # The blend's parts beyond tabular and the kinds (stack.extra_parts; stacking.frame.EXTRA_PARTS).
    extra_parts: Sequence[str] = ()
    backend: str = "local"
    dask_client: object | None = None
    console: Console = field(default_factory=Console)


@dataclass
class FoldModel:
    """A trained meta-learner as served: the model, its thresholds and what it was trained on."""

    model: TrishulaClassifier
    meta: dict

    @classmethod
    def load(cls, directory: Path, name: str) -> FoldModel:
        meta = json.loads((directory / f"{name}.json").read_text())
        kind = TrishulaRanker if meta.get("objective") == "rank" else TrishulaClassifier
        model = kind.load(directory / f"{name}.txt", meta["features"], meta["feature_schema_hash"])
        return cls(model, meta)

    def raw_scores(self, frame: pd.DataFrame, feature_schema_hash: str) -> np.ndarray:
        return self.model.raw_scores(frame, feature_schema_hash)


def _window(frame: pd.DataFrame, mask: np.ndarray, settings: StackSettings) -> pd.DataFrame:
    """One part of a fold (train or validation) as the models learn from it: the targets made from the forward
    return over every coin of the day (`stacking.frame.window_targets`, from the raw inputs), the inputs ranked
    over every coin of the day (as scoring ranks them), then only the labelled rows. A day lies wholly in one
    part, so a part's day is the whole day."""
    rows = day_ranks(window_targets(frame[mask]), settings.ranked)
    return rows[rows[settings.label].notna().to_numpy()]


def _versions(rows: pd.DataFrame, kinds: Sequence[str]) -> dict[str, list[str]]:
    return {kind: sorted(map(str, rows[f"{kind}_version"].dropna().unique())) for kind in kinds}


def train_fold(
    frame: pd.DataFrame, fold: Fold, features: Mapping[str, list[str]], settings: StackSettings, out_dir: Path
) -> dict:
    """Train, save and return the summary of every model of one fold (files in `out_dir`)."""
    label = settings.label
    days = frame["date"]
    train = _window(frame, fold.mask(days, "train"), settings)
    val = _window(frame, fold.mask(days, "val"), settings)
    test = frame[fold.mask(days, "test")]
    if val.empty or train.empty:
        raise ValueError(f"meta fold {fold.index}: no labelled {'validation' if train.size else 'train'} rows")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"fold": fold.to_dict(), "rows": {"train": len(train), "val": len(val), "test": len(test)}, "models": {}}
    # The rows every model of the fold learned from, with the extractor version each read: their lineage can be
    # audited as trained, not re-derived through the store's as-of read.
    keys = ["symbol", "date", *(f"{kind}_version" for kind in settings.kinds)]
    write_parquet_atomic(pd.concat([train[keys].assign(part="train"), val[keys].assign(part="val")]),
                         out_dir / TRAINED_ROWS)
    confidence = dict(settings.confidence)
    ranked, additive = set(settings.ranked), set(settings.additive)
    targets = precision_targets(train[label].to_numpy(), confidence["mode"], confidence["target_precision"],
                                confidence["target_lift"])
    for name, columns in features.items():
        target = model_target(name, label)
        lambdarank = target in LAMBDARANK_TARGETS
        ranker = lambdarank or target in REGRESSION_TARGETS
        # A part learning another horizon's label drops the rows without it (the window's last days' longer labels);
        # lambdarank's queries are days, their rows contiguous.
        fit, check = (part[part[target].notna().to_numpy()] for part in (train, val))
        if lambdarank:
            fit, check = (part.sort_values("date", kind="stable") for part in (fit, check))
        kind = TrishulaLambdaRanker if lambdarank else TrishulaRanker if ranker else TrishulaClassifier
        model = kind(settings.params, settings.early_stopping_rounds, settings.backend, settings.dask_client,
                     feature_schema_hash=settings.feature_schema_hash,
                     additive_features=[c for c in columns if c in additive])
        days = {"groups": fit["date"].to_numpy(), "groups_val": check["date"].to_numpy()} if lambdarank else {}
        model.fit(fit[columns], fit[target].to_numpy(), check[columns], check[target].to_numpy(), **days)
        # Confidence thresholds gate the primary label's classes: a ranker has no class probabilities, and another
        # horizon's classes are not the signal's.
        thresholds = {} if target != label else fit_confidence_thresholds(
            val[label].to_numpy(), model.predict_proba(val, settings.feature_schema_hash), targets,
            confidence["min_support"])
        model.save(out_dir / f"{name}.txt")
        top = sorted(model.feature_importance().items(), key=lambda kv: -kv[1])[:15]
        val_metric = model.val_metric
        meta = {
            "model": name,
            "objective": "rank" if ranker else "multiclass",
            "score_sign": SCORE_SIGN.get(target, 1.0),
            "fold": fold.index,
            "windows": fold.to_dict(),
            "label": target,
            "features": columns,
            "ranked_features": [c for c in columns if c in ranked],
            "additive_features": list(model.additive_features),
            "feature_schema_hash": settings.feature_schema_hash,
            "params": dict(settings.params),
            "best_iteration": model.best_iteration_,
            f"val_{val_metric}": model.best_score_["valid_0"][val_metric],
            "confidence": {**confidence, "targets": targets, "thresholds": thresholds},
            "extractor_versions": _versions(pd.concat([train, val]), settings.kinds) if name == "trishula" else {},
            "rows": summary["rows"],
            "top_features_by_gain": dict(top),
        }
        write_json_atomic(meta, out_dir / f"{name}.json")
        summary["models"][name] = {
            "best_iteration": meta["best_iteration"], f"val_{val_metric}": meta[f"val_{val_metric}"],
            "thresholds": thresholds,
        }
        unreachable = [f"{c} (precision {targets[c]:.0%})" for c, t in thresholds.items() if t is None and c != "HOLD"]
        if unreachable:
            settings.console.print(
                f"  fold {fold.index} {name}: out of reach on validation: {', '.join(unreachable)}; "
                f"no signal from it in this fold"
            )
    return summary


def predict_fold(frame: pd.DataFrame, fold: Fold, model_dir: Path, settings: StackSettings) -> pd.DataFrame:
    """Every model's and baseline's predictions on the fold's test rows (trained models loaded from `model_dir`)."""
    test = frame[fold.mask(frame["date"], "test")].reset_index(drop=True)
    base = pd.DataFrame({
        "symbol": test["symbol"], "date": test["date"], "fold": np.int32(fold.index),
        "label": test[settings.label].astype("float64"), "fwd_ret_3d": test["fwd_ret_3d"].astype("float64"),
    })
    parts, margins = [], {}
    trained = list(settings.models)
    for name in trained:
        served = FoldModel.load(model_dir, name)
        raw = served.raw_scores(day_ranks(test, served.meta.get("ranked_features", [])), settings.feature_schema_hash)
        if raw.ndim == 1:  # the ranking objective: a score, no probabilities, no margins
            score = served.meta.get("score_sign", 1.0) * raw  # lambdarank of the bottom: its prediction negated
            parts.append(_prediction_rows(base, name, np.full((len(base), len(CLASS_NAMES)), np.nan), score=score))
            continue
        margins[name] = raw
        parts.append(_prediction_rows(base, name, softmax(raw)))
    for kind in settings.kinds:
        proba = test[[f"{kind}_p_{c.lower()}" for c in CLASS_NAMES]].to_numpy(dtype="float64")
        parts.append(_prediction_rows(base, kind, proba))
    factors = [f for f in FACTORS if f in test.columns]
    no_proba = np.full((len(base), len(CLASS_NAMES)), np.nan)
    for factor in factors:
        parts.append(_prediction_rows(base, factor, no_proba, score=test[factor].to_numpy(dtype="float64")))
    # The equal-weight blend of the parts (tabular, the extra parts and each extractor): the first bar a stacker
    # must clear.
    blended = blend_members(settings.kinds, settings.extra_parts)
    part_scores = pd.DataFrame({p["model"].iat[0]: p["score"] for p in parts if p["model"].iat[0] in blended})
    parts.append(_prediction_rows(base, BLEND, no_proba, score=rank_blend(part_scores, base["date"])))
    predictions = pd.concat(parts, ignore_index=True)
    # Raw margins of the trained models (the extractors' rows have none here: their logits are in the store).
    order = [*trained, *settings.kinds, *factors, BLEND]
    for i, name in enumerate(CLASS_NAMES):
        predictions[f"raw_{name.lower()}"] = np.concatenate(
            [margins[m][:, i] if m in margins else np.full(len(base), np.nan) for m in order]
        )
    return predictions


def rank_blend(scores: pd.DataFrame, dates: pd.Series) -> np.ndarray:
    """Equal-weight mean of each column's per-day cross-sectional rank (as a share of the day's names, so
    days with different coin counts weigh alike); a row missing a part averages the others."""
    return scores.groupby(dates.to_numpy()).rank(pct=True).mean(axis=1).to_numpy(dtype="float64")


def _prediction_rows(
    base: pd.DataFrame, model: str, proba: np.ndarray, score: np.ndarray | None = None
) -> pd.DataFrame:
    """One model's rows; the score is P(buy) - P(sell) unless given (a factor baseline's own score)."""
    rows = base.copy()
    rows.insert(3, "model", model)
    for i, name in enumerate(CLASS_NAMES):
        rows.insert(4 + i, f"p_{name.lower()}", proba[:, i])
    rows.insert(7, "score", signal_score(proba) if score is None else score)
    return rows
