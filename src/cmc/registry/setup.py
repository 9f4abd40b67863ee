"""A company's marketing setup: its branding, widgets, CFS templates, message templates and POS Rules.

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
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from cmc import rules
from cmc.errors import RegistryError
from cmc.placeholders import names

IDLE_PLACEHOLDERS = frozenset({"companyName", "locationName"})
"""What idle slides may name: every shopper sees them, so nothing of a sale."""


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
    """One idle slide of a CFS template; ``{companyName}`` and ``{locationName}`` are filled."""

    title: str = ""
    body: str = ""
    imageUrl: str | None = None


class CfsTemplate(_Spec, frozen=True):
    """What a customer-facing screen shows: idle slides between sales, a thank-you line during one."""

    id: int
    name: str
    slides: tuple[Slide, ...] = ()
    """Idle slides, rotating while no sale is shown (every shopper sees them)."""
    thanks: str = "Thank you, {firstName}!"
    """The sale's line, shown with its QR code (or alone, briefly, when no rule chose a QR)."""
    displaySeconds: Annotated[int, msgspec.Meta(ge=1, le=600)] = 45
    """How long a sale stays on the screen before it goes back to the idle slides."""


_Color = Annotated[str, msgspec.Meta(pattern=r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")]
"""A CSS hex colour: the only form that reaches our style sheets."""


class Colors(_Spec, frozen=True):
    """A company's colours: accents and buttons, the page background, the text."""

    primary: _Color = "#1f6f5c"
    background: _Color = "#f6f7f9"
    text: _Color = "#1d2330"


class Branding(_Spec, frozen=True):
    """How a company's screens, pages and emails look; every field has a default."""

    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    """The name shoppers see (the company's name when absent)."""
    logoUrl: str | None = None
    """An absolute http(s) URL, or a ``data:image/...`` URL."""
    colors: Colors = Colors()
    font: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9 _-]{1,60}$")] | None = None
    """A font family the devices have; CJK and emoji fallbacks follow it."""


class MessageTemplate(_Spec, frozen=True):
    """An email or SMS; ``{firstName}``, ``{lastName}``, ``{shortLinkUrl}``... are filled per sale."""

    id: str
    channel: Literal["email", "sms"]
    body: str
    subject: str | None = None


class Document(_Spec, frozen=True):
    """A company's marketing sections, validated; ``rules`` in their normal data form."""

    branding: Branding = Branding()
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

    branding: Branding = field(default_factory=Branding)
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
    """Validate ``branding``, ``widgets``, ``cfsTemplates``, ``messageTemplates`` and ``rules``.

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
    branding = _branding(raw.get("branding"), _at(path, "branding"), problems)
    widgets = _items(raw.get("widgets"), Widget, _at(path, "widgets"), problems)
    templates = _items(raw.get("cfsTemplates"), CfsTemplate, _at(path, "cfsTemplates"), problems)
    messages = _items(raw.get("messageTemplates"), MessageTemplate, _at(path, "messageTemplates"), problems)
    for i, widget in widgets:
        problem = _landing_problem(widget.landingUrl)
        if problem:
            problems.append(SetupError(problem, field=_at(path, f"widgets[{i}].landingUrl")))
    for i, template in templates:
        problems += _slide_problems(template, _at(path, f"cfsTemplates[{i}]"))
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
        branding=branding,
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
        branding=document.branding,
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


def _landing_problem(landing_url: str) -> str | None:
    """What is wrong with a widget's landing URL, if anything."""
    # The short link answers with it as its Location header: a space or control character there
    # would split or break the header (and a browser needs them percent-encoded anyway).
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in landing_url):
        return "landingUrl must not contain spaces or control characters (percent-encode them)"
    try:
        url = urlsplit(landing_url.replace("{code}", "code"))
    except ValueError:  # e.g. an unclosed IPv6 bracket
        url = None
    if url is None or url.scheme not in {"http", "https"} or not url.netloc:
        return "landingUrl must be an absolute http(s) URL"
    return None


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
            problems.append(_problem_of(exc, f"{path}[{i}]"))
    return valid


def _branding(raw: object, path: str, problems: list[Problem]) -> Branding:
    """The company's look; when any of it is invalid, each problem is named and the defaults apply."""
    try:
        branding = msgspec.convert(raw or {}, Branding)
    except msgspec.ValidationError as exc:
        problems.append(_problem_of(exc, path))
        return Branding()
    if branding.logoUrl is not None and not _is_image_url(branding.logoUrl):
        problems.append(SetupError(IMAGE_URL, field=f"{path}.logoUrl"))
    return branding


def _slide_problems(template: CfsTemplate, path: str) -> list[Problem]:
    """Idle slides name nothing of a sale; their images are URLs a screen can load."""
    problems: list[Problem] = []
    for j, slide in enumerate(template.slides):
        for name in ("title", "body"):
            shopper = sorted(names(getattr(slide, name)) - IDLE_PLACEHOLDERS)
            if shopper:
                problems.append(
                    SetupError(
                        f"{{{shopper[0]}}}: idle slides are shown to every shopper, so they may only use "
                        "{companyName} and {locationName}; greet the shopper in `thanks`",
                        field=f"{path}.slides[{j}].{name}",
                    )
                )
        if slide.imageUrl is not None and not _is_image_url(slide.imageUrl):
            problems.append(SetupError(IMAGE_URL, field=f"{path}.slides[{j}].imageUrl"))
    return problems


IMAGE_URL = "must be an absolute http(s) URL or a data:image/... URL"


def _is_image_url(url: str) -> bool:
    if url.startswith("data:image/"):
        return True
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme in {"http", "https"} and bool(parts.netloc)


def _problem_of(exc: msgspec.ValidationError, path: str) -> SetupError:
    """msgspec's message, with the field it names (``- at `$.colors.primary```) under ``path``."""
    message, at, where = str(exc).rpartition(" - at `")
    if not at:  # a problem with the value itself: msgspec names no path inside it
        return SetupError(str(exc), field=path)
    return SetupError(message, field=f"{path}{where.rstrip('`').removeprefix('$')}")


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
