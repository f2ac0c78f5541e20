"""Shared fixtures: the shipped real sample, ../shared/data where it exists, and a copy of the source that
stands for a code change."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from marketdata import apply_gap_policy, daily_from_hourly, load_fear_greed, load_hourly

RUNNABLE = "<!-- runnable"

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def sample_hourly_raw() -> pd.DataFrame:
    """The shipped sample as stored (validated), before the gap policy."""
    return load_hourly(SAMPLE / "hourly.parquet")


@pytest.fixture(scope="session")
def sample_fear_greed() -> pd.DataFrame:
    return load_fear_greed(SAMPLE / "fear_greed.parquet")


@pytest.fixture(scope="session")
def sample_grid(sample_hourly_raw) -> pd.DataFrame:
    return apply_gap_policy(sample_hourly_raw)


@pytest.fixture(scope="session")
def sample_daily(sample_grid) -> pd.DataFrame:
    return daily_from_hourly(sample_grid)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED / "hourly.parquet").is_file():
        pytest.skip("../shared/data is not present")
    return SHARED


def compose(*overrides: str, config_name: str = "pipeline"):
    """The project's Hydra config as the main job (or `config_name`'s command) sees it, with command-line style
    overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


# The daily-run tests' walk-forward: short, retrained every 4th fold, so the sample's last weeks hold a retrain.
DAILY_WALK_FORWARD = ("split.first_test_date=2023-11-20", "pipeline.retrain_every_folds=4", "trainer.max_epochs=1",
                      "stack.lgbm.n_estimators=80")


def main_job_until_stack(run_dir: Path, artifacts: Path, hourly: Path, *overrides: str) -> str:
    """pipeline.py up to the stack in its own process, on the bars of `hourly` with DAILY_WALK_FORWARD; its
    stdout (the run must succeed)."""
    done = subprocess.run(
        [sys.executable, "pipeline.py", f"hydra.run.dir={run_dir}", f"paths.artifacts_dir={artifacts}",
         f"data.hourly_path={hourly}", "pipeline.until=stack", *overrides, *DAILY_WALK_FORWARD],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="session")
def cfg():
    return compose()


@pytest.fixture
def source_copy(tmp_path, monkeypatch):
    """A copy of the repo's source, which `store.lineage` hashes instead of the real one: a test edits it to
    stand for a code change, and every source hash (run keys, recorded lineage, the checks) follows."""
    import store.lineage as lineage

    root = tmp_path / "source"
    for part in {p for parts in lineage.SOURCES.values() for p in parts}:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, root / part, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        else:
            (root / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, root / part)
    monkeypatch.setattr(lineage, "ROOT", root)
    return root


# The SPEC's absolute labels (±3/5/7/10 % simple returns), for tests written against their meaning;
# the default labels are relative and volatility-scaled (conf/labels/default.yaml).
ABSOLUTE_LABELS = ("labels.target=absolute", "labels.threshold_scale=fixed", "labels.thresholds.label_1d=0.03",
                   "labels.thresholds.label_3d=0.05", "labels.thresholds.label_7d=0.07",
                   "labels.thresholds.label_14d=0.10")


def readme_commands() -> list[tuple[bool, list[str]]]:
    """Each `python <script>.py ...` line of the README's bash blocks as (its block is marked runnable,
    the command's words without the comment): the docs' commands, for tests that keep them true."""
    lines = (ROOT / "README.md").read_text().splitlines()
    commands, runnable, inside = [], False, False
    for previous, line in zip(["", *lines], lines, strict=False):
        if line.startswith("```"):
            inside = line.strip() == "```bash"
            runnable = inside and previous.startswith(RUNNABLE)
            continue
        words = line.split("#", 1)[0].split()
        if inside and len(words) >= 2 and words[0] == "python" and words[1].endswith(".py"):
            commands.append((runnable, words[1:]))
    return commands
