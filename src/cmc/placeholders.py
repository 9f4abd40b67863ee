"""``{name}`` placeholders in merchant-written text (slides, emails, SMS): filled, never evaluated.

Merchant text is data, so this is a plain substitution, not a template language: nothing in it can
reach attributes or code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_GONE = "\x00"


def names(text: str) -> set[str]:
    """The placeholders ``text`` names (``"Hi {firstName}"`` → ``{"firstName"}``)."""
    return set(_PLACEHOLDER.findall(text))


def fill(text: str, values: Mapping[str, str]) -> str:
    """Replace ``{name}`` placeholders with ``values``; unknown ones vanish with the punctuation they strand.

    ``"Thanks, {firstName}!"`` → ``"Thanks, Ada!"``, or ``"Thanks!"`` when the name is unknown.
    """
    out = _PLACEHOLDER.sub(lambda m: values.get(m[1]) or _GONE, text)
    out = re.sub(r",[ \t]*\x00[ \t]*(?=[!?.])", "", out)
    out = re.sub(r"[ \t]*\x00(?=[ \t]*[,!?.;:])", "", out)
    return re.sub(r" {2,}", " ", out.replace(_GONE, "")).strip()
