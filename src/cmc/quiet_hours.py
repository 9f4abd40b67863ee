"""Quiet hours: the local times at which a location sends no SMS (pure, no I/O).

A window is ``"HH:MM-HH:MM"`` in the location's wall-clock time and may wrap midnight
(``"21:00-08:00"``, the default). ``start == end`` means no quiet hours. An SMS due inside the
window is delayed to its end, unless that end is more than ``MAX_DELAY`` (12 hours) after its
sale: then it is suppressed (reason ``quiet-hours``), a post-purchase thank-you the next afternoon
being stale. With the default window a sale's SMS waits at most 11 hours; only a retry pushed past
the night, or a longer window, meets the limit. Email ignores quiet hours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DEFAULT_WINDOW = "21:00-08:00"
MAX_DELAY = timedelta(hours=12)
"""An SMS that quiet hours would push further than this after its sale is suppressed instead."""

_WINDOW = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


@dataclass(frozen=True)
class QuietHours:
    """Local wall-clock times ``[start, end)`` without SMS; wraps midnight when ``start > end``."""

    start: time
    end: time

    @property
    def empty(self) -> bool:
        """``start == end``: no quiet hours at all."""
        return self.start == self.end

    @property
    def wraps(self) -> bool:
        """The window crosses midnight (``21:00-08:00``)."""
        return self.start > self.end

    def contains(self, local: time) -> bool:
        """``local`` (a wall-clock time) falls inside the window."""
        if self.empty:
            return False
        if self.wraps:
            return local >= self.start or local < self.end
        return self.start <= local < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_window(text: str) -> QuietHours:
    """Parse ``"21:00-08:00"``; anything else (or an impossible time) is a ``ValueError``."""
    match = _WINDOW.fullmatch(text)
    if not match:
        raise ValueError(f"quiet hours must look like 21:00-08:00, not {text!r}")
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    try:
        return QuietHours(time(h1, m1), time(h2, m2))
    except ValueError:
        raise ValueError(f"quiet hours {text!r} name a time that does not exist") from None


def next_allowed(now: datetime, tz: ZoneInfo, window: QuietHours) -> datetime:
    """The first instant at or after ``now`` (aware) outside ``window`` in ``tz``, in UTC."""
    if now.tzinfo is None:
        raise ValueError("next_allowed needs an aware datetime")
    now = now.astimezone(UTC)
    local = now.astimezone(tz)
    if not window.contains(local.time()):
        return now
    end_day = local.date()
    if window.wraps and local.time() >= window.start:
        end_day += timedelta(days=1)
    return _first_instant_after(now, end_day, window.end, tz)


def _first_instant_after(now: datetime, day: date, wall: time, tz: ZoneInfo) -> datetime:
    """``day wall`` in ``tz`` as UTC, resolving DST gaps and repeats to an instant after ``now``.

    A wall time skipped by a spring-forward gap is read at the offset before the change, which
    lands after the gap: quiet hours may end a little late that night, never early. A wall time
    repeated by a fall-back change ends quiet hours at its first occurrence, or its second when
    ``now`` is already past the first.
    """
    for fold in (0, 1):
        candidate = datetime.combine(day, wall, tzinfo=tz).replace(fold=fold).astimezone(UTC)
        if candidate > now:
            return candidate
    return now
