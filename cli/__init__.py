"""What every command shares: its console, its log file, and how it ends on bad input.

- `console`: one Rich console for every command's output; it records, so the run's log file
  (`<run dir>/<command>.log`, Hydra's) holds what the terminal showed, not an empty file;
- `command(main)`: wraps a Hydra main. Bad input (a file, symbol or config the project refuses: its
  own errors, a missing file, a bad value) prints the project's one-line message on stderr and exits 2, without
  a traceback (`TRISHULA_TRACEBACK=1` shows it); a run that fails before writing anything leaves no
  empty run folder behind, so the newest run folder is always one with outputs.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console
from rich.markup import escape

EXIT_BAD_INPUT = 2
# Logs (CI, nohup) get a wide console; a terminal keeps its own width.
console = Console(width=None if sys.stdout.isatty() else 140, record=True)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
# Errors that mean "the input or the config is wrong", each with a message that names what: the project
# raises ValueError subclasses (DataValidationError, BackfillInputError, ...) for those.
BAD_INPUT = (ValueError, FileNotFoundError, OmegaConfBaseException)


def command(main: Callable[[DictConfig], None]) -> Callable[[DictConfig], None]:
    """`main` run as a command: one line and exit 2 on bad input, the console kept in the run's log."""

    @functools.wraps(main)
    def run(cfg: DictConfig) -> None:
        try:
            main(cfg)
        except BAD_INPUT as err:
            if os.environ.get("TRISHULA_TRACEBACK"):
                raise
            errors.print(f"[bold red]error[/]: {escape(str(err))}", soft_wrap=True)
            _tidy(failed=True, error=f"error: {err}")
            sys.exit(EXIT_BAD_INPUT)
        except BaseException:
            _tidy(failed=True)
            raise
        _tidy(failed=False)

    return run


def _tidy(failed: bool, error: str = "") -> None:
    """Keep the console's text (and the error) in the run's log; remove a failed run's folder when it holds
    no output."""
    if not HydraConfig.initialized():
        return
    hydra = HydraConfig.get()
    run_dir = Path(hydra.runtime.output_dir)
    log = run_dir / f"{hydra.job.name}.log"
    if failed and _holds_no_output(run_dir, log):
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    if run_dir.is_dir():
        with log.open("a", encoding="utf-8") as handle:
            handle.write(console.export_text(clear=False) + (f"{error}\n" if error else ""))


def _holds_no_output(run_dir: Path, log: Path) -> bool:
    """Only Hydra's own files (its config folder and the log) are in the run folder."""
    if not run_dir.is_dir():
        return False
    return all(p == log or p.name == ".hydra" for p in run_dir.iterdir())
