"""Extractor drift: do consecutive extractor versions' outputs mean the same?

    python benchmarks/drift.py                                  # artifacts/quality/extractors on ../shared/data
    python benchmarks/drift.py --artifacts-dir artifacts/extractors --data-dir data/sample -- labels.target=relative

The meta-learner is trained on rows that older extractor versions served and applied to rows a newer
version serves, so each embedding dimension and class probability must mean the same across versions.
Only the artifacts the current training code made are read (older code's are left out, counted). Per
kind, the config lineage of the newest artifact is compared (inputs and their schema hash and
cross-sectional treatment, train window, network, dataset, label): each consecutive
pair (older A, newer B, by fold) scores the SAME windows: the decision rows B serves as the backfill
plans them (backfill/plan.py: from B's eligibility to the next version's, every `embed.stride_hours`), each
artifact with its own normalisation. Per output column (the embedding dimensions and the softmax
probabilities) the agreement of A and B, two ways:
- raw: Spearman's rank correlation pooled over all rows (what `stack.inputs=raw` relies on);
- day_rank: the mean over days (with at least 5 coins) of the within-day Spearman correlation (what
  `stack.inputs=day_rank` relies on: only each day's order of the coins matters).
Printed per kind: each pair's median column agreement and share of columns agreeing at >= 0.7, and
over the pairs the median of those medians and the pooled share, for embedding and probability
columns apart. Figures to `benchmarks/results/drift.json` (per pair and column) and `drift.md`.
Extra Hydra overrides after `--` must reproduce the config of the run that made the artifacts.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import itertools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # the repo's packages, not this folder's scripts (features.py would shadow them)

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from rich.table import Table  # noqa: E402
from scipy import special  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import pipeline  # noqa: E402
from backfill.plan import BackfillInputError, BackfillPlan, make_plan, normalised_inputs, trained_net  # noqa: E402
from backfill.run import COLUMN_SET, predict_trainer  # noqa: E402
from datamodules.windows import WindowDataset  # noqa: E402
from evaluation import format_number  # noqa: E402
from features.build import FeatureFrames, load_feature_frames  # noqa: E402
from features.labels import CLASS_NAMES  # noqa: E402
from models import ExtractorModule  # noqa: E402
from store.extractors import ExtractorArtifact, current_schema_hash, data_fingerprint, list_extractors  # noqa: E402
from store.feature_store import EMBEDDING_PREFIX  # noqa: E402
from store.files import write_json_atomic, write_text_atomic  # noqa: E402
from store.lineage import source_hash  # noqa: E402

MIN_COINS = 5  # a day's cross-sectional correlation needs this many coins to mean anything
AGREEING = 0.7  # a column "agrees" across versions at a Spearman correlation of at least this
WAYS = ("raw", "day_rank")
GROUPS = ("embedding", "probability")
# The training code needs no field: only the current code's artifacts are read (main).
LINEAGE_FIELDS = ("feature_schema_hash", "inputs", "net", "dataset", "label", "label_thresholds")
console = pipeline.console


@dataclasses.dataclass
class Scoring:
    """What scoring windows needs, built once: the composed config, the frames, a predict trainer and
    the data fingerprint (which makes a plan's run key the backfill's own)."""

    cfg: DictConfig
    overrides: list[str]
    frames: FeatureFrames
    trainer: L.Trainer
    fingerprint: str

    @classmethod
    def build(cls, data_dir: Path, extra: Sequence[str]) -> Scoring:
        """pipeline.yaml on `data_dir` with the `extra` overrides; the frames built as the main job builds them."""
        overrides = [f"data.hourly_path={data_dir / 'hourly.parquet'}",
                     f"data.fear_greed_path={data_dir / 'fear_greed.parquet'}", *extra]
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(config_name="pipeline", overrides=overrides)
        groups = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "features", "labels")}
        frames = load_feature_frames(groups["data"], groups["features"], groups["labels"])
        return cls(cfg, overrides, frames, predict_trainer(cfg), data_fingerprint(cfg.data))

    def schema_hash(self, artifact: ExtractorArtifact) -> str:
        """The artifact's input schema hash under this config (as run_backfill computes it)."""
        columns = self.frames.columns[COLUMN_SET[artifact.meta["inputs"]["frame"]]]
        return current_schema_hash(artifact.meta, columns, OmegaConf.to_container(self.cfg.features, resolve=True),
                                   OmegaConf.to_container(self.cfg.data, resolve=True))


