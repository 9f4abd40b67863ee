"""A company's marketing setup: its widgets, CFS templates, message templates and POS Rules.

Two forms of one thing, both pure (no I/O):

- ``Document``: the setup as the registry file (and the database) holds it, validated: typed
  widgets and templates, and the rules in their normal data form. ``check`` builds one from raw
  data and names the field at fault (``posSystems[0].companies[0].rules[1].when...``).
- ``Setup``: what the tender path uses: the same widgets and templates by id and the rules compiled
  (``compile``), built once per registry snapshot.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from cmc import rules
from cmc.errors import RegistryError


class SetupError(RegistryError):
    """A widget or template is invalid; ``field`` is its path in the registry file."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class _Spec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    pass


class Widget(_Spec, frozen=True):
    """A marketing app a QR code leads to; ``{code}`` in ``landingUrl`` becomes the short link code."""

    id: int
    name: str
    landingUrl: str
    title: str


class Slide(_Spec, frozen=True):
    """One slide of a CFS template; ``{firstName}``-style placeholders are filled per sale."""

    title: str = ""
    body: str = ""
    imageUrl: str | None = None


class CfsTemplate(_Spec, frozen=True):
    """Slides a customer-facing screen rotates."""

    id: int
    name: str
    slides: tuple[Slide, ...] = ()


class MessageTemplate(_Spec, frozen=True):
    """An email or SMS; ``{firstName}``, ``{lastName}``, ``{shortLinkUrl}``... are filled per sale."""

    id: str
    channel: Literal["email", "sms"]
    body: str
    subject: str | None = None


class Document(_Spec, frozen=True):
    """A company's marketing sections, validated; ``rules`` in their normal data form."""

    widgets: tuple[Widget, ...] = ()
    cfsTemplates: tuple[CfsTemplate, ...] = ()
    messageTemplates: tuple[MessageTemplate, ...] = ()
    rules: tuple[dict[str, Any], ...] = ()

    def to_data(self) -> dict[str, Any]:
        """JSON-safe plain data (what the database stores; ``check`` accepts it again)."""
        data: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(self))
        return data


@dataclass(frozen=True)
class Setup:
    """One company's marketing setup, ready for the tender path."""

    widgets: Mapping[int, Widget] = field(default_factory=dict)
    cfs_templates: Mapping[int, CfsTemplate] = field(default_factory=dict)
    message_templates: Mapping[str, MessageTemplate] = field(default_factory=dict)
    rules: rules.RuleSet = field(default_factory=lambda: rules.compile_rules([], company_locations=()))


EMPTY = Setup()


def check(raw: Mapping[str, Any], *, locations: Collection[str], path: str) -> Document:
    """Validate ``widgets``, ``cfsTemplates``, ``messageTemplates`` and ``rules`` from raw data.

    Raises ``SetupError`` / ``rules.RuleError`` whose ``field`` is the full path under ``path``.
    """
    widgets = _items(raw.get("widgets"), Widget, f"{path}.widgets")
    templates = _items(raw.get("cfsTemplates"), CfsTemplate, f"{path}.cfsTemplates")
    messages = _items(raw.get("messageTemplates"), MessageTemplate, f"{path}.messageTemplates")
    for i, widget in enumerate(widgets):
        url = urlsplit(widget.landingUrl.replace("{code}", "code"))
        if url.scheme not in {"http", "https"} or not url.netloc:
            raise SetupError(
                "landingUrl must be an absolute http(s) URL", field=f"{path}.widgets[{i}].landingUrl"
            )
    for i, message in enumerate(messages):
        if message.channel == "email" and not message.subject:
            raise SetupError(
                "an email template needs a subject", field=f"{path}.messageTemplates[{i}].subject"
            )
    _unique([w.id for w in widgets], f"{path}.widgets")
    _unique([t.id for t in templates], f"{path}.cfsTemplates")
    _unique([m.id for m in messages], f"{path}.messageTemplates")
    document = Document(
        widgets=tuple(widgets), cfsTemplates=tuple(templates), messageTemplates=tuple(messages)
    )
    parsed = _parse_rules(raw.get("rules") or [], document, locations, f"{path}.rules")
    return msgspec.structs.replace(document, rules=tuple(rules.rule_to_data(rule) for rule in parsed))


def compile_setup(document: Document, *, locations: Collection[str]) -> Setup:
    """The setup of a validated document, its rules compiled for the company's ``locations``."""
    if document == Document():
        return EMPTY
    parsed = _parse_rules(list(document.rules), document, locations, "rules")
    return Setup(
        widgets={w.id: w for w in document.widgets},
        cfs_templates={t.id: t for t in document.cfsTemplates},
        message_templates={m.id: m for m in document.messageTemplates},
        rules=rules.compile_rules(parsed, company_locations=locations),
    )


def load(data: Mapping[str, Any] | None, *, locations: Collection[str]) -> Setup:
    """The setup of stored plain data (written by ``Document.to_data``; validated when applied)."""
    document = msgspec.convert(data or {}, Document)
    return compile_setup(document, locations=locations)


def _parse_rules(
    raw: list[Any], document: Document, locations: Collection[str], path: str
) -> list[rules.Rule]:
    """The rules of ``raw``, checked against the document's widgets and templates and these locations."""
    ids = {
        "widgets": {w.id for w in document.widgets},
        "cfs_templates": {t.id for t in document.cfsTemplates},
        "message_templates": {m.id for m in document.messageTemplates},
    }
    return rules.parse_rules(raw, locations=locations, path=path, **ids)  # type: ignore[arg-type]


def _items(raw: object, kind: type[Any], path: str) -> list[Any]:
    if raw is None:
        return []
    try:
        return msgspec.convert(raw, list[kind])  # type: ignore[valid-type]
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).rpartition(" - at `")
        where = where.rstrip("`").removeprefix("$")
        raise SetupError(message or str(exc), field=f"{path}{where}") from None


def _unique(ids: list[Any], path: str) -> None:
    seen: set[Any] = set()
    for i, value in enumerate(ids):
        if value in seen:
            raise SetupError(f"duplicate id {value!r}", field=f"{path}[{i}].id")
        seen.add(value)
