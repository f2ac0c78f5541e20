"""What the walk-forward benchmarks share (quality.py, walkforward.py, harness.py): their command line, the
composed pipeline config, and pipeline.py's stages run in process, each timed, from the data plane to the stack."""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import pipeline
from backfill import run_backfill
from features.build import FeatureFrames
from stacking.run import StackRun, run_stack
from store.extractors import ExtractorArtifact

ROOT = Path(__file__).resolve().parents[1]
console = pipeline.console
QUALITY_ABLATIONS = ("no_lstm", "no_tcn", "rank_objective")


def add_run_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """The data, the artifacts (`--fresh`), where figures and outputs go, and Hydra overrides after `--`."""
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--artifacts-dir", type=Path, default=ROOT / "artifacts" / name)
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--outputs-dir", type=Path, default=ROOT / "outputs" / name,
                        help="each run writes its outputs (report.html, ...) to a timestamped folder here")
    parser.add_argument("--fresh", action="store_true",
                        help="delete the artifacts dir first, so every stage runs and its seconds count")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides (after --)")


def prepare(args: argparse.Namespace, name: str) -> Path:
    """Check the data is there and clear the artifacts on `--fresh`; the run's output folder."""
    if not (args.data_dir / "hourly.parquet").is_file():
        raise SystemExit(f"no hourly.parquet in {args.data_dir}: the {name} benchmark needs ../shared/data")
    if args.fresh and args.artifacts_dir.exists():
        shutil.rmtree(args.artifacts_dir)
    return args.outputs_dir / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def compose_pipeline(args: argparse.Namespace, out: Path, *knobs: str) -> tuple[DictConfig, list[str]]:
    """pipeline.yaml on `--data-dir` with the run's folders, a benchmark's `knobs` and the user's overrides;
    the overrides come back too (the data paths first: the figures files show the rest)."""
    overrides = [
        f"data.hourly_path={args.data_dir / 'hourly.parquet'}",
        f"data.fear_greed_path={args.data_dir / 'fear_greed.parquet'}",
        f"paths.output_dir={out}",
        f"paths.artifacts_dir={args.artifacts_dir}",
        *knobs,
        *args.overrides,
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="pipeline", overrides=overrides), overrides


def compose_quality(args: argparse.Namespace, out: Path, *knobs: str) -> tuple[DictConfig, list[str]]:
    """`compose_pipeline` with the ablations the quality benchmark trains beside Trishula (the embeddings one
    flips whatever the configured Trishula does), unless the overrides set `stack.ablations` themselves: the
    quality benchmark and the experiment harness compose the same default, so each reuses the other's stages."""
    cfg, overrides = compose_pipeline(args, out, *knobs)
    if not any(o.startswith("stack.ablations=") for o in overrides):
        ablations = ["no_embeddings" if cfg.stack.embeddings else "with_embeddings", *QUALITY_ABLATIONS]
        cfg.stack.ablations = ablations
        overrides.append(f"stack.ablations=[{','.join(ablations)}]")
    return cfg, overrides


class StageTimer:
    """Runs a stage under a console rule and keeps its wall seconds (rounded to `digits`) by name."""

    def __init__(self, digits: int):
        self.digits = digits
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()

    def __call__(self, stage: str, call: Callable[[], object]):
        began = time.perf_counter()
        console.rule(stage)
        value = call()
        self.seconds[stage] = round(time.perf_counter() - began, self.digits)
        return value

    def total(self) -> float:
        """Seconds since the timer was made: the stages and what ran between them."""
        return round(time.perf_counter() - self.started, self.digits)


@dataclass
class WalkForward:
    """What the stages up to the stack made; `backfilled`: run_backfill's counts per staged plan."""

    frames: FeatureFrames
    grid: pd.DataFrame
    evaluated: list
    in_use: dict[str, list[ExtractorArtifact]]
    backfilled: list[dict]
    run: StackRun


def run_through_stack(cfg: DictConfig, out: Path, timed: StageTimer) -> WalkForward:
    """pipeline.py's stages data -> extractors -> backfill -> stack, timed as `data`, `extractors_<kind>`
    (each kind apart: their costs differ), `backfill` and `stack`."""
    pipeline.quiet_lightning()
    frames, grid, evaluated, all_folds = timed("data", lambda: pipeline.data_stage(cfg, out))
    training_folds = pipeline.extractor_folds(cfg, evaluated, all_folds)
    in_use = {}
    for kind in cfg.stack.kinds:
        kind_cfg = copy.deepcopy(cfg)
        kind_cfg.stack.kinds = [kind]
        in_use |= timed(f"extractors_{kind}", lambda c=kind_cfg: pipeline.train_stage(c, frames, training_folds, out))
    artifacts = [a for kind in in_use for a in in_use[kind]]
    backfilled = timed("backfill", lambda: run_backfill(cfg, frames, artifacts, artifacts, frames.dataset))
    run = timed("stack", lambda: run_stack(cfg, frames, console, out,
                                           among={k: [a.version for a in v] for k, v in in_use.items()}))
    return WalkForward(frames, grid, evaluated, in_use, backfilled, run)
