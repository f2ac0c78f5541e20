"""The main job: `python pipeline.py [data=full] [split.first_test_date=...]`.

For now it runs the data plane end to end: load and validate the market data, report gaps, build
every feature and label, make the walk-forward folds with their train-only normalisation, write
them to `paths.output_dir` and print a summary. Later stages join here as they are built.
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from features.build import FeatureFrames, build_feature_frames
from marketdata import load_market_data
from marketdata.gaps import summarise_gaps
from splits.artifacts import fold_record, folds_from_config
from store import write_json_atomic, write_parquet_atomic

console = Console()


def _gap_table(grid: pd.DataFrame, gaps: pd.DataFrame) -> Table:
    summary = summarise_gaps(grid[~grid["is_filled"]], gaps)
    table = Table(title="Hourly bars and gaps per symbol (gaps filled by policy)")
    for column in ["symbol", *summary.columns]:
        table.add_column(column, justify="left" if column == "symbol" else "right")
    for symbol, row in summary.iterrows():
        table.add_row(symbol, *(f"{v:,}" for v in row))
    return table


def _feature_table(frames: FeatureFrames) -> Table:
    table = Table(title="Features (share missing = warm-up rows and unlabelled tails)")
    for column in ("frame", "column", "missing", "mean", "std"):
        table.add_column(column, justify="left" if column in ("frame", "column") else "right")
    for name, frame in (("daily", frames.daily), ("hourly", frames.hourly)):
        for column in frame.columns.drop(["symbol", "ts", "is_filled"], errors="ignore"):
            values = frame[column].to_numpy(dtype="float64", na_value=np.nan)
            table.add_row(
                name, column, f"{np.isnan(values).mean():.1%}", f"{np.nanmean(values):.4g}", f"{np.nanstd(values):.4g}"
            )
    return table


@hydra.main(version_base="1.3", config_path="conf", config_name="pipeline")
def main(cfg: DictConfig) -> None:
    out = Path(cfg.paths.output_dir)
    started = time.perf_counter()
    with console.status("loading and validating market data"):
        grid, gaps, fear_greed = load_market_data(**cfg.data)
    console.print(_gap_table(grid, gaps))
    with console.status("building features and labels"):
        frames = build_feature_frames(
            grid, fear_greed, OmegaConf.to_container(cfg.features), OmegaConf.to_container(cfg.labels.thresholds)
        )
    if cfg.labels.primary not in cfg.labels.thresholds:
        raise ValueError(f"labels.primary={cfg.labels.primary} is not among labels.thresholds")
    console.print(_feature_table(frames))

    folds = folds_from_config(frames.daily, cfg.split, max(frames.horizons))
    if not folds:
        raise ValueError(
            f"no walk-forward fold fits in {frames.daily['ts'].min().date()} .. {frames.daily['ts'].max().date()} "
            f"with split={OmegaConf.to_container(cfg.split)}"
        )
    records = [
        fold_record(f, frames.daily, frames.hourly, frames.columns["lstm"], frames.columns["tcn"]) for f in folds
    ]

    write_parquet_atomic(frames.daily, out / "daily_features.parquet")
    write_parquet_atomic(frames.hourly, out / "hourly_features.parquet")
    write_parquet_atomic(gaps, out / "gaps.parquet")
    write_json_atomic({"folds": records}, out / "folds.json")
    label = cfg.labels.primary
    summary = {
        "symbols": sorted(frames.daily["symbol"].unique()),
        "days": [str(frames.daily["ts"].min().date()), str(frames.daily["ts"].max().date())],
        "daily_rows": len(frames.daily),
        "hourly_rows": len(frames.hourly),
        "feature_columns": {name: list(cols) for name, cols in frames.columns.items()},
        "filled_hours": int(frames.hourly["is_filled"].sum()),
        "primary_label_counts": {
            name: int((frames.daily[label] == code).sum()) for code, name in enumerate(("SELL", "HOLD", "BUY"))
        },
        "folds": len(records),
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_json_atomic(summary, out / "summary.json")
    console.print(
        f"{summary['daily_rows']:,} daily and {summary['hourly_rows']:,} hourly rows for "
        f"{len(summary['symbols'])} symbols; {len(records)} folds "
        f"(test {records[0]['test_start']} .. {records[-1]['test_end']}); "
        f"{label}: {summary['primary_label_counts']}; written to {out} in {summary['seconds']} s"
    )


if __name__ == "__main__":
    main()
