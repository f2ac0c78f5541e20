"""Versioned extractor artifacts: what a trained extractor is, and a listing of them.

    python -m store.extractors [--root artifacts/extractors]

An artifact is a folder `<root>/<kind>/fold_<NN>/<version>/` with
- `net.pt`: the plain network's state dict (torch.load(weights_only=True) reads it);
- `artifact.json`: kind, fold and its window dates, label and purge, feature names and their
  schema hash, the normalisation statistics, the network's config, a fingerprint of the data
  files, the code revision, the metrics, and when it was made.
The folder is written under a temporary name and renamed into place, so an artifact is whole or
absent. The version is the UTC time plus a hash of the weights: later versions sort later.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from marketdata.freqtrade import candle_files, read_freqtrade

ARTIFACT_FILE = "artifact.json"
WEIGHTS_FILE = "net.pt"


def file_fingerprint(paths: Iterable[str | Path]) -> str:
    """sha256 over the bytes of the data files, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def data_fingerprint(data_cfg: Mapping) -> str:
    """A 64-hex fingerprint of the data's content: the hourly bars (whatever file, freqtrade folder or
    row order holds them) and the Fear & Greed file. Hashed once per file state (size, mtime)."""
    return data_prefix_fingerprint(data_cfg, None)


def data_prefix_fingerprint(data_cfg: Mapping, until: pd.Timestamp | None) -> str:
    """The fingerprint of the bars before `until` and the Fear & Greed values dated before it (None:
    all). A result that depends only on data before a time (an extractor trained on its fold's
    windows) keeps its key when later bars are appended."""
    bars = _content_hashes(_state(data_cfg["hourly_path"]), "ts")
    fear_greed = _content_hashes(_state(data_cfg["fear_greed_path"]), "date")
    parts = [_prefix(bars, until), _prefix(fear_greed, until)]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def data_span(data_cfg: Mapping) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and last bar times of the hourly file (UTC)."""
    times = _content_hashes(_state(data_cfg["hourly_path"]), "ts")[0]
    return pd.Timestamp(times[0], tz="UTC"), pd.Timestamp(times[-1], tz="UTC")


def _state(path) -> tuple[str, tuple[tuple[str, int, int], ...]]:
    """The path and (name, size, mtime) of each file its data is read from: the file, or a freqtrade
    folder's candle files (a folder's own mtime misses a file rewritten in place)."""
    path = Path(path).resolve()
    files = candle_files(path).values() if path.is_dir() else [path]
    return str(path), tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)


@functools.lru_cache(maxsize=8)
def _content_hashes(state: tuple[str, tuple], time_column: str) -> tuple[np.ndarray, np.ndarray]:
    """(times sorted, running sums of two independent row hashes): a multiset hash of every prefix.
    A freqtrade folder reads as the long-format file of the same bars, so both hash the same."""
    path = Path(state[0])
    frame = read_freqtrade(path) if path.is_dir() else pd.read_parquet(path)
    frame = frame.sort_values([time_column, *(["symbol"] if "symbol" in frame else [])], kind="stable",
                              ignore_index=True)
    hashes = [pd.util.hash_pandas_object(frame, index=False, hash_key=key).to_numpy() for key in _HASH_KEYS]
    with np.errstate(over="ignore"):  # sums wrap around modulo 2**64 by design
        sums = np.stack([np.cumsum(h, dtype=np.uint64) for h in hashes], axis=1)
    times = pd.DatetimeIndex(pd.to_datetime(frame[time_column], utc=True)).as_unit("ns").asi8
    return times, sums


_HASH_KEYS = ("trishula-rows-01", "trishula-rows-02")


def _prefix(hashes: tuple[np.ndarray, np.ndarray], until) -> list[int]:
    times, sums = hashes
    if until is not None:
        until = pd.Timestamp(until)
        until = (until.tz_localize("UTC") if until.tzinfo is None else until).as_unit("ns").value
    n = len(times) if until is None else int(np.searchsorted(times, until, side="left"))
    return [n, *(int(v) for v in sums[n - 1])] if n else [0, 0, 0]


def input_spec(frame: str, columns: Iterable[str], window: int, features_cfg: Mapping, data_cfg: Mapping,
               market_context: Mapping | None = None) -> dict:
    """What defines an extractor's inputs: the frame, its columns and window, how features and gaps are made,
    and the market-context columns added to them ({"symbol", "columns"}: datamodules/context.py), if any."""
    spec = {
        "frame": frame,
        "columns": list(columns),
        "window": int(window),
        "features": dict(features_cfg),
        "data_gaps": {"policy": data_cfg["gaps"], "max_gap_hours": data_cfg["max_gap_hours"]},
    }
    if market_context:
        spec["market_context"] = {"symbol": market_context["symbol"], "columns": list(market_context["columns"])}
    return spec


def current_schema_hash(meta: Mapping, columns: Iterable[str], features_cfg: Mapping, data_cfg: Mapping) -> str:
    """The schema hash an artifact's inputs (its frame and window) have under the current feature config
    and built `columns`: equal to its `feature_schema_hash` iff its features are made the same way now."""
    inputs = meta["inputs"]
    return schema_hash(input_spec(inputs["frame"], columns, inputs["window"], features_cfg, data_cfg,
                                  inputs.get("market_context")))


def schema_hash(spec: Mapping) -> str:
    """A stable hash of an input spec: the same features computed the same way hash the same."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_revision(root: str | Path = ".") -> str:
    """The git commit of the code, with '+dirty' when the work tree has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


@dataclass(frozen=True)
class ExtractorArtifact:
    path: Path
    meta: dict

    @property
    def version(self) -> str:
        return self.meta["version"]

    def load_state_dict(self) -> dict:
        return torch.load(self.path / WEIGHTS_FILE, map_location="cpu", weights_only=True)


def save_extractor(root: str | Path, net: torch.nn.Module, meta: Mapping) -> ExtractorArtifact:
    """Write a new artifact atomically and return it; `meta` must hold `kind` and `fold`."""
    root = Path(root)
    parent = root / meta["kind"] / f"fold_{int(meta['fold']):03d}"
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
    try:
        torch.save(net.state_dict(), staging / WEIGHTS_FILE)
        weights_hash = file_fingerprint([staging / WEIGHTS_FILE])
        created = dt.datetime.now(dt.UTC)
        version = f"{created:%Y%m%dT%H%M%S}-{weights_hash[:8]}"
        full = {**meta, "version": version, "weights_sha256": weights_hash, "created_at": created.isoformat()}
        (staging / ARTIFACT_FILE).write_text(json.dumps(full, indent=2, default=str) + "\n")
        target = parent / version
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExtractorArtifact(target, full)


def read_extractor(path: str | Path) -> ExtractorArtifact:
    """The complete artifact in the folder `path` (FileNotFoundError naming it if there is none)."""
    path = Path(path)
    meta_file = path / ARTIFACT_FILE
    if path.name.startswith(".") or not meta_file.is_file():
        raise FileNotFoundError(f"{path} holds no complete extractor artifact (no {ARTIFACT_FILE})")
    return ExtractorArtifact(path, json.loads(meta_file.read_text()))


def list_extractors(root: str | Path) -> list[ExtractorArtifact]:
    """Every complete artifact under `root`, by kind, fold and version."""
    found = [read_extractor(meta_file.parent) for meta_file in sorted(Path(root).glob(f"*/fold_*/*/{ARTIFACT_FILE}"))
             if not meta_file.parent.name.startswith(".")]
    return sorted(found, key=lambda a: (a.meta["kind"], a.meta["fold"], a.version))


def main() -> None:
    parser = argparse.ArgumentParser(description="List trained extractors.")
    parser.add_argument("--root", default="artifacts/extractors")
    args = parser.parse_args()
    artifacts = list_extractors(args.root)
    table = Table(title=f"Trained extractors in {args.root}")
    for column in ("kind", "fold", "version", "train end", "val end", "label", "val loss", "test F1"):
        table.add_column(column, no_wrap=True)
    for art in artifacts:
        m = art.meta
        metrics = m.get("metrics", {})
        table.add_row(
            m["kind"], str(m["fold"]), art.version, m["train_end"], m["val_end"], m["label"],
            f"{metrics.get('val/loss', float('nan')):.4f}", f"{metrics.get('test/f1_macro', float('nan')):.3f}",
        )
    Console(width=120).print(table if artifacts else f"no trained extractor under {args.root}")


if __name__ == "__main__":
    main()