def lineages(artifacts: Sequence[ExtractorArtifact]) -> dict[str, list[list[ExtractorArtifact]]]:
    """Per kind, the config lineage of its newest artifact (the last run's config), by fold and version.
    Older configs' lineages left in the same folder would mix other training set-ups into the figures."""
    groups: dict[tuple[str, str], list[ExtractorArtifact]] = {}
    for artifact in artifacts:  # list_extractors sorts by kind, fold, version
        key = json.dumps({field: artifact.meta.get(field) for field in LINEAGE_FIELDS}
                         | {"cross_section": artifact.meta["normalization"].get("cross_section", "none"),
                            "train_window": {k: artifact.meta["split"].get(k) for k in ("window", "train_days")}},
                         sort_keys=True, default=str)
        groups.setdefault((artifact.meta["kind"], key), []).append(artifact)
    by_kind: dict[str, list[list[ExtractorArtifact]]] = {}
    for (kind, _), group in groups.items():
        by_kind.setdefault(kind, []).append(group)
    return {kind: [max(kind_groups, key=lambda group: max(a.meta["created_at"] for a in group))]
            for kind, kind_groups in by_kind.items()}


def window_outputs(plan: BackfillPlan, scoring: Scoring) -> pd.DataFrame:
    """The plan's artifact on the plan's windows, through Lightning's predict as the backfill runs it:
    the embedding and the softmax probabilities (of the float32 logits the store keeps), one row a window."""
    net = trained_net(plan.artifact)
    dataset = WindowDataset(plan.values, torch.from_numpy(plan.ends), torch.arange(len(plan.ends)), plan.window,
                            plan.channels_first)
    loader = DataLoader(dataset, batch_size=scoring.cfg.embed.batch_size, collate_fn=WindowDataset.collate_fn)
    batches = scoring.trainer.predict(ExtractorModule(net), dataloaders=loader)
    embedding = torch.cat([b.embedding for b in batches]).float().cpu().numpy()
    logits = torch.cat([b.logits for b in batches]).float().cpu().numpy()
    probabilities = special.softmax(logits.astype(np.float64), axis=1)
    # Named as the store's reader names them: what the meta-learner reads.
    columns = [f"{EMBEDDING_PREFIX[plan.kind]}{i}" for i in range(embedding.shape[1])]
    columns += [f"{plan.kind}_p_{name.lower()}" for name in CLASS_NAMES]
    return pd.DataFrame(np.hstack([embedding, probabilities]), columns=columns)


