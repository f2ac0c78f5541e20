"""A screen of extractor recipes on the folds before the development period: cheap, and it spends no look.

    python benchmarks/screen.py lstm --variant default --variant "rank_corr=model/objective=rank_corr" --seeds 42 1 2
    python benchmarks/screen.py tcn --variant default --variant "rank_corr=model/objective=rank_corr" --name tcn

Each variant (`name` or `name=override,override,...`, train.py's overrides; a list value keeps its commas)
trains the kind on every fold whose test window ends before the development period (2021-02-20: folds 0-5 on
../shared/data, 84 test days), each
fold warm-started from the one before as the main job chains them (`--cold`: each from scratch, which says
whether a fresh net keeps learning past one pass), once per seed. For every fit it scores the
daily rank IC of p(BUY) - p(SELL) against the label's forward return on the fit's own train, validation and
test windows, the daily quintile spread (the top fifth's mean forward return less the bottom fifth's: what the
ranked book's legs are paid before costs, where the IC counts only order), and keeps its learning curve; per
variant: the means over folds, per seed and over seeds, and the validation IC's mean by epoch with the share of
fits whose best validation IC came after the first epoch (whether a recipe keeps learning). A screen
says which candidates deserve a plan: it is no result, and the development years judge them
(`benchmarks/harness.py`). Written to benchmarks/results/screen/<name>.json and .md. The shipped sample starts
in December 2022: it has no such fold, and the screen says so.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # the repo's packages, not this folder's scripts

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from backfill.plan import trained_net  # noqa: E402
from benchmarks.periods import DEVELOPMENT, PERIODS  # noqa: E402
from datamodules.windows import WindowDataset  # noqa: E402
from evaluation.statistics import daily_quintile_spread, daily_rank_ic  # noqa: E402
from features.build import label_horizon_days, load_feature_frames  # noqa: E402
from features.labels import BUY, SELL  # noqa: E402
from splits import Fold  # noqa: E402
from splits.artifacts import folds_from_config  # noqa: E402
from store.files import write_json_atomic, write_text_atomic  # noqa: E402
from train import extractor_groups, train_extractor  # noqa: E402

PARTS = ("train", "val", "test")


def parse_variant(text: str) -> tuple[str, list[str]]:
    """`name=override,override`: the overrides split at commas outside brackets (a list value keeps its own)."""
    name, _, overrides = text.partition("=")
    return name, [o for o in re.split(r",(?![^\[]*\])", overrides) if o]


def config(kind: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=[f"model={kind}", *overrides])


def screened_folds(cfg, frames) -> list[Fold]:
    """The folds whose test window ends before the development period."""
    folds = folds_from_config(frames.daily, extractor_groups(cfg)["split"], max(frames.horizons),
                              label_horizon_days(cfg.labels.primary))
    return [f for f in folds if f.test_end < PERIODS[DEVELOPMENT][0]]


def part_scores(cfg, artifact, frames) -> dict[str, dict[str, float]]:
    """The fit's mean daily rank IC, quintile spread and rank correlation with the low-volatility factor (how much
    of the score is "calm coins do better", `lowvol_30d` of the decision day) on its own train, validation and
    test windows."""
    # Partial, then called: the frames are objects, not config (as train.py builds its datamodule).
    make = instantiate(cfg.model.datamodule, **extractor_groups(cfg), fold=cfg.fold, _partial_=True)
    datamodule = make(frames=frames)
    datamodule.setup("fit")
    net = trained_net(artifact).eval()
    frame = getattr(frames, datamodule.frame_kind)
    forward = frame[f"fwd_ret_{label_horizon_days(cfg.labels.primary)}d"].to_numpy()
    # A window decided at a day's close reads that day's daily row (decision time less a day: its ts).
    lowvol = frames.daily.set_index(["symbol", "ts"])["lowvol_30d"]
    out = {"ic": {}, "spread": {}, "lowvol": {}}
    for part in PARTS:
        samples = datamodule.samples[part]
        loader = DataLoader(datamodule.datasets[part], batch_size=4096, collate_fn=WindowDataset.collate_fn)
        with torch.no_grad():
            probs = torch.cat([net(batch[0]).logits.softmax(-1) for batch in loader]).numpy()
        day = pd.MultiIndex.from_arrays([samples["symbol"], samples["decision_time"] - pd.Timedelta(days=1)])
        rows = pd.DataFrame({"date": samples["decision_time"].to_numpy(), "score": probs[:, BUY] - probs[:, SELL],
                             "target": forward[samples["row"].to_numpy()],
                             "lowvol": lowvol.reindex(day).to_numpy()})
        out["ic"][part] = float(daily_rank_ic(rows, target="target").mean())
        out["spread"][part] = float(daily_quintile_spread(rows, target="target").mean())
        out["lowvol"][part] = float(daily_rank_ic(rows, target="lowvol").mean())
    datamodule.teardown("fit")
    return out


def screen(kind: str, name: str, overrides: list[str], seeds: list[int], frames, artifacts: Path,
           data: list[str], cold: bool = False) -> dict:
    """The variant's fits over the screened folds, once per seed (`data`: the data overrides all share; `cold`:
    no fold starts from the one before)."""
    fits, folds = [], [f.index for f in screened_folds(config(kind, [*data, *overrides]), frames)]
    for seed in seeds:
        previous = None
        for fold in folds:
            cfg = config(kind, [f"fold={fold}", f"seed={seed}", f"paths.artifacts_dir={artifacts}",
                                f"paths.output_dir={artifacts / 'runs' / name / str(seed) / str(fold)}",
                                "+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
                                *([f"init_from={previous}"] if previous and not cold else []), *data, *overrides])
            started = time.perf_counter()
            artifact = train_extractor(cfg, frames=frames)
            previous = artifact.path
            metrics = artifact.meta["metrics"]
            fits.append({"seed": seed, "fold": fold, **part_scores(cfg, artifact, frames),
                         "best_epoch": metrics["best_epoch"], "epochs": metrics["epochs"],
                         "val_ic_by_epoch": [e["val_ic"] for e in metrics["learning_curve"]],
                         "seconds": round(time.perf_counter() - started, 1)})
            print(f"screen: {kind} {name} seed {seed} fold {fold}: " + ", ".join(
                f"{part} IC {fits[-1]['ic'][part]:+.3f}" for part in PARTS)
                  + f", test spread {fits[-1]['spread']['test']:+.4f}", flush=True)
    by_seed = {seed: {part: float(np.mean([f["ic"][part] for f in fits if f["seed"] == seed])) for part in PARTS}
               for seed in seeds}
    spread = {seed: float(np.mean([f["spread"]["test"] for f in fits if f["seed"] == seed])) for seed in seeds}
    lowvol = {seed: float(np.mean([f["lowvol"]["test"] for f in fits if f["seed"] == seed])) for seed in seeds}
    return {"kind": kind, "variant": name, "overrides": overrides, "fits": fits, "by_seed": by_seed,
            "mean": {part: float(np.mean([s[part] for s in by_seed.values()])) for part in PARTS},
            "sd": {part: statistics.stdev([s[part] for s in by_seed.values()]) if len(seeds) > 1 else None
                   for part in PARTS},
            "test_spread_by_seed": spread, "test_spread": float(np.mean(list(spread.values()))),
            "test_spread_sd": statistics.stdev(spread.values()) if len(seeds) > 1 else None,
            "test_lowvol": float(np.mean(list(lowvol.values())))}


def learning(fits: list[dict]) -> tuple[list[float], float | None]:
    """The fits' mean validation IC by epoch (over the fits that ran it) and the share of fits of more than one
    epoch whose best validation IC came after the first (None: every fit ran one epoch)."""
    curves = [f["val_ic_by_epoch"] for f in fits]
    by_epoch = [float(np.mean([c[e] for c in curves if len(c) > e])) for e in range(max(map(len, curves)))]
    longer = [c for c in curves if len(c) > 1]
    return by_epoch, (float(np.mean([int(np.argmax(c)) > 0 for c in longer])) if longer else None)


def learning_cells(variant: dict) -> str:
    """`val IC by epoch | best after epoch 1` table cells (one epoch: the first alone and a blank share)."""
    by_epoch, later = learning(variant["fits"])
    return " → ".join(f"{v:+.3f}" for v in by_epoch) + " | " + ("" if later is None else f"{100 * later:.0f} %")


def spread_cell(variant: dict) -> str:
    """The test quintile spread in %, with its sd over seeds (results written before the spread: blank)."""
    if "test_spread" not in variant:
        return ""
    sd = variant["test_spread_sd"]
    return f"{100 * variant['test_spread']:+.2f}" + ("" if sd is None else f" ({100 * sd:.2f})")


def lowvol_cell(variant: dict) -> str:
    """The test days' mean daily rank correlation of the score with the low-volatility factor (older results: blank)."""
    return f"{variant['test_lowvol']:+.2f}" if "test_lowvol" in variant else ""


