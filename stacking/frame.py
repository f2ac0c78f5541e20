"""The meta-learner's frame: one row per (symbol, day), assembled point in time from the store.

A decision row is a symbol's daily bar d. Its decision time is the bar's close (d + 1 day, 00:00
UTC): everything on the row is known then. It carries the tabular and regime features of day d
(built point in time by `features/`), and for each extractor kind the outputs the store's as-of rule
allows at that decision time (`FeatureStore.read_asof`): the embedding, the probabilities (softmax
of the stored raw logits, taken once, in the read), the score P(buy) - P(sell) made of them, and the
lineage (version, fold, eligible_from). Labels and forward returns are joined for training and
evaluation only; they are never features.

Rows no extractor output is eligible for are kept by `assemble_stack_frame` (with NaN outputs)
and dropped by the caller; a value is never filled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from features.build import FeatureFrames
from features.labels import CLASS_NAMES
from stacking.signals import signal_score
from store.feature_store import FeatureStore, InSampleReadError

DAY = pd.Timedelta(days=1)
# Evaluation ranks the signal against the forward 3-day return whatever the training label (SPEC §8).
EVALUATION_RETURN = "fwd_ret_3d"
PROBABILITY_SUFFIXES = tuple(f"p_{name.lower()}" for name in CLASS_NAMES)
# What of each extractor's outputs the meta-learner reads (stack.extractor_inputs): its three class
# probabilities, or its score P(buy) - P(sell) (`<kind>_score`), the one number its own signal and
# the blend of the parts rank by.
EXTRACTOR_INPUTS = {"probabilities": PROBABILITY_SUFFIXES, "score": ("score",)}
# Trishula's inputs under a ranking objective (models.trishula.TrishulaRanker): the `rank_objective` ablation.
RANK_OBJECTIVE_MODEL = "trishula_rank_objective"
# The ranking objective's target: the forward return's percentile rank among the day's coins.
RETURN_RANK = "fwd_ret_3d_day_rank"
# Targets aimed at the extremes the book is paid (issue 32), made per training window from the forward return
# (never inputs): TAILS classes the day's bottom fifth SELL, top fifth BUY, the rest HOLD; VOL_SCALED is the
# return less the day's mean over the coin's 30-day volatility (`volatility_30d`, known at the decision),
# clipped to +-VOL_SCALED_CLIP; BETA_RESIDUAL_RANK is the day rank of the return less `beta_30d` x the day's
# mean return (the market's part of each coin's move taken out by its own trailing beta).
TAILS = "fwd_ret_3d_tails"
VOL_SCALED = "fwd_ret_3d_vol_scaled"
BETA_RESIDUAL_RANK = "fwd_ret_3d_beta_residual_rank"
VOL_SCALED_CLIP = 5.0
# The relevance lambdarank learns, each end on its own: the return's day quintile 0..4 (QUINTILE_UP: the top
# is relevant) and 4..0 (QUINTILE_DOWN: the bottom is; its part's score is the negated prediction, SCORE_SIGN).
QUINTILE_UP = "fwd_ret_3d_quintile"
QUINTILE_DOWN = "fwd_ret_3d_quintile_reversed"
LAMBDARANK_TARGETS = (QUINTILE_UP, QUINTILE_DOWN)
SCORE_SIGN = {QUINTILE_DOWN: -1.0}
# The targets a LightGBM regression learns (lambdarank's are relevances; the others are classes).
REGRESSION_TARGETS = (RETURN_RANK, VOL_SCALED, BETA_RESIDUAL_RANK)
# Further parts of the blend (stack.extra_parts) -> the target each learns: the tabular model's inputs and
# LightGBM, classifying another horizon's label or the tails, a regression of a REGRESSION_TARGETS one, or
# lambdarank of one end of the day.
EXTRA_PARTS = {"tabular_1d": "label_1d", "tabular_7d": "label_7d", "tabular_rank": RETURN_RANK,
               "tabular_tails": TAILS, "tabular_vol_scaled": VOL_SCALED, "tabular_beta_residual": BETA_RESIDUAL_RANK,
               "tabular_lambdarank_top": QUINTILE_UP, "tabular_lambdarank_bottom": QUINTILE_DOWN}
# Targets made in the window from the forward return and these raw (not day-ranked) inputs.
WINDOW_TARGETS = (RETURN_RANK, TAILS, VOL_SCALED, BETA_RESIDUAL_RANK, *LAMBDARANK_TARGETS)


def model_target(name: str, label: str) -> str:
    """The column model `name` learns: the return's day rank (the ranking objective's models), an extra part's
    own label, or the primary `label`."""
    return RETURN_RANK if name == RANK_OBJECTIVE_MODEL else EXTRA_PARTS.get(name, label)


def window_targets(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` (one training window, raw inputs) with the `WINDOW_TARGETS` columns, each made within each day from
    the 3-day forward return (NaN where the return, or the input a target scales by, is missing)."""
    by_day = rows.groupby("date", sort=False)[EVALUATION_RETURN]
    day_mean = by_day.transform("mean")
    rank = by_day.rank(pct=True)
    tails = np.select([rank <= 0.2, rank > 0.8], [0.0, 2.0], default=1.0)
    quintile = np.ceil(rank * 5) - 1  # 0..4 (a percentile rank lies in (0, 1])
    volatility = rows["volatility_30d"].where(rows["volatility_30d"] > 0)
    residual = rows[EVALUATION_RETURN] - rows["beta_30d"] * day_mean
    return rows.assign(**{
        RETURN_RANK: rank,
        TAILS: np.where(rank.notna(), tails, np.nan),
        VOL_SCALED: ((rows[EVALUATION_RETURN] - day_mean) / volatility).clip(-VOL_SCALED_CLIP, VOL_SCALED_CLIP),
        BETA_RESIDUAL_RANK: residual.groupby(rows["date"], sort=False).rank(pct=True),
        QUINTILE_UP: quintile,
        QUINTILE_DOWN: 4 - quintile,
    })


