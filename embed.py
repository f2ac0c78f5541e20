"""Backfill batch run: trained extractors -> embeddings and raw logits in the feature store.

    python embed.py                                        # every trained extractor, CPU, shipped sample
    python embed.py embed.kinds=[tcn] trainer=gpu data=full
    python embed.py trainer=ddp trainer.accelerator=cpu trainer.devices=2 trainer.precision=32-true

Each extractor covers the decision times it is responsible for (store/backfill.py); a run is
idempotent (it replaces its versions' rows), atomic (one commit per table once everything is
staged) and resumable (a re-run after a crash skips the chunks already staged).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from features.build import load_feature_frames
from store.backfill import BackfillInputError, commit_staged, make_plan, stage_backfill
from store.extractors import ExtractorArtifact, data_fingerprint, input_spec, list_extractors, schema_hash
from store.feature_store import FeatureStore

# Logs (CI, nohup) get a wide console; a terminal keeps its own width.
console = Console(width=None if sys.stdout.isatty() else 140)
COLUMN_SET = {"daily": "lstm", "hourly": "tcn"}


def select_artifacts(all_artifacts: list[ExtractorArtifact], kinds, versions) -> list[ExtractorArtifact]:
    chosen = [a for a in all_artifacts if a.meta["kind"] in kinds]
    if versions == "latest":
        newest = {}
        for artifact in chosen:  # sorted by kind, fold, version: the last one of a fold wins
            newest[(artifact.meta["kind"], artifact.meta["fold"])] = artifact
        chosen = list(newest.values())
    elif versions != "all":
        wanted = set(versions)
        unknown = wanted - {a.version for a in chosen}
        if unknown:
            raise BackfillInputError(f"unknown extractor version(s) {sorted(unknown)}")
        chosen = [a for a in chosen if a.version in wanted]
    return chosen


def predict_trainer(cfg: DictConfig):
    """The configured trainer (devices, precision, DDP) set up for prediction only: no logger, no
    checkpoints, and no Lightning progress bar, which would fight the backfill's own for the console.
    Each DDP process predicts its own shard of a chunk, so no sampler pads it with duplicates."""
    return instantiate(cfg.trainer, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                       enable_model_summary=False, use_distributed_sampler=False)


def run_backfill(cfg: DictConfig, frames, selected: list[ExtractorArtifact], artifacts: list[ExtractorArtifact]
                 ) -> list[dict]:
    """Stage every selected artifact's windows, then commit them in one transaction per table.

    Plans already committed with the same content (artifact, data, stride, range: the plan's run
    key, recorded in the store's `committed.json`) are skipped and said so, unless embed.force.
    """
    groups = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "features", "labels")}
    fingerprint = data_fingerprint(cfg.data)
    store = FeatureStore(cfg.store.root)
    trainer = predict_trainer(cfg)
    committed = store.committed_runs()

    staged, skipped = [], []
    for artifact in selected:
        inputs = artifact.meta["inputs"]
        current = input_spec(inputs["frame"], frames.columns[COLUMN_SET[inputs["frame"]]], inputs["window"],
                             groups["features"], groups["data"])
        same_kind = [a for a in artifacts if a.meta["kind"] == artifact.meta["kind"]]
        plan = make_plan(artifact, same_kind, frames, schema_hash(current), fingerprint,
                         stride_hours=cfg.embed.stride_hours, chunk_size=cfg.embed.chunk_size)
        if committed.get(plan.kind, {}).get(artifact.version) == plan.run_key and not cfg.embed.force:
            skipped.append(plan.run_key)
            continue
        counts = stage_backfill(plan, store, trainer, fingerprint, cfg.embed.chunk_size, cfg.embed.batch_size)
        staged.append(counts)
        if trainer.is_global_zero:
            until = f"{plan.until:%Y-%m-%d %H:%M} UTC" if plan.until is not None else "the data end"
            console.print(
                f"{counts['kind']} {counts['version']} (fold {artifact.meta['fold']}): {counts['rows']:,} rows "
                f"for decisions from {plan.start:%Y-%m-%d %H:%M} UTC up to {until} in {counts['chunks']} chunk(s)"
                + (f", {counts['resumed_chunks']} resumed" if counts["resumed_chunks"] else "")
            )
    if skipped and trainer.is_global_zero:
        console.print(f"embed: {len(skipped)} extractor backfill(s) unchanged since their commit: skipped")
    # Everything is staged: now the store changes, in one transaction per table.
    if staged and trainer.is_global_zero:
        commit_staged(store, staged)
        for kind in sorted({s["kind"] for s in staged}):
            console.print(f"committed {kind} -> {store.table_path(kind)} (table version {store.table_version(kind)})")
    trainer.strategy.barrier()
    return staged


@hydra.main(version_base="1.3", config_path="conf", config_name="embed")
def main(cfg: DictConfig) -> None:
    registry = Path(cfg.paths.artifacts_dir) / "extractors"
    artifacts = list_extractors(registry)
    versions = cfg.embed.versions if isinstance(cfg.embed.versions, str) else list(cfg.embed.versions)
    selected = select_artifacts(artifacts, list(cfg.embed.kinds), versions)
    if not selected:
        raise BackfillInputError(f"no trained extractor of kinds {list(cfg.embed.kinds)} under {registry}")
    groups = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "features", "labels")}
    frames = load_feature_frames(groups["data"], groups["features"], groups["labels"]["thresholds"])
    run_backfill(cfg, frames, selected, artifacts)

if __name__ == "__main__":
    main()
