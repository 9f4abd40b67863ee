"""``{name}`` placeholders in merchant-written text (slides, emails, SMS): filled, never evaluated.

Merchant text is data, so this is a plain substitution, not a template language: nothing in it can
reach attributes or code.
"""

from __future__ import annotations

import functools
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
    literals, wanted = _parts(text)
    found = [value for name in wanted if (value := values.get(name))]
    out = literals[0] + "".join(map(str.__add__, found, literals[1:]))
    if len(found) < len(wanted) or _GONE in out:
        # A placeholder without a value: take out the punctuation it strands.
        out = _PLACEHOLDER.sub(lambda m: values.get(m[1]) or _GONE, text)
        out = re.sub(r",[ \t]*\x00[ \t]*(?=[!?.])", "", out)
        out = re.sub(r"[ \t]*\x00(?=[ \t]*[,!?.;:])", "", out)
    return re.sub(r" {2,}", " ", out.replace(_GONE, "")).strip()


@functools.lru_cache(maxsize=4096)
def _parts(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``text`` split once into its literal pieces and the placeholder names between them.

    Merchant texts are few and each is filled on every sale a rule sends it for.
    """
    pieces = _PLACEHOLDER.split(text)
    return tuple(pieces[0::2]), tuple(pieces[1::2])
