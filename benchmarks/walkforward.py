"""The walk-forward benchmark: the whole default main job on real data, timed per stage.

    python benchmarks/walkforward.py --fresh                  # ../shared/data, conf/pipeline.yaml as is
    python benchmarks/walkforward.py --fresh -- trainer=gpu   # Hydra overrides after --

Runs pipeline.py's stages in process (data -> extractors per kind -> backfill -> stack -> backtest ->
report, as `python pipeline.py` does) on `--data-dir` with the DEFAULT config: only the data paths and
the run's folders are set, anything else comes after `--`. Target: 900 s on 2 CPU cores, fresh.

Printed and written, per stage: its wall seconds, its share of the stages' sum, and its throughput:
- data: hourly rows built per second;
- extractors_<kind>: training samples/s = sum over the fits trained in this run of (train windows x
  epochs run) / the stage's seconds (`epochs` is Lightning's current_epoch after fit: the training
  epochs run, early stopping included). The stage's seconds also hold each fit's validation epochs,
  its best-checkpoint validate and test passes and the datamodule set-up, so this is the stage's rate,
  not the bare training loop's. Also the fits, the epochs and the best epoch (0-based, where the
  artifact records it) per fit, and the achieved GFLOP/s: FLOPs per training sample (forward +
  backward, FlopCounterMode on the configured net and window) x training samples/s, against a float32
  matmul timed in the same run, before and after the walk-forward;
- backfill: windows scored per second (what run_backfill staged);
- stack: meta folds, LightGBM models fitted per second, and the meta train / val / test rows;
- backtest: orders (one per signal) per second; report: seconds only.
`total_seconds` is the walk-forward's wall time, from the data stage's start to the report's end
(the matmul and the FLOP count run outside it).

Artifacts go to `artifacts/walkforward` (a re-run reuses unchanged extractors, backfills and stack
runs, and its stage seconds do not count: `--fresh` starts from nothing), outputs to
`outputs/walkforward/<time>/`, figures to `benchmarks/results/walkforward.json` and
`walkforward.md` (committed). About 13 minutes on 2 CPU cores (774 s measured on 12-03).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # the repo's packages, not this folder's scripts

import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from rich.table import Table  # noqa: E402

import pipeline  # noqa: E402
from backtest import BacktestResult, RankedBookResult  # noqa: E402
from benchmarks import stages  # noqa: E402
from benchmarks.measure import flops_per_sample, matmul_gflops  # noqa: E402
from evaluation import run_payoff, served_panel, write_report  # noqa: E402
from features.build import FeatureFrames  # noqa: E402
from models import ExtractorModule  # noqa: E402
from stacking.registry import RUN_FILE  # noqa: E402
from stacking.run import StackRun  # noqa: E402
from store.extractors import ExtractorArtifact  # noqa: E402
from store.files import write_json_atomic, write_text_atomic  # noqa: E402
from train import CONFIG_GROUPS  # noqa: E402

TARGET_SECONDS, TARGET_CORES = 900, 2
console = pipeline.console


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    stages.add_run_arguments(parser, "walkforward")
    parser.add_argument("--matmul-size", type=int, default=None, help="default 2048 on a CPU, 4096 on a GPU")
    parser.add_argument("--matmul-rounds", type=int, default=5, help="matmul runs before and again after")
    return parser


def _walk_forward(cfg: DictConfig, out: Path, timed: stages.StageTimer) -> tuple[stages.WalkForward, BacktestResult]:
    """Every stage of pipeline.py's main(), each timed."""
    walk = stages.run_through_stack(cfg, out, timed)

    panel = served_panel(walk.grid, cfg.backtest)  # the backtest's and the payoff tables' (pipeline.py's main)

    def backtest() -> tuple[BacktestResult | RankedBookResult, dict]:
        result = pipeline.backtest_stage(cfg, walk.frames, walk.grid, walk.run.signals, out, panel)
        return result, result.to_json_dict()

    result, summary = timed("backtest", backtest)
    trades = result.trades if isinstance(result, BacktestResult) else None

    def report() -> None:  # as pipeline.py's report stage: what the book is paid on each score, then the report
        metrics = {**walk.run.metrics, "payoff": run_payoff(walk.run.predictions, walk.grid, cfg.backtest, panel=panel)}
        context = pipeline.report_context(cfg, walk.frames, walk.evaluated, walk.run.predictions)
        write_report(out, metrics, walk.run.predictions, summary, trades, context=context)

    timed("report", report)
    return walk, result


# -- FLOPs and throughput per stage -----------------------------------------------------------------
def training_flops(cfg: DictConfig, kind: str, frames: FeatureFrames, fold: int) -> float:
    """Forward + backward FLOPs per training sample of the configured `kind` on one train batch of `fold`."""
    model = cfg.extractors[kind]
    groups = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in CONFIG_GROUPS}
    groups["split"] |= {"first_test_date": None, "last_test_date": None}  # as train_stage trains every fold
    datamodule = instantiate(model.datamodule, **groups, fold=fold, _partial_=True)(frames=frames)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    datamodule.teardown("fit")
    return flops_per_sample(ExtractorModule(net=instantiate(model.net)), batch)[1]


