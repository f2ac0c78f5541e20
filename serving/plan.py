"""Which days a daily run serves, and for which book.

- the latest closed day, when the open book's last served day is the day before it;
- after missed days, each missed day in order, then the latest (`daily.catch_up=true`, the default: the
  same code serves each as it would have one at a time), or a stop naming the first missed day (exit 10);
- a new book (no day served yet for the dataset, the served days moved aside, or `daily.new_book=true`)
  starts flat on the latest day, and its first orders open it;
- a day served already is served again only to compare (nothing new is traded, nothing overwritten);
- another strategy or book config than the open book's stops (exit 11) unless a new book is asked for, and so
  do days served in the layout before one folder a day (their book cannot be continued);
- a book whose served days are not all there (a day's folder moved or deleted) stops (exit 6): its held
  book would not be the one the orders trade from.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from cli import Exit, Stop
from serving.days import DATE, BookId, ServedDays
from serving.settings import DailySettings, Strategy

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class Plan:
    days: list[pd.Timestamp]    # to serve, in order; the last is the latest closed day
    book: BookId                # the book they belong to
    starts_book: bool           # the book starts with the first of them, flat

    @property
    def caught_up(self) -> list[pd.Timestamp]:
        """The missed days served before the latest."""
        return self.days[:-1]


def plan_days(served: ServedDays, latest: pd.Timestamp, strategy: Strategy, settings: DailySettings) -> Plan:
    committed = served.days()
    if latest in committed:
        book = served.book(latest)
        if settings.new_book:
            raise Stop(Exit.SERVED_ALREADY, f"daily.new_book=true: {latest:{DATE}} was served already by "
                                            f"{book.describe()}; a new book starts on a day not served yet "
                                            f"(nothing overwritten)")
        _check_same_strategy(book, strategy, latest)
        _check_whole(served, committed, book, latest - DAY)
        return Plan([latest], book, starts_book=False)
    if not committed and served.legacy() and not settings.new_book:
        raise Stop(Exit.OTHER_BOOK, f"{served.legacy()[0]} holds days served in the layout before one folder a day: "
                                    f"their book cannot be continued; nothing served. Start a new book, flat, on "
                                    f"{latest:{DATE}} with daily.new_book=true (or move those folders aside)")
    if settings.new_book or not committed:
        return Plan([latest], BookId(strategy.name, strategy.key, latest, dict(strategy.config)), starts_book=True)
    last = committed[-1]
    book = served.book(last)
    _check_same_strategy(book, strategy, latest)
    if latest < last:
        raise Stop(Exit.STALE_DATA, f"the bars end with {latest:{DATE}}, which was not served, before the open "
                                    f"book's last served day {last:{DATE}} ({book.describe()}); nothing served")
    _check_whole(served, committed, book, last)
    missed = list(pd.date_range(last + DAY, latest - DAY, freq="D"))
    if missed and not settings.catch_up:
        raise Stop(Exit.MISSED_DAYS, f"{len(missed)} day(s) missed since the last served day {last:{DATE}}: the "
                                     f"first is {missed[0]:{DATE}}; daily.catch_up=false, so nothing served "
                                     f"(daily.catch_up=true serves them in order, then {latest:{DATE}})")
    return Plan([*missed, latest], book, starts_book=False)


def _check_same_strategy(book: BookId, strategy: Strategy, day: pd.Timestamp) -> None:
    if (book.strategy, book.key) != (strategy.name, strategy.key):
        raise Stop(Exit.OTHER_BOOK, f"the configured strategy ({strategy.name}, config {strategy.key}) is not the "
                                    f"open book's: {book.describe()}; nothing served. Serve with the book's config, "
                                    f"or start a new book, flat, on {day:{DATE}} with daily.new_book=true")


def _check_whole(served: ServedDays, committed: list[pd.Timestamp], book: BookId, until: pd.Timestamp) -> None:
    """Every day of `book` from its start to `until` is served and belongs to it."""
    have = set(committed)
    for day in pd.date_range(book.start, until, freq="D"):
        if day not in have:
            raise Stop(Exit.BOOK_MISMATCH, f"{served.path(day)} is missing: {day:{DATE}} belongs to {book.describe()}, "
                                           f"whose held book needs every served day; nothing served (put the day "
                                           f"back, or start a new book with daily.new_book=true)")
        if served.book(day) != book:
            raise Stop(Exit.BOOK_MISMATCH, f"{served.path(day)} belongs to {served.book(day).describe()}, not to "
                                           f"{book.describe()}; nothing served")
