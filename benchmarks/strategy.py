"""Which book turns the models' edge into P&L? The ranked book's candidates against Trailing J, on a quality run.

    python benchmarks/strategy.py                   # the quality run in benchmarks/results/quality.json
    python benchmarks/strategy.py --output-dir outputs/quality/<time> [--plan P] [--confirm]

Reads the quality run's predictions (`predictions.parquet`: Trishula and the blend of its parts, every
test day) and its Trailing J backtest per period (`<period>/backtest.json`), and trades the ranked book
(backtest/ranked.py) on `../shared/data`'s hourly bars. The candidates and the adoption rule are fixed
before the run in `benchmarks/results/experiments/28_ranked_book/plan.md`:
B0 (quintiles, 3 tranches, equal weights, dollar neutral), then beta neutrality, inverse-volatility
weights and a keep band, each adopted at a paired t >= 2 on the daily net return difference (Newey-West,
10 lags) over the development days (beta neutrality also when B0's |beta| > 0.2); the winner replaces
Trailing J as the default if it beats it the same way. Costs: 10 bps a side and a 10 % borrow.

Each period's book starts flat on its first decision day; its returns stop at the period's end (the
last tranches' days past it are dropped). `--confirm` also scores the adopted book on 2023, once.
Figures to `benchmarks/results/strategy.json` and `strategy.md`; prints the time per book.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # the repo's packages, not this folder's scripts

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from backtest import RankedBookConfig, daily_panel, run_ranked_book, run_strategy  # noqa: E402
from backtest.panel import DailyPanel  # noqa: E402
from backtest.performance import max_drawdown, performance, sharpe  # noqa: E402
from benchmarks.quality import PERIODS  # noqa: E402
from evaluation.metrics import newey_west_t_stat  # noqa: E402
from features.build import REGIME_FEATURES  # noqa: E402
from marketdata import apply_gap_policy, load_hourly  # noqa: E402
from stacking.walkforward import BLEND  # noqa: E402
from store.files import write_json_atomic, write_text_atomic  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
LAGS = 10
ADOPT_T = 2.0
BETA_LIMIT = 0.2
B0 = RankedBookConfig(quantile=0.2, holding_days=3, weighting="equal", neutral="dollar", fee_rate=0.0005,
                      slippage=0.0005, borrow_rate=0.10)
STEPS = (("beta_neutral", {"neutral": "beta"}), ("inverse_vol", {"weighting": "inverse_vol"}),
         ("keep_band_0.4", {"keep_quantile": 0.4}))


def period_book(scores: pd.DataFrame, panel: DailyPanel, config: RankedBookConfig, period: str) -> pd.DataFrame:
    """The book's daily returns over `period`'s decision days, cut at the period's end."""
    start, end = PERIODS[period]
    in_period = (scores["date"] < end) & (scores["date"] >= (scores["date"].min() if start is None else start))
    daily = run_ranked_book(scores[in_period], pd.DataFrame(), config, panel=panel).daily
    return daily[daily.index < end]


def curve_returns(backtest_json: Path) -> pd.Series:
    """The daily net returns of a backtest.json's equity curve (the quality run's Trailing J backtests)."""
    curve = pd.DataFrame(json.loads(backtest_json.read_text())["equity_curve"])
    equity = curve.set_index(pd.to_datetime(curve["date"], utc=True))["equity"]
    return (equity / equity.shift(1) - 1.0).dropna()


TRAILING_VARIANTS = (("admission_neutral", {"trading": {"admission": "neutral"}}), ("gate_off", {"gate": False}),
                     ("exits_volatility", {"trading": {"exit_scale": "volatility", "exit_sigmas": 1.0}}))


