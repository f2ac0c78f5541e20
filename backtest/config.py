"""The strategies' parameters, validated on construction: Trailing J (SPEC §7) and the ranked book.

Each is the `trading` (Trailing J) or `book` (ranked) block of a conf/backtest/*.yaml; a bad value is
refused with the key that holds it.
"""

from __future__ import annotations

from dataclasses import dataclass

from backtest.costs import check_costs

ADMISSIONS = ("independent", "neutral")
EXIT_SCALES = ("fixed", "volatility")


@dataclass(frozen=True)
class BacktestConfig:
    """Trailing J parameters (SPEC §7 defaults); fractions, not percent; money in the quote currency."""

    capital: float = 5000.0
    deploy_rate: float = 0.85
    max_long: int = 15
    max_short: int = 15
    take_profit: float = 0.045
    stop_loss: float = 0.08
    max_hold_hours: int = 72
    trail_activation_long: float = 0.02
    trail_long: float = 0.015
    trail_activation_short: float = 0.015
    trail_short: float = 0.003
    fee_rate: float = 0.001  # per side, on notional
    slippage: float = 0.001  # per side, on price
    # Entries fill at the open of the first real bar this many hours after the decision (1: the 01:00 bar,
    # the first a daily run can reach once the 23:00 bar has closed; 0: the 00:00 bar, zero latency).
    fill_delay_hours: int = 1
    # What holding costs (backtest.costs): borrow (spot shorts pay borrow_rate a year) or funding (perpetuals:
    # funding_rate a year, or funding_path's per-coin rates, on each position's signed value).
    financing: str = "borrow"
    borrow_rate: float = 0.10
    funding_rate: float = 0.0
    funding_path: str | None = None
    annualisation_days: int = 365
    benchmark_symbol: str = "BTCUSDT"
    # independent: longs and shorts admitted apart (SPEC §7); neutral: at each decision time as many
    # longs as shorts, the strongest |score| of each side, so the book holds no net market bet by design.
    admission: str = "independent"
    # fixed: the levels above (SPEC §7); volatility: each trade's own, symmetric for both sides: take
    # profit = stop loss = exit_sigmas x the coin's daily volatility (known at the decision) x sqrt(hold
    # days), the trail activating and trailing at half of it; a coin without a volatility keeps the fixed ones.
    exit_scale: str = "fixed"
    exit_sigmas: float = 1.0

    def __post_init__(self) -> None:
        if self.admission not in ADMISSIONS:
            raise ValueError(f"backtest.trading.admission must be one of {ADMISSIONS}, got {self.admission!r}")
        if self.exit_scale not in EXIT_SCALES or not self.exit_sigmas > 0:
            raise ValueError(f"backtest.trading.exit_scale must be one of {EXIT_SCALES} and exit_sigmas > 0, got "
                             f"{self.exit_scale!r}, {self.exit_sigmas}")
        if self.capital <= 0 or not 0 < self.deploy_rate <= 1:
            raise ValueError(f"need capital > 0 and 0 < deploy_rate <= 1, got {self.capital}, {self.deploy_rate}")
        if self.max_long < 0 or self.max_short < 0 or self.max_long + self.max_short == 0:
            raise ValueError(f"need max_long, max_short >= 0 and one > 0, got {self.max_long}, {self.max_short}")
        if self.max_hold_hours < 1:
            raise ValueError(f"max_hold_hours must be >= 1, got {self.max_hold_hours}")
        rates = ("take_profit", "stop_loss", "trail_long", "trail_short")
        bad = {name: getattr(self, name) for name in rates if not 0 <= getattr(self, name) < 1}
        if bad:
            raise ValueError(f"rates must lie in [0, 1): {bad}")
        if not 0 <= self.fill_delay_hours < 24:
            raise ValueError(f"backtest.trading.fill_delay_hours must lie in [0, 24), got {self.fill_delay_hours}")
        check_costs("backtest.trading.", self.fee_rate, self.slippage, self.financing, self.borrow_rate,
                    self.funding_rate)


SELECTIONS = ("quantile", "names")
WEIGHTINGS = ("equal", "inverse_vol")
NEUTRALITIES = ("dollar", "beta")
WILD_SHORTS = ("none", "volatility", "skew")
NEUTRALIZE = ("none", "volatility")
SHORT_LEGS = ("ranked", "market", "btc")


