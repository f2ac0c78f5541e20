"""Backfill one trained extractor into the feature store: safe to kill, resume and repeat.

Runs the networks, so it lives beside `embed.py`'s concern, not in `store/` (storage only).

1. Plan: the decision rows the extractor is responsible for: from its `eligible_from` to the
   next (later) artifact's of the same kind, or to the end of the data for the newest one; each
   needs a complete window. `BackfillPlan.tail` keeps the rows from the first one the store does
   not hold yet (made by this code, for this dataset): the daily append, or nothing.
   The inputs are normalised with the artifact's own statistics (the
   ones it was trained with, never refit), after checking that the configured features have the
   artifact's schema hash.
2. Stage: the rows are cut into chunks of `chunk_size` windows; each chunk goes through
   Lightning's predict loop (any device, or several processes with DDP, each predicting its own
   shard) and a prediction writer saves it as Parquet under a staging folder named by the run's
   content (artifact, data, plan). A finished chunk is marked done; a re-run skips done chunks.
3. Commit (`commit_staged`, once every extractor of the run is staged): per extractor kind, one
   Delta transaction replaces the run's versions' rows (their tails, for an append) with the staged
   files, streamed in bounded memory. Until then the store is as it was; after it, the staging folders are removed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import torch
from hydra.utils import get_class
from lightning.pytorch.callbacks import BasePredictionWriter
from rich.progress import Progress
from torch.utils.data import DataLoader

from datamodules.context import input_frame
from datamodules.windows import WindowDataset, window_end_mask
from features.build import FeatureFrames
from models import ExtractorModule
from splits import Normalizer
from store.extractors import ExtractorArtifact, code_revision
from store.feature_store import EMBEDDING_PREFIX, LOGIT_COLUMNS, FeatureStore, eligible_from, output_schema
from store.files import write_arrow_atomic
from store.lineage import source_hash

BAR = {"daily": pd.Timedelta(days=1), "hourly": pd.Timedelta(hours=1)}


class BackfillInputError(ValueError):
    """The artifact, the features or the data do not fit together; the store is left untouched."""


@dataclass
class BackfillPlan:
    artifact: ExtractorArtifact
    kind: str
    values: torch.Tensor          # (rows, channels) normalised inputs of the whole frame
    ends: np.ndarray              # (samples,) row of each window's last bar
    keys: pd.DataFrame            # symbol, ts, decision_time per sample
    window: int
    channels_first: bool
    start: pd.Timestamp
    until: pd.Timestamp | None
    run_key: str
    dataset: str
    tail_from: pd.Timestamp | None = None  # an append: the rows from this decision time on (None: all)

    def chunks(self, chunk_size: int) -> list[np.ndarray]:
        return [np.arange(i, min(i + chunk_size, len(self.ends))) for i in range(0, len(self.ends), chunk_size)]

    def tail(self, store: FeatureStore) -> BackfillPlan | None:
        """The plan cut to its rows from the first one the store lacks (None: it holds them all).

        Stored rows count only if this dataset's and made by this source: rows of older code are
        missing, so they are rewritten, never served.
        """
        stored = store.decision_times(self.kind, [self.artifact.version], self.dataset)
        stored = stored[stored["source_hash"] == source_hash("backfill")]
        key = pd.MultiIndex.from_frame(self.keys[["symbol", "decision_time"]])
        have = key.isin(pd.MultiIndex.from_frame(stored[["symbol", "decision_time"]].astype(
            {"decision_time": self.keys["decision_time"].dtype})))
        if have.all():
            return None
        first = self.keys["decision_time"][~have].min()
        if not have.any():
            return self  # nothing stored: the whole plan, replacing the version's rows
        keep = (self.keys["decision_time"] >= first).to_numpy()
        tail_key = f"{self.run_key}-tail{hashlib.sha256(str(first).encode()).hexdigest()[:8]}"
        return BackfillPlan(self.artifact, self.kind, self.values, self.ends[keep],
                            self.keys[keep].reset_index(drop=True), self.window, self.channels_first, self.start,
                            self.until, tail_key, self.dataset, first)


def normalised_inputs(artifact: ExtractorArtifact, frames: FeatureFrames, current_schema_hash: str,
                      dataset: str | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The artifact's input frame and its values normalised with the artifact's own statistics (never
    refit), after checking that the artifact was trained on this dataset and these features."""
    meta = artifact.meta
    if dataset is not None and meta.get("dataset") != dataset:
        raise BackfillInputError(
            f"{meta['kind']} {artifact.version} was trained on dataset {meta.get('dataset')}, not on this data's "
            f"{dataset}: an extractor serves the data lineage it was trained on only"
        )
    if meta["feature_schema_hash"] != current_schema_hash:
        raise BackfillInputError(
            f"{meta['kind']} {artifact.version}: the configured features (schema {current_schema_hash}) differ "
            f"from the ones it was trained on (schema {meta['feature_schema_hash']}); use its config"
        )
    inputs = meta["inputs"]
    frame = getattr(frames, inputs["frame"])
    missing = [c for c in inputs["columns"] if c not in frame.columns]
    if missing:
        raise BackfillInputError(f"{meta['kind']} {artifact.version}: input columns {missing} are not built")
    # Market-context columns (if the artifact reads them) are built from the frame as training built them.
    inputs_frame = input_frame(frame, inputs["columns"], inputs.get("market_context"))
    return frame, np.array(Normalizer.from_dict(meta["normalization"]).transform(inputs_frame), dtype=np.float32)


