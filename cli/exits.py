"""Exit codes: one meaning each, for every command (README "Exit codes", `python <command>.py --help`).

A command stops on purpose by raising `Stop(code, message)`: `cli.command` prints the one-line message
and exits with the code. Bad input (a file, symbol, value or config key the project refuses) exits 2;
an error the project did not foresee is a bug and exits 1 with its traceback, never as bad input.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    UNEXPECTED = 1
    BAD_INPUT = 2
    NO_CHAMPION = 3
    NO_MODEL = 4
    CHANGED_PAST = 5
    BOOK_MISMATCH = 6
    SERVED_ALREADY = 7
    STALE_LINEAGE = 8
    STALE_DATA = 9
    MISSED_DAYS = 10
    OTHER_BOOK = 11
    EXCHANGE = 12


MEANING = {
    Exit.OK: "done (a day served, or served already with the same numbers; bars fetched, or none new)",
    Exit.UNEXPECTED: "an unexpected error: a bug, with its traceback (not your input)",
    Exit.BAD_INPUT: "bad input or config: a file, symbol, value or key the project refuses (one line names it)",
    Exit.NO_CHAMPION: "no champion for the data and task (run the main job first)",
    Exit.NO_MODEL: "the champion has no model for the day (a retrain was skipped or not promoted)",
    Exit.CHANGED_PAST: "a past bar changed, vanished or arrived late (data.restate=true takes it)",
    Exit.BOOK_MISMATCH: "the kept book differs from what the served signals give, or a served day's file is "
                        "missing or changed",
    Exit.SERVED_ALREADY: "the day was served already with other numbers: nothing is overwritten",
    Exit.STALE_LINEAGE: "stale artifacts: the champion serves with something made by code that changed since",
    Exit.STALE_DATA: "stale or incomplete data: old bars, a partial day, a coin missing at the last hour",
    Exit.MISSED_DAYS: "days were missed since the last served day and daily.catch_up=false",
    Exit.OTHER_BOOK: "another strategy or book config than the open book's (daily.new_book=true starts a new book)",
    Exit.EXCHANGE: "the exchange did not deliver (refused past the retries, or lacks a pair); nothing written",
}


class Stop(Exception):
    """A command cannot go on; `code` is its exit status, the message one line naming what and why."""

    def __init__(self, code: Exit, message: str):
        super().__init__(message)
        self.code = Exit(code)


def exit_code_lines(codes: tuple[Exit, ...] = tuple(Exit)) -> list[str]:
    """`<code> <meaning>` per exit code, as README and --help list them."""
    return [f"{int(code)} {MEANING[code]}" for code in codes]
