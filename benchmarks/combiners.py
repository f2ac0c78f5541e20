"""Can a model fitted on the parts' out-of-sample scores beat their equal-weight blend?

    python benchmarks/combiners.py                  # the predictions of the run in benchmarks/results/quality.json
    python benchmarks/combiners.py --predictions outputs/quality/<run>/predictions.parquet

The quality benchmark scores `blend_parts`, the equal-weight mean of the parts' per-day ranks (tabular,
lstm, tcn), beside Trishula; over the development years the blend leads. This asks the question a
stacker has to answer first: do the parts' own scores, combined by a model fitted on them, beat fixed
equal weights? Per meta fold (the predictions' `fold`), each combiner is fitted on the parts'
predictions of the `--train-days` calendar days that end `--purge-days` before the fold's first test
day (the 3-day labels of those rows are known by then) and scores the fold's test rows. Those
predictions were each made by a model trained before its day, so a combiner's train rows are what it
would have had. Folds with less than `--min-train-days` days of history are left out, so every
combiner is scored on the same rows and days. The combiners:
- ols: least-squares weights of the parts' centred day ranks of score on the 3-day return's;
- lgbm_probas: LightGBM multiclass, with the meta-learner's parameters (conf/stack/default.yaml), on
  the day ranks of the parts' class probabilities, scored P(buy) - P(sell) as Trishula is;
- lgbm_scores: the same on the day ranks of the parts' scores;
- lgbm_regression: LightGBM regression of the return's day rank on the score ranks;
- stumps_regression: the same with 2-leaf trees (an additive model of the three ranks).
Per period (development, confirmation_2023), each one's daily rank IC with its Newey-West t, and its
paired difference from the blend's and Trishula's on the same days. Figures to
`benchmarks/results/combiners.json` and `combiners.md`. About 40 s on 2 cores for the full data.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # the repo's packages, not this folder's scripts

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from benchmarks.quality import PERIODS, in_period  # noqa: E402
from evaluation.metrics import daily_rank_ic, ic_summary, paired_ic_comparison  # noqa: E402
from stacking.frame import day_ranks  # noqa: E402
from stacking.signals import signal_score  # noqa: E402
from stacking.walkforward import BLEND  # noqa: E402
from store.files import write_json_atomic, write_text_atomic  # noqa: E402

PARTS = ("tabular", "lstm", "tcn")
PROBAS = ("p_sell", "p_hold", "p_buy")
TARGET = "fwd_ret_3d"
REFERENCES = (BLEND, "trishula")


def parts_frame(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per (date, symbol) the blend scores: the parts' scores and probabilities as per-day ranks
    centred on 0 (`<part>_<column>`), the class label, the 3-day return and the reference models' scores."""
    keys = ["date", "symbol"]
    parts = predictions[predictions["model"].isin(PARTS)].pivot(index=keys, columns="model",
                                                               values=["score", *PROBAS])
    parts.columns = [f"{part}_{column}" for column, part in parts.columns]
    references = predictions[predictions["model"].isin(REFERENCES)].pivot(index=keys, columns="model",
                                                                          values="score")
    rows = predictions.loc[predictions["model"] == BLEND, [*keys, "fold", "label", TARGET]].set_index(keys)
    frame = rows.join(references).join(parts, how="inner").reset_index()
    columns = list(parts.columns)
    ranked = day_ranks(frame, [*columns, TARGET])
    frame[columns] = ranked[columns] - 0.5
    frame["target_rank"] = ranked[TARGET] - 0.5
    return frame


def _lgbm_params(overrides: list[str]) -> dict:
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("pipeline", overrides=overrides)
    return OmegaConf.to_container(cfg.stack.lgbm, resolve=True)


def combiners(params: dict) -> dict[str, Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]]:
    """name -> fit on the train rows, return the test rows' scores."""
    scores = [f"{part}_score" for part in PARTS]
    probas = [f"{part}_{p}" for part in PARTS for p in PROBAS]

    def ols(train, test):
        weights = np.linalg.lstsq(train[scores].to_numpy(), train["target_rank"].to_numpy(), rcond=None)[0]
        return test[scores].to_numpy() @ weights

    def classifier(columns):
        def fit(train, test):
            model = lgb.LGBMClassifier(objective="multiclass", **params)
            proba = model.fit(train[columns], train["label"].astype("int64")).predict_proba(test[columns])
            return signal_score(proba)
        return fit

    def regression(leaves):
        def fit(train, test):
            model = lgb.LGBMRegressor(**(params | ({} if leaves is None else {"num_leaves": leaves})))
            return model.fit(train[scores], train["target_rank"]).predict(test[scores])
        return fit

    return {"ols": ols, "lgbm_probas": classifier(probas), "lgbm_scores": classifier(scores),
            "lgbm_regression": regression(None), "stumps_regression": regression(2)}


