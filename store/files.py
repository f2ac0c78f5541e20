"""Atomic writes: a reader sees the old file or the whole new one, never a half-written file.

Each write goes to a temporary file in the target's directory and is renamed over the target
(`os.replace` is atomic on one filesystem), so a crash mid-write leaves the previous version.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def _write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_parquet_atomic(frame: pd.DataFrame, path: str | Path) -> Path:
    return _write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False, compression="zstd"))


def write_arrow_atomic(table: pa.Table, path: str | Path) -> Path:
    return _write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def write_text_atomic(text: str, path: str | Path) -> Path:
    return _write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes_atomic(data: bytes, path: str | Path) -> Path:
    return _write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_json_atomic(data, path: str | Path) -> Path:
    return _write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=str) + "\n"))
