"""Persistent artifacts: atomic file writes now; the feature store joins here."""

from store.files import write_json_atomic, write_parquet_atomic

__all__ = ["write_json_atomic", "write_parquet_atomic"]
