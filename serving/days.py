"""The served days on disk: one folder a day, committed whole by one rename, trusted only through its manifest.

    <out_dir>/<dataset>/days/<YYYY-MM-DD>/signals.parquet   the champion's signals of the day
                                         orders.parquet    the orders to fill after the day's close
                                         book.parquet      ranked: the book held once they fill
                                         account.parquet   with daily.holdings_path: account minus book
                                         manifest.json     the book it belongs to, each file's sha256, ...

A day is written into a staging folder beside the days (`.staging-<date>-*`), its manifest last, then
renamed into place: a kill at any point leaves the whole day or none of it (a staging folder left by a
kill is removed by the next run). A day's files are read only after their bytes match the manifest: a
file deleted, replaced or edited since the commit is refused, naming it, never traded from.

The manifest names the book the day belongs to (strategy, config key and first day), so the book's start
is recorded with its first day and every later day carries it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cli import Exit, Stop
from store.extractors import file_fingerprint

MANIFEST = "manifest.json"
STAGING = ".staging-"
DATE = "%Y-%m-%d"


@dataclass(frozen=True)
class BookId:
    """The book a served day belongs to: its strategy, config (and the config's key) and first day."""

    strategy: str
    key: str
    start: pd.Timestamp
    config: dict = field(compare=False)

    def to_json(self) -> dict:
        return {"strategy": self.strategy, "key": self.key, "start": f"{self.start:{DATE}}", "config": self.config}

    @classmethod
    def from_json(cls, data: dict) -> BookId:
        return cls(data["strategy"], data["key"], pd.Timestamp(data["start"], tz="UTC"), data["config"])

    def describe(self) -> str:
        return f"the {self.strategy} book started {self.start:{DATE}} (config {self.key})"


@dataclass(frozen=True)
class ServedDay:
    """What a run serves for a day: its tables (name -> frame) and the facts the manifest records."""

    day: pd.Timestamp
    book: BookId
    tables: dict[str, pd.DataFrame]
    facts: dict


class ServedDays:
    """The days served for one dataset (`<out_dir>/<dataset>`)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.folder = self.root / "days"

    def path(self, day: pd.Timestamp) -> Path:
        return self.folder / f"{day:{DATE}}"

    def days(self) -> list[pd.Timestamp]:
        """The committed days, oldest first (a staging folder is not a day)."""
        if not self.folder.is_dir():
            return []
        return sorted(pd.Timestamp(p.name, tz="UTC") for p in self.folder.iterdir()
                      if p.is_dir() and not p.name.startswith("."))

    def manifest(self, day: pd.Timestamp) -> dict:
        path = self.path(day) / MANIFEST
        if not path.is_file():
            raise Stop(Exit.BOOK_MISMATCH, f"{path} is missing: the served day {day:{DATE}} was changed after its "
                                           f"commit; nothing is served from it (move the folder "
                                           f"{self.path(day)} aside only to start a new book)")
        return json.loads(path.read_text())

    def book(self, day: pd.Timestamp) -> BookId:
        return BookId.from_json(self.manifest(day)["book"])

    def verify(self, day: pd.Timestamp) -> dict:
        """The day's manifest, once every file it lists has the bytes it recorded."""
        manifest = self.manifest(day)
        for name, digest in manifest["files"].items():
            path = self.path(day) / name
            if not path.is_file() or file_fingerprint([path]) != digest:
                what = "is missing" if not path.is_file() else "differs from the file served"
                raise Stop(Exit.BOOK_MISMATCH, f"{path} {what} (its manifest records sha256 {digest[:12]}...): the "
                                               f"served day {day:{DATE}} changed after its commit; nothing traded "
                                               f"from it")
        return manifest

    def table(self, day: pd.Timestamp, name: str) -> pd.DataFrame:
        """A committed day's table, its bytes checked against the manifest."""
        self.verify(day)
        return pd.read_parquet(self.path(day) / f"{name}.parquet")

    def legacy(self) -> list[Path]:
        """The folders of days served before a day was one folder (`signals/`, `orders/`, `book/` of dated files):
        a book nobody can read as one, refused rather than silently restarted."""
        return [self.root / name for name in ("signals", "orders", "book") if (self.root / name).is_dir()]

    def clear_staging(self) -> None:
        """Remove what a killed run left half written (never a committed day)."""
        if self.folder.is_dir():
            for path in self.folder.glob(f"{STAGING}*"):
                shutil.rmtree(path, ignore_errors=True)

    def commit(self, served: ServedDay) -> Path:
        """Write the day whole: its tables and manifest into a staging folder, then one rename into place."""
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING}{served.day:{DATE}}-", dir=self.folder))
        try:
            files = {}
            for name, frame in served.tables.items():
                path = staging / f"{name}.parquet"
                frame.to_parquet(path, index=False, compression="zstd")
                files[path.name] = file_fingerprint([path])
            manifest = {"day": f"{served.day:{DATE}}", "book": served.book.to_json(), "files": files, **served.facts}
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
            os.rename(staging, self.path(served.day))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self.path(served.day)

    def difference(self, served: ServedDay) -> str | None:
        """How `served` differs from the day as committed (None: the same tables, the same numbers)."""
        committed = self.verify(served.day)
        names = sorted(f"{name}.parquet" for name in served.tables)
        if names != sorted(committed["files"]):
            return f"this run serves {names}, the committed day {sorted(committed['files'])}"
        for name, frame in served.tables.items():
            try:
                # verified above: read the committed bytes without hashing them again
                committed_table = pd.read_parquet(self.path(served.day) / f"{name}.parquet")
                pd.testing.assert_frame_equal(committed_table, frame, check_exact=False, rtol=1e-12, atol=1e-12)
            except AssertionError as diff:
                return f"its {name} differ ({str(diff).strip().splitlines()[0]})"
        return None
