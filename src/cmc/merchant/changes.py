"""What changed between two marketing documents, in words an audit trail shows (pure).

Rules are compared by name, widgets and templates by id, any other section as a whole::

    rules added: 'summer'; rules changed: 'mid-basket coupon'; widgets removed: 2
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from cmc.registry.setup import Document

SECTIONS = tuple(f.encode_name for f in msgspec.structs.fields(Document))
_DEFAULTS = Document().to_data()
"""What an absent section means (a document without ``branding`` has the default look)."""


def summary(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str:
    """``new`` against ``old`` (None: nothing before), section by section; ``no change`` when equal."""
    parts: list[str] = []
    for section in SECTIONS:
        default = _DEFAULTS[section]
        parts += _section(section, (old or {}).get(section, default), new.get(section, default))
    return "; ".join(parts) or "no change"


def _section(name: str, old: Any, new: Any) -> list[str]:
    if old == new or (not old and not new):
        return []
    if not isinstance(old or [], list) or not isinstance(new or [], list):
        return [f"{name} changed"]
    before, after = _by_key(old or []), _by_key(new or [])
    parts = []
    for verb, keys in (
        ("added", [k for k in after if k not in before]),
        ("removed", [k for k in before if k not in after]),
        ("changed", [k for k in after if k in before and after[k] != before[k]]),
    ):
        if keys:
            parts.append(
                f"{name} {verb}: {', '.join(repr(k) if isinstance(k, str) else str(k) for k in keys)}"
            )
    return parts


def _by_key(items: list[Any]) -> dict[Any, Any]:
    """Items by their ``id`` (widgets, templates) or ``name`` (rules); position when they have neither."""
    keyed: dict[Any, Any] = {}
    for i, item in enumerate(items):
        key = item.get("id", item.get("name", i)) if isinstance(item, Mapping) else i
        keyed[key] = item
    return keyed
