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

    @classmethod
    def from_data(cls, data: Mapping[str, Any] | None) -> Document:
        """The document of stored plain data (written by ``to_data``; validated when it was stored)."""
        return msgspec.convert(data or {}, cls)


@dataclass(frozen=True)
class Setup:
    """One company's marketing setup, ready for the tender path."""

    widgets: Mapping[int, Widget] = field(default_factory=dict)
    cfs_templates: Mapping[int, CfsTemplate] = field(default_factory=dict)
    message_templates: Mapping[str, MessageTemplate] = field(default_factory=dict)
    rules: rules.RuleSet = field(default_factory=lambda: rules.compile_rules([], company_locations=()))


EMPTY = Setup()


Problem = SetupError | rules.RuleError
"""One thing wrong with a document: ``field`` is its path, ``message`` what is wrong."""


def describe(problem: Problem) -> str:
    """The problem's message, naming its rule when it is in one."""
    rule = getattr(problem, "rule", None)
    return (f"rule {rule!r}: " if rule else "") + problem.message


def check(raw: Mapping[str, Any], *, locations: Collection[str], path: str) -> Document:
    """Validate ``widgets``, ``cfsTemplates``, ``messageTemplates`` and ``rules`` from raw data.

    Raises the first problem (``SetupError`` / ``rules.RuleError``) whose ``field`` is the full path
    under ``path``.
    """
    document, problems = validate(raw, locations=locations, path=path)
    if problems:
        raise problems[0]
    return document


def validate(
    raw: Mapping[str, Any], *, locations: Collection[str], path: str = ""
) -> tuple[Document, list[Problem]]:
    """Validate raw marketing sections and find every problem at once (the merchant API's drafts).

    Returns the valid part as a ``Document`` and the problems, in document order, each with the
    full path of its field under ``path`` (``rules[2].when.amount.between`` when ``path`` is empty).
    """
    problems: list[Problem] = []
    known = {f.encode_name for f in msgspec.structs.fields(Document)}
    problems += [SetupError("unknown field", field=_at(path, str(key))) for key in raw if key not in known]
    widgets = _items(raw.get("widgets"), Widget, _at(path, "widgets"), problems)
    templates = _items(raw.get("cfsTemplates"), CfsTemplate, _at(path, "cfsTemplates"), problems)
    messages = _items(raw.get("messageTemplates"), MessageTemplate, _at(path, "messageTemplates"), problems)
    for i, widget in widgets:
        url = urlsplit(widget.landingUrl.replace("{code}", "code"))
        if url.scheme not in {"http", "https"} or not url.netloc:
            problems.append(
                SetupError(
                    "landingUrl must be an absolute http(s) URL", field=_at(path, f"widgets[{i}].landingUrl")
                )
            )
    for i, message in messages:
        if message.channel == "email" and not message.subject:
            problems.append(
                SetupError(
                    "an email template needs a subject", field=_at(path, f"messageTemplates[{i}].subject")
                )
            )
    problems += _duplicates(widgets, _at(path, "widgets"))
    problems += _duplicates(templates, _at(path, "cfsTemplates"))
    problems += _duplicates(messages, _at(path, "messageTemplates"))
    document = Document(
        widgets=tuple(w for _, w in widgets),
        cfsTemplates=tuple(t for _, t in templates),
        messageTemplates=tuple(m for _, m in messages),
    )
    # Rules are checked against every id the document names, valid or not: a rule naming a widget
    # whose URL is wrong has one problem (the URL), not two.
    ids = {
        "widgets": _raw_ids(raw.get("widgets")),
        "cfs_templates": _raw_ids(raw.get("cfsTemplates")),
        "message_templates": _raw_ids(raw.get("messageTemplates")),
    }
    rule_problems: list[rules.RuleError] = []
    parsed = rules.parse_rules(
        raw.get("rules") or [], locations=locations, path=_at(path, "rules"), problems=rule_problems, **ids
    )
    problems += rule_problems
    return msgspec.structs.replace(
        document, rules=tuple(rules.rule_to_data(rule) for rule in parsed)
    ), problems


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
    return compile_setup(Document.from_data(data), locations=locations)


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


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _items(raw: object, kind: type[Any], path: str, problems: list[Problem]) -> list[tuple[int, Any]]:
    """The valid items of a list section, each with its index; each invalid item is a problem."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(SetupError("must be a list", field=path))
        return []
    valid = []
    for i, item in enumerate(raw):
        try:
            valid.append((i, msgspec.convert(item, kind)))
        except msgspec.ValidationError as exc:
            message, _, where = str(exc).rpartition(" - at `")
            where = where.rstrip("`").removeprefix("$") if message else ""
            problems.append(SetupError(message or str(exc), field=f"{path}[{i}]{where}"))
    return valid


def _raw_ids(raw: object) -> set[Any]:
    return {item.get("id") for item in raw if isinstance(item, Mapping)} if isinstance(raw, list) else set()


def _duplicates(items: list[tuple[int, Any]], path: str) -> list[Problem]:
    seen: set[Any] = set()
    problems: list[Problem] = []
    for i, item in items:
        if item.id in seen:
            problems.append(SetupError(f"duplicate id {item.id!r}", field=f"{path}[{i}].id"))
        seen.add(item.id)
    return problems