class TrailingRuns:
    """Trailing J on the quality run's signals, with changes to its SPEC defaults (conf/backtest/trailing_j.yaml
    as it stood before run 28's adoption: fixed exits); the config, signals and regime inputs read once."""

    def __init__(self, output_dir: Path, grid: pd.DataFrame, panel: DailyPanel):
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            base = compose("pipeline", overrides=["backtest=trailing_j"]).backtest
        self.base = OmegaConf.to_container(base, resolve=True)
        self.base["trading"] = {**self.base["trading"], "exit_scale": "fixed"}
        self.signals = pd.read_parquet(output_dir / "signals.parquet")
        daily = pd.read_parquet(output_dir / "daily_features.parquet")
        self.regime_inputs = daily.groupby("ts")[list(REGIME_FEATURES)].first()
        self.grid, self.panel = grid, panel

    def net(self, change: dict, period: str) -> pd.Series:
        """The daily net returns over `period` with `change` applied."""
        config = {**self.base, **{k: v for k, v in change.items() if k != "trading"},
                  "trading": {**self.base["trading"], **change.get("trading", {})}}
        start, end = PERIODS[period]
        dates = self.signals["date"]
        in_period = (dates < end) & (dates >= (dates.min() if start is None else start))
        result = run_strategy(config, self.signals[in_period].reset_index(drop=True), self.grid, self.regime_inputs,
                              panel=self.panel)
        return result.daily["net"][result.daily.index < end]


def trailing_variants(output_dir: Path, runs: TrailingRuns, baseline: pd.Series, timings: dict) -> list[dict]:
    """Trailing J's options on the development days, each paired against its default (`baseline`)."""
    rows = []
    for name, change in (("default_rerun", {}), *TRAILING_VARIANTS):
        started = time.perf_counter()
        net = runs.net(change, "development")
        timings[f"trailing_j_{name}"] = time.perf_counter() - started
        rows.append({"variant": name, "config": str(change), "change": change, **_trailing_figures(net),
                     "paired_vs_default": paired(net, baseline), "net": net})
    scaled = output_dir / "development" / "cross_section" / "backtest.json"
    if scaled.is_file():
        net = curve_returns(scaled)
        rows.append({"variant": "cross_section_z", "config": "stack.signals.scale=cross_section",
                     **_trailing_figures(net), "paired_vs_default": paired(net, baseline)})
    for row in rows:
        row["adopted"] = row["variant"] != "default_rerun" and (row["paired_vs_default"]["t_stat"] or 0) >= ADOPT_T
    return rows


def adopted_trailing(variants: list[dict]) -> dict:
    """The adopted options of Trailing J merged into one change (empty: the default stands)."""
    change: dict = {}
    for row in variants:
        if row["adopted"] and "change" in row:
            change = {**change, **{k: v for k, v in row["change"].items() if k != "trading"},
                      "trading": {**change.get("trading", {}), **row["change"].get("trading", {})}}
    return change


def paired(a: pd.Series, b: pd.Series) -> dict:
    """Mean daily difference a - b on the days both hold, its Newey-West t (10 lags), days."""
    both = pd.concat([a, b], axis=1, join="inner").dropna()
    diff = both.iloc[:, 0] - both.iloc[:, 1]
    return {"mean_daily_diff": float(diff.mean()), "t_stat": newey_west_t_stat(diff.to_numpy(), LAGS),
            "days": len(diff)}


def figures(daily: pd.DataFrame) -> dict:
    block = performance(daily)
    keep = ("return", "gross_return", "sharpe", "max_drawdown", "turnover_per_day", "breakeven_cost_bps", "days")
    return {**{k: block["summary"][k] for k in keep}, "beta": block["market"]["beta"],
            "alpha_t_stat": block["market"]["alpha_t_stat"],
            "long_return": block["legs"]["long"]["return"], "short_return": block["legs"]["short"]["return"],
            "cost_sweep_sharpe": {bps: row["sharpe"] for bps, row in block["cost_sweep"].items()}}


