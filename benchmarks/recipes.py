"""What each training-recipe option (issue 33) costs: seconds per extractor fit on the shipped sample.

    python benchmarks/recipes.py [--fold 8] [--rounds 2]              # the table
    python benchmarks/recipes.py --baseline /tmp/base                  # + defaults bit-identical to that tree?

Each option is one extractor fit of `train.extractor` on one walk-forward fold of the shipped sample, in
process, on feature frames built once (as the main job trains): the default LSTM and TCN, then each option
alone with everything else at its default. A fit's seconds are train_extractor's wall time (the datamodule's
set-up, the start's validation, the fit, the best checkpoint's validation and test, saving); a row is its
fastest of `--rounds` rounds, run interleaved so that the rows share the machine's drift. "x default" is the
option's seconds over its kind's default. On the sample a fit's fixed part (building the datamodule, the
validation and test passes, saving) is a large share of its seconds, while on the full data training dominates:
a probe fit on 1 % of the train windows measures that fixed part, and the full-data estimate scales today's
walk-forward training time of the kind (`--full-*-seconds`, benchmarks/results/walkforward.json: 7 fits a
kind, one epoch each) by the option's seconds less the fixed part over the default's less the fixed part.

`--baseline DIR` (a checkout of the committed code, e.g. `git worktree add /tmp/base HEAD`) also trains the
default LSTM and TCN of the fold with `train.py` in that tree and in this one and compares the weights'
sha256: the options must leave a default fit bit for bit as it was.

Writes benchmarks/results/recipes.json and recipes.md. About 7 minutes on 2 CPU cores (`--markdown-only` rewrites
the table from the json).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # run as a script: the repo root, not benchmarks/, first (benchmarks/features.py)

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from features.build import load_feature_frames  # noqa: E402
from pipeline import _train_cfg, quiet_lightning  # noqa: E402
from store.extractors import list_extractors  # noqa: E402
from train import train_extractor  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
# (name, kind, overrides of the main job's config: `extractors.<kind>.` is prefixed to plain keys).
PROBE = "fixed part (train_fraction=0.01)"
RECIPE = ["objective=listnet", "datamodule.market_context=true", "datamodule.augment.scale=0.1",
          "datamodule.augment.warp=0.05", "datamodule.augment.mix=0.25", "scheduler=warmup_cosine",
          "averaging.kind=ema"]
OPTIONS = [
    ("default", "lstm", []),
    ("default", "tcn", []),
    (PROBE, "lstm", ["datamodule.train_fraction=0.01"]),
    (PROBE, "tcn", ["datamodule.train_fraction=0.01"]),
    ("stride_hours=6", "tcn", ["datamodule.stride_hours=6"]),
    ("stride_hours=6, train_fraction=0.25", "tcn", ["datamodule.stride_hours=6", "datamodule.train_fraction=0.25"]),
    ("stride_hours=1, train_fraction=0.25", "tcn", ["datamodule.stride_hours=1", "datamodule.train_fraction=0.25"]),
    ("stride_hours=1", "tcn", ["datamodule.stride_hours=1"]),
    ("market_context", "lstm", ["datamodule.market_context=true"]),
    ("market_context", "tcn", ["datamodule.market_context=true"]),
    ("augment (scale 0.2, warp 0.1, mix 0.5)", "lstm",
     ["datamodule.augment.scale=0.2", "datamodule.augment.warp=0.1", "datamodule.augment.mix=0.5"]),
    ("augment (scale 0.2, warp 0.1, mix 0.5)", "tcn",
     ["datamodule.augment.scale=0.2", "datamodule.augment.warp=0.1", "datamodule.augment.mix=0.5"]),
    ("objective=listnet (day batches)", "lstm", ["objective=listnet"]),
    ("objective=listnet (day batches)", "tcn", ["objective=listnet"]),
    ("objective=rank_corr (day batches)", "tcn", ["objective=rank_corr"]),
    ("scheduler=warmup_cosine", "tcn", ["scheduler=warmup_cosine"]),
    ("averaging=ema", "tcn", ["averaging.kind=ema"]),
    ("monitor=val/ic, max_epochs=3, patience 1", "tcn",
     ["monitor=val/ic", "early_stopping_patience=1", "+trainer.max_epochs=3"]),
    ("ensemble.members=3", "lstm", ["ensemble.members=3"]),
    ("ensemble.members=3", "tcn", ["ensemble.members=3"]),
    ("recipe: listnet, market context, augment, warmup_cosine, ema", "lstm", RECIPE),
    ("recipe + stride_hours=6, train_fraction=0.25", "tcn",
     [*RECIPE, "datamodule.stride_hours=6", "datamodule.train_fraction=0.25"]),
]
GROUPS = ("objective", "scheduler")  # config groups inside the model config: model/<group>@extractors.<kind>.<group>


def overrides(kind: str, keys: list[str]) -> list[str]:
    out = []
    for key in keys:
        name, value = key.split("=", 1)
        if key.startswith("+"):  # a top-level key
            out.append(key[1:])
        elif name in GROUPS:
            out.append(f"model/{name}@extractors.{kind}.{name}={value}")
        else:
            out.append(f"extractors.{kind}.{key}")
    return out


def config(kind: str, keys: list[str], out: Path, fold: int):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="pipeline", overrides=[f"paths.artifacts_dir={out / 'artifacts'}",
                                                         "hydra.job.chdir=false", *overrides(kind, keys)])
    for key in ("hourly_path", "fear_greed_path"):
        cfg.data[key] = str(ROOT / cfg.data[key])
    return _train_cfg(cfg, kind, fold, out / "runs")


def time_fits(args) -> list[dict]:
    quiet_lightning()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        base = compose(config_name="pipeline")
    groups = {k: OmegaConf.to_container(base[k], resolve=True) for k in ("data", "features", "labels")}
    for key in ("hourly_path", "fear_greed_path"):
        groups["data"][key] = str(ROOT / groups["data"][key])
    frames = load_feature_frames(groups["data"], groups["features"], groups["labels"])
    rows = [{"option": name, "kind": kind, "overrides": keys, "seconds": []} for name, kind, keys in OPTIONS]
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for i, row in enumerate(rows):
                cfg = config(row["kind"], row["overrides"], Path(tmp) / f"{round_}_{i}", args.fold)
                started = time.perf_counter()
                artifact = train_extractor(cfg, frames)
                row["seconds"].append(time.perf_counter() - started)
                metrics = artifact.meta["metrics"]
                row |= {"train_windows": artifact.meta["samples"]["train"], "epochs": metrics["epochs"],
                        "inputs": len(artifact.meta["normalization"]["columns"]), "val_ic": metrics.get("val/ic")}
                print(f"{row['kind']:4} {row['option']:45} {row['seconds'][-1]:6.1f} s", flush=True)
    for row in rows:
        row["best_seconds"] = min(row["seconds"])
    default = {row["kind"]: row["best_seconds"] for row in rows if row["option"] == "default"}
    fixed = {row["kind"]: row["best_seconds"] for row in rows if row["option"] == PROBE}
    for row in rows:
        kind = row["kind"]
        row["x_default"] = row["best_seconds"] / default[kind]
        row["x_default_training"] = max(row["best_seconds"] - fixed[kind], 0.0) / (default[kind] - fixed[kind])
        row["full_estimate_seconds"] = row["x_default_training"] * args.full_seconds[kind]
    return rows


def _train_py(tree: Path, out: Path, kind: str, fold: int) -> str:
    done = subprocess.run([sys.executable, "train.py", f"model={kind}", f"fold={fold}", f"hydra.run.dir={out}/run",
                           f"paths.artifacts_dir={out}/artifacts"], cwd=tree, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"train.py in {tree} failed:\n{done.stderr[-3000:]}")
    [artifact] = list_extractors(out / "artifacts" / "extractors")
    return artifact.meta["weights_sha256"]


def compare_defaults(baseline: Path, fold: int) -> dict:
    """The default fits' weights, trained by `baseline`'s code and by this tree's: equal bit for bit?"""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("lstm", "tcn"):
            before = _train_py(baseline, Path(tmp) / f"base_{kind}", kind, fold)
            after = _train_py(ROOT, Path(tmp) / f"new_{kind}", kind, fold)
            out[kind] = {"baseline_sha256": before, "sha256": after, "identical": before == after}
            verdict = "bit-identical" if before == after else "DIFFERS"
            print(f"{kind}: default fit {verdict} ({before[:12]} / {after[:12]})")
    return out


