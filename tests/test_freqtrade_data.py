"""A freqtrade data folder as `data.hourly_path`: the same bars as the long-format Parquet, value for value.

Real files only: ../shared/data/freqtrade (the sample's eight coins in freqtrade's feather files, BTC
and PEPE again as json.gz; those tests skip when it is absent) and the shipped cut data/sample/freqtrade
(BTC as feather, PEPE as json.gz, 2023-03-20 -> 2023-05-31, made by data/make_sample.py).
"""

from __future__ import annotations

import gzip
import json
import shutil

import pandas as pd
import pytest
from omegaconf import OmegaConf

from marketdata import DataValidationError, load_hourly, load_market_data
from marketdata.freqtrade import candle_files, read_freqtrade
from marketdata.load import dataset_id, load_market
from store.extractors import data_fingerprint
from store.lineage import checked_market_data
from tests.conftest import SAMPLE, SHARED, compose

FREQTRADE = SHARED / "freqtrade"
SHIPPED = SAMPLE / "freqtrade"
FEAR_GREED = SAMPLE / "fear_greed.parquet"
SHIPPED_WINDOW = (pd.Timestamp("2023-03-20", tz="UTC"), pd.Timestamp("2023-06-01", tz="UTC"))
BTC, PEPE = "BTC_USDT-1h.feather", "PEPE_USDT-1h.json.gz"


@pytest.fixture(scope="module")
def freqtrade_data():
    if not (FREQTRADE / "binance").is_dir():
        pytest.skip("../shared/data/freqtrade is not present")
    return FREQTRADE


@pytest.fixture(scope="module")
def shipped_rows(sample_hourly_raw) -> pd.DataFrame:
    """The sample parquet's rows of the shipped folder's pairs and window."""
    first, end = SHIPPED_WINDOW
    keep = sample_hourly_raw["symbol"].isin(["BTCUSDT", "PEPEUSDT"]) & (sample_hourly_raw["ts"] >= first) & \
        (sample_hourly_raw["ts"] < end)
    return sample_hourly_raw[keep].reset_index(drop=True)


@pytest.fixture
def folder(tmp_path):
    """A writable copy of the shipped folder."""
    return shutil.copytree(SHIPPED, tmp_path / "freqtrade")


def _pepe_rows() -> list[list]:
    return json.loads(gzip.decompress((SHIPPED / PEPE).read_bytes()))


def _write_pepe(folder, rows: list[list]) -> None:
    (folder / PEPE).write_bytes(gzip.compress(json.dumps(rows).encode()))


# -- the real files: the same frames as the long-format parquet ----------------------------------------
@pytest.mark.shared_data
def test_the_freqtrade_folder_gives_the_sample_frame(freqtrade_data, sample_hourly_raw):
    """The eight feather files hold exactly the sample's rows (same window, 69,584 bars): the folder and
    the parquet load to identical frames, and the raw read is the parquet as stored, dtypes included."""
    folder = freqtrade_data / "binance"
    pd.testing.assert_frame_equal(load_hourly(folder), sample_hourly_raw)
    pd.testing.assert_frame_equal(read_freqtrade(folder), pd.read_parquet(SAMPLE / "hourly.parquet"))
    assert len(sample_hourly_raw) == 69_584


@pytest.mark.shared_data
def test_pair_file_names_map_to_symbols(freqtrade_data, sample_hourly_raw):
    files = candle_files(freqtrade_data / "binance")
    assert sorted(files) == sorted(sample_hourly_raw["symbol"].unique())
    assert {symbol: path.name for symbol, path in files.items()} == {
        "ADAUSDT": "ADA_USDT-1h.feather", "ARBUSDT": "ARB_USDT-1h.feather", "BNBUSDT": "BNB_USDT-1h.feather",
        "BTCUSDT": BTC, "ETHUSDT": "ETH_USDT-1h.feather", "PEPEUSDT": "PEPE_USDT-1h.feather",
        "SOLUSDT": "SOL_USDT-1h.feather", "XRPUSDT": "XRP_USDT-1h.feather",
    }


