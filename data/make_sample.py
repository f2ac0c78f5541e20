"""Cut the shipped sample from ../shared/data (run once; the result is committed).

    python data/make_sample.py [--shared ../shared/data] [--out data/sample]

The sample is a verbatim slice: rows are selected, never altered.
"""

import argparse
import datetime as dt
import gzip
import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pyarrow.parquet as pq

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "ARBUSDT", "PEPEUSDT"]
FIRST_HOUR = dt.datetime(2022, 12, 1, tzinfo=dt.UTC)
# A month more Fear & Greed than prices: the daily features read it with a lag.
FIRST_FEAR_GREED_DAY = dt.date(2022, 11, 1)
# A freqtrade data folder for the loader's tests without ../shared: a feather and a json.gz pair over a
# window holding the 2023-03-24 outage and PEPE's listing, cut from ../shared/data/freqtrade.
FREQTRADE_FILES = {"BTC_USDT-1h.feather": "binance", "PEPE_USDT-1h.json.gz": "binance-json"}
FREQTRADE_WINDOW = (dt.datetime(2023, 3, 20, tzinfo=dt.UTC), dt.datetime(2023, 6, 1, tzinfo=dt.UTC))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("data/sample"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    hourly = ds.dataset(args.shared / "hourly.parquet")
    table = hourly.to_table(filter=pc.field("symbol").isin(SYMBOLS) & (pc.field("ts") >= FIRST_HOUR))
    table = table.sort_by([("symbol", "ascending"), ("ts", "ascending")])
    pq.write_table(table, args.out / "hourly.parquet", compression="zstd")

    fear_greed = ds.dataset(args.shared / "fear_greed.parquet")
    fg = fear_greed.to_table(filter=pc.field("date") >= FIRST_FEAR_GREED_DAY).sort_by("date")
    pq.write_table(fg, args.out / "fear_greed.parquet", compression="zstd")
    print(f"hourly: {table.num_rows} rows, fear_greed: {fg.num_rows} rows -> {args.out}")
    cut_freqtrade(args.shared / "freqtrade", args.out / "freqtrade")


def cut_freqtrade(source: Path, out: Path) -> None:
    """The FREQTRADE_FILES rows inside FREQTRADE_WINDOW, each in its source file's format."""
    out.mkdir(parents=True, exist_ok=True)
    for name, folder in FREQTRADE_FILES.items():
        cut = _cut_feather if name.endswith(".feather") else _cut_json_gz
        print(f"freqtrade {name}: {cut(source / folder / name, out / name)} rows -> {out}")


def _cut_feather(path: Path, out: Path) -> int:
    """Written uncompressed, as the source files are."""
    first, end = FREQTRADE_WINDOW
    table = feather.read_table(path).filter((pc.field("date") >= first) & (pc.field("date") < end))
    feather.write_feather(table, out, compression="uncompressed")
    return table.num_rows


def _cut_json_gz(path: Path, out: Path) -> int:
    """The rows written back as read; the gzip header without a time, so a rerun writes the same bytes."""
    first, end = (int(t.timestamp()) * 1000 for t in FREQTRADE_WINDOW)
    rows = [row for row in json.loads(gzip.decompress(path.read_bytes())) if first <= row[0] < end]
    out.write_bytes(gzip.compress(json.dumps(rows).encode(), mtime=0))
    return len(rows)


if __name__ == "__main__":
    main()
