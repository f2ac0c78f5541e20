"""Fetching new bars (marketdata/fetch.py, fetch.py) through ccxt's own Binance client, pointed at a local
replay server: the real sample's bars rendered as Binance's spot klines answers.

The machines have no exchange access, so a thread on 127.0.0.1 answers the three endpoints ccxt's binance
calls: `GET /api/v3/time` (fetch_time: the server's clock, which decides which bars have closed; the
machine's own clock is years later), `GET /api/v3/exchangeInfo` (load_markets; a minimal answer in
Binance's format for the sample's 8 pairs) and `GET /api/v3/klines`, answered from data/sample/hourly.parquet (real
Binance bars) for the requested symbol, startTime and limit, as Binance does: bars opening at startTime
or later up to the server's clock, the still-forming bar included, prices and volumes as 8-decimal
strings (the sample's values round-trip through them exactly). The kline fields the sample lacks (quote
volume, trades, taker volumes) are zeros; ccxt reads only the first six. Faults are scripted per test: a
429 with Retry-After, hours left out, a mangled row.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from marketdata.fetch import ConfigError, FetchError, Retry, make_exchange, update_bars
from marketdata.load import load_hourly
from marketdata.validate import DataValidationError
from tests.conftest import ROOT

PAIRS = ["BTC/USDT", "ETH/USDT", "BNB/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT", "ARB/USDT", "PEPE/USDT"]
OPTIONS = {"fetchMarkets": {"types": ["spot"]}}  # conf/fetch.yaml's: Binance's spot markets only
HOUR_MS = 3_600_000
RETRY_AFTER = "7"
# Binance's answer when the request weight per minute is used up (HTTP 429).
TOO_MANY = {"code": -1003, "msg": "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute. "
                                  "Please use the websocket for live updates to avoid polling the API."}


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def ms(text: str) -> int:
    return int(ts(text).timestamp() * 1000)


def exchange_info(symbols: list[str]) -> dict:
    """Binance's GET /api/v3/exchangeInfo, cut to what a spot market needs, for the given symbols."""
    def market(symbol: str) -> dict:
        base = symbol.removesuffix("USDT")
        return {
            "symbol": symbol, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8, "quoteAsset": "USDT",
            "quotePrecision": 8, "quoteAssetPrecision": 8, "orderTypes": ["LIMIT", "MARKET"],
            "icebergAllowed": True, "ocoAllowed": True, "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.00000001", "maxPrice": "1000000.00000000",
                 "tickSize": "0.00000001"},
                {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000000000.00000000",
                 "stepSize": "0.00001000"},
            ],
            "permissions": [], "permissionSets": [["SPOT"]],
        }
    return {"timezone": "UTC", "serverTime": 0, "rateLimits": [], "exchangeFilters": [],
            "symbols": [market(s) for s in symbols]}


