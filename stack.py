"""Train and evaluate the Trishula meta-learner from the feature store; promote it if it wins.

    python stack.py                                   # the shipped sample, CPU
    python stack.py data=full split.first_test_date=2023-01-01
    python stack.py stack.backend=dask stack.dask.n_workers=4
    python stack.py stack.promotion.metric=log_loss stack.force=true

Per walk-forward fold it reads the store point in time, trains the tabular-only and the stacked
LightGBM models, saves them (artifacts/trishula/runs/<run_id>/), predicts the fold's test rows
through the saved models, and writes to the run directory: metrics.json (the models, their parts
and the factor baselines, per fold, pooled and paired against Trishula), predictions.parquet,
signals.parquet and report.html. A run whose inputs (config, data, extractor versions in the
store) are unchanged is reused, not retrained.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from cli import command, console
from evaluation import format_number, write_report
from evaluation.report import blend_line
from features.build import load_feature_frames
from stacking.run import run_stack


@hydra.main(version_base="1.3", config_path="conf", config_name="stack")
@command
def main(cfg: DictConfig) -> None:
    out = Path(cfg.paths.output_dir)
    groups = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "features", "labels")}
    with console.status("loading data and building features"):
        frames = load_feature_frames(groups["data"], groups["features"], groups["labels"])
    run = run_stack(cfg, frames, console, out)
    report = write_report(out, run.metrics, run.predictions, None, None)
    for row in run.metrics["comparison"]:
        console.print(
            f"  {row['model']:>22}: IC {format_number(row['ic_mean'])} (t {format_number(row['ic_t_stat'])})  "
            f"Trishula minus it {format_number(row['paired_diff'])} (paired t {format_number(row['paired_t_stat'])})  "
            f"macro-F1 {format_number(row['macro_f1'])}  log-loss {format_number(row['log_loss'])}  rows {row['rows']}"
        )
    blend = blend_line(run.metrics["verdict"].get("against_blend"))
    if blend:
        console.print(blend, soft_wrap=True)
    console.print(f"stack: metrics, predictions and signals in {out}; report at {report}")


if __name__ == "__main__":
    main()