def markdown(rows: list[dict], check: dict | None, args) -> str:
    lines = ["# Training-recipe options: seconds per extractor fit (issue 33)\n",
             f"`python benchmarks/recipes.py` on the shipped sample, fold {args.fold}, {torch.get_num_threads()} "
             f"torch threads, {platform.processor() or platform.machine()}; the fastest of {args.rounds} interleaved "
             "rounds; each option alone, the rest at its default. One epoch a fit (the default) unless the row says "
             "otherwise. On the sample a fit's fixed part (the datamodule, the validation and test passes, saving: "
             "the `fixed part` probe, which trains on 1 % of the windows) is a large share of its seconds; on the "
             "full data training dominates. The estimate scales today's walk-forward training time of the kind "
             f"({args.full_seconds['lstm']:.0f} s LSTM, {args.full_seconds['tcn']:.0f} s TCN: 7 fits each, one epoch, "
             "on ../shared/data, 2 cores) by the option's seconds less the fixed part over the default's less the "
             "fixed part. The LSTM's sample fits (0.7 s, 0.5 s of it fixed) leave its ratios within noise, and an "
             "ensemble's members each pay the fixed part, so for K members read K x today's.\n",
             "| kind | option | train windows | inputs | epochs | s / fit | x default | x default, less the fixed part "
             "| the kind's walk-forward training, est. s (today's) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['option']} | {r['train_windows']:,} | {r['inputs']} | {r['epochs']} | "
                     f"{r['best_seconds']:.1f} | {r['x_default']:.2f} | {r['x_default_training']:.2f} | "
                     f"{r['full_estimate_seconds']:,.0f} ({args.full_seconds[r['kind']]:.0f}) |")
    if check is not None:
        lines += ["", "Defaults against the committed code (`--baseline`): "
                  + "; ".join(f"{kind} {'bit-identical' if c['identical'] else 'DIFFERENT'} weights "
                              f"(sha256 {c['sha256'][:12]})" for kind, c in check.items())]
    return "\n".join(lines) + "\n"


def rewrite_markdown(args) -> None:
    """recipes.md again from recipes.json (the text, not the figures, changed)."""
    saved = json.loads((RESULTS / "recipes.json").read_text())
    args.fold, args.rounds = saved["fold"], saved["rounds"]
    (RESULTS / "recipes.md").write_text(markdown(saved["rows"], saved["defaults_vs_baseline"], args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fold", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--full-lstm-seconds", type=float, default=44.0)
    parser.add_argument("--full-tcn-seconds", type=float, default=317.0)
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--markdown-only", action="store_true", help="rewrite recipes.md from recipes.json")
    args = parser.parse_args()
    args.full_seconds = {"lstm": args.full_lstm_seconds, "tcn": args.full_tcn_seconds}
    if args.markdown_only:
        return rewrite_markdown(args)
    check = compare_defaults(args.baseline, args.fold) if args.baseline is not None else None
    rows = time_fits(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "recipes.json").write_text(json.dumps({"fold": args.fold, "rounds": args.rounds, "rows": rows,
                                                      "defaults_vs_baseline": check}, indent=2) + "\n")
    (RESULTS / "recipes.md").write_text(markdown(rows, check, args))
    print(markdown(rows, check, args))


if __name__ == "__main__":
    main()
