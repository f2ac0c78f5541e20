"""Backfill runs: plan, stage and commit every selected extractor (embed.py, the main job, daily.py)."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from backfill.plan import BackfillInputError, commit_staged, make_plan, stage_backfill
from cli import console
from store.extractors import ExtractorArtifact, current_schema_hash, data_fingerprint
from store.feature_store import FeatureStore

COLUMN_SET = {"daily": "lstm", "hourly": "tcn"}


def select_artifacts(all_artifacts: list[ExtractorArtifact], kinds, versions, dataset: str | None = None
                     ) -> list[ExtractorArtifact]:
    """The artifacts of `kinds` (trained on `dataset`, when given): all, the newest per fold, or listed versions."""
    chosen = [a for a in all_artifacts
              if a.meta["kind"] in kinds and (dataset is None or a.meta.get("dataset") == dataset)]
    if versions == "latest":
        newest = {}
        for artifact in chosen:  # sorted by kind, fold, version: the last one of a fold wins
            newest[(artifact.meta["kind"], artifact.meta["fold"])] = artifact
        chosen = list(newest.values())
    elif versions != "all":
        wanted = set(versions)
        unknown = wanted - {a.version for a in chosen}
        if unknown:
            raise BackfillInputError(f"unknown extractor version(s) {sorted(unknown)} (of this dataset)")
        chosen = [a for a in chosen if a.version in wanted]
    return chosen


def predict_trainer(cfg: DictConfig):
    """The configured trainer (devices, precision, DDP) set up for prediction only: no logger, no
    checkpoints, and no Lightning progress bar, which would fight the backfill's own for the console.
    Each DDP process predicts its own shard of a chunk, so no sampler pads it with duplicates."""
    return instantiate(cfg.trainer, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                       enable_model_summary=False, use_distributed_sampler=False)


def run_backfill(cfg: DictConfig, frames, selected: list[ExtractorArtifact], artifacts: list[ExtractorArtifact],
                 dataset: str, out: Console = console) -> list[dict]:
    """Stage every selected artifact's missing windows, then commit them in one transaction per table.

    Plans already committed with the same content (artifact, data, stride, range, code: the plan's
    run key, recorded in the store's `committed.json`) are skipped and said so. Otherwise only the
    tail from the first decision time the store lacks (for this dataset, made by this code) is
    predicted: a new day costs one day of windows. `embed.force` re-runs whole plans.
    """
    groups = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "features", "labels")}
    fingerprint = data_fingerprint(cfg.data)
    store = FeatureStore(cfg.store.root)
    trainer = predict_trainer(cfg)
    committed = store.committed_runs()

    staged, skipped, complete = [], [], {}
    for artifact in selected:
        current = current_schema_hash(artifact.meta, frames.columns[COLUMN_SET[artifact.meta["inputs"]["frame"]]],
                                      groups["features"], groups["data"])
        same_kind = [a for a in artifacts if a.meta["kind"] == artifact.meta["kind"]]
        plan = make_plan(artifact, same_kind, frames, current, fingerprint,
                         stride_hours=cfg.embed.stride_hours, chunk_size=cfg.embed.chunk_size, dataset=dataset)
        if committed.get(plan.kind, {}).get(artifact.version) == plan.run_key and not cfg.embed.force:
            skipped.append(plan.run_key)
            continue
        work = plan if cfg.embed.force else plan.tail(store)
        if work is None:  # every row is stored already (appended by an earlier run)
            complete.setdefault(plan.kind, {})[artifact.version] = plan.run_key
            continue
        counts = stage_backfill(work, store, trainer, fingerprint, cfg.embed.chunk_size, cfg.embed.batch_size)
        counts["run_key"] = plan.run_key  # what committed.json records: the whole plan is in the store now
        staged.append(counts)
        if trainer.is_global_zero:
            until = f"{plan.until:%Y-%m-%d %H:%M} UTC" if plan.until is not None else "the data end"
            start = work.tail_from if work.tail_from is not None else plan.start
            out.print(
                f"{counts['kind']} {counts['version']} (fold {artifact.meta['fold']}): {counts['rows']:,} rows "
                f"for decisions from {start:%Y-%m-%d %H:%M} UTC up to {until} in {counts['chunks']} chunk(s)"
                + (" (appended)" if work.tail_from is not None else "")
                + (f", {counts['resumed_chunks']} resumed" if counts["resumed_chunks"] else "")
            )
    if trainer.is_global_zero:
        if skipped:
            out.print(f"embed: {len(skipped)} extractor backfill(s) unchanged since their commit: skipped")
        for kind, keys in complete.items():
            store.record_committed(kind, keys)
            out.print(f"embed: {len(keys)} {kind} backfill(s) already in the store: nothing to append")
    # Everything is staged: now the store changes, in one transaction per table.
    if staged and trainer.is_global_zero:
        commit_staged(store, staged)
        for kind in sorted({s["kind"] for s in staged}):
            out.print(f"committed {kind} -> {store.table_path(kind)} (table version {store.table_version(kind)})")
    trainer.strategy.barrier()
    return staged
