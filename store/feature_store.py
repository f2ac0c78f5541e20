"""The feature store: extractor outputs per (symbol, decision time, kind, version), point-in-time reads.

Storage: one Delta Lake table per extractor kind (`<root>/<kind>_outputs`), plain Parquet files
plus a transaction log, so Spark, Trino, Ray or DuckDB read the same tables when one machine is
not enough. Delta gives what a backfill needs without a server: a commit is atomic (readers see
the table before or after it, never half of it), and an overwrite with a predicate replaces
exactly one extractor version's rows (idempotent re-runs, other versions untouched).

Rows hold the embedding (`lemb_*` for the LSTM, `emb_*` for the TCN) and the RAW class logits
(`logit_sell`, `logit_hold`, `logit_buy`): softmax is applied exactly once, in `read_asof`. Every
row carries its lineage: kind, version, fold, train and validation ends, the time from which the
extractor may be used (`eligible_from`), the artifact's weights hash, the feature schema hash,
the dataset (data lineage, `store/lineage.py`), the data fingerprint, the code revision and
source hash, and when it was written. Reads filter on the caller's dataset and feature schema:
rows made from other data or other features are never read.

Point in time: an extractor trained and early-stopped on data and labels up to
`labels_end = val_end + 1 day + horizon` may stand for decision time t only if
`labels_end + purge <= t` (`eligible_from`). A read takes, for each (symbol, t), the newest
eligible extractor's row, joined as of t (DuckDB ASOF JOIN), so the history the meta-learner sees
is what a live system would have had, and no row comes from an extractor that saw it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import DeltaTable, write_deltalake
from scipy import special

from features.labels import CLASS_NAMES
from store.files import write_json_atomic

EMBEDDING_PREFIX = {"lstm": "lemb_", "tcn": "emb_"}
LOGIT_COLUMNS = tuple(f"logit_{name.lower()}" for name in CLASS_NAMES)
LINEAGE_COLUMNS = (
    "kind", "version", "fold", "train_end", "val_end", "eligible_from", "artifact_sha256",
    "feature_schema_hash", "dataset", "data_fingerprint", "code_revision", "source_hash", "written_at",
)
KEY_COLUMNS = ("symbol", "ts", "decision_time")
COMMITTED_FILE = "committed.json"


def _quoted(values: Sequence[str]) -> str:
    if not values or any("'" in str(v) for v in values):
        raise ValueError(f"bad value list {values!r}")
    return ", ".join(f"'{v}'" for v in values)


def lineage_filter(dataset: str | None = None, schema_hash: str | None = None) -> str:
    """A SQL condition (leading AND) keeping the rows of one dataset and one feature schema."""
    return "".join(f" AND {column} IN ({_quoted([value])})" for column, value in
                   (("dataset", dataset), ("feature_schema_hash", schema_hash)) if value is not None)


class InSampleReadError(ValueError):
    """A read would hand a row an extractor output that is not out of sample for it."""


def eligible_from(meta: dict) -> pd.Timestamp:
    """The first decision time an extractor may stand for (see the module docstring)."""
    val_end = pd.Timestamp(meta["val_end"], tz="UTC")
    labels_end = val_end + pd.Timedelta(days=1 + int(meta["label_horizon_days"]))
    return labels_end + pd.Timedelta(days=int(meta["purge_days"]))


def output_schema(kind: str, embedding_dim: int) -> pa.Schema:
    ts = pa.timestamp("ms", tz="UTC")
    fields = [("symbol", pa.string()), ("ts", ts), ("decision_time", ts)]
    fields += [(f"{EMBEDDING_PREFIX[kind]}{i}", pa.float32()) for i in range(embedding_dim)]
    fields += [(name, pa.float32()) for name in LOGIT_COLUMNS]
    fields += [
        ("kind", pa.string()), ("version", pa.string()), ("fold", pa.int32()), ("train_end", ts), ("val_end", ts),
        ("eligible_from", ts), ("artifact_sha256", pa.string()), ("feature_schema_hash", pa.string()),
        ("dataset", pa.string()), ("data_fingerprint", pa.string()), ("code_revision", pa.string()),
        ("source_hash", pa.string()), ("written_at", ts),
    ]
    return pa.schema(fields)


class FeatureStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def table_path(self, kind: str) -> Path:
        if kind not in EMBEDDING_PREFIX:
            raise ValueError(f"unknown extractor kind {kind!r}; expected one of {sorted(EMBEDDING_PREFIX)}")
        return self.root / f"{kind}_outputs"

    def staging_dir(self, kind: str, run_key: str) -> Path:
        return self.root / ".staging" / kind / run_key

    def exists(self, kind: str) -> bool:
        return DeltaTable.is_deltatable(str(self.table_path(kind)))

    def table_version(self, kind: str) -> int | None:
        return DeltaTable(str(self.table_path(kind))).version() if self.exists(kind) else None

    def dataset(self, kind: str) -> pads.Dataset:
        if not self.exists(kind):
            raise FileNotFoundError(f"no {kind} outputs in the store at {self.table_path(kind)}: run embed.py first")
        return DeltaTable(str(self.table_path(kind))).to_pyarrow_dataset()

    def embedding_columns(self, kind: str) -> list[str]:
        """The table's embedding columns in order (their number is the extractor config's embedding size)."""
        prefix = EMBEDDING_PREFIX[kind]
        return [name for name in self.dataset(kind).schema.names if name.startswith(prefix)]

    def read(self, kind: str) -> pd.DataFrame:
        """The whole table (small tables and tests; use `read_asof` to feed models)."""
        return self.dataset(kind).to_table().to_pandas()

    def versions(self, kind: str, dataset: str | None = None, schema_hash: str | None = None) -> pd.DataFrame:
        """Per version (of `dataset` and feature schema `schema_hash` when given): fold, eligibility, rows, and
        what made its rows (the backfill code's `sources`, comma-joined, and when the last was `written`): a
        version's rows rewritten in place, same count, show there."""
        if not self.exists(kind):
            return pd.DataFrame(columns=["version", "fold", "eligible_from", "rows", "dataset", "feature_schema_hash",
                                         "sources", "written"])
        with duckdb.connect() as con:
            con.register("outputs", self.dataset(kind))
            return con.sql(
                "SELECT version, any_value(fold) AS fold, any_value(eligible_from) AS eligible_from, count(*) AS rows, "
                "any_value(dataset) AS dataset, any_value(feature_schema_hash) AS feature_schema_hash, "
                "string_agg(DISTINCT source_hash, ',' ORDER BY source_hash) AS sources, max(written_at) AS written "
                f"FROM outputs WHERE true{lineage_filter(dataset, schema_hash)} "
                "GROUP BY version ORDER BY eligible_from, version"
            ).df()

    def decision_times(self, kind: str, versions: Sequence[str], dataset: str) -> pd.DataFrame:
        """version, symbol, decision_time, source_hash of the stored rows of `versions` in `dataset`."""
        if not self.exists(kind):
            return pd.DataFrame(columns=["version", "symbol", "decision_time", "source_hash"])
        with duckdb.connect() as con:
            con.register("outputs", self.dataset(kind))
            return con.sql(
                "SELECT version, symbol, decision_time, source_hash FROM outputs "
                f"WHERE version IN ({_quoted(versions)})"
                f"{lineage_filter(dataset)}"
            ).df()

    def committed_runs(self) -> dict[str, dict[str, str]]:
        """kind -> version -> the run key of the backfill plan whose rows the table holds for it."""
        path = self.root / COMMITTED_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def record_committed(self, kind: str, run_keys: Mapping[str, str]) -> None:
        """After a commit: remember which plan each version's rows came from (a lost record only costs a re-run)."""
        committed = self.committed_runs()
        committed.setdefault(kind, {}).update(run_keys)
        write_json_atomic(committed, self.root / COMMITTED_FILE)

    def replace_versions(self, kind: str, tails: Mapping[str, pd.Timestamp | None], dataset: str,
                         batches: pa.RecordBatchReader) -> None:
        """In one transaction, replace the rows of each version in `tails` (of `dataset`) from its
        decision time on (None: all its rows) with `batches` (streamed, bounded memory).

        A whole backfill passes None; an append passes the first decision time it adds, so it
        rewrites its own tail only (a re-run after a crash writes the same rows again). Delta checks
        that every new row matches the predicate, so nothing of another version, another dataset or
        before the tail can be written or removed by mistake.
        """
        clauses = [
            f"(version = {_quoted([v])}"
            + ("" if t is None else f" AND decision_time >= '{pd.Timestamp(t).isoformat()}'") + ")"
            for v, t in tails.items()
        ]
        if not clauses:
            raise ValueError("no version to replace")
        path = str(self.table_path(kind))
        if self.exists(kind):
            predicate = f"({' OR '.join(clauses)}) AND dataset = {_quoted([dataset])}"
            write_deltalake(path, batches, mode="overwrite", predicate=predicate)
        else:
            write_deltalake(path, batches, mode="error")

    def delete_from(self, dataset: str, since: pd.Timestamp) -> int:
        """Delete every row of `dataset` whose window reaches `since` (a restated bar); returns rows deleted.

        The versions that lose rows lose their committed plans first: the table will no longer hold what those
        plans wrote, so the next backfill rebuilds the rows even when the data is the same as at their commit
        (a kill between the two leaves plans forgotten and rows kept: rebuilt the same). The rows are removed by
        rewriting each such version's rows before `since` in one transaction, as a backfill writes them (Delta's
        own delete would rewrite the files it touches with other string types than the rest of the table)."""
        deleted = 0
        in_dataset = f"dataset = {_quoted([dataset])}"
        condition = f"{in_dataset} AND decision_time > '{pd.Timestamp(since).isoformat()}'"
        for kind in EMBEDDING_PREFIX:
            if not self.exists(kind):
                continue
            table = self.dataset(kind)
            with duckdb.connect() as con:
                con.register("outputs", table)
                counts = con.sql(f"SELECT version, count(*) AS n FROM outputs WHERE {condition} GROUP BY version").df()
            if counts.empty:
                continue
            versions = list(counts["version"])
            self._forget_committed(kind, versions)
            kept = table.scanner(filter=(pads.field("dataset") == dataset) & pads.field("version").isin(versions)
                                 & (pads.field("decision_time") <= pd.Timestamp(since))).to_reader()
            write_deltalake(str(self.table_path(kind)), kept, mode="overwrite",
                            predicate=f"{in_dataset} AND version IN ({_quoted(versions)})")
            deleted += int(counts["n"].sum())
        return deleted

    def _forget_committed(self, kind: str, versions: Sequence[str]) -> None:
        """Drop the committed plans of `versions`, whose rows were deleted: a kept one would skip their rebuild."""
        committed = self.committed_runs()
        if any(version in committed.get(kind, {}) for version in versions):
            for version in versions:
                committed[kind].pop(version, None)
            write_json_atomic(committed, self.root / COMMITTED_FILE)

    def read_asof(
        self,
        decisions: pd.DataFrame,
        kind: str,
        version: str | None = None,
        max_staleness_hours: float = 1.0,
        among: Sequence[str] | None = None,
        dataset: str | None = None,
        schema_hash: str | None = None,
    ) -> pd.DataFrame:
        """The extractor outputs each decision row (symbol, decision_time) may use, point in time.

        Per (symbol, stored decision time) the newest eligible version is kept; each decision row
        takes the latest such row at or before its decision time, if it is at most
        `max_staleness_hours` old (else the outputs are missing, never filled). `among` limits the
        versions considered (e.g. the extractors one pipeline run trained); `dataset` and
        `schema_hash` keep the rows made from the caller's data and features; `version` pins one
        extractor: decision rows it is not out of sample for are refused with InSampleReadError.
        Returns the decision rows with the embedding, the raw logits, probabilities
        (`<kind>_p_sell`, ...: softmax of the stored logits, applied here and only here) and
        lineage columns prefixed `<kind>_`.
        """
        missing = [c for c in ("symbol", "decision_time") if c not in decisions.columns]
        if missing:
            raise ValueError(f"decision rows need columns {missing}")
        with duckdb.connect() as con:
            return self._read_asof(con, decisions, kind, version, max_staleness_hours, among,
                                   lineage_filter(dataset, schema_hash))

    def _read_asof(self, con, decisions, kind, version, max_staleness_hours, among, lineage) -> pd.DataFrame:
        con.register("all_outputs", self.dataset(kind))
        con.sql(f"CREATE TEMP VIEW outputs AS SELECT * FROM all_outputs WHERE true{lineage}")
        query_rows = decisions[["symbol", "decision_time"]].reset_index(drop=True)
        query_rows["decision_time"] = query_rows["decision_time"].astype("datetime64[ms, UTC]")
        query_rows["row_id"] = np.arange(len(query_rows))
        con.register("decisions", query_rows)
        if version is not None:
            # .df(): DuckDB returns tz-aware scalars through pandas, without needing pytz.
            first = con.execute(
                "SELECT min(eligible_from) AS first FROM outputs WHERE version = $1", [version]
            ).df()["first"].iloc[0]
            if pd.isna(first):
                raise KeyError(f"version {version!r} is not in the {kind} store")
            early = query_rows[query_rows["decision_time"] < first].sort_values("decision_time")
            if not early.empty:
                raise InSampleReadError(
                    f"{kind} version {version} is eligible from {first} only: it is in sample for "
                    f"{early['symbol'].iloc[0]} at {early['decision_time'].iloc[0]} "
                    f"({len(early)} decision row(s); its training data and labels end within the purge)"
                )
            source = f"SELECT * FROM outputs WHERE version = {_quoted([version])}"
        else:
            listed = "" if among is None else f" AND version IN ({_quoted(among)})"
            source = (
                f"SELECT * FROM outputs WHERE decision_time >= eligible_from{listed} "
                "QUALIFY row_number() OVER (PARTITION BY symbol, decision_time "
                "ORDER BY eligible_from DESC, version DESC) = 1"
            )
        joined = con.sql(
            f"WITH chosen AS ({source}) "
            "SELECT d.row_id, c.* EXCLUDE (symbol, ts), c.decision_time AS output_time "
            "FROM decisions d ASOF LEFT JOIN chosen c "
            "ON d.symbol = c.symbol AND d.decision_time >= c.decision_time ORDER BY d.row_id"
        ).df()
        stale = (query_rows["decision_time"] - joined["output_time"]) > pd.Timedelta(hours=max_staleness_hours)
        value_columns = [c for c in joined.columns if c not in ("row_id", "decision_time", "output_time")]
        joined.loc[stale.to_numpy(), value_columns] = np.nan
        found = joined["eligible_from"].notna()
        if (joined.loc[found, "eligible_from"] > query_rows.loc[found, "decision_time"]).any():
            raise InSampleReadError(f"the {kind} store holds rows written before their extractor was eligible")
        return _with_probabilities(decisions.reset_index(drop=True), joined, kind)


def _with_probabilities(decisions: pd.DataFrame, joined: pd.DataFrame, kind: str) -> pd.DataFrame:
    logits = joined[list(LOGIT_COLUMNS)].to_numpy(dtype="float64")
    probs = np.full_like(logits, np.nan)
    found = np.isfinite(logits).all(axis=1)
    probs[found] = special.softmax(logits[found], axis=1)
    prefix = EMBEDDING_PREFIX[kind]
    out = decisions.copy()
    for column in [c for c in joined.columns if c.startswith(prefix)]:
        out[column] = joined[column].to_numpy(dtype="float32")
    for i, name in enumerate(CLASS_NAMES):
        out[f"{kind}_logit_{name.lower()}"] = logits[:, i]
        out[f"{kind}_p_{name.lower()}"] = probs[:, i]
    for column in ("version", "fold", "eligible_from", "output_time"):
        out[f"{kind}_{column}"] = joined[column].to_numpy()
    return out