def make_plan(
    artifact: ExtractorArtifact,
    later: Sequence[ExtractorArtifact],
    frames: FeatureFrames,
    current_schema_hash: str,
    data_fingerprint: str,
    stride_hours: int = 1,
    chunk_size: int = 50_000,
    dataset: str | None = None,
) -> BackfillPlan:
    meta, inputs = artifact.meta, artifact.meta["inputs"]
    frame, values = normalised_inputs(artifact, frames, current_schema_hash, dataset)
    if 24 % stride_hours:
        raise BackfillInputError(f"stride_hours must divide 24, got {stride_hours}")
    decision_time = frame["ts"] + BAR[inputs["frame"]]
    start = eligible_from(meta)
    starts_later = sorted(eligible_from(a.meta) for a in later if eligible_from(a.meta) > start)
    until = starts_later[0] if starts_later else None
    in_range = (decision_time >= start).to_numpy()
    if until is not None:
        in_range = in_range & (decision_time < until).to_numpy()
    usable = window_end_mask(frame["symbol"].to_numpy(), values, inputs["window"]) & in_range
    if inputs["frame"] == "hourly":
        usable &= ((frame["ts"].dt.hour.to_numpy() + 1) % stride_hours) == 0
    ends = np.flatnonzero(usable)
    if ends.size == 0:
        raise BackfillInputError(
            f"{meta['kind']} {artifact.version}: the data ({frame['ts'].min()} .. {frame['ts'].max()}) holds no "
            f"complete {inputs['window']}-bar window with a decision time from {start}"
            + (f" to {until}" if until is not None else "")
        )
    keys = pd.DataFrame({
        "symbol": frame["symbol"].to_numpy()[ends],
        # Indexing the tz-aware arrays keeps their dtype without boxing every row into a Timestamp (.to_numpy()).
        "ts": frame["ts"].array[ends],
        "decision_time": decision_time.array[ends],
    })
    plan_spec = {
        "version": artifact.version, "data": data_fingerprint, "stride": stride_hours, "chunk": chunk_size,
        "start": str(start), "until": str(until), "rows": int(ends.size), "dataset": dataset,
        "source": source_hash("backfill"),
    }
    run_key = f"{artifact.version}-{hashlib.sha256(json.dumps(plan_spec).encode()).hexdigest()[:12]}"
    return BackfillPlan(artifact, meta["kind"], torch.from_numpy(values), ends, keys, inputs["window"],
                        inputs["frame"] == "hourly", start, until, run_key, dataset or meta.get("dataset", ""))


class _ShardedChunk(L.LightningDataModule):
    """One chunk's windows; under DDP each process predicts its own shard, with no padding."""

    def __init__(self, plan: BackfillPlan, samples: np.ndarray, batch_size: int):
        super().__init__()
        self.plan, self.samples, self.batch_size = plan, samples, batch_size

    def predict_dataloader(self) -> DataLoader:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        mine = self.samples[rank::world]
        # The "label" slot carries the sample number, so the writer knows which rows it got.
        dataset = WindowDataset(self.plan.values, torch.from_numpy(self.plan.ends[mine]), torch.from_numpy(mine),
                                self.plan.window, self.plan.channels_first)
        return DataLoader(dataset, batch_size=self.batch_size, collate_fn=WindowDataset.collate_fn)


class _ChunkWriter(BasePredictionWriter):
    """Collects one chunk's raw outputs (a chunk is bounded) and writes them as one Parquet file."""

    def __init__(self, to_table):
        super().__init__(write_interval="batch")
        self.to_table = to_table
        self.target: Path | None = None
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        # prediction.logits are raw: nothing here may softmax them.
        self.parts.append((batch[1].cpu().numpy(), prediction.embedding.float().cpu().numpy(),
                           prediction.logits.float().cpu().numpy()))

    def on_predict_epoch_end(self, trainer, pl_module):
        if self.parts:
            samples, embedding, logits = (np.concatenate(column) for column in zip(*self.parts, strict=True))
        else:
            samples, embedding, logits = np.zeros(0, np.int64), None, None
        write_arrow_atomic(self.to_table(samples, embedding, logits), self.target)
        self.parts = []


def _lineage(plan: BackfillPlan, data_fingerprint: str, written_at: pd.Timestamp) -> dict:
    meta = plan.artifact.meta
    return {
        "kind": plan.kind, "version": plan.artifact.version, "fold": int(meta["fold"]),
        "train_end": pd.Timestamp(meta["train_end"], tz="UTC"), "val_end": pd.Timestamp(meta["val_end"], tz="UTC"),
        "eligible_from": plan.start, "artifact_sha256": meta["weights_sha256"],
        "feature_schema_hash": meta["feature_schema_hash"], "dataset": plan.dataset,
        "data_fingerprint": data_fingerprint, "code_revision": code_revision(Path(__file__).parents[1]),
        "source_hash": source_hash("backfill"), "written_at": written_at,
    }