class Replay:
    """The recorded exchange: the sample's bars per symbol, the server's clock, and the faults to play."""

    def __init__(self, bars: pd.DataFrame, now: pd.Timestamp):
        self.now_ms = int(now.timestamp() * 1000)
        self.bars = {symbol: group.set_index(group["ts"].astype("int64").to_numpy())  # ts in ms since epoch
                     for symbol, group in bars.groupby("symbol")}
        self.klines: list[dict] = []     # each klines request: symbol, startTime, limit, status, opens
        self.refuse: set[int] = set()    # klines requests (0-based, in order of arrival) answered 429
        self.dropped: set[tuple[str, int]] = set()   # (symbol, open ms) left out of the answers
        self.mangle: dict[tuple[str, int], object] = {}  # (symbol, open ms) -> row -> the row sent instead
        self.url = ""
        self.times = 0                   # GET /api/v3/time requests

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, dict, object]:
        if path == "/api/v3/time":
            self.times += 1
            return 200, {}, {"serverTime": self.now_ms}
        if path == "/api/v3/exchangeInfo":
            return 200, {}, exchange_info(sorted(self.bars))
        if path == "/api/v3/klines":
            return self._klines(query)
        return 404, {}, {"code": -1, "msg": f"no recording for {path}"}

    def _klines(self, query: dict[str, str]) -> tuple[int, dict, object]:
        request = {"symbol": query["symbol"], "startTime": int(query["startTime"]), "limit": int(query["limit"])}
        self.klines.append(request)
        if len(self.klines) - 1 in self.refuse:
            request.update(status=429, opens=[])
            return 429, {"Retry-After": RETRY_AFTER}, TOO_MANY
        bars = self.bars[request["symbol"]]
        window = bars[(bars.index >= request["startTime"]) & (bars.index <= self.now_ms)]
        window = window[[(request["symbol"], t) not in self.dropped for t in window.index]]
        rows = [self._row(request["symbol"], t, bar) for t, bar in window.iloc[:request["limit"]].iterrows()]
        request.update(status=200, opens=[row[0] for row in rows])
        return 200, {}, rows

    def _row(self, symbol: str, open_ms: int, bar) -> list:
        """One kline as Binance sends it: [open time, "open", "high", "low", "close", "volume", close time,
        "quote volume", trades, "taker base volume", "taker quote volume", "0"]."""
        row = [open_ms, *(f"{bar[c]:.8f}" for c in ("open", "high", "low", "close", "volume")), open_ms + HOUR_MS - 1,
               "0.00000000", 0, "0.00000000", "0.00000000", "0"]
        change = self.mangle.get((symbol, open_ms))
        return row if change is None else change(row)

    def requests_of(self, symbol: str) -> list[dict]:
        return [r for r in self.klines if r["symbol"] == symbol]


