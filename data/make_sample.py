"""Cut the shipped sample from ../shared/data (run once; the result is committed).

    python data/make_sample.py [--shared ../shared/data] [--out data/sample]

The sample is a verbatim slice: rows are selected, never altered.
"""

import argparse
import datetime as dt
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "ARBUSDT", "PEPEUSDT"]
FIRST_HOUR = dt.datetime(2022, 12, 1, tzinfo=dt.UTC)
# A month more Fear & Greed than prices: the daily features read it with a lag.
FIRST_FEAR_GREED_DAY = dt.date(2022, 11, 1)


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


if __name__ == "__main__":
    main()
