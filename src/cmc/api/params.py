"""What the parts of a request's path, query or body mean when they are numbers or times.

Shared by the merchant API, the analytics API and the console, so that one spelling means one
thing everywhere.
"""

from __future__ import annotations

from datetime import datetime

from cmc.errors import ValidationFailed

YEARS = (1970, 2199)
"""The years a window's ``from`` or ``to`` may be in: windows are shifted by days and floored to
hours and days, which near year 1 or 9999 leaves the calendar (a 500), and no sale is from outside."""


def whole_number(text: str | None, *, digits: int = 9) -> int | None:
    """``text`` as a whole number of at most ``digits`` ASCII digits, else None.

    Not ``str.isdigit`` alone: it holds for "²", which ``int`` refuses, and for "٣", which ``int``
    reads as 3 (another spelling of a version or cursor is not that version or cursor).
    """
    if text is None or len(text) > digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def in_years(value: datetime | None, name: str) -> datetime | None:
    """``value`` (the parameter ``name``) if it is in ``YEARS``, else ``ValidationFailed`` naming it."""
    if value is not None and not YEARS[0] <= value.year <= YEARS[1]:
        raise ValidationFailed(errors={name: [f"must be in the years {YEARS[0]} to {YEARS[1]}"]})
    return value