def _per_second(count: int, seconds: float) -> float | None:
    """None when the stage did nothing (reused): a rate of 0 would read as a slow stage."""
    return count / seconds if count else None


def _trained_here(artifact: ExtractorArtifact, since: dt.datetime) -> bool:
    """Saved by this run; a reused artifact cost no training and is left out of the rate."""
    return dt.datetime.fromisoformat(artifact.meta["created_at"]) >= since


def extractor_figures(artifacts: list[ExtractorArtifact], seconds: float, since: dt.datetime) -> dict:
    """One kind's fits, their epochs and the stage's training samples/s."""
    trained = [a for a in artifacts if _trained_here(a, since)]
    samples = sum(a.meta["samples"]["train"] * a.meta["metrics"]["epochs"] for a in trained)
    return {
        "fits": len(artifacts), "trained": len(trained),
        "folds": [a.meta["fold"] for a in artifacts],
        "train_windows": [a.meta["samples"]["train"] for a in artifacts],
        "epochs": [a.meta["metrics"]["epochs"] for a in artifacts],
        "best_epochs": [a.meta["metrics"].get("best_epoch") for a in artifacts],
        "samples_trained": samples,
        "train_samples_per_s": _per_second(samples, seconds),
    }


def stack_figures(run: StackRun, seconds: float) -> dict:
    """Meta folds, LightGBM models fitted (every model of every fold) and the rows they saw."""
    folds = json.loads((run.run_dir / RUN_FILE).read_text())["folds"]
    models = 0 if run.reused else sum(len(f["models"]) for f in folds)
    return {"meta_folds": len(folds), "models": models, "reused": run.reused,
            "models_per_s": _per_second(models, seconds),
            "rows": {part: sum(f["rows"][part] for f in folds) for part in ("train", "val", "test")}}


def stage_figures(walk: stages.WalkForward, result: BacktestResult, seconds: dict[str, float],
                  since: dt.datetime) -> dict[str, dict]:
    """Per stage: seconds, share of the stages' sum, and its throughput fields."""
    hourly_rows = len(walk.frames.hourly)
    windows = sum(plan["rows"] for plan in walk.backfilled)
    orders = len(walk.run.signals)  # the signal rows the strategy reads
    throughput = {
        "data": {"hourly_rows": hourly_rows, "hourly_rows_per_s": hourly_rows / seconds["data"]},
        **{f"extractors_{kind}": extractor_figures(artifacts, seconds[f"extractors_{kind}"], since)
           for kind, artifacts in walk.in_use.items()},
        "backfill": {"plans": len(walk.backfilled), "windows": windows,
                     "windows_per_s": _per_second(windows, seconds["backfill"])},
        "stack": stack_figures(walk.run, seconds["stack"]),
        "backtest": {"orders": orders, "positions": len(result.trades if isinstance(result, BacktestResult)
                                                        else result.positions),
                     "orders_per_s": orders / seconds["backtest"]},
        "report": {},
    }
    stage_sum = sum(seconds.values())
    return {stage: {"seconds": s, "share": round(s / stage_sum, 4), **throughput[stage]}
            for stage, s in seconds.items()}


def add_gflops(figures: dict[str, dict], cfg: DictConfig, walk: stages.WalkForward, matmul: float) -> None:
    """Each extractor stage's achieved training GFLOP/s and its share of the matmul's."""
    for kind, artifacts in walk.in_use.items():
        entry = figures[f"extractors_{kind}"]
        entry["flops_per_sample"] = training_flops(cfg, kind, walk.frames, artifacts[0].meta["fold"])
        rate = entry["train_samples_per_s"]
        entry["gflops"] = None if rate is None else entry["flops_per_sample"] * rate / 1e9
        entry["matmul_share"] = None if rate is None else entry["gflops"] / matmul


# -- the machine and the target ---------------------------------------------------------------------
def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M) if cpuinfo.is_file() else None
    return found.group(1).strip() if found else platform.processor() or platform.machine()


def device_info(matmul_device: torch.device) -> dict:
    info = {"cpu": _cpu_name(), "cpu_cores": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "matmul_device": str(matmul_device)}
    if matmul_device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(matmul_device)
    return info


def target(total: float, fresh: bool, cores: int) -> dict:
    """The 900 s target; `comparable` only for a fresh run on 2 cores (reused stages are fast)."""
    return {"seconds": TARGET_SECONDS, "cpu_cores": TARGET_CORES, "met": total <= TARGET_SECONDS,
            "comparable": fresh and cores == TARGET_CORES}


def _verdict(result: dict) -> str:
    goal = result["target"]
    verdict = "met" if goal["met"] else "MISSED"
    if not goal["comparable"]:
        verdict += (f" (not comparable: fresh={result['fresh']}, {result['device']['cpu_cores']} cores; "
                    f"the target is a fresh run on {goal['cpu_cores']} cores)")
    return f"target {goal['seconds']} s on {goal['cpu_cores']} CPU cores: {verdict}"