def select(scores: pd.DataFrame, panel: DailyPanel, timings: dict) -> tuple[RankedBookConfig, list[dict]]:
    """The pre-registered sequence on the development days: each step against the current winner."""
    def book(config: RankedBookConfig, name: str) -> pd.DataFrame:
        started = time.perf_counter()
        daily = period_book(scores, panel, config, "development")
        timings[name] = time.perf_counter() - started
        return daily

    current, current_daily = B0, book(B0, "B0")
    log = [{"step": "B0", "config": "quintiles, 3 tranches, equal, dollar", **figures(current_daily),
            "adopted": True}]
    for name, change in STEPS:
        candidate = replace(current, **change)
        daily = book(candidate, name)
        test = paired(daily["net"], current_daily["net"])
        adopted = test["t_stat"] is not None and test["t_stat"] >= ADOPT_T
        if name == "beta_neutral" and abs(log[0]["beta"] or 0.0) > BETA_LIMIT:
            adopted = True  # the risk rule: the base's market exposure is over the limit
        log.append({"step": name, "config": str(change), **figures(daily), "paired_vs_current": test,
                    "adopted": adopted})
        if adopted:
            current, current_daily = candidate, daily
    return current, log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=None, help="a quality run's output folder")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "hourly.parquet")
    parser.add_argument("--confirm", action="store_true", help="score the adopted book on 2023 (once)")
    args = parser.parse_args()
    output_dir = args.output_dir or Path(json.loads((RESULTS / "quality.json").read_text())["output_dir"])
    predictions = pd.read_parquet(output_dir / "predictions.parquet", columns=["symbol", "date", "model", "score"])
    started = time.perf_counter()
    grid = apply_gap_policy(load_hourly(args.data))
    panel = daily_panel(grid)
    timings = {"panel": time.perf_counter() - started}
    scores = {model: predictions[predictions["model"] == model].drop(columns="model").reset_index(drop=True)
              for model in ("trishula", BLEND)}

    chosen, steps = select(scores["trishula"], panel, timings)
    dev_daily = period_book(scores["trishula"], panel, chosen, "development")
    trailing = curve_returns(output_dir / "development" / "backtest.json")
    versus = paired(dev_daily["net"], trailing)
    default = versus["t_stat"] is not None and versus["t_stat"] >= ADOPT_T
    blend_daily = period_book(scores[BLEND], panel, chosen, "development")
    runs = TrailingRuns(output_dir, grid, panel)
    variants = trailing_variants(output_dir, runs, trailing, timings)
    adopted = adopted_trailing(variants)
    if adopted:  # the default is decided against the Trailing J that stands after its adoptions
        improved = next(row["net"] for row in variants if row["adopted"])
        versus_adopted = paired(improved, dev_daily["net"])
        default = default and not ((versus_adopted["t_stat"] or 0) >= ADOPT_T)
    for row in variants:
        row.pop("net", None)
        row.pop("change", None)
    result = {
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "output_dir": str(output_dir), "plan": "benchmarks/results/experiments/28_ranked_book/plan.md",
        "costs": {"fee_rate": B0.fee_rate, "slippage": B0.slippage, "borrow_rate": B0.borrow_rate},
        "development": {
            "steps": steps, "chosen": asdict(chosen),
            "trailing_j": _trailing_figures(trailing),
            "chosen_vs_trailing_j": versus, "ranked_becomes_default": default, "trailing_j_variants": variants,
            "trailing_j_adopted": adopted,
            "adopted_trailing_j_vs_chosen": versus_adopted if adopted else None,
            "blend_parts_diagnostic": {**figures(blend_daily), "paired_vs_chosen": paired(blend_daily["net"],
                                                                                         dev_daily["net"])},
        },
        "seconds": {k: round(v, 2) for k, v in timings.items()},
    }
    if args.confirm:
        confirm = period_book(scores["trishula"], panel, chosen, "confirmation_2023")
        trailing_2023 = curve_returns(output_dir / "confirmation_2023" / "backtest.json")
        adopted_2023 = runs.net(adopted, "confirmation_2023") if adopted else None
        result["confirmation_2023"] = {"chosen": figures(confirm), "trailing_j": _trailing_figures(trailing_2023),
                                       "trailing_j_adopted": _trailing_figures(adopted_2023) if adopted else None,
                                       "chosen_vs_trailing_j": paired(confirm["net"], trailing_2023),
                                       "blend_parts_diagnostic": figures(period_book(scores[BLEND], panel, chosen,
                                                                                     "confirmation_2023"))}
    write_json_atomic(result, RESULTS / "strategy.json")
    write_text_atomic(render(result), RESULTS / "strategy.md")
    print(render(result))


