"""Run a command killed by SIGKILL at an exact write: the tests' way to crash a run between two writes.

    KILL_AT=<write>:<text>:<n> python tests/kill_at.py daily.py key=value ...

<write> is `rename` (os.replace / os.rename: every atomic write and every commit of the project) or
`parquet` (DataFrame.to_parquet); the process kills itself just before the n-th such write (from 1) whose
target path contains <text>. With KILL_RECORD=<file> instead, it records every write's kind and target,
one a line, and lets the run finish: the list of points to kill at.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _watch(kind: str, target) -> None:
    if os.environ.get("KILL_RECORD"):
        with open(os.environ["KILL_RECORD"], "a", encoding="utf-8") as handle:
            handle.write(f"{kind}\t{target}\n")
        return
    want, text, n = os.environ["KILL_AT"].split(":", 2)
    if kind == want and text in str(target):
        _watch.seen += 1
        if _watch.seen == int(n):
            os.kill(os.getpid(), signal.SIGKILL)


_watch.seen = 0


def _patch() -> None:
    replace, rename, to_parquet = os.replace, os.rename, pd.DataFrame.to_parquet

    def watched_replace(src, dst, *args, **kwargs):
        _watch("rename", dst)
        return replace(src, dst, *args, **kwargs)

    def watched_rename(src, dst, *args, **kwargs):
        _watch("rename", dst)
        return rename(src, dst, *args, **kwargs)

    def watched_to_parquet(frame, path=None, *args, **kwargs):
        _watch("parquet", path)
        return to_parquet(frame, path, *args, **kwargs)

    os.replace, os.rename, pd.DataFrame.to_parquet = watched_replace, watched_rename, watched_to_parquet


if __name__ == "__main__":
    _patch()
    script, sys.argv = sys.argv[1], sys.argv[1:]
    sys.path.insert(0, str(ROOT))
    runpy.run_path(str(ROOT / script), run_name="__main__")
