"""What the parts of a request's path, query or body mean when they are numbers or times.

Shared by the merchant API, the analytics API and the console, so that one spelling means one
thing everywhere.
"""

from __future__ import annotations

from datetime import datetime

from cmc import stored_text
from cmc.api import HttpRequest
from cmc.errors import ValidationFailed, VersionNotFound

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


def version_number(text: str) -> int:
    """The version a path names; anything but a plain number is a version that does not exist."""
    number = whole_number(text)
    if number is None:
        raise VersionNotFound(f"This company has no marketing version {text!r}.")
    return number


async def refuse_nul(request: HttpRequest) -> None:
    """Every route's first check (the app's ``before_request``): NUL in the path or the query.

    A path or query value reaches the store as text in many places (a customer search, a rule's
    name, a message id); PostgreSQL refuses NUL in text, so it is the client's 400 here, once.
    """
    errors = {}
    if "\x00" in request.scope["path"]:
        errors["path"] = [stored_text.NUL_PROBLEM]
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            errors[name.replace("\x00", "")] = [stored_text.NUL_PROBLEM]
    if errors:
        raise ValidationFailed(f"{', '.join(errors)} {stored_text.NUL_PROBLEM}.", errors=errors)


def in_years(value: datetime | None, name: str) -> datetime | None:
    """``value`` (the parameter ``name``) if it is in ``YEARS``, else ``ValidationFailed`` naming it."""
    if value is not None and not YEARS[0] <= value.year <= YEARS[1]:
        raise ValidationFailed(errors={name: [f"must be in the years {YEARS[0]} to {YEARS[1]}"]})
    return value