# -- report -----------------------------------------------------------------------------------------
def _rate(value: float | None, unit: str) -> str:
    return "reused" if value is None else f"{value:,.1f} {unit}/s"


def throughput_text(stage: str, entry: dict) -> str:
    """One line for the table and walkforward.md."""
    if stage.startswith("extractors_"):
        gflops = "" if entry["gflops"] is None else (f"; {entry['gflops']:.2f} GFLOP/s "
                                                     f"({entry['matmul_share']:.1%} of the matmul)")
        return (f"{_rate(entry['train_samples_per_s'], 'train samples')}; {entry['fits']} fits "
                f"({entry['trained']} trained), epochs {entry['epochs']}, best epochs {entry['best_epochs']}"
                + gflops)
    texts = {
        "data": lambda: f"{_rate(entry['hourly_rows_per_s'], 'hourly rows')} ({entry['hourly_rows']:,} rows)",
        "backfill": lambda: f"{_rate(entry['windows_per_s'], 'windows')} ({entry['windows']:,} windows, "
                            f"{entry['plans']} plans)",
        "stack": lambda: f"{_rate(entry['models_per_s'], 'models')} ({entry['models']} models, "
                         f"{entry['meta_folds']} meta folds, {entry['rows']['train']:,} train rows summed)",
        "backtest": lambda: f"{_rate(entry['orders_per_s'], 'orders')} ({entry['orders']:,} orders, "
                            f"{entry['positions']:,} trades or daily positions)",
        "report": lambda: "",
    }
    return texts[stage]()


def print_table(result: dict) -> None:
    table = Table(title=f"Walk-forward stages ({result['total_seconds']:.0f} s in all, fresh={result['fresh']})")
    for column in ("stage", "seconds", "share", "throughput"):
        table.add_column(column, justify="left" if column in ("stage", "throughput") else "right")
    for stage, entry in result["stages"].items():
        table.add_row(stage, f"{entry['seconds']:.1f}", f"{entry['share']:.1%}", throughput_text(stage, entry))
    console.print(table)
    console.print(f"float32 matmul {result['matmul']['size']}^3: {result['matmul_gflops']:.1f} GFLOP/s (median; "
                  f"{result['matmul']['before']:.1f} before, {result['matmul']['after']:.1f} after the walk-forward)")
    console.print(_verdict(result))


def markdown(result: dict) -> str:
    data, device = result["data"], result["device"]
    extra = result["overrides"][4:]  # past the data paths and the run's folders
    config = f"default config with `{' '.join(extra)}`" if extra else "default config"
    lines = [
        "# Walk-forward benchmark (benchmarks/walkforward.py)",
        "",
        f"Run {result['finished_at']} on {data['coins']} coins, {data['days'][0]} .. {data['days'][1]} "
        f"({data['hourly_rows']:,} hourly rows); {config}; fresh={result['fresh']}; "
        f"{device['cpu']}, {device['cpu_cores']} cores, torch {device['torch']} "
        f"({device['torch_threads']} threads).",
        f"{result['total_seconds']:.0f} s in all; {_verdict(result)}. Float32 matmul: "
        f"{result['matmul_gflops']:.1f} GFLOP/s.",
        "",
        "| stage | seconds | share | throughput |",
        "| --- | ---: | ---: | --- |",
    ]
    lines += [f"| {stage} | {entry['seconds']:.1f} | {entry['share']:.1%} | {throughput_text(stage, entry)} |"
              for stage, entry in result["stages"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    out = stages.prepare(args, "walkforward")
    cfg, overrides = stages.compose_pipeline(args, out)
    on_gpu = cfg.trainer.accelerator in ("gpu", "cuda") and torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")  # the matmul runs where the extractors train
    size = args.matmul_size or (4096 if on_gpu else 2048)

    before = matmul_gflops(device, size, args.matmul_rounds)
    since = dt.datetime.now(dt.UTC)
    timed = stages.StageTimer(digits=3)
    walk, backtest = _walk_forward(cfg, out, timed)
    total = timed.total()
    after = matmul_gflops(device, size, args.matmul_rounds)
    matmul = statistics.median(before + after)

    figures = stage_figures(walk, backtest, timed.seconds, since)
    add_gflops(figures, cfg, walk, matmul)
    span = pipeline.data_span(walk.frames)
    info = device_info(device)
    result = {
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "overrides": overrides,
        "fresh": args.fresh,
        "data": {"coins": len(span["symbols"]), "days": span["days"], "hourly_rows": len(walk.frames.hourly),
                 "evaluated_folds": len(walk.evaluated)},
        "device": info,
        "stages": figures,
        "matmul_gflops": matmul,
        "matmul": {"size": size, "before": statistics.median(before), "after": statistics.median(after)},
        "total_seconds": total,
        "target": target(total, args.fresh, info["cpu_cores"]),
        "output_dir": str(out),
    }
    print_table(result)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(result, args.results_dir / "walkforward.json")
    write_text_atomic(markdown(result), args.results_dir / "walkforward.md")
    console.print(f"figures in {args.results_dir / 'walkforward.json'} and walkforward.md; "
                  f"report {out / 'report.html'}")


if __name__ == "__main__":
    main()