def _table_builder(plan: BackfillPlan, schema: pa.Schema, lineage: dict):
    prefix = EMBEDDING_PREFIX[plan.kind]
    dim = sum(1 for name in schema.names if name.startswith(prefix))

    def to_table(samples: np.ndarray, embedding: np.ndarray | None, logits: np.ndarray | None) -> pa.Table:
        n = len(samples)
        columns = {name: plan.keys[name].to_numpy()[samples] for name in ("symbol", "ts", "decision_time")}
        for i in range(dim):
            columns[f"{prefix}{i}"] = embedding[:, i] if n else np.zeros(0, np.float32)
        for i, name in enumerate(LOGIT_COLUMNS):
            columns[name] = logits[:, i] if n else np.zeros(0, np.float32)
        for name, value in lineage.items():
            columns[name] = [value] * n
        return pa.Table.from_pydict(columns, schema=schema)

    return to_table


def trained_net(artifact: ExtractorArtifact) -> torch.nn.Module:
    """The artifact's plain network (its `net` config) with its trained weights."""
    net_config = {k: v for k, v in artifact.meta["net"].items() if k != "_target_"}
    net = get_class(artifact.meta["net"]["_target_"])(**net_config)
    net.load_state_dict(artifact.load_state_dict())
    return net


def stage_backfill(
    plan: BackfillPlan,
    store: FeatureStore,
    trainer: L.Trainer,
    data_fingerprint: str,
    chunk_size: int,
    batch_size: int,
) -> dict:
    """Predict and stage every chunk of `plan` not staged yet. Returns counts and the staging folder."""
    net = trained_net(plan.artifact)
    module = ExtractorModule(net)
    schema = output_schema(plan.kind, net.embedding_head.out_features)
    staging = store.staging_dir(plan.kind, plan.run_key)
    staging.mkdir(parents=True, exist_ok=True)
    written_at_file = staging / "written_at"
    if trainer.is_global_zero and not written_at_file.exists():
        written_at_file.write_text(pd.Timestamp.now(tz="UTC").isoformat())
    trainer.strategy.barrier()
    lineage = _lineage(plan, data_fingerprint, pd.Timestamp(written_at_file.read_text()).as_unit("ms"))
    writer = _ChunkWriter(_table_builder(plan, schema, lineage))
    trainer.callbacks.append(writer)

    chunks = plan.chunks(chunk_size)
    done = [(staging / f"chunk-{i:05d}.done").exists() for i in range(len(chunks))]
    with Progress(disable=not trainer.is_global_zero) as progress:
        task = progress.add_task(f"{plan.kind} {plan.artifact.version}", total=len(chunks), completed=sum(done))
        for i, samples in enumerate(chunks):
            if done[i]:
                continue
            if trainer.is_global_zero:  # leftovers of a killed run, perhaps from more processes than now
                for stale in staging.glob(f"chunk-{i:05d}-rank*.parquet"):
                    stale.unlink()
            trainer.strategy.barrier()
            writer.target = staging / f"chunk-{i:05d}-rank{trainer.global_rank}.parquet"
            trainer.predict(module, datamodule=_ShardedChunk(plan, samples, batch_size), return_predictions=False)
            trainer.strategy.barrier()
            if trainer.is_global_zero:
                (staging / f"chunk-{i:05d}.done").touch()
            progress.advance(task)
    trainer.callbacks.remove(writer)
    trainer.strategy.barrier()
    return {"version": plan.artifact.version, "kind": plan.kind, "rows": int(len(plan.ends)), "chunks": len(chunks),
            "resumed_chunks": int(sum(done)), "staging": staging, "schema": schema, "run_key": plan.run_key,
            "dataset": plan.dataset, "tail_from": plan.tail_from}


def commit_staged(store: FeatureStore, staged: list[dict]) -> None:
    """Per kind, one transaction that replaces the staged versions' rows; then drop the staging."""
    for kind in sorted({s["kind"] for s in staged}):
        mine = [s for s in staged if s["kind"] == kind]
        # Only files of chunks marked done: a rank file of an unfinished chunk from a killed run
        # must not enter the commit.
        files = sorted(
            str(path) for s in mine for path in s["staging"].glob("chunk-*-rank*.parquet")
            if (s["staging"] / f"{path.name.split('-rank')[0]}.done").exists()
        )
        reader = pads.dataset(files, schema=mine[0]["schema"], format="parquet").scanner().to_reader()
        store.replace_versions(kind, {s["version"]: s["tail_from"] for s in mine}, mine[0]["dataset"], reader)
        store.record_committed(kind, {s["version"]: s["run_key"] for s in mine})
        for s in mine:
            shutil.rmtree(s["staging"])
