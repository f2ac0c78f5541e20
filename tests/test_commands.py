"""What every command shares (cli/): help that says what it does, exit codes that mean one thing each (listed
in --help and the README), one line on bad input or a config typo, a bug never reported as bad input, a kept
log with a time on every line."""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest

from cli import Exit, Stop, command, exit_code_lines, is_bad_input
from tests.conftest import ROOT, SAMPLE

STAMP = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\] ")


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


def test_a_run_keeps_what_it_printed_in_its_log_each_line_timed(tmp_path):
    run_dir = tmp_path / "run"
    done = _run("pipeline.py", "pipeline.until=data", f"hydra.run.dir={run_dir}",
                f"paths.artifacts_dir={tmp_path / 'art'}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    log = (run_dir / "pipeline.log").read_text().strip().splitlines()
    assert log and all(STAMP.match(line) for line in log)
    assert "data plane written to" in log[-1] and STAMP.sub("", log[-1]) in done.stdout
    assert (run_dir / "daily_features.parquet").is_file()
    # The console says what the data plane built in a line or two; the feature table is a file of the run.
    assert len(done.stdout.splitlines()) < 40 and "Features (share missing" not in done.stdout
    assert (run_dir / "features.txt").read_text().count("\n") > 50


@pytest.mark.parametrize(("script", "codes"), [
    ("daily.py", tuple(code for code in Exit if code != Exit.EXCHANGE)),
    ("fetch.py", (Exit.OK, Exit.UNEXPECTED, Exit.BAD_INPUT, Exit.EXCHANGE)),
])
def test_help_and_readme_list_the_exit_codes(script, codes):
    done = _run(script, "--help", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    helped = [line.strip() for line in done.stdout.splitlines()]
    readme = (ROOT / "README.md").read_text()
    for line in exit_code_lines(codes):
        assert line in helped
        code, meaning = line.split(" ", 1)
        assert f"| {code} | {meaning} |" in readme


@pytest.mark.parametrize(("args", "message"), [
    (("daily.py", "daily.catchup=false"), "error: config: Could not override 'daily.catchup'. Key 'catchup' is not "
                                          "in struct"),
    (("pipeline.py", "backtest=rankd"), "error: config: In 'pipeline': Could not find 'backtest/rankd' Available "
                                        "options in 'backtest': ranked trailing_j"),
    (("pipeline.py", "+backtest.book.quantil=0.1"), "error: +backtest.book.quantil=0.1: adds the key "
                                                    "backtest.book.quantil, which no code reads"),
])
def test_a_config_typo_is_one_line_and_exit_2_before_anything_runs(tmp_path, args, message):
    run_dir = tmp_path / "run"
    done = _run(*args, f"hydra.run.dir={run_dir}", f"paths.artifacts_dir={tmp_path / 'art'}", timeout=120)
    assert done.returncode == 2
    assert done.stdout == "" and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(message)
    assert "To append to your config use" not in line  # Hydra's hint would add the typo
    assert not run_dir.exists() and not (tmp_path / "art").exists()


def _library_error(cfg):
    int("twelve")  # a builtin's ValueError where the project did not expect one: a bug


def _project_check(cfg):
    raise ValueError("data.hourly_path: not a bar file")


def _stop(cfg):
    raise Stop(Exit.MISSED_DAYS, "2023-12-19 missed")


def test_a_bug_is_not_reported_as_bad_input(capsys):
    """Only the project's own checks are bad input (exit 2, one line); any other error is a bug, raised with its
    traceback (exit 1 through Hydra); a deliberate stop exits with its own code."""
    with pytest.raises(ValueError, match="invalid literal for int"):
        command(_library_error)(None)
    with pytest.raises(SystemExit) as bad:
        command(_project_check)(None)
    assert bad.value.code == 2 and "error: data.hourly_path: not a bar file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        command(_stop)(None)
    assert stop.value.code == 10 and "error: 2023-12-19 missed" in capsys.readouterr().err
    with pytest.raises(ValueError) as pandas_error:
        pd.Series([1, 2]).reindex([0, 0]).reindex([1])  # raised inside pandas
    assert not is_bad_input(pandas_error.value)
    assert is_bad_input(FileNotFoundError("data/x.parquet: no such file"))
