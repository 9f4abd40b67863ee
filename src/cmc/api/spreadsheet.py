"""CSV answers (``Accept: text/csv``) for the analytics API's lists and series (pure).

Written with the csv module (quoting, commas and newlines inside cells). A text cell that starts
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with ``'``: a spreadsheet
would otherwise run it as a formula (CSV injection; a customer's name or a message body is text a
shopper or a merchant typed). Numbers, times and booleans are written as they are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

MEDIA_TYPE = "text/csv; charset=utf-8"
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def wanted(accept: str | None) -> bool:
    """Whether the caller's ``Accept`` asks for CSV."""
    return accept is not None and "text/csv" in accept.lower()


def cell(value: Any) -> str:
    """One value as CSV text, a formula-looking text made inert."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA) else value
    return str(value)  # int, float, Decimal


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """A header line and one line per row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([cell(name) for name in header])
    writer.writerows([cell(value) for value in row] for row in rows)
    return out.getvalue().encode()


def of_structs(kind: type[msgspec.Struct], items: Iterable[msgspec.Struct]) -> bytes:
    """One line per Struct, its fields (by their JSON names) as columns."""
    fields = msgspec.structs.fields(kind)
    return table([f.encode_name for f in fields], ([getattr(item, f.name) for f in fields] for item in items))


def of_mapping(values: Mapping[str, Any]) -> bytes:
    """``name,value`` lines; nested mappings flattened as ``outer.inner``."""

    def flat(prefix: str, mapping: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
        for key, value in mapping.items():
            if isinstance(value, Mapping):
                yield from flat(f"{prefix}{key}.", value)
            else:
                yield f"{prefix}{key}", value

    return table(["name", "value"], flat("", values))