def _correlation_by(x: pd.DataFrame, y: pd.DataFrame, groups: np.ndarray) -> pd.DataFrame:
    """Pearson correlation of each column of `x` with the same column of `y` within each group (row: group).
    cov / sqrt(var_x * var_y): a column against itself gives exactly 1; a constant one NaN."""
    x_centred = x - x.groupby(groups).transform("mean")
    y_centred = y - y.groupby(groups).transform("mean")

    def summed(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.groupby(groups).sum()

    return summed(x_centred * y_centred) / np.sqrt(summed(x_centred**2) * summed(y_centred**2))


def column_agreement(older: pd.DataFrame, newer: pd.DataFrame, day: pd.Series) -> pd.DataFrame:
    """Per output column (row): `raw`, the Spearman correlation over all rows, and `day_rank`, the mean over
    days with at least MIN_COINS rows of the Spearman correlation within the day (`days`: those counted)."""
    raw = _correlation_by(older.rank(), newer.rank(), np.zeros(len(day), dtype=np.int8)).iloc[0]
    codes = pd.factorize(day)[0]
    crowded = np.bincount(codes)[codes] >= MIN_COINS
    days = codes[crowded]
    per_day = _correlation_by(older[crowded].groupby(days).rank(), newer[crowded].groupby(days).rank(), days)
    return pd.DataFrame({"raw": raw, "day_rank": per_day.mean(), "days": per_day.notna().sum()})


def compare_pair(older: ExtractorArtifact, newer: ExtractorArtifact, lineage: Sequence[ExtractorArtifact],
                 scoring: Scoring) -> dict:
    """Both artifacts on the decision rows `newer` serves among `lineage`, each with its own normalisation;
    their agreement per output column (`agreement`: column_agreement's frame) and what was scored."""
    dataset = scoring.frames.dataset
    plan = make_plan(newer, lineage, scoring.frames, scoring.schema_hash(newer), scoring.fingerprint,
                     stride_hours=scoring.cfg.embed.stride_hours, dataset=dataset)
    _, older_values = normalised_inputs(older, scoring.frames, scoring.schema_hash(older), dataset)
    older_plan = dataclasses.replace(plan, artifact=older, values=torch.from_numpy(older_values))
    agreement = column_agreement(window_outputs(older_plan, scoring), window_outputs(plan, scoring),
                                 plan.keys["decision_time"])
    agreement["group"] = np.where(agreement.index.str.startswith(EMBEDDING_PREFIX[plan.kind]), "embedding",
                                  "probability")
    return {"older": older, "newer": newer, "plan": plan, "agreement": agreement}


def _number(value) -> float | None:
    """A figure for JSON: NaN (undefined: a constant column, no day with enough coins) -> None."""
    return None if pd.isna(value) else round(float(value), 4)


def _pair_figures(agreement: pd.DataFrame) -> dict:
    """Per group and way: the median column agreement and the share of columns agreeing (NaN columns left out)."""
    figures = {}
    for group, columns in agreement.groupby("group"):
        for way in WAYS:
            values = columns[way].dropna()
            figures[f"{group}_median_{way}"] = _number(values.median())
            figures[f"{group}_agreeing_{way}"] = _number((values >= AGREEING).mean() if len(values) else np.nan)
    return figures


def _pair_record(pair: dict) -> dict:
    older, newer, plan, agreement = pair["older"], pair["newer"], pair["plan"], pair["agreement"]
    return {
        "older": {"version": older.version, "fold": older.meta["fold"]},
        "newer": {"version": newer.version, "fold": newer.meta["fold"], "init_from": newer.meta.get("init_from")},
        "warm_started_from_older": newer.meta.get("init_from") == older.version,
        "decisions": [str(plan.start), None if plan.until is None else str(plan.until)],
        "backfill_run_key": plan.run_key,
        "rows": len(plan.ends),
        "days": int(plan.keys["decision_time"].nunique()),
        "days_ranked": int(agreement["days"].max()),
        **_pair_figures(agreement),
        "columns": {column: {"group": row["group"], **{way: _number(row[way]) for way in WAYS}}
                    for column, row in agreement.iterrows()},
    }


def _kind_summary(records: list[dict]) -> dict:
    """Over a kind's pairs, per group and way: the median of the pairs' median column agreement and the
    share of all (pair, column) figures agreeing."""
    summary: dict = {"pairs": len(records)}
    for group in GROUPS:
        for way in WAYS:
            medians = [r[f"{group}_median_{way}"] for r in records if r[f"{group}_median_{way}"] is not None]
            values = np.array([c[way] for r in records for c in r["columns"].values()
                               if c["group"] == group and c[way] is not None], dtype=float)
            summary[f"{group}_median_{way}"] = _number(np.median(medians) if medians else np.nan)
            summary[f"{group}_agreeing_{way}"] = _number((values >= AGREEING).mean() if values.size else np.nan)
    return summary


def kind_result(kind: str, groups: list[list[ExtractorArtifact]], scoring: Scoring) -> dict:
    """Every consecutive pair of every lineage of `kind`; a pair the backfill could not plan is skipped, said why."""
    records, skipped = [], []
    for lineage in groups:
        for older, newer in itertools.pairwise(lineage):
            try:
                pair = compare_pair(older, newer, lineage, scoring)
            except BackfillInputError as error:
                skipped.append({"older": older.version, "newer": newer.version, "reason": str(error)})
                continue
            records.append(_pair_record(pair))
            console.print(f"{kind} fold {older.meta['fold']} -> {newer.meta['fold']}: {records[-1]['rows']:,} windows")
    return {"summary": _kind_summary(records), "pairs": records, "skipped": skipped}


FIGURE_COLUMNS = [f"{group}_{figure}_{way}" for group in GROUPS for figure in ("median", "agreeing") for way in WAYS]
SHORT = {"embedding": "emb", "probability": "prob", "median": "median", "agreeing": f">={AGREEING}", "raw": "raw",
         "day_rank": "day"}


def _header(column: str) -> str:
    """`embedding_agreeing_day_rank` -> `emb >=0.7 day`: eight figure columns must fit one console line."""
    group, figure, way = column.split("_", 2)
    return f"{SHORT[group]} {SHORT[figure]} {SHORT[way]}"


def _print_kind(kind: str, result: dict) -> None:
    table = Table(title=f"{kind}: agreement of consecutive versions (Spearman) on the rows the newer one serves; "
                        f"agreeing = share of columns >= {AGREEING}")
    table.add_column("pair (folds)")
    for column in ("rows", "days"):
        table.add_column(column, justify="right")
    for column in FIGURE_COLUMNS:
        table.add_column(_header(column), justify="right")
    for r in result["pairs"]:
        table.add_row(f"{r['older']['fold']} -> {r['newer']['fold']}", format_number(r["rows"]),
                      format_number(r["days"]), *(format_number(r[c]) for c in FIGURE_COLUMNS))
    summary = result["summary"]
    table.add_row(f"all {summary['pairs']} pairs", "", "", *(format_number(summary[c]) for c in FIGURE_COLUMNS),
                  style="bold")
    console.print(table)
    for skip in result["skipped"]:
        console.print(f"[yellow]skipped[/] {kind} {skip['older']} -> {skip['newer']}: {skip['reason']}")


def _markdown(result: dict) -> str:
    lines = [
        "# Extractor drift (benchmarks/drift.py)",
        "",
        f"Run {result['finished_at']} on `{result['artifacts_dir']}`; overrides: "
        f"`{' '.join(result['overrides'][2:])}`; {result['seconds']:.1f} s. Agreement of consecutive versions' "
        f"outputs on the rows the newer one serves: "
        f"the median over pairs of the median column Spearman correlation, and the share of (pair, column) "
        f"figures >= {AGREEING}; raw = pooled over rows, day_rank = mean within-day correlation (days >= "
        f"{MIN_COINS} coins).",
        "",
        "| kind | pairs | outputs | median raw | median day_rank | agreeing raw | agreeing day_rank |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for kind, entry in result["kinds"].items():
        summary = entry["summary"]
        for group in GROUPS:
            cells = [format_number(summary[f"{group}_{figure}_{way}"]) for figure in ("median", "agreeing")
                     for way in WAYS]
            lines.append(f"| {kind} | {summary['pairs']} | {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts-dir", type=Path, default=ROOT / "artifacts" / "quality" / "extractors",
                        help="the extractors root (store.extractors.list_extractors)")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides (after --): the artifacts' run's config")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    pipeline.quiet_lightning()
    found = list_extractors(args.artifacts_dir)
    # What the current training code made: the versions a run of it would reuse and the store would serve.
    code = source_hash("extractor")
    artifacts = [a for a in found if a.meta.get("source_hash") == code]
    if not artifacts:
        raise SystemExit(f"no extractor artifact under {args.artifacts_dir} made by the current training code "
                         f"(source {code}; {len(found)} made by older code)")
    if len(artifacts) < len(found):
        console.print(f"drift: {len(found) - len(artifacts)} artifacts made by older training code left out")
    scoring = Scoring.build(args.data_dir, args.overrides)
    kinds = {kind: kind_result(kind, groups, scoring) for kind, groups in lineages(artifacts).items()}
    result = {
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "artifacts_dir": str(args.artifacts_dir),
        "source_hash": code,
        "older_code_left_out": len(found) - len(artifacts),
        "data_dir": str(args.data_dir),
        "overrides": scoring.overrides,
        "min_coins": MIN_COINS,
        "agreeing_at": AGREEING,
        "kinds": kinds,
        "seconds": round(time.perf_counter() - started, 1),
    }
    for kind, entry in kinds.items():
        _print_kind(kind, entry)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(result, args.results_dir / "drift.json")
    write_text_atomic(_markdown(result), args.results_dir / "drift.md")
    console.print(f"figures in {args.results_dir / 'drift.json'} and drift.md ({result['seconds']:.1f} s)")
    return result


if __name__ == "__main__":
    main()
