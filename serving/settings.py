"""The daily run's settings, typed and checked once from the config (`daily`, `data`, `backtest`).

Each serving module takes the settings it needs, not the whole config: `DailySettings` (where the served
days go, how the bars come in, what to do with missed days and a new book, the account's holdings) and
`Strategy` (the strategy the book trades, its parameters, and the book's identity). A bad value is refused
here, naming its key, before any bar is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from backtest.config import BacktestConfig, RankedBookConfig
from backtest.regime import RegimeConfig
from backtest.strategy import strategy_name
from store.extractors import schema_hash

RETRAIN = ("auto", "skip", "only")


@dataclass(frozen=True)
class DailySettings:
    out_dir: Path                      # <out_dir>/<dataset>/days/<date>/: the served days
    hourly_path: str                   # the bar file (or freqtrade folder) as configured
    append: bool                       # the file holds new bars only, appended to the dataset's history
    dataset: str | None                # the history an append extends (None: the only one)
    retrain: str                       # auto | skip | only
    require_complete_hour: bool        # every coin of the last 24 h has the latest hour's bar
    max_data_age_hours: float | None   # the latest bar's age against the clock (None: not checked)
    catch_up: bool                     # serve missed days in order (false: stop, naming the first)
    new_book: bool                     # start a new book, flat, on the day served
    holdings_path: Path | None         # the account's holdings (symbol, quantity): orders from them
    holdings_tolerance: float          # a coin differing from the book by more than this share of equity is reported

    @classmethod
    def from_config(cls, cfg: DictConfig) -> DailySettings:
        daily, data = cfg.daily, cfg.data
        if str(daily.retrain) not in RETRAIN:
            raise ValueError(f"daily.retrain must be one of {RETRAIN}, got {daily.retrain!r}")
        tolerance = float(daily.holdings_tolerance)
        if not 0 <= tolerance < 1:
            raise ValueError(f"daily.holdings_tolerance must lie in [0, 1) (a share of the book's equity), "
                             f"got {daily.holdings_tolerance!r}")
        _flag(data, "restate", "data")  # read by store.lineage.checked_market_data; refused here if not a flag
        age = data.max_data_age_hours
        if age is not None and not float(age) > 0:
            raise ValueError(f"data.max_data_age_hours must be > 0 or null, got {age!r}")
        return cls(out_dir=Path(str(daily.out_dir)), hourly_path=str(data.hourly_path),
                   append=_flag(daily, "append"), dataset=None if daily.dataset is None else str(daily.dataset),
                   retrain=str(daily.retrain), require_complete_hour=_flag(daily, "require_complete_hour"),
                   max_data_age_hours=None if age is None else float(age), catch_up=_flag(daily, "catch_up"),
                   new_book=_flag(daily, "new_book"),
                   holdings_path=None if daily.holdings_path is None else Path(str(daily.holdings_path)),
                   holdings_tolerance=tolerance)


def _typed(kind: type, values: Mapping, key: str):
    """`kind(**values)`, a key it lacks named (a typo in a config file) instead of Python's TypeError."""
    known = [f.name for f in fields(kind)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{key} has no key(s) {unknown}; its keys: {', '.join(known)}")
    return kind(**values)


def _flag(block: DictConfig, key: str, prefix: str = "daily") -> bool:
    value = block[key]
    if not isinstance(value, bool):
        raise ValueError(f"{prefix}.{key} must be true or false, got {value!r}")
    return value


@dataclass(frozen=True)
class Strategy:
    """The configured strategy: `ranked` (the book, `book`) or `trailing_j` (`trading`, gated by `regime` on
    `signal_column`). `config` is the whole resolved `backtest` block: a book is kept under one config, and
    `key` names it."""

    name: str
    config: Mapping
    regime: RegimeConfig
    book: RankedBookConfig | None = None
    trading: BacktestConfig | None = None
    signal_column: str = "signal"

    @classmethod
    def from_config(cls, backtest: DictConfig) -> Strategy:
        config = OmegaConf.to_container(backtest, resolve=True)
        name = strategy_name(config)
        regime = _typed(RegimeConfig, config.get("regime", {}), "backtest.regime")
        if name == "ranked":
            return cls(name, config, regime, book=_typed(RankedBookConfig, config["book"], "backtest.book"))
        return cls(name, config, regime, trading=_typed(BacktestConfig, config["trading"], "backtest.trading"),
                   signal_column=str(config["signal_column"]))

    @property
    def key(self) -> str:
        """A short hash of the resolved config: two books with the same key trade the same way."""
        return schema_hash(self.config)[:12]
