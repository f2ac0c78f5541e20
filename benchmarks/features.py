"""Build every feature and label for a whole data set; print rows/s and peak memory.

    python benchmarks/features.py [--hourly ../shared/data/hourly.parquet] [--fear-greed ...]

Target on 2 cores for ../shared/data (about 0.94 M hourly rows, 36 coins): under 60 s, under 4 GB.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `features` package: put the repo root first instead.
sys.path[0] = str(ROOT)

from omegaconf import OmegaConf  # noqa: E402

from features.build import build_feature_frames  # noqa: E402
from marketdata import load_market_data  # noqa: E402
from splits.artifacts import fold_record, folds_from_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hourly", default=str(ROOT.parent / "shared/data/hourly.parquet"))
    parser.add_argument("--fear-greed", default=str(ROOT.parent / "shared/data/fear_greed.parquet"))
    args = parser.parse_args()
    cfg = OmegaConf.load(ROOT / "conf/features/default.yaml")
    labels = OmegaConf.load(ROOT / "conf/labels/default.yaml")
    split = OmegaConf.load(ROOT / "conf/split/walkforward.yaml")

    stages = {}
    start = time.perf_counter()
    grid, _, fear_greed = load_market_data(args.hourly, args.fear_greed)
    stages["load + validate + gap policy"] = time.perf_counter() - start
    mark = time.perf_counter()
    frames = build_feature_frames(grid, fear_greed, OmegaConf.to_container(cfg), OmegaConf.to_container(labels))
    stages["features + labels"] = time.perf_counter() - mark
    mark = time.perf_counter()
    folds = folds_from_config(frames.daily, split, max(frames.horizons))
    for fold in folds:
        fold_record(fold, frames.daily, frames.hourly, frames.columns["lstm"], frames.columns["tcn"])
    stages[f"{len(folds)} folds + normalisation"] = time.perf_counter() - mark
    total = time.perf_counter() - start

    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"data: {args.hourly}")
    built = {name: len(columns) for name, columns in frames.columns.items()}
    print(f"rows: {len(grid):,} hourly, {len(frames.daily):,} daily; feature columns {built}; "
          f"labels: {len(frames.label_columns)} columns on each frame")
    for name, seconds in stages.items():
        print(f"  {name:<32} {seconds:7.2f} s  ({seconds / total:5.1%})")
    print(f"total {total:.2f} s: {len(grid) / total:,.0f} hourly rows/s; peak memory (max RSS) {peak_gb:.2f} GB")
    print(f"targets: time {total / 60:.2f}x of 60 s, memory {peak_gb / 4:.2f}x of 4 GB")


if __name__ == "__main__":
    main()
