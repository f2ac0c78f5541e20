"""An experiment's plan, fixed before its run, and the adoption rule it is judged by (issue 32's Decisions).

An experiment folder (`benchmarks/results/experiments/<n>_<name>/`) holds `plan.md` (why, what is expected, in
words) and `candidates.yaml` (what the harness runs), both written before the run; the harness writes
`result.json` and `result.md` beside them and refuses to run where a result exists (a second look takes a
new plan). `candidates.yaml`:

    seeds: [42, 43, 44]            # optional: every entry (the default too) runs once per extractor seed
                                   #   (`seed=<s>` appended to its overrides); its book is the seeds' books
                                   #   with equal capital (the mean daily P&L) and its IC the mean daily IC,
                                   #   so a candidate is judged against the default's seeds, not one draw
    rule:                          # optional: issue 32's rule is the default
      book_t: 2.0                  # the candidate's daily net P&L minus the default's: paired HAC t at least this
      ic_t: -2.0                   # its daily rank IC minus the default's: paired HAC t above this
      half_year_shortfall: 0.05    # no half-year's net return below the default's by more than this
      family: none                 # holm: the candidates' book t's as one family, Holm's step-down at
      alpha: 0.05                  #   a one-sided family-wise alpha (and never below book_t)
    default:                       # optional: the served default
      overrides: []                # Hydra overrides of the pipeline (the stages they change re-run)
      model: trishula              # the score the book trades (any model of the run's predictions)
      book: {}                     # changes to the served book's config (backtest.book)
      blend_parts: null            # [extra parts]: the blend of tabular, these and the extractors, recombined
      anchor: {}                   # changes to stack.anchor (e.g. {objective: spread}): Trishula re-anchored
                                   #   from the run's predictions with them, as the walk-forward anchors
                                   #   from the run's predictions, Trishula re-anchored on it
      decide: true                 # false: a sensitivity, reported beside the others, never adopted
    candidates:
      - name: inverse_vol
        book: {weighting: inverse_vol}
      - name: rank_part
        overrides: ["stack.extra_parts=[tabular_rank]"]

Every paired t uses Newey-West errors with at least 10 lags (`evaluation.statistics.long_hac_lags`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd
import yaml
from scipy.stats import norm
from statsmodels.stats.multitest import multipletests

from evaluation.payoff import half_year
from evaluation.statistics import paired_difference, paired_ic_comparison

PLAN = "plan.md"
CANDIDATES = "candidates.yaml"
RESULT = "result.json"


FAMILIES = ("none", "holm")


@dataclass(frozen=True)
class Rule:
    """Adopted when all three hold, on the same rows and days as the default. `family: holm` tests the
    candidates' book t's as one family: Holm's step-down at a one-sided family-wise `alpha` (normal p-values
    of the HAC t's), and never below `book_t`."""

    book_t: float = 2.0
    ic_t: float = -2.0
    half_year_shortfall: float = 0.05
    family: str = "none"
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"rule.family must be one of {FAMILIES}, got {self.family!r}")


@dataclass(frozen=True)
class Candidate:
    """A score and a book: Hydra overrides of the pipeline, the model whose score is traded, book changes."""

    name: str
    overrides: tuple[str, ...] = ()
    model: str = "trishula"
    book: Mapping[str, object] = field(default_factory=dict)
    # The extra parts of the blend, recombined from the run's predictions (the run trained them: its
    # overrides' stack.extra_parts), with Trishula re-anchored on that blend as the walk-forward anchors it;
    # None: the run's own blend and Trishula.
    blend_parts: tuple[str, ...] | None = None
    # Changes to the run's stack.anchor (objective, grid, ...): Trishula re-anchored with them from the run's
    # predictions (on `blend_parts`' blend, or the run's own); empty: the run's anchor.
    anchor: Mapping[str, object] = field(default_factory=dict)
    # False: scored and reported beside the others (a sensitivity), never adopted nor counted in the family.
    decide: bool = True

    def definition(self) -> dict[str, object]:
        return {"overrides": list(self.overrides), "model": self.model, "book": dict(self.book),
                "blend_parts": None if self.blend_parts is None else list(self.blend_parts),
                "anchor": dict(self.anchor), "decide": self.decide}


@dataclass(frozen=True)
class Plan:
    folder: Path
    rule: Rule
    default: Candidate
    candidates: tuple[Candidate, ...]
    # The extractor seeds every entry runs with, their books and ICs averaged; (): each entry's own one run.
    seeds: tuple[int, ...] = ()


def _candidate(entry: Mapping, where: str) -> Candidate:
    known = {f.name for f in fields(Candidate)}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; a candidate has {sorted(known)}")
    if not isinstance(entry.get("overrides", []), list) or not isinstance(entry.get("book", {}), Mapping) \
            or not isinstance(entry.get("anchor", {}), Mapping):
        raise ValueError(f"{where}: overrides must be a list of key=value strings, book and anchor mappings")
    parts = entry.get("blend_parts")
    return Candidate(name=str(entry["name"]), overrides=tuple(map(str, entry.get("overrides", []))),
                     model=str(entry.get("model", "trishula")), book=dict(entry.get("book", {})),
                     blend_parts=None if parts is None else tuple(map(str, parts)),
                     anchor=dict(entry.get("anchor", {})), decide=bool(entry.get("decide", True)))