def _trailing_figures(net: pd.Series) -> dict:
    """Trailing J's net figures from its daily returns (its gross and turnover are in its own backtest.json)."""
    values = net.to_numpy()
    curve = np.cumprod(1.0 + values)
    return {"return": float(curve[-1] - 1.0), "sharpe": sharpe(values, 365), "max_drawdown": max_drawdown(curve),
            "days": len(values)}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:+.1f} %"


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render(result: dict) -> str:
    dev = result["development"]
    lines = [
        "# Strategy benchmark: the ranked book against Trailing J (`benchmarks/strategy.py`)", "",
        f"Quality run `{result['output_dir']}`; plan fixed before the run: `{result['plan']}`. Costs: "
        f"{1e4 * (result['costs']['fee_rate'] + result['costs']['slippage']):.0f} bps a side, borrow "
        f"{100 * result['costs']['borrow_rate']:.0f} % a year. Paired t: Newey-West, {LAGS} lags, daily net returns.",
        "", "## Development (test days before 2023-01-01)", "",
        "| step | config | net return | gross | net Sharpe | max DD | turnover/day | breakeven bps | beta | "
        "paired t vs current | adopted |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for step in dev["steps"]:
        test = step.get("paired_vs_current", {})
        lines.append(f"| {step['step']} | {step['config']} | {_pct(step['return'])} | {_pct(step['gross_return'])} | "
                     f"{_num(step['sharpe'])} | {_pct(step['max_drawdown'])} | {_pct(step['turnover_per_day'])} | "
                     f"{_num(step['breakeven_cost_bps'], 1)} | {_num(step['beta'])} | {_num(test.get('t_stat'))} | "
                     f"{'yes' if step['adopted'] else 'no'} |")
    tj, vs = dev["trailing_j"], dev["chosen_vs_trailing_j"]
    blend = dev["blend_parts_diagnostic"]
    lines += [
        "", f"Trailing J (the default before, same scores): net return {_pct(tj['return'])}, Sharpe "
        f"{_num(tj['sharpe'])}, max DD {_pct(tj['max_drawdown'])}; the chosen book against it: paired t "
        f"{_num(vs['t_stat'])} over {vs['days']} days -> ranked book the default: "
        f"{'yes' if dev['ranked_becomes_default'] else 'no'}.", "",
        f"Diagnostic, the chosen book on the blend of the parts' day ranks: net return {_pct(blend['return'])}, "
        f"Sharpe {_num(blend['sharpe'])}, beta {_num(blend['beta'])}, breakeven {_num(blend['breakeven_cost_bps'], 1)} "
        f"bps (paired t vs Trishula's book {_num(blend['paired_vs_chosen']['t_stat'])}).",
    ]
    lines += ["", "Trailing J's options (same signals; paired against its default, daily net returns):", "",
              "| variant | config | net return | net Sharpe | max DD | paired t | adopted |",
              "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for row in dev["trailing_j_variants"]:
        lines.append(f"| {row['variant']} | {row['config']} | {_pct(row['return'])} | {_num(row['sharpe'])} | "
                     f"{_pct(row['max_drawdown'])} | {_num(row['paired_vs_default']['t_stat'])} | "
                     f"{'yes' if row['adopted'] else 'no'} |")
    if dev["trailing_j_adopted"]:
        against = dev["adopted_trailing_j_vs_chosen"]
        lines += ["", f"Trailing J with its adopted options ({dev['trailing_j_adopted']}) against the ranked book: "
                      f"paired t {_num(against['t_stat'])} over {against['days']} days -> ranked book the default: "
                      f"{'yes' if dev['ranked_becomes_default'] else 'no'}."]
    if "confirmation_2023" in result:
        conf = result["confirmation_2023"]
        c, t2 = conf["chosen"], conf["trailing_j"]
        lines += ["", "## 2023 (confirmation, scored once)", "",
                  f"Chosen book: net return {_pct(c['return'])} (gross {_pct(c['gross_return'])}), Sharpe "
                  f"{_num(c['sharpe'])}, max DD {_pct(c['max_drawdown'])}, beta {_num(c['beta'])}, breakeven "
                  f"{_num(c['breakeven_cost_bps'], 1)} bps; Trailing J {_pct(t2['return'])} (Sharpe "
                  f"{_num(t2['sharpe'])}); paired t {_num(conf['chosen_vs_trailing_j']['t_stat'])}. Blend diagnostic: "
                  f"{_pct(conf['blend_parts_diagnostic']['return'])} (Sharpe "
                  f"{_num(conf['blend_parts_diagnostic']['sharpe'])})."]
        if conf["trailing_j_adopted"]:
            t3 = conf["trailing_j_adopted"]
            lines.append(f"Trailing J with its adopted options: {_pct(t3['return'])} (Sharpe {_num(t3['sharpe'])}, "
                         f"max DD {_pct(t3['max_drawdown'])}).")
    lines += ["", "Seconds: " + ", ".join(f"{k} {v}" for k, v in result["seconds"].items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
