"""Text the store can keep: PostgreSQL refuses NUL (U+0000) in text and JSON values, SQLite keeps it.

So NUL is refused at every way in (a JSON body, a console form, a draft from the CLI), alike on
both engines, as the client's error rather than the database's 500.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

NUL_PROBLEM = "must not contain NUL (\\u0000)"


def nul_paths(value: object, path: str = "") -> list[str]:
    """The paths of the text in ``value`` holding NUL: strings, and the keys of free-form objects."""
    if isinstance(value, str):
        return [path or "$"] if "\x00" in value else []
    if isinstance(value, msgspec.Struct):
        return [
            found
            for name in value.__struct_fields__
            for found in nul_paths(getattr(value, name), f"{path}.{name}" if path else name)
        ]
    if isinstance(value, (list, tuple)):
        return [found for i, item in enumerate(value) for found in nul_paths(item, f"{path}[{i}]")]
    if isinstance(value, Mapping):
        found = []
        for key, item in value.items():
            at = f"{path}.{key}" if path else str(key)
            found += ([at] if "\x00" in str(key) else []) + nul_paths(item, at)
        return found
    return []
