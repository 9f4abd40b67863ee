"""Request bodies: JSON only (as ClearLine's clients send it), decoded straight into wire Structs."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from cmc.api import HttpRequest
from cmc.errors import MalformedJson, UnsupportedMediaType, ValidationFailed

T = TypeVar("T")

JSON_TYPES = frozenset({"application/json", "application/json-patch+json", "text/json"})
"""``application/json-patch+json`` is what ClearLine's generated API reference sends."""


def is_json(content_type: str | None) -> bool:
    """The media type (parameters aside) is one of ours, or any ``+json`` suffix."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


async def decode_json(request: HttpRequest, decoder: msgspec.json.Decoder[T]) -> T:
    """Check the content type, read the body (size-limited by the app) and decode it."""
    if not is_json(request.headers.get("content-type")):
        raise UnsupportedMediaType("Send the body as application/json.")
    raw = await request.body()
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise ValidationFailed.from_msgspec(exc) from None
    except msgspec.DecodeError as exc:
        raise MalformedJson(f"The body is not valid JSON: {exc}") from None
