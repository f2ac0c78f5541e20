"""What a Trishula run may read and whom it competes with: lineage enforced, not only recorded.

- `readable_versions`: per kind, the store's extractor versions made from this run's data lineage
  (dataset) with the features configured now (the artifact's schema hash recomputed under the
  current config); every other version is refused and said so, never read.
- `cap_at_pins`: `stack.pinned_versions.<kind>=<version>` serves that version from its eligibility
  on and never a newer one; rows before it read the older versions as usual (a pin cannot be out
  of sample for rows before its own training ended, so it caps the as-of rule instead).
- `task_scope`: the registry scope of a run, its dataset and task config (label, split, kinds).
- `roll_forward`: a challenger with the champion's very config (model settings and code) that
  adds later folds is the champion carried forward to new data (the scheduled retrain of daily
  operation): on their common rows its models are the champion's, so the rule cannot prefer
  either; it replaces the champion, and the log says why.
- `stale_lineage` / `replace_stale`: what a run serves with that the current code would make
  differently (its own Trishula code, the extractors' code, the backfill code of the store rows it
  reads). A champion whose code no longer exists cannot be rebuilt, so a challenger made by the
  current code replaces it unless it is worse on the common rows by more than the margin: after a
  pure refactor "better by the margin" would keep the old champion forever, and daily serving
  would stop.
- `library_changes`: the libraries whose versions differ from the ones a run was made with (run.json's
  `libraries`): not stale (the code is the same), but said, since a new LightGBM or torch may score
  differently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from features.build import FeatureFrames
from stacking.registry import PROMOTION_METRICS, PromotionDecision, Registry, scope_key
from store.extractors import current_schema_hash, list_extractors
from store.feature_store import FeatureStore
from store.lineage import library_versions, source_hash

COLUMN_SET = {"daily": "lstm", "hourly": "tcn"}
UNRECORDED = "unrecorded"


def readable_versions(store: FeatureStore, kinds: Sequence[str], frames: FeatureFrames, cfg: DictConfig,
                      console: Console) -> dict[str, list[str]]:
    artifacts = {a.version: a.meta for a in list_extractors(Path(cfg.paths.artifacts_dir) / "extractors")}
    features = OmegaConf.to_container(cfg.features, resolve=True)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    readable = {}
    for kind in kinds:
        stored = store.versions(kind)
        ok = [
            str(r.version) for r in stored.itertuples()
            if r.dataset == frames.dataset and r.version in artifacts and r.feature_schema_hash == current_schema_hash(
                artifacts[r.version], frames.columns[COLUMN_SET[artifacts[r.version]["inputs"]["frame"]]], features,
                data)
        ]
        refused = len(stored) - len(ok)
        if refused:
            console.print(f"stack: {refused} {kind} version(s) in the store were made from other data (dataset "
                          f"!= {frames.dataset}) or other features, or have no artifact: not read")
        if not ok:
            raise FileNotFoundError(
                f"the store at {store.root} holds no {kind} outputs made from this data (dataset {frames.dataset}) "
                f"with these features: run embed.py (or the main job) on it first")
        readable[kind] = ok
    return readable


def cap_at_pins(store: FeatureStore, among: Mapping[str, list[str]], pins: Mapping[str, str]) -> dict[str, list[str]]:
    capped = {kind: list(versions) for kind, versions in among.items()}
    for kind, pin in pins.items():
        rows = store.versions(kind)
        rows = rows[rows["version"].isin(among[kind])]
        if pin not in set(rows["version"]):
            raise KeyError(f"stack.pinned_versions.{kind}={pin} is not a readable {kind} version of this data: "
                           f"{list(rows['version'])}")
        order = list(zip(rows["eligible_from"], rows["version"], strict=True))
        limit = order[list(rows["version"]).index(pin)]
        capped[kind] = [version for eligible, version in order if (eligible, version) <= limit]
    return capped


def task_scope(cfg: DictConfig, dataset: str) -> str:
    split = {k: v for k, v in OmegaConf.to_container(cfg.split, resolve=True).items()
             if k not in ("first_test_date", "last_test_date")}
    label = str(cfg.labels.primary)
    # Relative and absolute classes (or fixed and volatility-scaled bounds) are different tasks.
    return scope_key(dataset, {"label": label, "threshold": cfg.labels.thresholds[label], "split": split,
                               "kinds": list(cfg.stack.kinds), "target": cfg.labels.get("target", "absolute"),
                               "threshold_scale": cfg.labels.get("threshold_scale", "fixed")})


def roll_forward(decision: PromotionDecision, registry: Registry, config_key: str) -> PromotionDecision:
    """`decision`, promoted as a roll-forward when the challenger carries the champion's config to later folds,
    or as the current code's replacement of a champion whose code no longer exists (`replace_stale`)."""
    if decision.promoted or decision.champion is None or not registry.has_run(decision.champion):
        return decision
    champion, challenger = registry.run_meta(decision.champion), registry.run_meta(decision.challenger)
    last = {name: max(s["fold"]["index"] for s in meta["folds"]) for name, meta in
            (("champion", champion), ("challenger", challenger))}
    if champion.get("config_key") == config_key and last["challenger"] > last["champion"]:
        return dataclasses.replace(decision, promoted=True, reason=(
            f"roll-forward: the champion's config on new data, adding folds up to {last['challenger']} "
            f"(the rule on common rows: {decision.reason})"))
    if stale_lineage(challenger):  # only a run of the current code may take a stale champion's place
        return decision
    return replace_stale(decision, stale_lineage(champion))