def load_plan(folder: Path) -> Plan:
    """The plan in `folder`; refused without plan.md and candidates.yaml, or once a result is written there."""
    folder = Path(folder)
    for name in (PLAN, CANDIDATES):
        if not (folder / name).is_file():
            raise SystemExit(f"{folder}: no {name}; write the plan before the run (see benchmarks/plan.py)")
    if (folder / RESULT).exists():
        raise SystemExit(f"{folder / RESULT} exists: this plan was run; a second look needs a new plan")
    spec = yaml.safe_load((folder / CANDIDATES).read_text()) or {}
    unknown = sorted(set(spec) - {"rule", "default", "candidates", "seeds"})
    if unknown:
        raise ValueError(f"{folder / CANDIDATES}: unknown key(s) {unknown}")
    entries = spec.get("candidates") or []
    if not entries:
        raise ValueError(f"{folder / CANDIDATES}: no candidates")
    candidates = tuple(_candidate(entry, f"{CANDIDATES} candidate {i}") for i, entry in enumerate(entries))
    names = [c.name for c in candidates]
    if len(set(names)) < len(names) or "default" in names:
        raise ValueError(f"{folder / CANDIDATES}: candidate names must be unique and not 'default': {names}")
    seeds = spec.get("seeds") or []
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) \
            or len(set(seeds)) < len(seeds):
        raise ValueError(f"{folder / CANDIDATES}: seeds must be a list of distinct integers, got {seeds!r}")
    default = _candidate({"name": "default", **(spec.get("default") or {})}, "default")
    seeded = [c.name for c in (default, *candidates)
              if seeds and any(o.split("=", 1)[0].lstrip("+~") == "seed" for o in c.overrides)]
    if seeded:
        raise ValueError(f"{folder / CANDIDATES}: {seeded} set seed= in their overrides, and the plan's seeds "
                         "set it for every entry")
    return Plan(folder=folder, rule=Rule(**(spec.get("rule") or {})), default=default, candidates=candidates,
                seeds=tuple(seeds))


def half_year_returns(net: pd.Series) -> pd.Series:
    """Compounded net return per half-year ('2023-H1') of a daily net P&L series."""
    return (1.0 + net).groupby(half_year(net.index)).prod() - 1.0


def compare(rule: Rule, candidate_net: pd.Series, default_net: pd.Series, candidate_ic: pd.Series,
            default_ic: pd.Series) -> dict[str, object]:
    """A candidate against the default on the days both books hold (net P&L) and both scores are ranked (IC):
    the paired figures, and the IC and half-year checks (identical scores, a book change, pass the IC check)."""
    book = paired_difference(candidate_net, default_net)
    ic = paired_ic_comparison(candidate_ic, default_ic)
    common = candidate_net.index.intersection(default_net.index)
    halves = pd.DataFrame({"candidate": half_year_returns(candidate_net.loc[common]),
                           "default": half_year_returns(default_net.loc[common])})
    halves["difference"] = halves["candidate"] - halves["default"]
    checks = {
        "ic": ic["diff_mean"] == 0 or (ic["t_stat_long"] is not None and ic["t_stat_long"] > rule.ic_t),
        "half_years": bool(len(halves)) and bool((halves["difference"] >= -rule.half_year_shortfall).all()),
    }
    return {"book": book, "ic": ic, "half_years": [{"half_year": str(h), **{k: float(v) for k, v in row.items()}}
                                                  for h, row in halves.iterrows()], "checks": checks}


def book_passes(rule: Rule, t_stats: Mapping[str, float | None]) -> dict[str, bool]:
    """Per candidate, whether its book beats the default's: t >= book_t, and with `family: holm` also rejected
    by Holm's step-down over all the candidates (statsmodels' multipletests)."""
    floor = {name: t is not None and t >= rule.book_t for name, t in t_stats.items()}
    if rule.family == "none":
        return floor
    p_values = [1.0 if t is None else float(norm.sf(t)) for t in t_stats.values()]
    rejected = multipletests(p_values, alpha=rule.alpha, method="holm")[0]
    return {name: bool(passed and reject) for (name, passed), reject in zip(floor.items(), rejected, strict=True)}


def decide(rule: Rule, comparisons: dict[str, dict], deciding: list[str]) -> dict[str, object]:
    """Adds each comparison's book check and `adopted` (all checks pass; only the `deciding` candidates, which
    alone form the family); the adopted names and the choice: the adopted candidate whose book beats the
    default at the highest t (None: the default stays)."""
    passes = book_passes(rule, {name: comparisons[name]["book"]["t_stat"] for name in deciding})
    for name, comparison in comparisons.items():
        comparison["checks"] = {"book": passes.get(name, False), **comparison["checks"]}
        comparison["adopted"] = name in passes and all(comparison["checks"].values())
    adopted = [name for name, c in comparisons.items() if c["adopted"]]
    return {"adopted": adopted,
            "choice": max(adopted, key=lambda name: comparisons[name]["book"]["t_stat"], default=None)}