def blend_members(kinds: Sequence[str], extra_parts: Sequence[str] = ()) -> list[str]:
    """The parts whose day ranks `blend_parts` averages with equal weights: tabular, the extra parts, each kind."""
    return ["tabular", *extra_parts, *kinds]


class MixedVersionsError(ValueError):
    """The frame mixes extractor versions of one kind and the config did not allow it."""


def feature_sets(
    frames: FeatureFrames, kinds: Sequence[str], embedding_columns: Mapping[str, Sequence[str]],
    ablations: Sequence[str] = (), *, embeddings: bool, extractor_inputs: str = "probabilities",
    regime_inputs: bool = True, extra_parts: Sequence[str] = (),
) -> dict[str, list[str]]:
    """The feature list of each trained model: tabular-only, the extra parts of the blend (the tabular inputs;
    EXTRA_PARTS), Trishula (tabular + extractor outputs) and its ablations, named `trishula_<ablation>`.

    The regime inputs are market-wide context, in all (with `regime_inputs`; they are the same for every
    coin of a day). The extractor part is, per kind, the read-time probabilities (not the logits: one
    transform, done in the read) or the score made of them (`extractor_inputs`) and, with `embeddings`,
    every embedding column. `no_embeddings` (when Trishula reads them) or `with_embeddings` (when it does
    not) flips that; `no_<kind>` leaves that extractor out; `rank_objective` keeps Trishula's inputs and
    changes its objective (RANK_OBJECTIVE_MODEL: a regression of the return's day rank).
    """
    flip = "no_embeddings" if embeddings else "with_embeddings"
    known = [flip, *(f"no_{kind}" for kind in kinds), "rank_objective"]
    unknown = [ablation for ablation in ablations if ablation not in known]
    if unknown:
        raise ValueError(f"stack.ablations {unknown} unknown: each is one of {known}")
    unknown_parts = [part for part in extra_parts if part not in EXTRA_PARTS]
    if unknown_parts:
        raise ValueError(f"stack.extra_parts {unknown_parts} unknown: each is one of {list(EXTRA_PARTS)}")
    if extractor_inputs not in EXTRACTOR_INPUTS:
        raise ValueError(f"stack.extractor_inputs must be one of {sorted(EXTRACTOR_INPUTS)}, got {extractor_inputs!r}")
    suffixes = EXTRACTOR_INPUTS[extractor_inputs]
    tabular = [*frames.columns["tabular"], *(frames.columns["regime"] if regime_inputs else ())]

    def extractor(used_kinds: Sequence[str], with_embeddings: bool) -> list[str]:
        return [
            column
            for kind in used_kinds
            for column in (
                *(embedding_columns[kind] if with_embeddings else ()),
                *(f"{kind}_{suffix}" for suffix in suffixes),
            )
        ]

    sets = {"tabular": tabular, **{part: list(tabular) for part in extra_parts},
            "trishula": tabular + extractor(kinds, embeddings)}
    for ablation in ablations:
        if ablation == flip:
            sets[f"trishula_{ablation}"] = tabular + extractor(kinds, not embeddings)
        elif ablation == "rank_objective":
            sets[RANK_OBJECTIVE_MODEL] = list(sets["trishula"])
        else:
            sets[f"trishula_{ablation}"] = tabular + extractor([k for k in kinds if k != ablation[3:]], embeddings)
    return sets


def configured_feature_sets(
    frames: FeatureFrames, kinds: Sequence[str], store: FeatureStore, stack_cfg: Mapping, ablations: Sequence[str] = (),
) -> dict[str, list[str]]:
    """`feature_sets` with the stack config's input choices (embeddings, extractor_inputs, regime_inputs,
    extra_parts) and the store's embedding columns."""
    return feature_sets(frames, kinds, {kind: store.embedding_columns(kind) for kind in kinds}, ablations,
                        embeddings=stack_cfg["embeddings"], extractor_inputs=stack_cfg["extractor_inputs"],
                        regime_inputs=stack_cfg["regime_inputs"], extra_parts=stack_cfg.get("extra_parts", ()))


def additive_inputs(features: Mapping[str, Sequence[str]]) -> list[str]:
    """The extractor outputs among the models' inputs: every column of any model that the tabular model
    (the tabular and regime inputs) lacks."""
    tabular = set(features["tabular"])
    return [c for c in dict.fromkeys(c for columns in features.values() for c in columns) if c not in tabular]


