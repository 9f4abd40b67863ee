"""Request bodies: JSON only (as ClearLine's clients send it), decoded straight into wire Structs.

Whatever a client sends is a 400 or 415 with a field-level message, never a 500: invalid UTF-8,
nesting deep enough to exhaust the decoder's recursion, a NUL character in a text field (PostgreSQL
refuses it in text, SQLite would keep it: refused on both alike).
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from cmc import stored_text
from cmc.api import HttpRequest
from cmc.errors import MalformedJson, UnsupportedMediaType, ValidationFailed

T = TypeVar("T")

JSON_TYPES = frozenset({"application/json", "application/json-patch+json", "text/json"})
"""``application/json-patch+json`` is what ClearLine's generated API reference sends."""


def is_json(content_type: str | None) -> bool:
    """The media type (parameters aside) is one of ours, or any ``+json`` suffix."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


def decode(raw: bytes, content_type: str | None, decoder: msgspec.json.Decoder[T]) -> T:
    """Check the content type and decode ``raw``; every failure is the client's, with its reason."""
    if not is_json(content_type):
        raise UnsupportedMediaType("Send the body as application/json.")
    try:
        decoded = decoder.decode(raw)
        # JSON can carry NUL only escaped, so bodies without the escape need no walk.
        paths = stored_text.nul_paths(decoded) if b"\\u0000" in raw else []
    except msgspec.ValidationError as exc:
        raise ValidationFailed.from_msgspec(exc) from None
    except msgspec.DecodeError as exc:
        raise MalformedJson(f"The body is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise MalformedJson("The body is not valid UTF-8.") from None
    except RecursionError:
        raise MalformedJson("The body nests too deeply.") from None
    if paths:
        raise ValidationFailed(errors={path: [stored_text.NUL_PROBLEM] for path in paths})
    return decoded


async def decode_json(request: HttpRequest, decoder: msgspec.json.Decoder[T]) -> T:
    """``decode`` a Litestar request's body (size-limited by the app)."""
    return decode(await request.body(), request.headers.get("content-type"), decoder)