@dataclass(frozen=True)
class RankedBookConfig:
    """The ranked book's parameters (conf/backtest/ranked.yaml `book`); fractions, not percent."""

    capital: float = 5000.0
    gross: float = 1.0  # long + |short| value over equity
    select: str = "quantile"
    quantile: float = 0.2
    keep_quantile: float | None = None  # None: no band (= quantile)
    names: int = 5
    keep_names: int | None = None  # None: no band (= names)
    min_names: int = 2  # select=quantile: at least this many a leg on a day with 2 x min_names coins
    holding_days: int = 3
    weighting: str = "equal"
    neutral: str = "dollar"
    # The short leg: ranked (the bottom names), market (a volume-weighted basket of every coin: a long-tilted
    # book hedged with the market) or btc (hedged with the benchmark symbol).
    short_leg: str = "ranked"
    # A ranked short leg without the day's wildest names: none, or the `wild_share` of the coins with the
    # highest trailing volatility (volatility) or skewness (skew) of daily returns, known at the decision.
    wild_short: str = "none"
    wild_share: float = 0.2
    # The score the book ranks: as served (none), or each day's score rank less its least-squares fit on the
    # coins' trailing-volatility rank (volatility): the order the score holds beyond "calm coins do better".
    neutralize: str = "none"
    # Volatility targeting: the book's gross scaled so its predicted volatility (the trailing covariance of
    # daily returns, risk_days) is vol_target a year, at most max_gross; None: gross as set.
    vol_target: float | None = None
    max_gross: float = 2.0
    fill_delay_hours: int = 1  # decided at the close, filled at the open of the bar this many hours later
    fee_rate: float = 0.0005  # per side, on traded value
    slippage: float = 0.0005  # per side, on traded value
    financing: str = "borrow"  # backtest.costs: borrow (spot shorts) | funding (perpetuals)
    borrow_rate: float = 0.10  # a year, on the shorts' value
    funding_rate: float = 0.0  # a year, on each position's signed value (financing=funding)
    funding_path: str | None = None  # per-coin funding events (symbol, ts, rate), financing=funding
    volume_days: int = 30
    risk_days: int = 60
    score_column: str = "score"
    annualisation_days: int = 365
    benchmark_symbol: str = "BTCUSDT"

    def __post_init__(self) -> None:
        key = "backtest.book."
        choices = {"select": SELECTIONS, "weighting": WEIGHTINGS, "neutral": NEUTRALITIES,
                   "short_leg": SHORT_LEGS, "wild_short": WILD_SHORTS, "neutralize": NEUTRALIZE}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{key}{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.capital <= 0 or self.gross <= 0:
            raise ValueError(f"{key}capital and {key}gross must be > 0, got {self.capital}, {self.gross}")
        if not 0 < self.quantile <= 0.5 or not self.quantile <= self.keep_share <= 0.5:
            raise ValueError(f"need 0 < {key}quantile <= {key}keep_quantile <= 0.5, got {self.quantile}, "
                             f"{self.keep_quantile}")
        if self.names < 1 or self.keep_count < self.names:
            raise ValueError(f"need 1 <= {key}names <= {key}keep_names, got {self.names}, {self.keep_names}")
        if self.min_names < 1:
            raise ValueError(f"{key}min_names must be >= 1, got {self.min_names}")
        if self.holding_days < 1:
            raise ValueError(f"{key}holding_days must be >= 1, got {self.holding_days}")
        if not 0 < self.wild_share < 1:
            raise ValueError(f"{key}wild_share must lie in (0, 1), got {self.wild_share}")
        if self.vol_target is not None and not (self.vol_target > 0 and self.max_gross > 0):
            raise ValueError(f"{key}vol_target and {key}max_gross must be > 0, got {self.vol_target}, "
                             f"{self.max_gross}")
        if not 0 <= self.fill_delay_hours < 24:
            raise ValueError(f"{key}fill_delay_hours must lie in [0, 24), got {self.fill_delay_hours}")
        check_costs(key, self.fee_rate, self.slippage, self.financing, self.borrow_rate, self.funding_rate)
        if self.volume_days < 1 or self.risk_days < 3:
            raise ValueError(f"need {key}volume_days >= 1 and {key}risk_days >= 3, got {self.volume_days}, "
                             f"{self.risk_days}")

    @property
    def keep_share(self) -> float:
        return self.quantile if self.keep_quantile is None else self.keep_quantile

    @property
    def keep_count(self) -> int:
        return self.names if self.keep_names is None else self.keep_names

    @property
    def one_way_cost(self) -> float:
        return self.fee_rate + self.slippage
