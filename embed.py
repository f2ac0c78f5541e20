"""Backfill batch run: trained extractors -> embeddings and raw logits in the feature store.

    python embed.py                                        # every trained extractor, CPU, shipped sample
    python embed.py embed.kinds=[tcn] trainer=gpu data=full
    python embed.py trainer=ddp trainer.accelerator=cpu trainer.devices=2 trainer.precision=32-true

Each extractor covers the decision times it is responsible for (backfill/plan.py); a run is
idempotent (it adds only what the store lacks, or replaces its versions' rows), atomic (one commit
per table once everything is staged) and resumable (a re-run after a crash skips the chunks
already staged). Only extractors trained on this data's lineage (dataset) are backfilled.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from backfill import BackfillInputError, run_backfill, select_artifacts
from cli import command
from features.build import build_feature_frames
from store.extractors import list_extractors
from store.lineage import checked_market_data


@hydra.main(version_base="1.3", config_path="conf", config_name="embed")
@command
def main(cfg: DictConfig) -> None:
    registry = Path(cfg.paths.artifacts_dir) / "extractors"
    groups = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "features", "labels")}
    market, dataset = checked_market_data(groups["data"], cfg.store.root)
    artifacts = [a for a in list_extractors(registry) if a.meta.get("dataset") == dataset]
    versions = cfg.embed.versions if isinstance(cfg.embed.versions, str) else list(cfg.embed.versions)
    selected = select_artifacts(artifacts, list(cfg.embed.kinds), versions)
    if not selected:
        raise BackfillInputError(
            f"no trained extractor of kinds {list(cfg.embed.kinds)} for dataset {dataset} under {registry}")
    frames = build_feature_frames(market.grid, market.fear_greed, groups["features"], groups["labels"])
    run_backfill(cfg, frames, selected, artifacts, dataset)

if __name__ == "__main__":
    main()