def combine(frame: pd.DataFrame, params: dict, train_days: int, purge_days: int, min_train_days: int) -> pd.DataFrame:
    """Every combiner's out-of-sample scores of each fold's test rows, beside the references'."""
    fitted = combiners(params)
    labelled = frame.dropna(subset=["label", "target_rank"])
    scored = []
    for _, test in frame.groupby("fold", sort=True):  # a loop over meta folds (tens), not rows
        end = test["date"].min() - pd.Timedelta(days=purge_days)
        train = labelled[(labelled["date"] < end) & (labelled["date"] >= end - pd.Timedelta(days=train_days))]
        if train["date"].nunique() < min_train_days:
            continue
        out = test[["date", "symbol", "fold", TARGET, *REFERENCES]].copy()
        for name, fit in fitted.items():
            out[name] = fit(train, test)
        scored.append(out)
    if not scored:
        raise ValueError(f"no fold has {min_train_days} days of the parts' predictions before it")
    return pd.concat(scored, ignore_index=True)


def period_result(scored: pd.DataFrame, models: list[str]) -> dict:
    ics = {name: daily_rank_ic(scored, score=name, target=TARGET) for name in models}
    rows = []
    for name in models:
        row = {"model": name, **ic_summary(ics[name])}
        for reference in REFERENCES:
            paired = paired_ic_comparison(ics[name], ics[reference])
            row[f"minus_{reference}"] = paired["diff_mean"]
            row[f"minus_{reference}_t"] = paired["t_stat"]
        rows.append(row)
    labelled = scored.dropna(subset=[TARGET])  # the last days of an open fold have no 3-day return yet
    return {"days": int(labelled["date"].nunique()), "folds": int(scored["fold"].nunique()),
            "first": str(labelled["date"].min().date()), "last": str(labelled["date"].max().date()), "models": rows}


def _fmt(value, digits: int = 4) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


def _markdown(result: dict) -> str:
    lines = ["# Combiners of the parts (benchmarks/combiners.py)", "",
             f"Run {result['finished_at']} on the predictions of {result['predictions']}; each combiner fitted per "
             f"meta fold on the parts' out-of-sample predictions of the previous {result['train_days']} days "
             f"(purged {result['purge_days']} days). Daily rank IC of the 3-day return; t = Newey-West; paired = "
             "the model minus the reference on the same days.", ""]
    for period, body in result["periods"].items():
        lines += [f"## {period}: {body['first']} .. {body['last']} ({body['days']} days, {body['folds']} folds)", "",
                  "| model | IC | t | − blend_parts | paired t | − trishula | paired t |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for row in body["models"]:
            lines.append(f"| {row['model']} | {_fmt(row['mean'])} | {_fmt(row['t_stat'], 2)} | "
                         f"{_fmt(row[f'minus_{BLEND}'])} | {_fmt(row[f'minus_{BLEND}_t'], 2)} | "
                         f"{_fmt(row['minus_trishula'])} | {_fmt(row['minus_trishula_t'], 2)} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", type=Path, default=None,
                        help="a quality run's predictions.parquet; default: the run quality.json names")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--train-days", type=int, default=365, help="as the meta-learner's stack.split.train_days")
    parser.add_argument("--purge-days", type=int, default=4, help="the 3-day label's horizon, and the decision day")
    parser.add_argument("--min-train-days", type=int, default=300)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the LightGBM parameters (after --)")
    args = parser.parse_args(argv)
    path = args.predictions
    if path is None:
        path = Path(json.loads((args.results_dir / "quality.json").read_text())["output_dir"]) / "predictions.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no predictions (run benchmarks/quality.py first, or give --predictions)")
    params = _lgbm_params(args.overrides)
    scored = combine(parts_frame(pd.read_parquet(path)), params, args.train_days, args.purge_days,
                     args.min_train_days)
    models = [*REFERENCES, *combiners(params)]
    periods = {name: period_result(rows, models) for name in PERIODS
               if not (rows := in_period(scored, name)).empty}
    result = {"finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "predictions": str(path),
              "train_days": args.train_days, "purge_days": args.purge_days, "min_train_days": args.min_train_days,
              "lgbm": params, "periods": periods}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(result, args.results_dir / "combiners.json")
    markdown = _markdown(result)
    write_text_atomic(markdown, args.results_dir / "combiners.md")
    print(markdown)


if __name__ == "__main__":
    main()
