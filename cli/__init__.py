"""What every command shares: its console and time-stamped log, its exit codes, and how it ends.

- `console`: one Rich console for every command's output; once the run starts, each print is also
  appended to the run's log (`<run dir>/<command>.log`, Hydra's), each line stamped with the UTC time;
- `command(main)`: wraps a Hydra main. A deliberate stop (`Stop`, cli/exits.py) prints its one line and
  exits with its code; bad input (a file, symbol, value or config key the project refuses: the
  project's own errors, a missing file, a bad config value) prints the one-line message and exits 2;
  anything else is a bug: its traceback goes to the terminal and the log, exit 1, never reported as
  bad input (`TRISHULA_TRACEBACK=1` shows the traceback of bad input too). A config typo (an unknown
  key, a missing group option, a `+key=` addition to a block whose keys are fixed) is one line and
  exit 2 before anything runs. A run that fails before printing or writing anything leaves no run
  folder behind; one that got further keeps its log, with the error as its last line;
- `quiet_libraries`: Dask's own INFO logging off (warnings and errors still show).
"""

from __future__ import annotations

import functools
import linecache
import os
import shutil
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException
from rich.markup import escape

from cli.console import console, errors
from cli.exits import MEANING, Exit, Stop, exit_code_lines

__all__ = ["MEANING", "Exit", "Stop", "command", "console", "errors", "exit_code_lines"]

ROOT = Path(__file__).resolve().parents[1]
# Blocks whose keys pass through to a library as they are (Lightning's Trainer, LightGBM's parameters):
# `+key=` may add to them. Every other block's keys are the project's own, so an addition is a typo.
OPEN_BLOCKS = ("trainer.", "stack.lgbm.", "hydra.")


def command(main: Callable[[DictConfig], None]) -> Callable[[DictConfig], None]:
    """`main` run as a command: exit codes as cli/exits.py has them, the console kept in the run's log."""
    _report_config_errors_in_one_line()

    @functools.wraps(main)
    def run(cfg: DictConfig) -> None:
        quiet_libraries()
        _attach_log()
        try:
            check_additions(HydraConfig.get().overrides.task if HydraConfig.initialized() else [])
            main(cfg)
        except Stop as stop:
            _fail(stop.code, str(stop))
        except BaseException as err:
            if isinstance(err, SystemExit) and err.code in (0, None):
                _tidy(remove=False)
                raise
            if not is_bad_input(err) or os.environ.get("TRISHULA_TRACEBACK"):
                silent = console.logged_lines == 0
                console.stamp(traceback.format_exc().rstrip())
                _tidy(remove=silent)
                raise
            _fail(Exit.BAD_INPUT, str(err))
        _tidy(remove=False)

    return run


def quiet_libraries() -> None:
    """Dask's scheduler and workers log every start, stop and connection at INFO (some 150 lines for one
    `stack.backend=dask` run): warnings and errors only. Set before Dask is imported, here and in the worker
    processes it spawns (they read the environment)."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")


def is_bad_input(err: BaseException) -> bool:
    """A config error, a missing file, or a ValueError the project raised on purpose (a `raise` of its own
    check, with a message naming what is wrong). A ValueError from inside a library (pandas, numpy, ...) or
    from a builtin the project called (`int("abc")`) is a bug."""
    if isinstance(err, FileNotFoundError | OmegaConfBaseException):
        return True
    return isinstance(err, ValueError) and _raised_by_project(err)


def _raised_by_project(err: BaseException) -> bool:
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    path = Path(tb.tb_frame.f_code.co_filename).resolve()
    if not path.is_relative_to(ROOT) or any(part in (".venv", "site-packages") for part in path.parts):
        return False
    return linecache.getline(str(path), tb.tb_lineno).lstrip().startswith("raise")


def check_additions(overrides: list[str]) -> None:
    """A `+key=value` addition outside OPEN_BLOCKS names a key no code reads (`+backtest.book.quantil=0.1`):
    refused before anything runs, not after the earlier stages ran."""
    for override in overrides:
        if override.startswith("+"):
            key = override.lstrip("+").split("=", 1)[0]
            if not key.startswith(OPEN_BLOCKS):
                raise Stop(Exit.BAD_INPUT, f"{override}: adds the key {key}, which no code reads (only "
                                           f"{', '.join(b.rstrip('.') for b in OPEN_BLOCKS[:-1])} take new keys); "
                                           f"a typo? --help lists the config")


def _fail(code: Exit, message: str) -> None:
    errors.print(f"[bold red]error[/]: {escape(message)}", soft_wrap=True)
    silent = console.logged_lines == 0
    console.stamp(f"error (exit {int(code)}): {message}", soft_wrap=True)
    _tidy(remove=silent)
    sys.exit(int(code))


def _attach_log() -> None:
    if not HydraConfig.initialized():
        return
    hydra = HydraConfig.get()
    log = Path(hydra.runtime.output_dir) / f"{hydra.job.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    console.attach(log)


def _tidy(remove: bool) -> None:
    """Close the run's log; `remove`: a run that failed before printing anything goes, folder and all, when
    the folder holds no output (its log would say only the error the terminal showed)."""
    console.detach()
    if not HydraConfig.initialized():
        return
    hydra = HydraConfig.get()
    run_dir = Path(hydra.runtime.output_dir)
    if remove and _holds_no_output(run_dir, run_dir / f"{hydra.job.name}.log"):
        shutil.rmtree(run_dir, ignore_errors=True)


def _holds_no_output(run_dir: Path, log: Path) -> bool:
    """Only Hydra's own files (its config folder and the log) are in the run folder."""
    if not run_dir.is_dir():
        return False
    return all(p == log or p.name == ".hydra" for p in run_dir.iterdir())


def _report_config_errors_in_one_line() -> None:
    """Hydra reports a bad override (an unknown key, a group option that does not exist, a parse error) in
    several lines, with a hint to add the key with `+`, and exits 1; a command reports it in one line and
    exits 2. Hydra composes the config inside its `run_and_report`, before any command code runs: the
    errors of composition are caught inside it, everything else goes on to Hydra's own report."""
    import hydra._internal.utils as hydra_utils

    report = hydra_utils.run_and_report
    if getattr(report, "one_line_config_errors", False):
        return

    def run_and_report(func):
        return report(lambda: _config_errors_in_one_line(func))

    run_and_report.one_line_config_errors = True
    hydra_utils.run_and_report = run_and_report


def _config_errors_in_one_line(func):
    try:
        return func()
    except (ConfigCompositionException, OverrideParseException) as err:
        if os.environ.get("TRISHULA_TRACEBACK"):
            raise
        errors.print(f"[bold red]error[/]: config: {escape(config_error_line(err))}", soft_wrap=True)
        sys.exit(int(Exit.BAD_INPUT))


def config_error_line(err: Exception) -> str:
    """Hydra's message and its cause on one line, without Hydra's `+key` hint (which would add the typo) or
    the search path."""
    text = str(err).split("Config search path")[0]
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith("To append to your config use")]
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException):
        lines.append(str(cause).splitlines()[0].strip())
    return " ".join(lines) + "; --help lists the config"
