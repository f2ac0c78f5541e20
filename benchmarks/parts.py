"""Run 30: do more diverse parts beneath the blend lift what Trishula (anchored on it) knows?

    python benchmarks/quality.py --results-dir /tmp/run30 -- split.last_test_date=2022-12-31 \
        'stack.extra_parts=[tabular_1d,tabular_7d,tabular_rank]'
    python benchmarks/parts.py --quality /tmp/run30/quality.json              # the development days
    python benchmarks/parts.py --confirm                                      # + 2023, once, for what is adopted

Reads a quality run's predictions whose stack trained every extra part (`stack.extra_parts`; see
conf/stack/default.yaml): the parts (tabular, lstm, tcn and the extra ones), Trishula's correction
(`trishula_rank_objective`), the factors. Each candidate's blend is the equal-weight mean of its parts' day ranks
(`stacking.walkforward.rank_blend`, as the walk-forward forms `blend_parts`); its anchored Trishula is recomputed
with the walk-forward's own functions (`stacking.anchor.anchor_walkforward`: each fold's weight from the folds before
it). The candidates and the rule are fixed before the run in
`benchmarks/results/experiments/30_more_parts/plan.md`: the candidate whose blend has the highest development IC
is adopted if it beats today's blend (B0) at paired t >= 2.4 (10 lags; 2 raised for three candidates).
Daily rank IC of the 3-day forward return; paired t = Newey-West with 10 lags, the 3-lag figure beside it.
Reported too: the ranked book (conf/backtest/ranked.yaml) on the best candidate's anchored score and on B0's.
Figures to `benchmarks/results/parts.json` and `parts.md`.
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
from benchmarks.experiment import signed  # noqa: E402
from evaluation.metrics import BLEND  # noqa: E402
from stacking.anchor import KEYS, META, anchor_walkforward  # noqa: E402
from stacking.frame import blend_members  # noqa: E402
from stacking.walkforward import rank_blend  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PLAN = "benchmarks/results/experiments/30_more_parts/plan.md"
ADOPT_T = 2.4
KINDS = ("lstm", "tcn")
# Candidate -> its extra parts (B0: today's blend of tabular, lstm and tcn).
CANDIDATES = {"B0": (), "H": ("tabular_1d", "tabular_7d"), "R": ("tabular_rank",),
              "HR": ("tabular_1d", "tabular_7d", "tabular_rank")}
EXTRA = ("tabular_1d", "tabular_7d", "tabular_rank")
FACTORS = ("lowvol_30d", "reversal_3d", "mom_30d")


def candidate_rows(predictions: pd.DataFrame, anchor: dict) -> tuple[pd.DataFrame, dict]:
    """Per candidate, its blend (`blend_<c>`) and Trishula anchored on it (`trishula_<c>`), and each fold's
    weight of the correction."""
    members = ["tabular", *EXTRA, *KINDS]
    scores = predictions[predictions["model"].isin(members)].pivot(index=KEYS, columns="model", values="score")
    scores = scores.reset_index()
    targets = predictions.loc[predictions["model"] == BLEND, [*KEYS, "fwd_ret_3d"]]
    base = predictions[~predictions["model"].isin([BLEND, META])]
    starts = experiment.first_test_days(predictions)
    rows, weights = [], {}
    for name, extra in CANDIDATES.items():
        blend = scores[KEYS].assign(model=BLEND, score=rank_blend(scores[blend_members(KINDS, extra)], scores["date"]))
        candidate = pd.concat([base, blend.merge(targets, on=KEYS, validate="one_to_one")], ignore_index=True)
        anchored, fitted = anchor_walkforward(candidate, starts, anchor, BLEND, 3)
        rows += [anchored[anchored["model"] == BLEND].assign(model=f"blend_{name}"),
                 anchored[anchored["model"] == "trishula"].assign(model=f"trishula_{name}")]
        weights[name] = {str(f): round(w["weight"], 3) for f, w in fitted.items()}
    return pd.concat(rows, ignore_index=True)[[*KEYS, "model", "score", "fwd_ret_3d"]], weights


def pairs() -> list[tuple[str, str]]:
    """(first, second): first minus second. Each candidate against B0, the new parts against tabular, the anchored
    scores against their parts and the factors."""
    out = [(f"blend_{c}", "blend_B0") for c in CANDIDATES if c != "B0"]
    out += [(f"trishula_{c}", "trishula_B0") for c in CANDIDATES if c != "B0"]
    out += [(part, "tabular") for part in EXTRA]
    out += [(f"trishula_{c}", f"blend_{c}") for c in CANDIDATES]
    out += [("trishula_B0", other) for other in ("tabular", *KINDS, *FACTORS)]
    return out


def decide(development: dict) -> dict:
    """The plan's rule: the candidate blend with the best development IC, adopted at paired t >= ADOPT_T."""
    models, paired_ics = development["models"], development["paired"]
    best = max((c for c in CANDIDATES if c != "B0"), key=lambda c: models[f"blend_{c}"]["mean"])
    t = paired_ics[f"blend_{best} - blend_B0"]["t_stat_long"]
    adopted = t is not None and t >= ADOPT_T
    return {"best": best, "t_stat_long": t, "adopted": best if adopted else "B0",
            "extra_parts": list(CANDIDATES[best if adopted else "B0"])}


