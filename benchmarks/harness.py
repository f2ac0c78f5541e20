"""The experiment harness: every candidate of a plan written before the run, scored on the same rows as the
default with every table of what the book is paid, and judged by the rule coded in `benchmarks/plan.py`.

    python benchmarks/harness.py benchmarks/results/experiments/33_book_construction
    python benchmarks/harness.py <folder> --data-dir data/sample --artifacts-dir artifacts/sample   # the sample

The folder holds `plan.md` and `candidates.yaml` (format: `benchmarks/plan.py`). The default and each
candidate with Hydra overrides run pipeline.py's stages up to the stack on `--data-dir`, composed as the quality
benchmark composes them (`stages.compose_quality`), in `--artifacts-dir`: every stage whose inputs are unchanged
is reused through its content-keyed artifacts (with the default `artifacts/quality`, the last quality run's),
so a stack override retrains the stack only. A candidate that changes the model or the book re-trades the
default run's scores. Over the development period (`benchmarks/periods.py`), every score is restricted to the
(symbol, day) rows all of them score; each is traded by its own book (the run's `backtest.book` with the
candidate's changes) on the same daily panel. Written beside the plan: `result.json` (the rule, each
candidate's IC, book, half-years, paired tests, checks and adoption, the plan files' SHA-256 and the commit that
holds plan.md, and `payoff`: `evaluation.payoff`'s tables of every score) and `result.md`. Several candidates
adopted: the one whose book beats the default at the highest paired t is the choice. With `seeds` in
candidates.yaml every entry runs once per extractor seed and is judged by its seeds together (the seed spread of
one fit's book is as large as most candidates' effects, run 38).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # the repo's packages, not this folder's scripts

import pandas as pd  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from backtest import RankedBookConfig, run_ranked_book  # noqa: E402
from backtest.performance import DAILY_COLUMNS  # noqa: E402
from benchmarks import stages  # noqa: E402
from benchmarks.periods import DEVELOPMENT, PERIODS, in_period  # noqa: E402
from benchmarks.plan import CANDIDATES, PLAN, RESULT, Candidate, Plan, compare, decide, load_plan  # noqa: E402
from benchmarks.tables import half_years_markdown, num, payoff_markdown, pct  # noqa: E402
from evaluation.payoff import book_figures, book_panel, by_half_year, payoff_tables, served_book_config  # noqa: E402
from evaluation.statistics import TARGET, daily_rank_ic, ic_summary  # noqa: E402
from stacking.anchor import KEYS as ANCHOR_KEYS  # noqa: E402
from stacking.anchor import META, anchor_enabled, anchor_walkforward, check_anchor  # noqa: E402
from stacking.frame import blend_members  # noqa: E402
from stacking.run import HORIZON_DAYS  # noqa: E402
from stacking.walkforward import BLEND, rank_blend  # noqa: E402
from store.files import write_json_atomic, write_text_atomic  # noqa: E402

KEYS = ["symbol", "date"]


@dataclass
class Run:
    """One walk-forward through the stack: what it made, its composed config and the overrides it ran with."""

    walk: stages.WalkForward
    cfg: DictConfig
    overrides: list[str]


class Runs:
    """The walk-forward of each distinct set of overrides, run once (stages reused through their artifacts)."""

    def __init__(self, args: argparse.Namespace, folder: Path):
        self.args, self.folder = args, folder
        self.runs: dict[tuple[str, ...], Run] = {}

    def get(self, overrides: tuple[str, ...]) -> Run:
        if overrides not in self.runs:
            out = self.args.outputs_dir / self.folder.name / f"run_{len(self.runs)}"
            spec = argparse.Namespace(data_dir=self.args.data_dir, artifacts_dir=self.args.artifacts_dir,
                                      overrides=list(overrides))
            cfg, composed = stages.compose_quality(spec, out)
            self.runs[overrides] = Run(stages.run_through_stack(cfg, out, stages.StageTimer(digits=1)), cfg, composed)
        return self.runs[overrides]


def recombined(predictions: pd.DataFrame, extra_parts: tuple[str, ...], stack: dict) -> pd.DataFrame:
    """`predictions` with `blend_parts` recombined from tabular, `extra_parts` and the extractors (the
    walk-forward's `rank_blend`), and Trishula re-anchored on it fold by fold from earlier folds only
    (`stacking.anchor.anchor_walkforward`, the run's `stack.anchor`) from the meta-learner's own rows."""
    members = blend_members(stack["kinds"], extra_parts)
    missing = sorted(set(members) - set(predictions["model"]))
    if missing:
        raise SystemExit(f"blend_parts {list(extra_parts)}: the run trained no {missing} (add them to its "
                         "overrides' stack.extra_parts)")
    wide = predictions[predictions["model"].isin(members)].pivot(index=ANCHOR_KEYS, columns="model",
                                                                 values="score").reset_index()
    blend = wide[ANCHOR_KEYS].assign(model=BLEND, score=rank_blend(wide[members], wide["date"])).merge(
        predictions.loc[predictions["model"] == BLEND, [*ANCHOR_KEYS, TARGET]], on=ANCHOR_KEYS, validate="one_to_one")
    meta = predictions[predictions["model"] == META].assign(model="trishula")
    rows = pd.concat([predictions[~predictions["model"].isin([BLEND, META, "trishula"])], meta, blend],
                     ignore_index=True)
    if not anchor_enabled(stack):
        return pd.concat([rows, meta.assign(model=META)], ignore_index=True)
    starts = rows.groupby("fold")["date"].min().to_dict()
    return anchor_walkforward(rows, starts, stack["anchor"], BLEND, HORIZON_DAYS)[0]


def scores(candidate: Candidate, runs: Runs) -> tuple[pd.DataFrame, RankedBookConfig, dict]:
    """The candidate's scored rows over the development period, its book's config and where they came from."""
    run = runs.get(candidate.overrides)
    predictions = run.walk.run.predictions
    if candidate.blend_parts is not None or candidate.anchor:
        stack = OmegaConf.to_container(run.cfg.stack, resolve=True)
        stack["anchor"] = {**stack["anchor"], **candidate.anchor}
        check_anchor(stack["anchor"], BLEND)
        predictions = recombined(predictions, stack["extra_parts"] if candidate.blend_parts is None
                                 else candidate.blend_parts, stack)
    rows = predictions.loc[predictions["model"] == candidate.model, [*KEYS, "score", TARGET]].dropna(subset=["score"])
    if rows.empty:
        raise SystemExit(f"{candidate.name}: the run scores no model {candidate.model!r}; it has "
                         f"{sorted(predictions['model'].unique())}")
    config = dataclasses.replace(served_book_config(run.cfg.backtest), **candidate.book)
    source = {"stack_run": run.walk.run.run_id, "overrides": run.overrides[4:], "book": dataclasses.asdict(config)}
    return in_period(rows).reset_index(drop=True), config, source


def same_rows(scored: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each score on the (symbol, day) rows every one of them scores."""
    common = None
    for rows in scored.values():
        keys = rows[KEYS]
        common = keys if common is None else common.merge(keys, on=KEYS)
    return {name: rows.merge(common, on=KEYS).sort_values(KEYS, ignore_index=True) for name, rows in scored.items()}


def plan_record(folder: Path) -> dict:
    """The plan files' SHA-256 and the last commit that holds plan.md (None: never committed)."""
    commit = subprocess.run(["git", "log", "-1", "--format=%H", "--", PLAN], cwd=folder, capture_output=True,
                            text=True, check=False).stdout.strip() or None
    return {"folder": str(folder), "plan_commit": commit,
            **{name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in (PLAN, CANDIDATES)}}


def seeded(candidate: Candidate, seed: int | None) -> Candidate:
    """The candidate run with extractor seed `seed` (None: its own overrides as they are)."""
    return candidate if seed is None else dataclasses.replace(candidate, overrides=(*candidate.overrides,
                                                                                     f"seed={seed}"))


def seed_label(name: str, seed: int | None) -> str:
    return name if seed is None else f"{name}@{seed}"


# A book's daily returns, costs, turnover and legs (what its figures read); equity and drawdown are one book's path.
AVERAGED = list(DAILY_COLUMNS)


def seed_average(books: list[pd.DataFrame]) -> pd.DataFrame:
    """The book holding equal capital in each seed's book, rebalanced daily: each day's mean of their returns,
    costs, turnover and legs (the books trade the same days: they score the same rows)."""
    if len(books) == 1:
        return books[0]
    return pd.concat([book[AVERAGED] for book in books]).groupby(level=0).mean()


def evaluate(plan: Plan, runs: Runs) -> dict:
    """Every score and book of the plan on the same rows, each candidate judged against the default; with the
    plan's `seeds`, each entry's book and IC are its seeds' (`seed_average`, the mean daily IC)."""
    everyone = (plan.default, *plan.candidates)
    seeds = plan.seeds or (None,)
    made = {seed_label(c.name, s): scores(seeded(c, s), runs) for c in everyone for s in seeds}
    rows = same_rows({key: entry[0] for key, entry in made.items()})
    grid = runs.get(seeded(plan.default, seeds[0]).overrides).walk.grid
    panels: dict[tuple, object] = {}
    traded, daily_ics = {}, {}
    for key, (_, config, _) in made.items():
        panel_key = (config.volume_days, config.risk_days, config.fill_delay_hours)
        if panel_key not in panels:
            panels[panel_key] = book_panel(grid, config)
        traded[key] = run_ranked_book(rows[key][[*KEYS, "score"]].rename(columns={"score": config.score_column}),
                                      pd.DataFrame(), config, panel=panels[panel_key]).daily
        daily_ics[key] = daily_rank_ic(rows[key])
    books, ics, entries = {}, {}, {}
    for candidate in everyone:
        keys = [seed_label(candidate.name, s) for s in seeds]
        config = made[keys[0]][1]
        books[candidate.name] = seed_average([traded[key] for key in keys])
        ics[candidate.name] = pd.concat([daily_ics[key] for key in keys], axis=1, join="inner").mean(axis=1)
        sources = [made[key][2] for key in keys]
        entries[candidate.name] = {
            "definition": candidate.definition(), "source": sources if plan.seeds else sources[0],
            "rows": len(rows[keys[0]]), "ic": ic_summary(ics[candidate.name]),
            "book": book_figures(books[candidate.name], config.annualisation_days),
            "book_by_half_year": by_half_year(books[candidate.name], config.annualisation_days)}
        if plan.seeds:
            entries[candidate.name]["seeds"] = {
                str(seed): {"ic": ic_summary(daily_ics[key]),
                            "book": book_figures(traded[key], config.annualisation_days)}
                for seed, key in zip(plan.seeds, keys, strict=True)}
    comparisons = {c.name: compare(plan.rule, books[c.name]["net"], books["default"]["net"], ics[c.name],
                                   ics["default"]) for c in plan.candidates}
    decision = decide(plan.rule, comparisons, [c.name for c in plan.candidates if c.decide])
    for name, comparison in comparisons.items():
        entries[name] |= {"versus_default": comparison, "adopted": comparison["adopted"]}
    default_config = made[seed_label("default", seeds[0])][1]
    frame = pd.concat([r.assign(model=key) for key, r in rows.items()], ignore_index=True)
    payoff = payoff_tables(frame, panels[(default_config.volume_days, default_config.risk_days,
                                          default_config.fill_delay_hours)], default_config, books=traded)
    dates = rows[seed_label("default", seeds[0])]["date"]
    return {"scored": {"first": f"{dates.min():%Y-%m-%d}", "last": f"{dates.max():%Y-%m-%d}",
                       "days": int(dates.nunique())},
            "seeds": list(plan.seeds), "default": entries["default"],
            "candidates": {c.name: entries[c.name] for c in plan.candidates}, **decision, "payoff": payoff}


def render(result: dict) -> str:
    """result.md: the decision first, then each candidate against the default, then every payoff table."""
    rule = result["rule"]
    deciding = sum(entry["definition"]["decide"] for entry in result["candidates"].values())
    lines = [f"# Experiment {Path(result['plan']['folder']).name} (benchmarks/harness.py)", "",
             f"Plan: `{PLAN}` and `{CANDIDATES}` (commit {result['plan']['plan_commit'] or 'none: not committed'}); "
             f"run {result['finished_at']} on `{result['data_dir']}`: {result['scored']['days']} test days "
             f"{result['scored']['first']} .. {result['scored']['last']} (the development period: "
             f"{result['period']['start']} up to {result['period']['end']}), {result['seconds']:.0f} s.",
             f"Rule: adopted when the book's daily net P&L beats the default's at paired t ≥ {rule['book_t']:g}"
             + (f" and by Holm's step-down over the {deciding} deciding candidates at a one-sided "
                f"family-wise {rule['alpha']:g}" if rule["family"] == "holm" else "") + ", the "
             f"daily rank IC is not worse beyond noise (paired t > {rule['ic_t']:g}) and no half-year's net return "
             f"is below the default's by more than {100 * rule['half_year_shortfall']:g} points; Newey-West t with "
             "≥ 10 lags, on the same rows and days."
             + (f" Every entry ran with extractor seeds {', '.join(map(str, result['seeds']))}: its book holds equal "
                "capital in each seed's book and its IC is the seeds' mean daily IC." if result.get("seeds") else ""),
             "", f"**Adopted: {', '.join(result['adopted']) or 'none'}; choice: {result['choice'] or 'the default'}.**",
             "", "| score and book | IC (t) | net return | Sharpe | max DD | beta | book − default: daily mean (t) "
             "| IC − default (t) | worst half-year − default | checks: book / IC / half-years | adopted |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for name, entry in {"default": result["default"], **result["candidates"]}.items():
        ic, book = entry["ic"], entry["book"]
        cells = [name, f"{num(ic['mean'], 4)} ({num(ic['t_stat_long'])})", pct(book["return"]),
                 num(book["sharpe"]), pct(book["max_drawdown"]), num(book["beta"])]
        versus = entry.get("versus_default")
        if versus is None:
            cells += ["", "", "", "", ""]
        else:
            worst = min((h["difference"] for h in versus["half_years"]), default=None)
            cells += [f"{pct(versus['book']['mean'], digits=3)} ({num(versus['book']['t_stat'])})",
                      f"{num(versus['ic']['diff_mean'], 4)} ({num(versus['ic']['t_stat_long'])})", pct(worst),
                      " / ".join("yes" if versus["checks"][k] else "no" for k in ("book", "ic", "half_years")),
                      "**yes**" if entry["adopted"] else ("no" if entry["definition"]["decide"] else "reported only")]
        lines.append("| " + " | ".join(cells) + " |")
    names = ["default", *result["candidates"]]
    if result.get("seeds"):
        lines += ["", "Each seed's own score and book (IC (t); net return; Sharpe):", "",
                  "| score and book | " + " | ".join(f"seed {seed}" for seed in result["seeds"]) + " |",
                  "| --- |" + " ---: |" * len(result["seeds"])]
        for name in names:
            by_seed = result["candidates"].get(name, result["default"])["seeds"]
            lines.append(f"| {name} | " + " | ".join(
                f"{num(e['ic']['mean'], 4)} ({num(e['ic']['t_stat_long'])}); {pct(e['book']['return'])}; "
                f"{num(e['book']['sharpe'])}" for e in by_seed.values()) + " |")
    for name in names:
        entry = result["candidates"].get(name, result["default"])
        lines += ["", f"## {name}: {entry['definition']}", "", *half_years_markdown(entry["book_by_half_year"])]
        versus = entry.get("versus_default")
        if versus is not None:
            lines += ["", "Half-years on the common days, candidate − default: " + ", ".join(
                f"{h['half_year']} {pct(h['difference'])}" for h in versus["half_years"]) + "."]
    return "\n".join([*lines, "", "## What each score's book is paid", "", *payoff_markdown(result["payoff"], [
        seed_label(name, seed) for name in names for seed in (result.get("seeds") or [None])])])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the experiment's folder: plan.md and candidates.yaml")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--artifacts-dir", type=Path, default=ROOT / "artifacts" / "quality",
                        help="where the stages' artifacts are reused from and written to")
    parser.add_argument("--outputs-dir", type=Path, default=ROOT / "outputs" / "harness")
    args = parser.parse_args(argv)
    plan = load_plan(args.folder)
    if not (args.data_dir / "hourly.parquet").is_file():
        raise SystemExit(f"no hourly.parquet in {args.data_dir}")
    started = time.perf_counter()
    result = {"plan": plan_record(args.folder), "data_dir": str(args.data_dir),
              "period": {name: str(day.date()) for name, day in zip(("start", "end"), PERIODS[DEVELOPMENT],
                                                                     strict=True)},
              "rule": dataclasses.asdict(plan.rule), **evaluate(plan, Runs(args, args.folder))}
    result = {"finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "seconds": round(time.perf_counter() - started, 1), **result}
    write_json_atomic(result, args.folder / RESULT)
    markdown = render(result)
    write_text_atomic(markdown, args.folder / "result.md")
    print(markdown)


if __name__ == "__main__":
    main()
