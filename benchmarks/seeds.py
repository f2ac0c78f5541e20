"""Run 31: does averaging several seeds' extractor fits make stronger parts beneath the blend?

    for s in 42 43 44; do python pipeline.py data=full split.last_test_date=2022-12-31 trainer.max_epochs=1 \
        seed=$s paths.artifacts_dir=artifacts/run31_s$s hydra.run.dir=outputs/run31/s$s; done
    python benchmarks/seeds.py --base outputs/quality/<time> --runs outputs/run31/s42 outputs/run31/s43 \
        outputs/run31/s44

Reads the predictions of a base run (today's extractors; its tabular part is every candidate's) and of one run
per seed (`predictions.parquet`). Candidates, fixed before the run in
`benchmarks/results/experiments/31_seed_ensembles/plan.md`:
- S3: each extractor's class probabilities averaged over the seed runs, scored P(buy) - P(sell);
- S1: the first seed run's extractors alone (a diagnostic: the epoch change without the ensemble);
each blended with the base's tabular part by the walk-forward's `rank_blend`, on the rows every run scored.
S3 is adopted at a development paired t >= 2 (10 lags) of its blend against the base's.
Daily rank IC of the 3-day forward return; paired t = Newey-West with 10 lags, the 3-lag figure beside it.
Figures to `benchmarks/results/seeds.json` and `seeds.md`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # the repo's packages, not this folder's scripts

import pandas as pd  # noqa: E402

from benchmarks import experiment  # noqa: E402
from benchmarks.experiment import signed  # noqa: E402
from stacking.anchor import KEYS  # noqa: E402
from stacking.signals import signal_score  # noqa: E402
from stacking.walkforward import rank_blend  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PLAN = "benchmarks/results/experiments/31_seed_ensembles/plan.md"
ADOPT_T = 2.0
KINDS = ("lstm", "tcn")
PROBABILITIES = ["p_sell", "p_hold", "p_buy"]


def extractor_rows(run: Path) -> pd.DataFrame:
    """A run's extractor predictions: the row key, the kind, its class probabilities and the target."""
    rows = pd.read_parquet(run / "predictions.parquet", columns=[*KEYS, "model", *PROBABILITIES, "fwd_ret_3d"])
    return rows[rows["model"].isin(KINDS)]


def candidates(base: pd.DataFrame, seed_runs: list[pd.DataFrame]) -> pd.DataFrame:
    """Per candidate, its extractors' scores and its blend with the base's tabular part, on the shared rows."""
    shared = base.loc[base["model"] == "tabular", KEYS]
    for rows in seed_runs:
        shared = shared.merge(rows.loc[rows["model"] == KINDS[0], KEYS], on=KEYS)
    target = base.loc[base["model"] == "tabular", [*KEYS, "fwd_ret_3d"]]
    mean = pd.concat(seed_runs).groupby([*KEYS, "model"], as_index=False)[PROBABILITIES].mean()
    sources = {"B0": base, "S1": seed_runs[0], "S3": mean}
    out = []
    tabular = shared.merge(base.loc[base["model"] == "tabular", [*KEYS, "score"]], on=KEYS)
    for name, rows in sources.items():
        scores = tabular.rename(columns={"score": "tabular"})
        for kind in KINDS:
            mine = rows[rows["model"] == kind]
            scored = mine[KEYS].assign(**{kind: signal_score(mine[PROBABILITIES].to_numpy())})
            scores = scores.merge(scored, on=KEYS, validate="one_to_one")
            out.append(scored.rename(columns={kind: "score"}).assign(model=f"{kind}_{name}"))
        out.append(scores[KEYS].assign(model=f"blend_{name}",
                                       score=rank_blend(scores[["tabular", *KINDS]], scores["date"])))
    out.append(tabular.assign(model="tabular"))
    return pd.concat(out, ignore_index=True).merge(target, on=KEYS)


PAIRS = (("blend_S3", "blend_B0"), ("blend_S1", "blend_B0"), ("blend_S3", "blend_S1"),
         *((f"{k}_S3", f"{k}_B0") for k in KINDS), *((f"{k}_S3", f"{k}_S1") for k in KINDS),
         # The epoch change alone, part by part (run 32 reads these to make one-epoch fits the default).
         *((f"{k}_S1", f"{k}_B0") for k in KINDS))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="the base run's output folder")
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="one output folder per seed")
    parser.add_argument("--confirm", action="store_true", help="score 2023 too (once, if adopted)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    base = pd.read_parquet(args.base / "predictions.parquet", columns=[*KEYS, "model", "score", *PROBABILITIES,
                                                                         "fwd_ret_3d"])
    rows = candidates(base, [extractor_rows(run) for run in args.runs])
    periods = experiment.scored_periods(rows, args.confirm)
    ics = {p: experiment.ic_table(rows, PAIRS, p) for p in periods}
    development = ics.get("development")
    t = development["paired"]["blend_S3 - blend_B0"]["t_stat_long"] if development else None
    result = {"finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "plan": PLAN,
              "base": str(args.base), "runs": [str(r) for r in args.runs],
              "decision": None if development is None else {"t_stat_long": t,
                                                            "adopted": t is not None and t >= ADOPT_T},
              "periods": ics}
    experiment.write_results(result, args.results_dir, "seeds", render)


def render(result: dict) -> str:
    decision = result["decision"]
    lines = ["# Run 31: seed ensembles of the extractors (benchmarks/seeds.py)", "",
             f"Plan: `{result['plan']}`; base run `{result['base']}`; seed runs: "
             + ", ".join(f"`{r}`" for r in result["runs"]) + ".",
             "B0 = the base run's extractors; S1 = the first seed run's; S3 = the seed runs' class probabilities "
             "averaged; blend_X = the equal-weight day-rank blend of the base's tabular part and X's extractors. "
             "Daily rank IC of the 3-day forward return; t3 / t10 = Newey-West t with 3 / 10 lags.", "",
             "Decision (development days): " + ("none (no development days)" if decision is None else
                                                f"blend_S3 - blend_B0 paired t10 {signed(decision['t_stat_long'], 2)}"
                                                f" (adoption at >= {ADOPT_T}): adopted {decision['adopted']}") + ".",
             ""]
    for name, period in result["periods"].items():
        lines += [f"## {name}", "", *experiment.ic_markdown(period), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
