"""One Trishula run from config: assemble the stacked frame, train and predict every meta fold,
derive signals, evaluate every model and factor baseline (paired against Trishula), and decide
promotion. Used by `stack.py` and `pipeline.py`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from evaluation import evaluate_predictions
from features.build import FeatureFrames
from features.labels import CLASS_NAMES
from splits.artifacts import folds_from_config
from splits.walkforward import Fold
from stacking.anchor import anchor_enabled, anchor_walkforward, check_anchor, correction_model
from stacking.folds import meta_folds
from stacking.frame import (
    EXTRA_PARTS,
    RANK_OBJECTIVE_MODEL,
    WINDOW_TARGETS,
    additive_inputs,
    assemble_stack_frame,
    complete_rows,
    configured_feature_sets,
    decision_rows,
    ranked_inputs,
)
from stacking.lineage import cap_at_pins, readable_versions, roll_forward, task_scope
from stacking.registry import PromotionDecision, Registry, decide_promotion, run_key
from stacking.signals import apply_confidence, directions, signal_zscore, zscore_scale
from stacking.walkforward import BLEND, PREDICTION_COLUMNS, StackSettings, predict_fold, train_fold
from store.extractors import code_revision, data_fingerprint
from store.feature_store import FeatureStore
from store.files import write_json_atomic, write_parquet_atomic
from store.lineage import source_hash

SIGNAL_NAMES = np.array(CLASS_NAMES)
ROOT = Path(__file__).resolve().parents[1]
# The forward return the IC ranks against (fwd_ret_3d) spans 3 days.
HORIZON_DAYS = 3


@dataclass
class StackRun:
    run_id: str
    run_dir: Path
    reused: bool
    predictions: pd.DataFrame
    signals: pd.DataFrame
    metrics: dict
    decision: PromotionDecision


@contextlib.contextmanager
def dask_client(stack_cfg: Mapping) -> Iterator[object | None]:
    """A Dask client for `stack.backend=dask` (a scheduler address, or a local cluster); None otherwise."""
    if stack_cfg["backend"] != "dask":
        yield None
        return
    from dask.distributed import Client, LocalCluster

    dask_cfg = stack_cfg["dask"]
    if dask_cfg.get("scheduler_address"):
        with Client(dask_cfg["scheduler_address"]) as client:
            yield client
        return
    with LocalCluster(n_workers=dask_cfg["n_workers"], threads_per_worker=dask_cfg["threads_per_worker"],
                      processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def store_versions(store: FeatureStore, kinds, among: Mapping[str, list[str]] | None) -> dict[str, list[dict]]:
    """Per kind, the versions the stack may read, with their table rows, the backfill code that wrote them and
    when (part of the run key: a backfill that rewrites a version's rows, even to the same count, is new input)."""
    return {
        kind: [
            {"version": str(r.version), "fold": int(r.fold), "eligible_from": str(r.eligible_from), "rows": int(r.rows),
             "sources": str(r.sources), "written": str(r.written)}
            for r in store.versions(kind).itertuples() if among is None or r.version in among[kind]
        ]
        for kind in kinds
    }


def build_signals(predictions: pd.DataFrame, thresholds: Mapping[int, Mapping], signal_cfg: Mapping) -> pd.DataFrame:
    """Trishula's rows with raw scores, z, the z direction and the confidence-gated signal (BUY/HOLD/SELL)."""
    rows = predictions[predictions["model"] == "trishula"].sort_values(["date", "symbol"]).reset_index(drop=True)
    rows.insert(2, "decision_time", rows["date"] + pd.Timedelta(days=1))
    rows["z"] = signal_zscore(rows, signal_cfg)
    direction = directions(rows["z"], signal_cfg["z_threshold"])
    proba = rows[["p_sell", "p_hold", "p_buy"]].to_numpy()
    signal = direction.copy()
    for fold, fold_thresholds in thresholds.items():
        in_fold = (rows["fold"] == fold).to_numpy()
        signal[in_fold] = apply_confidence(direction[in_fold], proba[in_fold], fold_thresholds)
    rows["direction"] = SIGNAL_NAMES[direction]
    rows["signal"] = SIGNAL_NAMES[signal]
    return rows.drop(columns=["model"])


def run_stack(
    cfg: DictConfig, frames: FeatureFrames, console: Console, out_dir: Path,
    among: Mapping[str, list[str]] | None = None,
) -> StackRun:
    """The whole meta-learner stage; `among` limits the extractor versions read (None: all in the store)."""
    stack_cfg = OmegaConf.to_container(cfg.stack, resolve=True)
    zscore_scale(stack_cfg["signals"])  # a bad stack.signals.scale fails before any fold is trained
    check_anchor(stack_cfg.get("anchor"), BLEND)
    kinds = list(stack_cfg["kinds"])
    label = cfg.labels.primary
    store = FeatureStore(cfg.store.root)
    for kind in kinds:
        if not store.exists(kind):
            raise FileNotFoundError(f"the store at {cfg.store.root} has no {kind} outputs: run embed.py first")

    # Lineage enforced: only versions made from this data and these features, capped at any pin.
    readable = readable_versions(store, kinds, frames, cfg, console)
    among = {k: [v for v in readable[k] if among is None or v in among[k]] for k in kinds}
    among = cap_at_pins(store, among, stack_cfg["pinned_versions"])
    rows = decision_rows(frames, label)
    frame = assemble_stack_frame(
        rows, store, kinds, allow_mixed_versions=stack_cfg["allow_mixed_versions"],
        max_staleness_hours=cfg.store.max_staleness_hours, among=among, dataset=frames.dataset,
    )
    frame = frame[complete_rows(frame, kinds)].reset_index(drop=True)
    if frame.empty:
        raise ValueError(f"no decision row holds out-of-sample outputs of every kind {kinds}: backfill earlier folds")
    folds = folds_from_config(frames.daily, cfg.split, max(frames.horizons))
    purge = folds[0].purge_days if folds else max(frames.horizons)
    meta, skipped = meta_folds(folds, frame["date"].min(), purge_days=purge, **stack_cfg["split"])
    if skipped:
        console.print(
            f"stack: folds {skipped} skipped: stacked rows start {frame['date'].min().date()}, too late for a "
            f"{stack_cfg['split']['min_train_days']}-day meta train window before them"
        )
    if not meta:
        raise ValueError("no meta fold fits: the store's out-of-sample rows are too short for stack.split")

    features = configured_feature_sets(frames, kinds, store, stack_cfg, trained_ablations(stack_cfg))
    check_part_labels(stack_cfg["extra_parts"], frames.label_columns)
    versions = store_versions(store, kinds, among)
    fingerprint = data_fingerprint(cfg.data)
    keyed = {k: v for k, v in stack_cfg.items() if k not in ("promotion", "force", "backend", "dask", "root")}
    schema = run_key({"features": features, "config": OmegaConf.to_container(cfg.features, resolve=True),
                      "gaps": [cfg.data.gaps, cfg.data.max_gap_hours]})
    code = source_hash("trishula")
    config_key = run_key({"stack": keyed, "labels": OmegaConf.to_container(cfg.labels), "schema": schema,
                          "split": OmegaConf.to_container(cfg.split), "source": code})
    run_id = run_key({"stack": keyed, "labels": OmegaConf.to_container(cfg.labels), "schema": schema,
                      "split": OmegaConf.to_container(cfg.split), "data": fingerprint, "store": versions,
                      "folds": [m.to_dict() for m in meta], "dataset": frames.dataset, "source": code})
    registry = Registry(stack_cfg["root"], task_scope(cfg, frames.dataset))
    champion = registry.champion()
    _report_newer_extractors(registry, champion, versions, console)

    reused = registry.has_run(run_id) and not stack_cfg["force"]
    if reused:
        made_by = registry.run_meta(run_id)
        console.print(f"stack: inputs unchanged since run {run_id}: reusing it, made by source "
                      f"{made_by.get('source_hash')} at revision {made_by.get('code_revision')} "
                      "(stack.force=true retrains)")
    else:
        settings = StackSettings(
            label=label, params=stack_cfg["lgbm"], early_stopping_rounds=stack_cfg["early_stopping_rounds"],
            confidence=stack_cfg["confidence"], kinds=kinds, feature_schema_hash=schema, models=list(features),
            ranked=ranked_inputs(features, frames, stack_cfg["inputs"]),
            additive=additive_inputs(features) if stack_cfg["additive_extractors"] else (),
            extra_parts=stack_cfg["extra_parts"], backend=stack_cfg["backend"], console=console,
        )
        with dask_client(stack_cfg) as client:
            settings.dask_client = client
            registry.write_run(run_id, lambda tmp: _train_all(tmp, frame, meta, features, settings, stack_cfg,
                                                              {"run_id": run_id, "store": versions, "schema": schema,
                                                               "data_fingerprint": fingerprint,
                                                               "dataset": frames.dataset, "source_hash": code,
                                                               "code_revision": code_revision(ROOT),
                                                               "scope": registry.scope, "config_key": config_key},
                                                              console))
    run_dir = registry.run_dir(run_id)
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    signals = pd.read_parquet(run_dir / "signals.parquet")
    metrics = json.loads((run_dir / "metrics.json").read_text())

    champion_id = champion["run_id"] if champion else None
    champion_predictions = (
        pd.read_parquet(registry.run_dir(champion_id) / "predictions.parquet")
        if champion_id and registry.has_run(champion_id) else None
    )
    promotion = stack_cfg["promotion"]
    decision = decide_promotion(run_id, predictions, champion_id, champion_predictions, promotion["metric"],
                                evaluate_predictions, margin=promotion["margin"], min_t=promotion["min_t"])
    decision = roll_forward(decision, registry, config_key)
    if decision.champion != decision.challenger:
        registry.record(decision)
    verdict = "PROMOTED" if decision.promoted else "not promoted"
    console.print(f"stack: run {run_id} {verdict} ({decision.reason})")

    metrics = {**metrics, "run_id": run_id, "promotion": asdict(decision)}
    write_json_atomic(metrics, out_dir / "metrics.json")
    write_parquet_atomic(predictions[list(PREDICTION_COLUMNS)], out_dir / "predictions.parquet")
    write_parquet_atomic(signals, out_dir / "signals.parquet")
    return StackRun(run_id, run_dir, reused, predictions, signals, metrics, decision)


def _train_all(tmp: Path, frame, meta: list[Fold], features, settings, stack_cfg, run_meta, console) -> dict:
    fold_summaries, parts, thresholds = [], [], {}
    for fold in meta:
        fold_dir = tmp / f"fold_{fold.index:03d}"
        summary = train_fold(frame, fold, features, settings, fold_dir)
        parts.append(predict_fold(frame, fold, fold_dir, settings))
        thresholds[fold.index] = summary["models"]["trishula"]["thresholds"]
        fold_summaries.append(summary)
        t = summary["models"]["trishula"]
        console.print(
            f"stack: fold {fold.index} (test {fold.test_start.date()}..{fold.test_end.date()}): "
            f"{summary['rows']['train']} train / {summary['rows']['val']} val / {summary['rows']['test']} test rows, "
            f"trishula best iteration {t['best_iteration']}, val logloss {t['val_multi_logloss']:.4f}"
        )
    predictions = pd.concat(parts, ignore_index=True)
    anchored = anchor_enabled(stack_cfg)
    if anchored:  # each fold's weight from the folds before it only
        predictions, weights = anchor_walkforward(predictions, {f.index: f.test_start for f in meta},
                                                  stack_cfg["anchor"], BLEND, HORIZON_DAYS)
        for summary in fold_summaries:
            summary["anchor"] = weights[int(summary["fold"]["index"])]
        shown = [f"{fold}: {w['weight']:.2f}" for fold, w in weights.items() if w["weight"] > 0]
        console.print(f"stack: Trishula anchored on the blend of its parts; the correction's weight is 0 in "
                      f"{len(weights) - len(shown)} of {len(weights)} folds" + (f", else {', '.join(shown)}"
                                                                                 if shown else ""))
    signals = build_signals(predictions, thresholds, stack_cfg["signals"])
    metrics = evaluate_predictions(predictions[list(PREDICTION_COLUMNS)], horizon_days=HORIZON_DAYS)
    if anchored:
        metrics["anchor_weights"] = {str(fold): w for fold, w in weights.items()}
    write_parquet_atomic(predictions, tmp / "predictions.parquet")
    write_parquet_atomic(signals, tmp / "signals.parquet")
    write_json_atomic(metrics, tmp / "metrics.json")
    mixed = {k: len(v) for k, v in _versions_in(frame, settings.kinds).items()}
    return {**run_meta, "folds": fold_summaries, "extractor_versions_read": _versions_in(frame, settings.kinds),
            "mixed_versions": {k: n > 1 for k, n in mixed.items()}, "stack": stack_cfg}


def trained_ablations(stack_cfg: Mapping) -> list[str]:
    """`stack.ablations`, plus the ranking objective when it is the anchor's correction (a model Trishula's score
    is made of, so it is trained, saved and served with the run)."""
    ablations = list(stack_cfg["ablations"])
    if anchor_enabled(stack_cfg) and correction_model(stack_cfg["anchor"]) == RANK_OBJECTIVE_MODEL \
            and "rank_objective" not in ablations:
        ablations.append("rank_objective")
    return ablations


def check_part_labels(extra_parts, built: list[str]) -> None:
    """An extra part whose label the features do not build fails before any fold is trained."""
    missing = {part: EXTRA_PARTS[part] for part in extra_parts
               if EXTRA_PARTS[part] not in WINDOW_TARGETS and EXTRA_PARTS[part] not in built}
    if missing:
        raise ValueError(f"stack.extra_parts {sorted(missing)} learn {sorted(set(missing.values()))}, which "
                         f"labels.thresholds does not build (built: {[c for c in built if c.startswith('label_')]})")


def anchor_weights(fold_summaries: list[dict]) -> dict[int, float]:
    """Fold -> the meta-learner's weight in Trishula's score (from a run's fold summaries)."""
    return {int(s["fold"]["index"]): float(s["anchor"]["weight"]) for s in fold_summaries}


def _versions_in(frame: pd.DataFrame, kinds) -> dict[str, list[str]]:
    return {kind: sorted(map(str, frame[f"{kind}_version"].unique())) for kind in kinds}


def _report_newer_extractors(registry: Registry, champion: dict | None, versions: dict, console: Console) -> None:
    if champion is None or not registry.has_run(champion["run_id"]):
        return
    trained_on = registry.run_meta(champion["run_id"]).get("store", {})
    for kind, rows in versions.items():
        newer = sorted({r["version"] for r in rows} - {r["version"] for r in trained_on.get(kind, [])})
        if newer:
            console.print(
                f"stack: the store holds {len(newer)} {kind} version(s) the champion {champion['run_id']} was not "
                f"trained on (newest {newer[-1]}): retraining on them"
            )