@pytest.mark.shared_data
def test_the_json_gz_folder_gives_the_same_bars(freqtrade_data, sample_hourly_raw):
    both = sample_hourly_raw[sample_hourly_raw["symbol"].isin(["BTCUSDT", "PEPEUSDT"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(load_hourly(freqtrade_data / "binance-json"), both)


@pytest.mark.shared_data
def test_the_folder_and_the_parquet_share_the_data_fingerprint(freqtrade_data):
    """Extractor artifacts and store rows keyed on the parquet stay valid when the same bars come as a folder."""
    as_parquet = {"hourly_path": SAMPLE / "hourly.parquet", "fear_greed_path": FEAR_GREED}
    assert data_fingerprint({**as_parquet, "hourly_path": freqtrade_data / "binance"}) == data_fingerprint(as_parquet)


# -- the shipped folder (no ../shared needed) ----------------------------------------------------------
def test_the_shipped_folder_is_the_sample_rows(shipped_rows):
    """A feather and a json.gz pair: the sample's rows of their window, the outage and PEPE's listing included."""
    bars = load_hourly(SHIPPED)
    pd.testing.assert_frame_equal(bars, shipped_rows)
    counts = bars.groupby("symbol")["ts"].agg(["min", "size"])
    assert counts.loc["BTCUSDT", "size"] == 1751  # 73 days of hours less the 2023-03-24 13:00 outage bar
    assert counts.loc["PEPEUSDT", "min"] == pd.Timestamp("2023-05-05 18:00", tz="UTC")
    assert bars.loc[bars["symbol"] == "PEPEUSDT", "close"].max() < 5e-6  # tiny prices unscaled


def test_plain_json_reads_as_json_gz(folder, shipped_rows):
    (folder / "PEPE_USDT-1h.json").write_bytes(gzip.decompress((folder / PEPE).read_bytes()))
    (folder / PEPE).unlink()
    pd.testing.assert_frame_equal(load_hourly(folder), shipped_rows)


def test_only_1h_spot_candle_files_are_read(folder, shipped_rows):
    """Other timeframes, trades and other files beside the candles are left alone."""
    shutil.copy(folder / BTC, folder / "ETH_USDT-5m.feather")
    shutil.copy(folder / PEPE, folder / "PEPE_USDT-trades.json.gz")
    (folder / "README.md").write_text("notes")
    (folder / "nested").mkdir()
    pd.testing.assert_frame_equal(load_hourly(folder), shipped_rows)


def test_the_pipeline_entry_point_reads_the_folder(tmp_path, shipped_rows):
    """Through the composed config and `checked_market_data` (what pipeline.py and embed.py call): the folder
    and the parquet of the same bars give the same grid, gap report and dataset, and share one bar history."""
    parquet = tmp_path / "hourly.parquet"
    shipped_rows.to_parquet(parquet, index=False)
    store = tmp_path / "store"
    cfg = compose(f"data.hourly_path={SHIPPED}", f"data.fear_greed_path={FEAR_GREED}")
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    from_folder, dataset = checked_market_data(data_cfg, store)
    from_parquet, same_dataset = checked_market_data({**data_cfg, "hourly_path": str(parquet)}, store)
    assert dataset == same_dataset == dataset_id(shipped_rows)
    pd.testing.assert_frame_equal(from_folder.grid, from_parquet.grid)
    pd.testing.assert_frame_equal(from_folder.gaps, from_parquet.gaps)
    assert int(from_folder.grid["is_filled"].sum()) == 1  # BTC's 2023-03-24 13:00 outage bar, filled flat
    grid, gaps, _ = load_market_data(SHIPPED, FEAR_GREED)
    pd.testing.assert_frame_equal(grid, from_parquet.grid)
    assert data_fingerprint({"hourly_path": SHIPPED, "fear_greed_path": FEAR_GREED}) == \
        data_fingerprint({"hourly_path": parquet, "fear_greed_path": FEAR_GREED})


def test_a_rewritten_candle_file_changes_the_fingerprint(folder):
    data = {"hourly_path": folder, "fear_greed_path": FEAR_GREED}
    before = data_fingerprint(data)
    rows = _pepe_rows()
    rows[100][5] += 1.0  # one bar's volume
    _write_pepe(folder, rows)
    assert data_fingerprint(data) != before


# -- errors: one line naming the file --------------------------------------------------------------------
def _error(path) -> str:
    with pytest.raises(DataValidationError) as info:
        load_hourly(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_csv_file_is_refused_with_the_accepted_formats(tmp_path, shipped_rows):
    path = tmp_path / "hourly.csv"
    shipped_rows.to_csv(path, index=False)
    message = _error(path)
    assert message.startswith(f"{path}: not a Parquet file; expected a long-format Parquet file (symbol, ts, ")
    assert "or a freqtrade data folder (<BASE>_<QUOTE>-1h.feather, .json or .json.gz files)" in message


@pytest.mark.parametrize("other", [None, "BTC_USDT-5m.feather"])
def test_a_folder_without_1h_candles(tmp_path, other):
    if other is not None:
        shutil.copy(SHIPPED / BTC, tmp_path / other)
    assert _error(tmp_path) == (f"{tmp_path}: no freqtrade 1h candle files in the folder; "
                                f"expected <BASE>_<QUOTE>-1h.feather, .json or .json.gz")


def test_one_pair_in_two_formats(folder):
    shutil.copy(folder / PEPE, folder / "BTC_USDT-1h.json.gz")
    assert _error(folder) == f"{folder}: {BTC} and BTC_USDT-1h.json.gz both hold BTCUSDT; keep one file a pair"


@pytest.mark.parametrize("name", ["BTC_USDT_USDT-1h-futures.feather", "BTC_USDT_USDT-1h.feather",
                                  "BTC_USDT-1h-mark.feather"])
def test_futures_pairs_are_refused(folder, name):
    shutil.copy(folder / BTC, folder / name)
    message = _error(folder)
    assert message.startswith(f"{folder / name}: futures candles") and "only spot pairs are read" in message


def test_a_name_that_is_not_a_pair(folder):
    shutil.copy(folder / BTC, folder / "BTCUSDT-1h.feather")
    assert "'BTCUSDT' is not a <BASE>_<QUOTE> pair name" in _error(folder)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ([1684090800000, 1.5e-06, 1.6e-06, 1.4e-06, 1.5e-06], "row 300 is not [ms since epoch, open, high"),
        ([1684090800000, "1.5e-06", "n/a", 1.4e-06, 1.5e-06, 9.0], "row 300 is not [ms since epoch, open, high"),
        ([None, 1.5e-06, 1.6e-06, 1.4e-06, 1.5e-06, 9.0], "row 300 has no time in whole ms since epoch: nan"),
        ([1684090800000.5, 1.5e-06, 1.6e-06, 1.4e-06, 1.5e-06, 9.0], "row 300 has no time in whole ms"),
    ],
)
def test_a_malformed_json_row(folder, row, problem):
    rows = _pepe_rows()
    rows[300] = row
    _write_pepe(folder, rows)
    message = _error(folder)
    assert message.startswith(f"{folder / PEPE}: {problem}"), message


def test_a_file_that_is_not_json(folder):
    (folder / PEPE).write_bytes(b"not gzip")
    assert _error(folder).startswith(f"{folder / PEPE}: not a freqtrade json candle file")


def test_a_feather_file_with_a_missing_column(folder):
    pd.read_feather(folder / BTC).drop(columns="volume").to_feather(folder / BTC)
    assert _error(folder).startswith(f"{folder / BTC}: columns ['date', 'open', 'high', 'low', 'close']; expected")


def test_a_feather_file_with_naive_dates(folder):
    frame = pd.read_feather(folder / BTC)
    frame.assign(date=frame["date"].dt.tz_localize(None)).to_feather(folder / BTC)
    assert _error(folder) == f"{folder / BTC}: column 'date' must be a UTC timestamp, got datetime64[ns]"


def test_an_empty_candle_file(folder):
    _write_pepe(folder, [])
    assert _error(folder) == f"{folder / PEPE}: the file holds no rows"


def test_bad_bars_are_validated_as_for_a_parquet(folder, shipped_rows):
    """A well-formed row with bad values reaches the loader's bar checks (named by symbol and time);
    with data.on_bad_symbol=drop that coin is left out and the other kept, as for a parquet."""
    rows = _pepe_rows()
    rows[300][2] = rows[300][3] * 0.5  # high < low
    _write_pepe(folder, rows)
    at = pd.Timestamp(rows[300][0], unit="ms", tz="UTC")
    assert _error(folder) == f"{folder}: high < low for PEPEUSDT at {at} (1 row(s) affected)"
    market = load_market(folder, FEAR_GREED, on_bad_symbol="drop")
    assert list(market.dropped["symbol"]) == ["PEPEUSDT"]
    pd.testing.assert_frame_equal(market.bars.reset_index(drop=True),
                                  shipped_rows[shipped_rows["symbol"] == "BTCUSDT"].reset_index(drop=True))


def test_rows_out_of_order_in_a_file_are_caught(folder):
    """The folder is read in file order, so the loader's order check sees each file as written."""
    rows = _pepe_rows()
    rows[10], rows[11] = rows[11], rows[10]
    _write_pepe(folder, rows)
    assert "non-monotonic time (bar earlier than the one before it) for PEPEUSDT" in _error(folder)