def book_table(rows: pd.DataFrame, panel, config, period: str, best: str) -> dict:
    """The ranked book on the best candidate's scores and B0's; its anchored score's daily net return against B0's."""
    models = ["trishula_B0", f"trishula_{best}", "blend_B0", f"blend_{best}"]
    return experiment.book_table(rows, models, [(f"trishula_{best}", "trishula_B0")], panel, config, period)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", type=Path, default=RESULTS / "quality.json", help="the quality run's json")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "hourly.parquet")
    parser.add_argument("--confirm", action="store_true", help="score 2023 too (once per adopted change)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    quality = json.loads(args.quality.read_text())
    predictions = pd.read_parquet(Path(quality["output_dir"]) / "predictions.parquet",
                                  columns=[*KEYS, "model", "score", "fwd_ret_3d"])
    missing = [p for p in EXTRA if not (predictions["model"] == p).any()]
    if missing:
        raise SystemExit(f"{args.quality}: the run trained no {missing}; run quality.py with "
                         f"'stack.extra_parts=[{','.join(EXTRA)}]'")
    candidates, weights = candidate_rows(predictions, experiment.default_anchor())
    keep = ["tabular", *EXTRA, *KINDS, *FACTORS]
    rows = pd.concat([candidates, predictions[predictions["model"].isin(keep)]], ignore_index=True)
    panel, config = experiment.served_book(args.data)
    periods = experiment.scored_periods(rows, args.confirm)
    ics = {p: experiment.ic_table(rows, pairs(), p) for p in periods}
    decision = decide(ics["development"]) if "development" in ics else None
    best = decision["best"] if decision else "HR"
    result = {"finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "plan": PLAN,
              "quality_run": quality["output_dir"], "candidates": {c: list(v) for c, v in CANDIDATES.items()},
              "decision": decision, "anchor_weights": weights,
              "periods": {p: {"ic": ics[p], "book": book_table(rows, panel, config, p, best)} for p in periods}}
    experiment.write_results(result, args.results_dir, "parts", render)


def render(result: dict) -> str:
    decision = result["decision"]
    lines = ["# Run 30: more diverse parts beneath the blend (benchmarks/parts.py)", "",
             f"Plan: `{result['plan']}`; quality run `{result['quality_run']}`.",
             "Candidates (extra parts of the blend beside tabular, lstm, tcn): "
             + "; ".join(f"{c}: {', '.join(v) or 'none'}" for c, v in result["candidates"].items()) + ".",
             "blend_X = the candidate's equal-weight blend of day ranks; trishula_X = Trishula anchored on it (the "
             "ranking objective's correction, fold weights from earlier folds). Daily rank IC of the 3-day forward "
             "return; t3 / t10 = Newey-West t with 3 / 10 lags. Book: the served ranked book, net of costs.", "",
             "Decision (development days): " + ("none (no development days)" if decision is None else
                                                f"best candidate {decision['best']} (paired t10 "
                                                f"{signed(decision['t_stat_long'], 2)} against B0, adoption at "
                                                f">= {ADOPT_T}): adopted {decision['adopted']}") + ".", ""]
    for name, period in result["periods"].items():
        lines += experiment.period_markdown(name, period)
    lines += ["## The correction's weight per fold, by candidate (0 = the blend)", ""]
    lines += [f"- {c}: " + ", ".join(f"{fold}: {w:.2f}" for fold, w in ws.items() if w > 0) + " (others 0)"
              for c, ws in result["anchor_weights"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
