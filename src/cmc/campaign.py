"""A company's marketing set-up: widgets, CFS templates, message templates and POS Rules.

They sit under the company in the registry file. ``check`` validates them (``cmc apply`` refuses a
bad one with its path), ``to_config`` is what the database keeps, and ``load`` turns that back into
a ``Campaign`` with the rules compiled, once per registry snapshot. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from cmc import rules
from cmc.errors import RegistryError


class ConfigError(RegistryError):
    """A widget or template is invalid; ``field`` is its path in the registry file."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class _Spec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class Widget(_Spec):
    """A marketing app a QR code leads to; ``{code}`` in ``landingUrl`` becomes the short link code."""

    id: int
    name: str
    landingUrl: str
    title: str


class Slide(_Spec):
    """One slide of a CFS template; ``{firstName}``-style placeholders are filled per sale."""

    title: str = ""
    body: str = ""
    imageUrl: str | None = None


class CfsTemplate(_Spec):
    """Slides a customer-facing screen rotates."""

    id: int
    name: str
    slides: list[Slide] = []


class MessageTemplate(_Spec):
    """An email or SMS; ``{firstName}``, ``{lastName}``, ``{shortLinkUrl}``... are filled per sale."""

    id: str
    channel: Literal["email", "sms"]
    body: str
    subject: str | None = None


@dataclass(frozen=True)
class Campaign:
    """One company's compiled marketing set-up."""

    widgets: Mapping[int, Widget] = field(default_factory=dict)
    cfs_templates: Mapping[int, CfsTemplate] = field(default_factory=dict)
    message_templates: Mapping[str, MessageTemplate] = field(default_factory=dict)
    rules: rules.RuleSet = field(default_factory=lambda: rules.compile_rules([], company_locations=()))


EMPTY = Campaign()


def check(raw: Mapping[str, Any], *, locations: Collection[str], path: str) -> dict[str, Any]:
    """Validate a company's ``widgets``, ``cfsTemplates``, ``messageTemplates`` and ``rules``.

    Returns the normalized configuration to store; raises ``ConfigError``/``rules.RuleError`` whose
    ``field`` is the full path (``posSystems[0].companies[0].rules[1].when...``).
    """
    widgets = _items(raw.get("widgets"), Widget, f"{path}.widgets")
    templates = _items(raw.get("cfsTemplates"), CfsTemplate, f"{path}.cfsTemplates")
    messages = _items(raw.get("messageTemplates"), MessageTemplate, f"{path}.messageTemplates")
    for i, widget in enumerate(widgets):
        url = urlsplit(widget.landingUrl.replace("{code}", "code"))
        if url.scheme not in {"http", "https"} or not url.netloc:
            raise ConfigError(
                "landingUrl must be an absolute http(s) URL", field=f"{path}.widgets[{i}].landingUrl"
            )
    for i, message in enumerate(messages):
        if message.channel == "email" and not message.subject:
            raise ConfigError(
                "an email template needs a subject", field=f"{path}.messageTemplates[{i}].subject"
            )
    _unique([w.id for w in widgets], f"{path}.widgets")
    _unique([t.id for t in templates], f"{path}.cfsTemplates")
    _unique([m.id for m in messages], f"{path}.messageTemplates")
    parsed = rules.parse_rules(
        raw.get("rules") or [],
        locations=locations,
        widgets={w.id for w in widgets},
        cfs_templates={t.id for t in templates},
        message_templates={m.id for m in messages},
        path=f"{path}.rules",
    )
    return {
        "widgets": msgspec.to_builtins(widgets),
        "cfsTemplates": msgspec.to_builtins(templates),
        "messageTemplates": msgspec.to_builtins(messages),
        "rules": [rules.rule_to_data(rule) for rule in parsed],
    }


def load(config: Mapping[str, Any], *, locations: Collection[str]) -> Campaign:
    """Rebuild a stored configuration, compiling its rules (trusted: ``check`` passed when applied)."""
    if not config:
        return EMPTY
    widgets = msgspec.convert(config.get("widgets", []), list[Widget])
    templates = msgspec.convert(config.get("cfsTemplates", []), list[CfsTemplate])
    messages = msgspec.convert(config.get("messageTemplates", []), list[MessageTemplate])
    parsed = rules.parse_rules(
        config.get("rules", []),
        locations=locations,
        widgets={w.id for w in widgets},
        cfs_templates={t.id for t in templates},
        message_templates={m.id for m in messages},
    )
    return Campaign(
        widgets={w.id: w for w in widgets},
        cfs_templates={t.id: t for t in templates},
        message_templates={m.id: m for m in messages},
        rules=rules.compile_rules(parsed, company_locations=locations),
    )


def _items(raw: object, kind: type[Any], path: str) -> list[Any]:
    if raw is None:
        return []
    try:
        return msgspec.convert(raw, list[kind])  # type: ignore[valid-type]
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).rpartition(" - at `")
        where = where.rstrip("`").removeprefix("$")
        raise ConfigError(message or str(exc), field=f"{path}{where}") from None


def _unique(ids: list[Any], path: str) -> None:
    seen: set[Any] = set()
    for i, value in enumerate(ids):
        if value in seen:
            raise ConfigError(f"duplicate id {value!r}", field=f"{path}[{i}].id")
        seen.add(value)
