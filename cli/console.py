"""The console every command prints to, and the run's log that keeps what it printed, each line stamped.

The terminal gets the plain output; once a run's log file is attached (`attach`), every print is also
appended to it as plain text, each line led by the UTC time it was printed at, so a log says when
each step ran (Hydra's own log records, in the same file, carry their times too).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import IO, Any

from rich.console import Console

LOG_WIDTH = 140


class CommandConsole(Console):
    """A Rich console that also writes each print, time-stamped, to the attached log file."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._log_file: IO[str] | None = None
        self._log: Console | None = None
        self.logged_lines = 0  # lines written to the attached log

    def attach(self, path: str | Path) -> None:
        """Append every later print to `path`."""
        self.detach()
        self._log_file = Path(path).open("a", encoding="utf-8")
        self._log = Console(file=self._log_file, width=LOG_WIDTH, color_system=None, highlight=False,
                            force_terminal=False, emoji=False)
        self.logged_lines = 0

    def detach(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = self._log = None

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*objects, **kwargs)
        self.stamp(*objects, **kwargs)

    def stamp(self, *objects: Any, **kwargs: Any) -> None:
        """Write `objects` to the log only (an error the terminal got on stderr), each line time-stamped."""
        if self._log is None:
            return
        with self._log.capture() as captured:
            self._log.print(*objects, **kwargs)
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines = captured.get().splitlines()
        self._log_file.write("".join(f"[{now} UTC] {line}\n" for line in lines))
        self._log_file.flush()
        self.logged_lines += len(lines)


# Logs (CI, nohup) get a wide console; a terminal keeps its own width.
console = CommandConsole(width=None if sys.stdout.isatty() else LOG_WIDTH)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else LOG_WIDTH)