def render(result: dict) -> str:
    lines = [f"# Extractor screen `{result['name']}` (benchmarks/screen.py)", "",
             f"Folds {result['folds']} (test days {result['test_days']}, before the development period), "
             + ("each from scratch" if result.get("cold") else "warm-started in order")
             + f", seeds {result['seeds']}; {result['seconds']:.0f} s on {result['device']}. "
             "Daily rank IC of p(BUY) − p(SELL) against the label's forward return, and the test days' quintile "
             "spread (top fifth's mean forward return less the bottom fifth's, before costs), means over folds; "
             "low-vol: the test days' rank correlation of the score with the low-volatility factor (`lowvol_30d`, "
             "how much of the score is \"calm coins do better\"); val IC by epoch: the fits' mean validation IC after "
             "each epoch, and the share of fits whose best validation IC came after the first; best epochs: the "
             "kept epoch of each fit (by the monitor); a screen, not a result.", "",
             "| kind | variant | train IC | val IC | test IC (sd over seeds) | test IC by seed | test spread % (sd) "
             "| low-vol | val IC by epoch | best after epoch 1 | best epochs |",
             "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | --- |"]
    for v in result["variants"]:
        sd = v["sd"]["test"]
        lines.append(f"| {v['kind']} | {v['variant']} | {v['mean']['train']:+.3f} | {v['mean']['val']:+.3f} | "
                     f"{v['mean']['test']:+.3f}" + ("" if sd is None else f" ({sd:.3f})") + " | "
                     + ", ".join(f"{s['test']:+.3f}" for s in v["by_seed"].values()) + " | "
                     + spread_cell(v) + " | " + lowvol_cell(v) + " | " + learning_cells(v) + " | "
                     + " ".join(str(f["best_epoch"]) for f in v["fits"]) + " |")
    lines += ["", "Overrides: " + "; ".join(f"{v['variant']}: {' '.join(v['overrides']) or '(none)'}"
                                           for v in result["variants"]) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("lstm", "tcn"))
    parser.add_argument("--variant", action="append", required=True, help="name or name=override,override,...")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--name", default=None, help="the results' file name (default: the kind)")
    parser.add_argument("--cold", action="store_true", help="every fold's fit from scratch (default: warm-started)")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--artifacts-dir", type=Path, default=ROOT / "artifacts" / "screen")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results" / "screen")
    args = parser.parse_args(argv)
    if not (args.data_dir / "hourly.parquet").is_file():
        raise SystemExit(f"no hourly.parquet in {args.data_dir}")
    data = ["data=full", f"data.hourly_path={args.data_dir / 'hourly.parquet'}",
            f"data.fear_greed_path={args.data_dir / 'fear_greed.parquet'}"]
    base = config(args.kind, data)
    frames = load_feature_frames(dict(base.data), dict(base.features), dict(base.labels))
    folds = screened_folds(base, frames)
    if not folds:
        raise SystemExit(f"{args.data_dir}: no fold's test window ends before the development period "
                         f"({PERIODS[DEVELOPMENT][0]:%Y-%m-%d}): nothing to screen on")
    started = time.perf_counter()
    variants = [screen(args.kind, name, overrides, args.seeds, frames, args.artifacts_dir, data, args.cold)
                for name, overrides in map(parse_variant, args.variant)]
    result = {"name": args.name or args.kind, "folds": [f.index for f in folds], "seeds": args.seeds, "cold": args.cold,
              "test_days": f"{folds[0].test_start:%Y-%m-%d} .. {folds[-1].test_end:%Y-%m-%d}",
              "device": f"trainer {base.trainer.accelerator}, {torch.get_num_threads()} threads",
              "seconds": round(time.perf_counter() - started, 1), "variants": variants}
    write_json_atomic(result, args.results_dir / f"{result['name']}.json")
    write_text_atomic(render(result), args.results_dir / f"{result['name']}.md")
    print(render(result))


if __name__ == "__main__":
    main()
