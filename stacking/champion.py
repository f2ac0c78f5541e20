"""The champion that serves a day, checked against the current code, and the scheduled retrain.

The champion of a dataset and task (stacking/registry.py) serves a day when it has a model for it (a
meta fold whose test window holds the day) and nothing it serves with would be made differently by the
current code: its own Trishula code, the extractors it reads and the backfill code of their store rows
(`stacking.lineage.stale_lineage`). Otherwise the scheduled retrain (`daily.retrain=auto`: the main
job's extractor, backfill and Trishula stages with the current code) makes a challenger, promoted by
the rule, and a champion whose code no longer exists gives way to the current code's challenger unless
that is worse by more than the margin (`replace_stale`). With `daily.retrain=skip` the day stops: no
model (exit 4) or stale lineage (exit 8), naming the run, the extractor version or the store rows, the
code that changed and the command that rebuilds them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from backfill import run_backfill
from cli import Exit, Stop
from features.build import FeatureFrames
from splits.artifacts import folds_from_config
from stacking.lineage import StaleInput, library_changes, replace_stale, stale_lineage, task_scope
from stacking.registry import PromotionDecision, Registry
from stacking.run import StackRun, run_stack
from stacking.serving import ServedRun
from store.extractors import list_extractors
from store.feature_store import FeatureStore

REBUILD = "`python daily.py daily.retrain=only` (or `python pipeline.py`)"


@dataclass(frozen=True)
class ChampionSettings:
    stack_root: Path
    artifacts_dir: Path   # the extractors under <artifacts_dir>/extractors
    store_root: Path
    scope: str            # the registry scope: the dataset and the task
    retrain: str          # auto | skip | only

    @classmethod
    def from_config(cls, cfg: DictConfig, dataset: str, retrain: str) -> ChampionSettings:
        return cls(Path(cfg.stack.root), Path(cfg.paths.artifacts_dir), Path(cfg.store.root),
                   task_scope(cfg, dataset), retrain)


def load_champion(settings: ChampionSettings) -> tuple[Registry, ServedRun | None]:
    registry = Registry(settings.stack_root, settings.scope)
    champion = registry.champion()
    if champion is None or not registry.has_run(champion["run_id"]):
        return registry, None
    return registry, ServedRun.load(registry, champion["run_id"])


def stale_inputs(settings: ChampionSettings, run_meta: dict, dataset: str) -> list[StaleInput]:
    """What a run serves with that the current code would make differently: the run, the extractors it was
    trained on and their store rows (`stacking.lineage.stale_lineage`)."""
    artifacts = {a.version: a.meta for a in list_extractors(settings.artifacts_dir / "extractors")}
    return stale_lineage(run_meta, artifacts, FeatureStore(settings.store_root), dataset)


def serving_champion(settings: ChampionSettings, dataset: str, day: pd.Timestamp, retrain: Callable[[], StackRun],
                     console: Console) -> tuple[ServedRun, bool]:
    """The champion that serves `day`, and whether a retrain (`retrain()`, the main job's stages) made it."""
    registry, run = load_champion(settings)
    if run is None:
        raise Stop(Exit.NO_CHAMPION, f"no eligible champion for dataset {dataset} and this task (scope "
                                     f"{registry.scope}) under {settings.stack_root}: run `python pipeline.py` with "
                                     f"the same data and config first")
    changes = library_changes(run.meta)
    if changes:
        console.print(f"[yellow]the champion {run.run_id} was made with other library versions ({', '.join(changes)})"
                      f": its code is the current one, its numbers may differ from what this install makes[/]",
                      soft_wrap=True)
    stale = stale_inputs(settings, run.meta, dataset)
    if run.fold_for(day) is not None and not stale:
        return run, False
    if settings.retrain == "skip":
        if run.fold_for(day) is None:
            raise Stop(Exit.NO_MODEL, f"the champion {run.run_id} has no model for {day.date()} (its last test window "
                                      f"ends {run.folds[-1].test_end.date()}): a new fold's retrain is due "
                                      f"(daily.retrain=only, or python pipeline.py)")
        raise Stop(Exit.STALE_LINEAGE, f"stale lineage: {_named(stale)}; the champion {run.run_id} serves with it, "
                                       f"so the current code would not make these signals. Rebuild what is stale "
                                       f"with {REBUILD}; nothing served")
    why = (f"{day.date()} is past the champion's folds" if run.fold_for(day) is None else
           f"the champion's lineage is stale: the {stale[0].source} code of {stale[0].artifact} changed")
    console.rule(f"scheduled retrain: {why}")
    replace_stale_champion(settings, registry, retrain().decision, dataset)
    registry, run = load_champion(settings)
    if run.fold_for(day) is None:
        raise Stop(Exit.NO_MODEL, f"after the retrain the champion {run.run_id} still has no model for {day.date()}: "
                                  f"the challenger was not promoted (see the promotion log)")
    stale = stale_inputs(settings, run.meta, dataset)
    if stale:
        raise Stop(Exit.STALE_LINEAGE, f"after the retrain the champion {run.run_id} still serves with stale "
                                       f"lineage: {_named(stale)}: the current code's challenger was not promoted "
                                       f"(see the promotion log in {registry.state_path}); nothing served")
    return run, True


def replace_stale_champion(settings: ChampionSettings, registry: Registry, decision: PromotionDecision,
                           dataset: str) -> None:
    """After a retrain whose challenger the rule kept out: the current code's challenger replaces a champion
    whose lineage is stale unless it is worse by more than the margin (`replace_stale`). run_stack judges
    what run.json records (the run's own code, the backfill code of its store rows); only the artifacts
    record their extractors' code, so an extractor-only change (train.py) is judged here."""
    if decision.promoted or decision.champion in (None, decision.challenger) or not registry.has_run(decision.champion):
        return
    if stale_inputs(settings, registry.run_meta(decision.challenger), dataset):
        return
    replaced = replace_stale(decision, stale_inputs(settings, registry.run_meta(decision.champion), dataset))
    if replaced.promoted:
        registry.record(replaced)


def retrain(cfg: DictConfig, frames: FeatureFrames, out: Path, console: Console) -> StackRun:
    """The scheduled retrain: the main job's extractor, backfill and Trishula stages on `frames`, with the
    current code (content keys hold the source hashes: whatever old code made is made again)."""
    from pipeline import extractor_folds, train_stage  # the main job's stages, not a copy

    longest = max(frames.horizons)
    evaluated = folds_from_config(frames.daily, cfg.split, longest)
    all_folds = folds_from_config(frames.daily, {**OmegaConf.to_container(cfg.split), "first_test_date": None,
                                                 "last_test_date": None}, longest)
    in_use = train_stage(cfg, frames, extractor_folds(cfg, evaluated, all_folds), out)
    artifacts = [a for kind in in_use for a in in_use[kind]]
    run_backfill(cfg, frames, artifacts, artifacts, frames.dataset, out=console)
    return run_stack(cfg, frames, console, out, among={k: [a.version for a in v] for k, v in in_use.items()})


def _named(stale: list[StaleInput]) -> str:
    return str(stale[0]) + (f" (and {len(stale) - 1} more stale input(s))" if len(stale) > 1 else "")