INPUT_MODES = ("raw", "day_rank")


def ranked_inputs(features: Mapping[str, Sequence[str]], frames: FeatureFrames, mode: str) -> list[str]:
    """The model inputs `stack.inputs` replaces by their per-day ranks: none (raw), or every one but the
    regime inputs (day_rank), which are market-wide: one value a day, whose rank would be a constant."""
    if mode not in INPUT_MODES:
        raise ValueError(f"stack.inputs must be one of {INPUT_MODES}, got {mode!r}")
    if mode == "raw":
        return []
    regime = set(frames.columns["regime"])
    return [c for c in dict.fromkeys(c for columns in features.values() for c in columns) if c not in regime]


def day_ranks(rows: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """`rows` with `columns` replaced by their percentile rank among the same day's rows (NaN stays NaN).

    A rank reads only its own day's rows, all known at that day's close: point in time. It means the
    same whichever extractor version or market state made the values."""
    if not columns:
        return rows
    ranked = rows.copy()
    ranked[list(columns)] = rows.groupby("date", sort=False)[list(columns)].rank(pct=True)
    return ranked


def decision_rows(frames: FeatureFrames, label: str) -> pd.DataFrame:
    """Daily rows with features, every built label (the extra parts learn other horizons') and the forward
    returns; `date` is the bar's day, `decision_time` its close."""
    daily = frames.daily
    if label not in daily.columns or EVALUATION_RETURN not in daily.columns:
        raise ValueError(
            f"the stack needs the label {label!r} and the 3-day forward return (labels.thresholds.label_3d) "
            f"that evaluation ranks against; built: {frames.label_columns}"
        )
    # The factor baselines ride along for evaluation (scored on the same rows); they are no model input.
    columns = list(dict.fromkeys([*frames.columns["tabular"], *frames.columns["regime"],
                                  *frames.columns.get("factors", ())]))
    targets = list(dict.fromkeys([label, *(c for c in frames.label_columns if c in daily.columns),
                                  EVALUATION_RETURN]))
    rows = daily[["symbol", "ts", *columns, *targets]].rename(columns={"ts": "date"})
    rows.insert(2, "decision_time", rows["date"] + DAY)
    return rows.reset_index(drop=True)


def assemble_stack_frame(
    rows: pd.DataFrame,
    store: FeatureStore,
    kinds: Sequence[str],
    *,
    pinned: Mapping[str, str] | None = None,
    allow_mixed_versions: bool = False,
    max_staleness_hours: float = 1.0,
    among: Mapping[str, Sequence[str]] | None = None,
    dataset: str | None = None,
) -> pd.DataFrame:
    """`rows` joined with each kind's point-in-time outputs.

    pinned: kind -> version to read (InSampleReadError for a row that version is not out of sample
    for); the other kinds take, per row, the newest eligible version. A frame whose rows read more
    than one version of a kind is refused unless `allow_mixed_versions` says the caller means it.
    among: kind -> the versions to consider (None: every version in the store).
    dataset: read only rows made from this data lineage (None: any; `run_stack` always passes it).
    """
    pinned = dict(pinned or {})
    frame = rows
    for kind in kinds:
        frame = store.read_asof(frame, kind, version=pinned.get(kind), max_staleness_hours=max_staleness_hours,
                                among=None if among is None else among.get(kind), dataset=dataset)
        check_out_of_sample(frame, kind)
        frame[f"{kind}_score"] = signal_score(frame[[f"{kind}_{suffix}" for suffix in PROBABILITY_SUFFIXES]].to_numpy())
        versions = frame[f"{kind}_version"].dropna().unique()
        if len(versions) > 1 and not allow_mixed_versions:
            raise MixedVersionsError(
                f"the {kind} outputs of this frame come from {len(versions)} extractor versions "
                f"({', '.join(sorted(map(str, versions))[:4])}{', ...' if len(versions) > 4 else ''}); "
                f"set stack.allow_mixed_versions=true to stack the newest eligible version per row, "
                f"or pin one with stack.pinned_versions.{kind}=<version>"
            )
    return frame


def check_out_of_sample(frame: pd.DataFrame, kind: str) -> None:
    """Every row's `kind` output must come from an extractor eligible at the row's decision time."""
    eligible = pd.to_datetime(frame[f"{kind}_eligible_from"], utc=True)
    bad = (eligible > frame["decision_time"]).to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InSampleReadError(
            f"{kind} version {frame[f'{kind}_version'].iloc[first]} is in sample for "
            f"{frame['symbol'].iloc[first]} at {frame['decision_time'].iloc[first]} "
            f"(eligible from {eligible.iloc[first]}); {int(bad.sum())} row(s) refused"
        )


def complete_rows(frame: pd.DataFrame, kinds: Sequence[str]) -> np.ndarray:
    """Rows that hold every kind's outputs (boolean mask)."""
    present = np.ones(len(frame), dtype=bool)
    for kind in kinds:
        present &= frame[f"{kind}_version"].notna().to_numpy()
    return present