def _handler(replay: Replay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            status, headers, body = replay.answer(url.path, {k: v[0] for k, v in parse_qs(url.query).items()})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # keep the test output clean
            pass

    return Handler


@pytest.fixture
def serve(sample_hourly_raw, monkeypatch):
    """serve(now) -> a Replay of the sample answering on 127.0.0.1 with its clock at `now`."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # never through a proxy, even if the environment names one
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    servers = []

    def start(now: str) -> Replay:
        replay = Replay(sample_hourly_raw, ts(now))
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(replay))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        servers.append(server)
        replay.url = f"http://127.0.0.1:{server.server_address[1]}"
        return replay

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def exchange_for(replay: Replay):
    """ccxt's binance client with every REST URL on the replay server; its rate limiter stays on, with
    1 ms per request weight instead of 50 so that the tests stay fast."""
    exchange = make_exchange("binance", replay.url, OPTIONS)
    exchange.rateLimit = 1
    return exchange


def history(sample: pd.DataFrame, path, last: str, symbols=None) -> None:
    """The bar file as an earlier run left it: the sample's bars up to `last`."""
    rows(sample, None, last, symbols).to_parquet(path, index=False)


def rows(sample: pd.DataFrame, after: str | None, last: str, symbols=None) -> pd.DataFrame:
    """The sample's rows opening after `after` (None: from the start) up to `last`, as load_hourly gives them."""
    keep = sample["ts"] <= ts(last)
    if after is not None:
        keep &= sample["ts"] > ts(after)
    if symbols is not None:
        keep &= sample["symbol"].isin(symbols)
    return sample[keep].reset_index(drop=True)


def fetch(replay: Replay, out, pairs=PAIRS, sleeps=None, **kwargs):
    """update_bars on the exchange's clock (the replay's), 4 bars a page and retries that record their waits."""
    retry = Retry(attempts=3, seconds=0.0, sleep=(sleeps if sleeps is not None else []).append)
    return update_bars(exchange_for(replay), pairs, out, limit=4, retry=retry, **kwargs)


def stat(path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_continues_from_the_file_page_by_page_value_for_value(serve, sample_hourly_raw, tmp_path):
    out = tmp_path / "hourly.parquet"
    history(sample_hourly_raw, out, "2023-06-10 05:00")
    replay = serve("2023-06-10 16:30")  # 15:00 is the last closed bar, 16:00 still forming
    result = fetch(replay, out)

    pd.testing.assert_frame_equal(load_hourly(out), rows(sample_hourly_raw, None, "2023-06-10 15:00"))
    pd.testing.assert_frame_equal(result.new, rows(sample_hourly_raw, "2023-06-10 05:00", "2023-06-10 15:00"))
    assert result.end == ts("2023-06-10 15:00")
    assert result.pairs["bars"].tolist() == [10] * 8
    assert (result.pairs["first"] == ts("2023-06-10 06:00")).all() and (result.pairs["last"] == result.end).all()
    for symbol in ("BTCUSDT", "PEPEUSDT"):  # 06-09, 10-13, then 14, 15 and the forming 16: a short page ends it
        assert [r["startTime"] for r in replay.requests_of(symbol)] == [ms("2023-06-10 06:00"),
                                                                         ms("2023-06-10 10:00"),
                                                                         ms("2023-06-10 14:00")]
    assert result.gaps.empty


def test_a_second_run_fetches_nothing_and_a_later_one_only_the_newer_bars(serve, sample_hourly_raw, tmp_path):
    out = tmp_path / "hourly.parquet"
    history(sample_hourly_raw, out, "2023-06-10 05:00")
    fetch(serve("2023-06-10 16:30"), out)
    before = stat(out)

    again = serve("2023-06-10 16:59")
    assert fetch(again, out).new.empty
    assert again.klines == []  # every pair is at the last closed hour: not one request
    assert stat(out) == before  # not rewritten

    later = serve("2023-06-10 19:05")
    result = fetch(later, out)
    assert [r["startTime"] for r in later.requests_of("ETHUSDT")] == [ms("2023-06-10 16:00")]
    pd.testing.assert_frame_equal(result.new, rows(sample_hourly_raw, "2023-06-10 15:00", "2023-06-10 18:00"))
    pd.testing.assert_frame_equal(load_hourly(out), rows(sample_hourly_raw, None, "2023-06-10 18:00"))


@pytest.mark.parametrize(("now", "margin", "forming", "last_closed"), [
    ("2023-06-10 15:59:59.999", 0, "2023-06-10 15:00", "2023-06-10 14:00"),   # 15:00 still forming: not written
    ("2023-06-10 16:00:00.000", 0, "2023-06-10 16:00", "2023-06-10 15:00"),   # it closes at 16:00 exactly
    ("2023-06-10 16:00:09.999", 10, "2023-06-10 16:00", "2023-06-10 14:00"),  # closed, but within the margin
    ("2023-06-10 16:00:10.000", 10, "2023-06-10 16:00", "2023-06-10 15:00"),  # the margin has passed
])
def test_only_closed_bars_by_the_exchanges_clock(serve, sample_hourly_raw, tmp_path, now, margin, forming,
                                                 last_closed):
    """Closed is the exchange's call (its clock, years before this machine's), a margin after the hour."""
    out = tmp_path / "hourly.parquet"
    history(sample_hourly_raw, out, "2023-06-10 05:00", ["BTCUSDT"])
    replay = serve(now)
    result = fetch(replay, out, ["BTC/USDT"], close_margin_seconds=margin)

    assert replay.times == 1
    served = [t for r in replay.klines for t in r["opens"]]
    assert max(served) == ms(forming)  # the exchange did send the forming bar
    assert result.end == ts(last_closed)
    pd.testing.assert_frame_equal(load_hourly(out), rows(sample_hourly_raw, None, last_closed, ["BTCUSDT"]))


def test_a_rate_limited_page_is_retried_after_the_exchanges_wait(serve, sample_hourly_raw, tmp_path):
    out = tmp_path / "hourly.parquet"
    history(sample_hourly_raw, out, "2023-06-10 05:00")
    replay = serve("2023-06-10 16:30")
    replay.refuse = {1}  # BTCUSDT's second page
    sleeps = []
    result = fetch(replay, out, sleeps=sleeps)

    assert replay.klines[1]["status"] == 429
    assert replay.klines[2] == {**replay.klines[1], "status": 200, "opens": replay.klines[2]["opens"]}
    assert sleeps == [float(RETRY_AFTER)]  # Binance's Retry-After, longer than the backoff
    pd.testing.assert_frame_equal(load_hourly(out), rows(sample_hourly_raw, None, "2023-06-10 15:00"))
    assert result.pairs["bars"].tolist() == [10] * 8


def test_a_persistent_rate_limit_gives_up_and_writes_nothing(serve, sample_hourly_raw, tmp_path):
    out = tmp_path / "hourly.parquet"
    history(sample_hourly_raw, out, "2023-06-10 05:00")
    before = stat(out)
    replay = serve("2023-06-10 16:30")
    replay.refuse = set(range(4, 100))  # BTC's 3 pages and ETH's first arrive, then every request is refused
    sleeps = []
    with pytest.raises(FetchError, match=r"binance ETH/USDT bars from 2023-06-10 10:00:00\+00:00: gave up after 3 "
                                         r"attempt\(s\): DDoSProtection: binance 429"):
        fetch(replay, out, sleeps=sleeps)
    assert sleeps == [float(RETRY_AFTER)] * 2
    assert [r["status"] for r in replay.klines] == [200] * 4 + [429] * 3
    assert stat(out) == before  # BTC's bars were fetched, yet nothing is appended


def test_a_short_last_page_ends_the_pagination(serve, sample_hourly_raw, tmp_path):
    """The sample ends 2023-12-31 23:00: past it the exchange has no bar, so its last page is short."""
    out = tmp_path / "hourly.parquet"
    history(sample_hourly_raw, out, "2023-12-31 13:00", ["BTCUSDT", "PEPEUSDT"])
    replay = serve("2024-01-01 05:30")
    result = fetch(replay, out, ["BTC/USDT", "PEPE/USDT"])

    for symbol in ("BTCUSDT", "PEPEUSDT"):  # 14-17, 18-21, then 22 and 23 only: no request from 2024-01-01 00:00
        pages = replay.requests_of(symbol)
        assert [r["startTime"] for r in pages] == [ms("2023-12-31 14:00"), ms("2023-12-31 18:00"),
                                                   ms("2023-12-31 22:00")]
        assert [len(r["opens"]) for r in pages] == [4, 4, 2]
    assert result.end == ts("2024-01-01 04:00")
    assert (result.pairs["last"] == ts("2023-12-31 23:00")).all()
    pd.testing.assert_frame_equal(load_hourly(out), rows(sample_hourly_raw, None, "2023-12-31 23:00",
                                                         ["BTCUSDT", "PEPEUSDT"]))


def _swap_high_low(row: list) -> list:
    return [*row[:2], row[3], row[2], *row[4:]]


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda row: [*row[:4], "abc", *row[5:]], r"malformed bar at 2023-06-10 11:00:00\+00:00: close is missing or "
                                              r"not a number"),
    (lambda row: row[:5], r"malformed bar at 2023-06-10 11:00:00\+00:00: volume is missing or not a number"),
    (_swap_high_low, r"high < low for ETHUSDT at 2023-06-10 11:00:00\+00:00"),
    (lambda row: [row[0] + HOUR_MS // 2, *row[1:]], r"bar time 2023-06-10 11:30:00\+00:00 is not on the hour"),
], ids=["not-a-number", "five-fields", "high-below-low", "off-the-hour"])
def test_a_malformed_row_names_pair_and_time_and_nothing_is_appended(serve, sample_hourly_raw, tmp_path, mangle,
                                                                     message):
    out, new_only = tmp_path / "hourly.parquet", tmp_path / "new.parquet"
    history(sample_hourly_raw, out, "2023-06-10 05:00")
    before = stat(out)
    replay = serve("2023-06-10 16:30")
    replay.mangle[("ETHUSDT", ms("2023-06-10 11:00"))] = mangle  # on ETH's second page, after all of BTC's
    with pytest.raises(DataValidationError, match=r"^binance ETH/USDT: " + message):
        fetch(replay, out, new_only_path=new_only)
    assert len(replay.requests_of("BTCUSDT")) == 3 and len(replay.requests_of("ETHUSDT")) == 2
    assert stat(out) == before
    assert not new_only.exists()


def test_the_gap_report_lists_the_holes_by_the_gap_policy(serve, sample_hourly_raw, tmp_path):
    """2023-03-24: Binance's real outage (no 13:00 bar for any coin); the server also leaves out BTC's first
    two hours after the file (a hole between the file and the new bars) and ETH's 16:00 and 17:00."""
    out = tmp_path / "hourly.parquet"
    history(sample_hourly_raw, out, "2023-03-24 05:00", ["BTCUSDT", "ETHUSDT", "ARBUSDT"])
    replay = serve("2023-03-24 20:10")
    replay.dropped = {("BTCUSDT", ms("2023-03-24 06:00")), ("BTCUSDT", ms("2023-03-24 07:00")),
                      ("ETHUSDT", ms("2023-03-24 16:00")), ("ETHUSDT", ms("2023-03-24 17:00"))}
    result = fetch(replay, out, ["BTC/USDT", "ETH/USDT", "ARB/USDT", "PEPE/USDT"], since=ts("2023-03-24 06:00"),
                   gap_policy="fill_flat", max_gap_hours=1)

    gaps = result.gaps.sort_values(["symbol", "first_missing"], ignore_index=True)
    assert gaps[["symbol", "first_missing", "missing_bars", "refused"]].values.tolist() == [
        ["ARBUSDT", ts("2023-03-24 13:00"), 1, False],
        ["BTCUSDT", ts("2023-03-24 06:00"), 2, True],    # longer than max_gap_hours=1: the loader stops on it
        ["BTCUSDT", ts("2023-03-24 13:00"), 1, False],
        ["ETHUSDT", ts("2023-03-24 13:00"), 1, False],
        ["ETHUSDT", ts("2023-03-24 16:00"), 2, True],
    ]
    pepe = result.pairs.set_index("pair").loc["PEPE/USDT"]  # listed 2023-05-05: the exchange has no bar yet
    assert (pepe["bars"], pepe["requests"]) == (0, 1)
    written = load_hourly(out)  # reported, not filled
    expected = rows(sample_hourly_raw, None, "2023-03-24 19:00", ["BTCUSDT", "ETHUSDT", "ARBUSDT"])
    expected = expected[~expected.apply(lambda r: (r["symbol"], int(r["ts"].timestamp() * 1000)) in replay.dropped,
                                        axis=1)]
    pd.testing.assert_frame_equal(written, expected.reset_index(drop=True))


def _run_entry_point(replay: Replay, tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "fetch.py", f"fetch.api_url={replay.url}", f"hydra.run.dir={tmp_path / 'run'}",
            *overrides]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def test_the_entry_point_writes_the_file_and_the_new_bars_alone(serve, sample_hourly_raw, tmp_path):
    """Up to the last bar closed by the exchange's clock (12:00:10, the default 10 s margin just passed), the
    run's log kept with a time on every line, as every command keeps it."""
    out, new_only = tmp_path / "live" / "hourly.parquet", tmp_path / "live" / "new.parquet"
    replay = serve("2023-06-10 12:00:10")
    done = _run_entry_point(replay, tmp_path, f"fetch.out_path={out}", f"fetch.new_only_path={new_only}",
                            "fetch.pairs=[BTC/USDT,PEPE/USDT]", "fetch.since=2023-06-10T00:00", "fetch.limit=5",
                            "fetch.retry_seconds=0")
    assert done.returncode == 0, done.stdout + done.stderr
    expected = rows(sample_hourly_raw, "2023-06-09 23:00", "2023-06-10 11:00", ["BTCUSDT", "PEPEUSDT"])
    pd.testing.assert_frame_equal(load_hourly(out), expected)
    pd.testing.assert_frame_equal(load_hourly(new_only), expected)
    assert "24 new bar(s) up to 2023-06-10 11:00 UTC" in done.stdout
    assert [r["startTime"] for r in replay.requests_of("BTCUSDT")] == [ms("2023-06-10 00:00"),
                                                                       ms("2023-06-10 05:00"),
                                                                       ms("2023-06-10 10:00")]
    log = (tmp_path / "run" / "fetch.log").read_text().splitlines()
    assert any("24 new bar(s) up to 2023-06-10 11:00 UTC" in line for line in log)
    assert log and all(re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\] ", line) for line in log)


def test_an_exchange_that_keeps_refusing_exits_12_and_the_log_says_why(serve, sample_hourly_raw, tmp_path):
    out = tmp_path / "hourly.parquet"
    history(sample_hourly_raw, out, "2023-06-10 05:00", ["BTCUSDT"])
    before = stat(out)
    replay = serve("2023-06-10 16:30")
    replay.refuse = set(range(100))
    done = _run_entry_point(replay, tmp_path, f"fetch.out_path={out}", "fetch.pairs=[BTC/USDT]",
                            "fetch.max_retries=2", "fetch.retry_seconds=0")
    assert done.returncode == 12, done.stdout + done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "gave up after 2 attempt(s)" in line and line.endswith("nothing written")
    assert "error (exit 12): fetch: binance BTC/USDT bars from" in (tmp_path / "run" / "fetch.log").read_text()
    assert stat(out) == before


@pytest.mark.parametrize(("override", "message"), [
    ("fetch.pairs=[BTC/USDT,ETHUSDT]", "error: fetch: fetch.pairs: 'ETHUSDT' is not a BASE/QUOTE spot pair"),
    ("fetch.exchange=binanse", "error: fetch: fetch.exchange: 'binanse' is not an exchange ccxt knows"),
    ("fetch.close_margin_seconds=-1", "error: fetch: fetch.close_margin_seconds: expected a number >= 0"),
    ("fetch.limt=5", "error: config: Could not override 'fetch.limt'."),
])
def test_a_bad_config_is_one_line_naming_the_key(serve, tmp_path, override, message):
    replay = serve("2023-06-11 00:00")
    done = _run_entry_point(replay, tmp_path, f"fetch.out_path={tmp_path / 'hourly.parquet'}", override)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert replay.klines == [] and not (tmp_path / "hourly.parquet").exists()


def test_a_pair_the_file_lacks_needs_a_start_time(serve, sample_hourly_raw, tmp_path):
    out = tmp_path / "hourly.parquet"
    history(sample_hourly_raw, out, "2023-06-10 05:00", ["BTCUSDT"])
    replay = serve("2023-06-10 16:30")
    with pytest.raises(ConfigError, match=r"^fetch\.since: ETH/USDT has no ETHUSDT bars in the bar file"):
        fetch(replay, out, ["BTC/USDT", "ETH/USDT"])
    assert replay.klines == []


def test_a_pair_the_exchange_lacks_is_named_before_any_bar_is_fetched(serve, sample_hourly_raw, tmp_path):
    out = tmp_path / "hourly.parquet"
    history(sample_hourly_raw, out, "2023-06-10 05:00", ["BTCUSDT"])
    replay = serve("2023-06-10 16:30")
    with pytest.raises(FetchError, match=r"^binance has no spot market DOGE/USDT$"):
        fetch(replay, out, ["BTC/USDT", "DOGE/USDT"], since=ts("2023-06-10 00:00"))
    assert replay.klines == []
