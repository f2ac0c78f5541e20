"""TCN backfill over a whole data set at hourly resolution; rows/s against pure model inference.

    python benchmarks/backfill.py [--data-dir ../shared/data] [--max-windows N] [--batch-size 2048] [--device cuda]

Prints, from one run: the backfill's rows/s (predict loop, staging, one Delta commit) against the
bare inference rate of the same network on the same windows (target >= 0.8x), peak memory
(target <= 2 GB), and the time to assemble the meta-learner's frame (every daily decision row of
every symbol) by as-of joins on the store (target <= 2 s). The network is an untrained TCN of the
spec's shape: weights do not change the speed. On ../shared/data (about a million windows) the
full run takes several minutes on 2 cores; --max-windows measures a slice. `--device cuda` runs both
on a GPU with bf16 autocast, as `trainer=gpu` does (issue 14's target: every hourly window in 10 s).
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # the repo's packages, not this folder's scripts (features.py would shadow them)

import lightning as L  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from backfill import commit_staged, make_plan, stage_backfill  # noqa: E402
from benchmarks.measure import now  # noqa: E402
from features.build import load_feature_frames  # noqa: E402
from models import TCNExtractor  # noqa: E402
from splits import Normalizer  # noqa: E402
from splits.artifacts import folds_from_config  # noqa: E402
from store.extractors import input_spec, save_extractor, schema_hash  # noqa: E402
from store.feature_store import FeatureStore  # noqa: E402


def _config(data_dir: Path) -> dict:
    conf = ROOT / "conf"
    data = OmegaConf.to_container(OmegaConf.load(conf / "data" / "sample.yaml"))
    data |= {"hourly_path": str(data_dir / "hourly.parquet"), "fear_greed_path": str(data_dir / "fear_greed.parquet")}
    return {
        "data": data,
        "features": OmegaConf.to_container(OmegaConf.load(conf / "features" / "default.yaml")),
        "labels": OmegaConf.to_container(OmegaConf.load(conf / "labels" / "default.yaml")),
        "split": OmegaConf.load(conf / "split" / "walkforward.yaml"),
    }


def _untrained_artifact(root: Path, frames, cfg: dict):
    """A TCN artifact for fold 0, so that it is responsible for nearly every hour of the data."""
    fold = folds_from_config(frames.daily, cfg["split"], max(frames.horizons))[0]
    columns = frames.columns["tcn"]
    spec = input_spec("hourly", columns, 168, cfg["features"], cfg["data"])
    train = fold.mask(frames.hourly["ts"].dt.floor("D"), "train")
    meta = {
        "kind": "tcn", "fold": fold.index, **{k: v for k, v in fold.to_dict().items() if k != "index"},
        "label": "label_3d", "label_horizon_days": 3, "inputs": spec, "feature_schema_hash": schema_hash(spec),
        "normalization": Normalizer.for_columns(columns).fit(frames.hourly, train).to_dict(),
        "net": {"_target_": "models.TCNExtractor"},
    }
    return save_extractor(root, TCNExtractor(), meta), schema_hash(spec)


def _bare_inference_rate(plan, batch_size: int, limit: int, device: torch.device) -> float:
    """Windows/s of the network alone, its inputs already on `device` (bf16 autocast on a GPU)."""
    net = TCNExtractor().eval().to(device)
    windows = plan.values.to(device).unfold(0, plan.window, 1)
    ends = torch.from_numpy(plan.ends[:limit] - (plan.window - 1)).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    with torch.inference_mode(), autocast:
        net(windows[ends[:batch_size]])  # warm-up
        start = now(device)
        for i in range(0, len(ends), batch_size):
            net(windows[ends[i : i + batch_size]])
        return len(ends) / (now(device) - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--max-windows", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda where one is available")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here")
    torch.manual_seed(0)
    cfg = _config(args.data_dir)

    start = time.perf_counter()
    frames = load_feature_frames(cfg["data"], cfg["features"], cfg["labels"])
    features_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        artifact, current_hash = _untrained_artifact(Path(tmp) / "extractors", frames, cfg)
        plan = make_plan(artifact, [artifact], frames, current_hash, "benchmark", stride_hours=1,
                         chunk_size=args.chunk_size)
        if args.max_windows:
            plan = dataclasses.replace(plan, ends=plan.ends[: args.max_windows],
                                       keys=plan.keys.iloc[: args.max_windows].reset_index(drop=True))
        n = len(plan.ends)
        bare = _bare_inference_rate(plan, args.batch_size, min(n, 100_000), device)

        store = FeatureStore(Path(tmp) / "store")
        gpu = device.type == "cuda"
        trainer = L.Trainer(accelerator="gpu" if gpu else "cpu", devices=[device.index or 0] if gpu else 1,
                            precision="bf16-mixed" if gpu else "32-true", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False)
        start = time.perf_counter()
        staged = stage_backfill(plan, store, trainer, "benchmark", args.chunk_size, args.batch_size)
        commit_staged(store, [staged])
        backfill_s = time.perf_counter() - start

        decisions = frames.daily[["symbol", "ts"]].assign(decision_time=frames.daily["ts"] + pd.Timedelta(days=1))
        start = time.perf_counter()
        joined = store.read_asof(decisions, "tcn")
        join_s = time.perf_counter() - start
        matched = int(joined["tcn_version"].notna().sum())

    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    rate = n / backfill_s
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"data: {args.data_dir}  torch {torch.__version__}, {torch.get_num_threads()} threads, {where}")
    print(f"features built in {features_s:.1f} s; TCN windows (hourly, 168 h): {n:,}")
    print(f"bare inference      {bare:10,.0f} windows/s")
    print(f"backfill            {rate:10,.0f} rows/s  ({backfill_s:.1f} s)  ratio {rate / bare:.2f}x  (target >= 0.8x)")
    print(f"peak memory (max RSS) {peak_gb:.2f} GB  (target <= 2 GB)")
    print(f"as-of assembly of {len(decisions):,} daily decision rows ({matched:,} matched): {join_s:.2f} s "
          f"(target <= 2 s)")


if __name__ == "__main__":
    main()
