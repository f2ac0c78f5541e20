"""What every command shares (cli/): help that says what it does, one line on bad input, a kept log."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import ROOT, SAMPLE


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("script", "opening"), [
    ("pipeline.py", "The main job: the whole walk-forward"),
    ("train.py", "Train one extractor (model=lstm | tcn)"),
    ("embed.py", "Backfill trained extractors' embeddings"),
    ("stack.py", "Train the Trishula meta-learner"),
    ("daily.py", "Daily operation: serve the day"),
])
def test_help_says_what_the_command_does(script, opening):
    done = _run(script, "--help", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(opening)
    assert "== Configuration groups ==" in done.stdout and "backtest: ranked, trailing_j" in done.stdout


def test_a_csv_gets_one_line_naming_the_file_and_leaves_no_empty_run(tmp_path):
    csv = tmp_path / "bars.csv"
    pd.read_parquet(SAMPLE / "hourly.parquet").head(100).to_csv(csv, index=False)
    run_dir = tmp_path / "run"
    done = _run("pipeline.py", f"data.hourly_path={csv}", f"hydra.run.dir={run_dir}",
                f"paths.artifacts_dir={tmp_path / 'art'}")
    assert done.returncode == 2
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert str(csv) in line and "not a Parquet file" in line and "freqtrade data folder" in line
    assert not run_dir.exists()  # nothing was written: no empty run folder is left behind


def test_a_run_keeps_what_it_printed_in_its_log(tmp_path):
    run_dir = tmp_path / "run"
    done = _run("pipeline.py", "pipeline.until=data", f"hydra.run.dir={run_dir}",
                f"paths.artifacts_dir={tmp_path / 'art'}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    log = (run_dir / "pipeline.log").read_text()
    assert "data plane written to" in log and log.strip().splitlines()[-1] in done.stdout
    assert (run_dir / "daily_features.parquet").is_file()
