"""Run 29: does Trishula anchored on the blend of its parts keep what the parts know, in IC and in the book?

    python benchmarks/anchor.py                                  # the quality run in benchmarks/results/quality.json
    python benchmarks/anchor.py --before outputs/quality/<time>  # + the run before the change (the day-rank fix)
    python benchmarks/anchor.py --confirm                        # + 2023, once, for what is adopted

Reads a quality run's predictions (`predictions.parquet`): `trishula` (the anchored score, A1),
`trishula_meta` (the meta-learner's own score, A0), `trishula_rank_objective` (R), the blend of the parts,
the parts and the factors, every test day, and the per-fold anchor weights (`quality.json`). The candidates
and rules are fixed before the run in `benchmarks/results/experiments/29_anchored_stacker/plan.md`:
R replaces A0 as the meta score at a development paired t >= 2; A1 is rejected only if it trails the blend
at paired t <= -2. Daily rank IC of the 3-day forward return; paired t = Newey-West with 10 lags, the 3-lag
figure beside it. Reported too: the ranked book (conf/backtest/ranked.yaml, the served strategy) on A1, A0
and the blend, with the paired t of the daily net return difference (10 lags).
Figures to `benchmarks/results/anchor.json` and `anchor.md`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # the repo's packages, not this folder's scripts

import pandas as pd  # noqa: E402

from benchmarks import experiment  # noqa: E402
from evaluation.metrics import BLEND  # noqa: E402
from stacking.anchor import META, anchor_walkforward  # noqa: E402
from stacking.frame import RANK_OBJECTIVE_MODEL  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PLAN = "benchmarks/results/experiments/29_anchored_stacker/plan.md"
ADOPT_T = 2.0
ANCHORED_RANK = "trishula_anchored_rank"  # A1 with the ranking objective as its correction (rule 1's outcome)
# Paired comparisons, (first, second): first minus second.
PAIRS = (("trishula", BLEND), (ANCHORED_RANK, BLEND), (ANCHORED_RANK, "trishula"), ("trishula", META),
         (RANK_OBJECTIVE_MODEL, META), ("trishula", "tabular"),
         ("trishula", "lstm"), ("trishula", "tcn"), ("trishula", "lowvol_30d"), ("trishula", "reversal_3d"),
         ("trishula", "mom_30d"))
BEFORE = "trishula_before"  # the meta-learner's score in the run before the change (--before)


def anchored_rank_rows(predictions: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """A1 recomputed offline with the ranking objective's score as the correction, fold weights fitted the
    walk-forward's way (`stacking.anchor.anchor_walkforward`: each fold from the folds before it)."""
    settings = {**experiment.default_anchor(), "correction": "rank_objective"}
    rows, weights = anchor_walkforward(predictions[predictions["model"] != META],
                                       experiment.first_test_days(predictions), settings, BLEND, 3)
    return rows[rows["model"] == "trishula"].assign(model=ANCHORED_RANK), weights


def ic_table(predictions: pd.DataFrame, period: str) -> dict:
    """Per model, its IC summary; per pair, the paired difference (t with 3 and >= 10 lags)."""
    return experiment.ic_table(predictions, (*PAIRS, (META, BEFORE)), period)


def book_table(predictions: pd.DataFrame, panel, config, period: str) -> dict:
    """The ranked book on A1, A0 and the blend over `period`, and A1's daily net return against the others'."""
    models = ("trishula", META, BLEND, ANCHORED_RANK)
    return experiment.book_table(predictions, models, [("trishula", m) for m in models[1:]], panel, config, period)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", type=Path, default=RESULTS / "quality.json", help="the quality run's json")
    parser.add_argument("--before", type=Path, default=None, help="the output folder of the run before the change")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "hourly.parquet")
    parser.add_argument("--confirm", action="store_true", help="score 2023 too (once per adopted change)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    quality = json.loads(args.quality.read_text())
    columns = ["symbol", "date", "fold", "model", "score", "fwd_ret_3d"]
    predictions = pd.read_parquet(Path(quality["output_dir"]) / "predictions.parquet", columns=columns)
    rank_weights = None
    if (predictions["model"] == RANK_OBJECTIVE_MODEL).any():
        rows, rank_weights = anchored_rank_rows(predictions)
        predictions = pd.concat([predictions, rows], ignore_index=True)
    if args.before is not None:
        before = pd.read_parquet(args.before / "predictions.parquet", columns=columns)
        predictions = pd.concat([predictions, before[before["model"] == "trishula"].assign(model=BEFORE)])
    panel, config = experiment.served_book(args.data)
    periods = experiment.scored_periods(predictions, args.confirm)
    result = {"finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "plan": PLAN,
              "quality_run": quality["output_dir"], "before_run": str(args.before) if args.before else None,
              "anchor_weights": quality.get("anchor_weights"),
              "anchor_weights_rank_objective": {str(f): w for f, w in (rank_weights or {}).items()},
              "periods": {p: {"ic": ic_table(predictions, p), "book": book_table(predictions, panel, config, p)}
                          for p in periods}}
    result["decisions"] = decisions(result["periods"].get("development"))
    experiment.write_results(result, args.results_dir, "anchor", render)


def decisions(development: dict | None) -> dict | None:
    """The plan's two rules on the development days (None without them)."""
    if development is None:
        return None
    pairs = development["ic"]["paired"]
    rank_t = pairs.get(f"{RANK_OBJECTIVE_MODEL} - {META}", {}).get("t_stat_long")
    anchor_t = pairs[f"trishula - {BLEND}"]["t_stat_long"]
    return {"rank_objective_replaces_meta_score": rank_t is not None and rank_t >= ADOPT_T,
            "anchor_rejected": anchor_t is not None and anchor_t <= -ADOPT_T}


def render(result: dict) -> str:
    lines = ["# Run 29: Trishula anchored on the blend of its parts (benchmarks/anchor.py)", "",
             f"Plan: `{result['plan']}`; quality run `{result['quality_run']}`"
             + (f"; before: `{result['before_run']}`" if result["before_run"] else "") + ".",
             "Daily rank IC of the 3-day forward return; t3 / t10 = Newey-West t with 3 / 10 lags. "
             "Book: the served ranked book (conf/backtest/ranked.yaml), net of 10 bps a side and 10 % borrow.", "",
             "Decisions (development days): " + ("none (no development days)" if result["decisions"] is None else
                                                 f"ranking objective replaces the meta score: "
                                                 f"{result['decisions']['rank_objective_replaces_meta_score']}; "
                                                 f"anchor rejected: {result['decisions']['anchor_rejected']}") + ".",
             ""]
    for name, period in result["periods"].items():
        lines += experiment.period_markdown(name, period)
    if result["anchor_weights"]:
        weights = ", ".join(f"{fold}: {a['weight']:.2f}" for fold, a in result["anchor_weights"].items())
        lines += ["## The multiclass correction's weight per fold (0 = the blend; the quality run's)", "", weights, ""]
    if result["anchor_weights_rank_objective"]:
        weights = ", ".join(f"{fold}: {a['weight']:.2f}" for fold, a in result["anchor_weights_rank_objective"].items())
        lines += ["## The ranking objective's weight per fold (trishula_anchored_rank)", "", weights, ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
