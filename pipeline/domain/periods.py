"""Report periods: a calendar month, or any range of whole UTC days.

A period is half-open, [start, end), in UTC days. People name ranges by their first and last
day (`--from 2026-10-05 --to 2026-10-20` includes the 20th), so `Period.days` takes the last day
inclusive and the label shows it: `2026-10-05_2026-10-20`. A range that is exactly one calendar
month is that month, labelled `2026-10`, whichever way it was asked for, so its files are the
month's files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from pipeline.domain.errors import UserError


def midnight(day: date) -> datetime:
    """The UTC start of `day`."""
    return datetime.combine(day, time(0), UTC)

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RANGE_LABEL = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{4}-\d{2}-\d{2}$")
MAX_DAYS = 3_660  # ten years: a longer range is a typing mistake


class PeriodError(UserError):
    pass


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"  # a fifth of the time of f"{day:%Y-%m}"


def parse_day(text: str, what: str = "date") -> date:
    if not _DAY.fullmatch(text):
        raise PeriodError(f"{what} {text!r} is not of the form YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise PeriodError(f"{what} {text!r} is not a date: {error}") from None


def is_month_label(label: str) -> bool:
    return bool(_MONTH.fullmatch(label))


@dataclass(frozen=True, slots=True, order=True)
class Period:
    start: date  # first day
    end: date  # the day after the last one

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise PeriodError(f"the period ends ({self.last}) before it starts ({self.start})")
        if (self.end - self.start).days > MAX_DAYS:
            raise PeriodError(f"the period {self.start} to {self.last} is longer than {MAX_DAYS:,} days")

    @classmethod
    def month(cls, month: str) -> Period:
        """`2026-10` -> [2026-10-01, 2026-11-01)."""
        if not _MONTH.fullmatch(month):
            raise PeriodError(f"month {month!r} is not of the form YYYY-MM")
        start = date.fromisoformat(f"{month}-01")
        return cls(start, next_month(start))

    @classmethod
    def days(cls, first: date, last: date) -> Period:
        """The days from `first` to `last`, both included."""
        if last < first:
            raise PeriodError(f"the period ends ({last}) before it starts ({first})")
        return cls(first, last + timedelta(days=1))

    @classmethod
    def parse(cls, label: str) -> Period:
        """The period a label names: `2026-10` or `2026-10-05_2026-10-20`."""
        if _MONTH.fullmatch(label):
            return cls.month(label)
        if _RANGE_LABEL.fullmatch(label):
            first, last = label.split("_")
            return cls.days(parse_day(first), parse_day(last))
        raise PeriodError(f"period {label!r} is neither YYYY-MM nor YYYY-MM-DD_YYYY-MM-DD")

    @property
    def last(self) -> date:
        return self.end - timedelta(days=1)

    @property
    def is_month(self) -> bool:
        return self.start.day == 1 and self.end == next_month(self.start)

    @property
    def label(self) -> str:
        """`2026-10` for a calendar month, else `2026-10-05_2026-10-20` (last day included)."""
        return month_of(self.start) if self.is_month else f"{self.start.isoformat()}_{self.last.isoformat()}"

    @property
    def title(self) -> str:
        """For people: `2026-10`, or `2026-10-05 to 2026-10-20`."""
        return self.label if self.is_month else f"{self.start.isoformat()} to {self.last.isoformat()}"

    def months(self) -> list[str]:
        """The calendar months the period touches, in order."""
        months, day = [], month_start(self.start)
        while day < self.end:
            months.append(month_of(day))
            day = next_month(day)
        return months

    def is_closed(self, today: date) -> bool:
        """Every day of the period is over (UTC)."""
        return self.end <= today

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True, slots=True)
class TimeRange:
    """[start, end) in UTC, to the microsecond; None is open (replays select events by it)."""

    start: datetime | None = None
    end: datetime | None = None

    def __contains__(self, moment: datetime) -> bool:
        return (self.start is None or moment >= self.start) and (self.end is None or moment < self.end)

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return (self.start is None or end > self.start) and (self.end is None or start < self.end)


ALL_TIME = TimeRange()


def month_bounds(month: str) -> tuple[date, date]:
    """`2026-10` -> (2026-10-01, 2026-11-01)."""
    period = Period.month(month)
    return period.start, period.end