@dataclasses.dataclass(frozen=True)
class StaleInput:
    """Something a Trishula run serves with that the current code would make differently."""

    artifact: str  # what it is: "Trishula run <id>", "lstm extractor <version>", "lstm store rows of version <v>"
    source: str    # the source kind (store.lineage.SOURCES) whose code changed since
    made_by: str   # the source hash(es) it was made by
    current: str   # that kind's source hash now

    def __str__(self) -> str:
        return (f"{self.artifact} was made by {self.source} source {self.made_by} (the current code's is "
                f"{self.current})")


def stale_lineage(run_meta: Mapping, artifacts: Mapping[str, Mapping] | None = None,
                  store: FeatureStore | None = None, dataset: str | None = None) -> list[StaleInput]:
    """What the run (its run.json) serves with that the current code would make differently: the run itself
    (its `source_hash`), the store rows of every extractor version it was trained on (the backfill sources
    run.json recorded and, with `store`, the ones the store holds now for `dataset`) and, with `artifacts`
    (version -> artifact.json), the extractors themselves. A missing artifact is not judged here: serving
    it fails on its own, naming it. A hash not recorded counts as stale: nothing shows the code that made it.
    Empty: everything is what the current code makes."""
    stale = []
    trishula = source_hash("trishula")
    if run_meta.get("source_hash") != trishula:
        stale.append(StaleInput(f"Trishula run {run_meta.get('run_id')}", "trishula",
                                run_meta.get("source_hash") or UNRECORDED, trishula))
    extractor, backfill = source_hash("extractor"), source_hash("backfill")
    for kind, rows in run_meta.get("store", {}).items():
        stored = {} if store is None else store.versions(kind, dataset).set_index("version")["sources"].to_dict()
        for row in rows:
            version = str(row["version"])
            meta = (artifacts or {}).get(version)
            if meta is not None and meta.get("source_hash") != extractor:
                stale.append(StaleInput(f"{kind} extractor {version}", "extractor",
                                        meta.get("source_hash") or UNRECORDED, extractor))
            made_by = sorted({*(row.get("sources") or UNRECORDED).split(","),
                              *str(stored.get(version, backfill)).split(",")} - {backfill})
            if made_by:
                stale.append(StaleInput(f"{kind} store rows of version {version}", "backfill", ",".join(made_by),
                                        backfill))
    return stale


def replace_stale(decision: PromotionDecision, stale: Sequence[StaleInput]) -> PromotionDecision:
    """`decision` (the rule's, not promoted), promoted when the champion's code no longer exists (`stale` says
    how) and the challenger, made by the current code, is not worse on the common rows by more than the margin
    (nor, when min_t > 0, at a paired t below -min_t). Nobody can rebuild such a champion: "better by the
    margin" would keep it after every refactor. A challenger worse than that stays out, and the log says why."""
    if decision.promoted or not stale or decision.challenger_value is None or decision.champion_value is None:
        return decision
    sign = 1.0 if PROMOTION_METRICS[decision.metric] else -1.0
    worse_by = sign * (decision.champion_value - decision.challenger_value)
    t_stat = decision.paired_t_stat
    below_t = decision.min_t > 0 and t_stat is not None and t_stat < -decision.min_t
    gone = f"the champion's code no longer exists ({stale[0]}" + (
        f"; {len(stale) - 1} more stale input(s))" if len(stale) > 1 else ")")
    if worse_by > decision.margin or below_t:
        why = (f"worse by {worse_by:.4f}, more than the margin {decision.margin:g}" if worse_by > decision.margin
               else f"at paired t {t_stat:.4f}, below -{decision.min_t:g}")
        return dataclasses.replace(decision, reason=f"{decision.reason}; {gone}, but the challenger is {why}")
    return dataclasses.replace(decision, promoted=True, reason=(
        f"{gone}: the challenger, made by the current code, is not worse by more than the margin "
        f"{decision.margin:g}" + (f" nor at a paired t below -{decision.min_t:g}" if decision.min_t > 0 else "")
        + f": challenger replaces it (the rule on common rows: {decision.reason})"))


def library_changes(run_meta: Mapping) -> list[str]:
    """`<library> <made with> -> <now>` for each library whose version differs from the one the run recorded
    (a run made before versions were recorded: none)."""
    made, now = run_meta.get("libraries") or {}, library_versions()
    return [f"{name} {version} -> {now.get(name, 'absent')}" for name, version in sorted(made.items())
            if now.get(name, "absent") != version]
