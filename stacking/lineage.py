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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from features.build import FeatureFrames
from stacking.registry import Registry, scope_key
from store.extractors import current_schema_hash, list_extractors
from store.feature_store import FeatureStore

COLUMN_SET = {"daily": "lstm", "hourly": "tcn"}


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


def roll_forward(decision, registry: Registry, config_key: str):
    """`decision`, promoted as a roll-forward when the challenger carries the champion's config to later folds."""
    if decision.promoted or decision.champion is None or not registry.has_run(decision.champion):
        return decision
    champion, challenger = registry.run_meta(decision.champion), registry.run_meta(decision.challenger)
    last = {name: max(s["fold"]["index"] for s in meta["folds"]) for name, meta in
            (("champion", champion), ("challenger", challenger))}
    if champion.get("config_key") != config_key or last["challenger"] <= last["champion"]:
        return decision
    return dataclasses.replace(decision, promoted=True, reason=(
        f"roll-forward: the champion's config on new data, adding folds up to {last['challenger']} "
        f"(the rule on common rows: {decision.reason})"))
