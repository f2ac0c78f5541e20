"""The daily run's cost on a whole data set: one new day appended and served, without a retrain.

    python benchmarks/daily.py [--data-dir ../shared/data] [--first-test-date 2023-11-15] [--every 1000]

Set-up, cheap on purpose (the daily run's cost does not depend on the weights): the main job on
the data up to the day before its last, with extractors trained for one batch of one epoch
(`trainer.max_epochs=1 +trainer.limit_train_batches=1`), only every `--every`-th fold's (by default
fold 0's alone, which then stands for every later decision), and meta folds testing from
`--first-test-date` on. Then the last day's bars, as an append file, go through `python daily.py`
in a fresh process, timed from the command line (interpreter, imports and all); a second run of
the same day (idempotent: nothing to append) is timed too. Target: at most 30 s on 2 CPU cores for
`../shared/data` (36 coins). Figures go to benchmarks/results/daily.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # the repo's packages, not this folder's scripts

import pandas as pd  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from rich.console import Console  # noqa: E402

import pipeline  # noqa: E402
from backfill import run_backfill  # noqa: E402
from stacking.run import run_stack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--first-test-date", default="2023-11-15")
    parser.add_argument("--every", type=int, default=1000, help="train the extractors of every N-th fold")
    args = parser.parse_args()
    console = Console(width=140)
    pipeline.quiet_lightning()
    with tempfile.TemporaryDirectory(prefix="bench-daily-") as tmp:
        tmp = Path(tmp)
        hourly = pd.read_parquet(args.data_dir / "hourly.parquet")
        last_day = hourly["ts"].max().floor("D")
        hourly[hourly["ts"] < last_day].to_parquet(tmp / "history.parquet", index=False)
        hourly[hourly["ts"] >= last_day].to_parquet(tmp / "new_day.parquet", index=False)
        common = [f"data.fear_greed_path={args.data_dir / 'fear_greed.parquet'}", f"paths.artifacts_dir={tmp}/art",
                  "trainer.max_epochs=1", "+trainer.limit_train_batches=1",
                  f"pipeline.retrain_every_folds={args.every}", f"split.first_test_date={args.first_test_date}"]
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(config_name="pipeline", overrides=[*common, f"data.hourly_path={tmp / 'history.parquet'}",
                                                              f"paths.output_dir={tmp}/main"])
        started = time.perf_counter()
        out = Path(cfg.paths.output_dir)
        frames, _, evaluated, all_folds = pipeline.data_stage(cfg, out)
        in_use = pipeline.train_stage(cfg, frames, pipeline.extractor_folds(cfg, evaluated, all_folds), out)
        artifacts = [a for kind in in_use for a in in_use[kind]]
        run_backfill(cfg, frames, artifacts, artifacts, frames.dataset)
        run_stack(cfg, frames, console, out, among={k: [a.version for a in v] for k, v in in_use.items()})
        setup_s = time.perf_counter() - started

        command = [sys.executable, "daily.py", f"hydra.run.dir={tmp}/daily",
                   f"data.hourly_path={tmp / 'new_day.parquet'}", "daily.append=true", "daily.retrain=skip", *common]
        runs = []
        for label in ("new day", "same day again"):
            started = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                  env={**os.environ, "COLUMNS": "200"})
            wall = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
            inside = re.search(r"order\(s\) in \S+ \(([\d.]+) s\)", " ".join(done.stdout.split()))
            runs.append({"run": label, "wall_s": round(wall, 2), "in_process_s": float(inside.group(1))})
            console.print(f"daily.py, {label}: {wall:.1f} s wall ({inside.group(1)} s after imports)")

    result = {
        "data": str(args.data_dir), "symbols": int(hourly["symbol"].nunique()), "hourly_rows": len(hourly),
        "served_day": str(last_day.date()), "cpu_cores": os.cpu_count(), "setup_s": round(setup_s, 1),
        "extractors_every": args.every, "first_test_date": args.first_test_date, "runs": runs, "target_s": 30,
    }
    path = ROOT / "benchmarks" / "results" / "daily.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"written to {path}")


if __name__ == "__main__":
    main()
