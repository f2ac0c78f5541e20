"""The meta-learner's cost on a whole data set: frame assembly, training of every fold, inference.

    python benchmarks/stack.py [--data-dir ../shared/data] [--every 1] [--first-test-date 2021-01-01]

Builds what the stack reads, quickly: an extractor per fold (`--every`-th) trained on one batch
only (their weights do not change the meta-learner's speed) and backfilled at the daily close.
Then prints, from one run: the time to assemble the stacked frame by as-of reads of the store,
the LightGBM training time of every meta fold (tabular + Trishula, as `stack` configures them: inputs,
LightGBM parameters, early stopping), and inference rows/s of a served (saved and reloaded) model, its
inputs' per-day ranks included when it reads them. Everything goes to a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # the repo's packages, not this folder's scripts

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from rich.console import Console  # noqa: E402

import pipeline  # noqa: E402
from backfill import run_backfill  # noqa: E402
from stacking.folds import meta_folds  # noqa: E402
from stacking.frame import (  # noqa: E402
    assemble_stack_frame,
    complete_rows,
    configured_feature_sets,
    day_ranks,
    decision_rows,
    ranked_inputs,
)
from stacking.walkforward import FoldModel, StackSettings, train_fold  # noqa: E402
from store.feature_store import FeatureStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--every", type=int, default=1, help="train the extractors of every N-th fold")
    parser.add_argument("--first-test-date", default=None, help="evaluate folds testing from this date on")
    args = parser.parse_args()
    console = Console(width=140)
    pipeline.quiet_lightning()
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as tmp:
        overrides = [
            f"data.hourly_path={args.data_dir / 'hourly.parquet'}",
            f"data.fear_greed_path={args.data_dir / 'fear_greed.parquet'}",
            f"paths.artifacts_dir={tmp}/artifacts", f"paths.output_dir={tmp}/out",
            "trainer.max_epochs=1", "+trainer.limit_train_batches=1", f"pipeline.retrain_every_folds={args.every}",
        ]
        if args.first_test_date:
            overrides.append(f"split.first_test_date={args.first_test_date}")
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(config_name="pipeline", overrides=overrides)
        out = Path(cfg.paths.output_dir)
        started = time.perf_counter()
        frames, _, evaluated, all_folds = pipeline.data_stage(cfg, out)
        folds = pipeline.extractor_folds(cfg, evaluated, all_folds)
        in_use = pipeline.train_stage(cfg, frames, folds, out)
        artifacts = [a for kind in in_use for a in in_use[kind]]
        run_backfill(cfg, frames, artifacts, artifacts, frames.dataset)
        setup_seconds = time.perf_counter() - started

        kinds = list(cfg.stack.kinds)
        store = FeatureStore(cfg.store.root)
        t0 = time.perf_counter()
        rows = decision_rows(frames, cfg.labels.primary)
        frame = assemble_stack_frame(rows, store, kinds, allow_mixed_versions=True)
        frame = frame[complete_rows(frame, kinds)].reset_index(drop=True)
        assemble_seconds = time.perf_counter() - t0

        stack_cfg = OmegaConf.to_container(cfg.stack, resolve=True)
        meta, _ = meta_folds(evaluated, frame["date"].min(), purge_days=evaluated[0].purge_days, **stack_cfg["split"])
        features = configured_feature_sets(frames, kinds, store, stack_cfg)
        settings = StackSettings(
            label=cfg.labels.primary, params=stack_cfg["lgbm"],
            early_stopping_rounds=stack_cfg["early_stopping_rounds"],
            confidence=stack_cfg["confidence"], kinds=kinds, feature_schema_hash="bench",
            ranked=ranked_inputs(features, frames, stack_cfg["inputs"]), console=console,
        )
        t0 = time.perf_counter()
        for fold in meta:
            train_fold(frame, fold, features, settings, Path(tmp) / "meta" / f"fold_{fold.index:03d}")
        train_seconds = time.perf_counter() - t0

        served = FoldModel.load(Path(tmp) / "meta" / f"fold_{meta[-1].index:03d}", "trishula")
        ranked = served.meta["ranked_features"]
        served.raw_scores(day_ranks(frame.iloc[:1000], ranked), "bench")  # warm-up
        t0 = time.perf_counter()
        rounds = 5
        for _ in range(rounds):
            served.raw_scores(day_ranks(frame, ranked), "bench")
        inference_rate = rounds * len(frame) / (time.perf_counter() - t0)

    console.rule("benchmarks/stack.py")
    symbols = frames.daily["symbol"].nunique()
    console.print(f"data: {args.data_dir} ({symbols} symbols, {len(frames.daily):,} daily rows); "
                  f"{len(artifacts)} extractors trained on one batch and backfilled in {setup_seconds:.0f} s (set-up)")
    console.print(f"frame assembly (as-of reads of {len(kinds)} kinds): {len(frame):,} stacked rows "
                  f"x {len(features['trishula'])} features in {assemble_seconds:.2f} s")
    console.print(f"LightGBM training ({stack_cfg['inputs']} inputs), {len(meta)} meta folds x 2 models "
                  f"(tabular, trishula): {train_seconds:.1f} s "
                  f"({train_seconds / max(len(meta), 1):.2f} s per fold)")
    console.print(f"inference of a served Trishula model: {inference_rate:,.0f} rows/s ({len(frame):,} rows, "
                  f"{rounds} rounds)")


if __name__ == "__main__":
    main()
