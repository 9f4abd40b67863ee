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


@dataclass(frozen=True)
class Setup:
    """One company's marketing setup, ready for the tender path."""

    branding: Branding = field(default_factory=Branding)
    widgets: Mapping[int, Widget] = field(default_factory=dict)
    cfs_templates: Mapping[int, CfsTemplate] = field(default_factory=dict)
    message_templates: Mapping[str, MessageTemplate] = field(default_factory=dict)
    rules: rules.RuleSet = field(default_factory=lambda: rules.compile_rules([], company_locations=()))


EMPTY = Setup()


def check(raw: Mapping[str, Any], *, locations: Collection[str], path: str) -> Document:
    """Validate ``branding``, ``widgets``, ``cfsTemplates``, ``messageTemplates`` and ``rules``.

    Raises ``SetupError`` / ``rules.RuleError`` whose ``field`` is the full path under ``path``.
    """
    branding = _convert(raw.get("branding") or {}, Branding, f"{path}.branding")
    widgets = _convert(raw.get("widgets") or [], list[Widget], f"{path}.widgets")
    templates = _convert(raw.get("cfsTemplates") or [], list[CfsTemplate], f"{path}.cfsTemplates")
    messages = _convert(raw.get("messageTemplates") or [], list[MessageTemplate], f"{path}.messageTemplates")
    if branding.logoUrl is not None:
        _check_image(branding.logoUrl, f"{path}.branding.logoUrl")
    for i, widget in enumerate(widgets):
        url = urlsplit(widget.landingUrl.replace("{code}", "code"))
        if url.scheme not in {"http", "https"} or not url.netloc:
            raise SetupError(
                "landingUrl must be an absolute http(s) URL", field=f"{path}.widgets[{i}].landingUrl"
            )
    for i, template in enumerate(templates):
        _check_slides(template, f"{path}.cfsTemplates[{i}]")
    for i, message in enumerate(messages):
        if message.channel == "email" and not message.subject:
            raise SetupError(
                "an email template needs a subject", field=f"{path}.messageTemplates[{i}].subject"
            )
    _unique([w.id for w in widgets], f"{path}.widgets")
    _unique([t.id for t in templates], f"{path}.cfsTemplates")
    _unique([m.id for m in messages], f"{path}.messageTemplates")
    document = Document(
        branding=branding,
        widgets=tuple(widgets),
        cfsTemplates=tuple(templates),
        messageTemplates=tuple(messages),
    )
    parsed = _parse_rules(raw.get("rules") or [], document, locations, f"{path}.rules")
    return msgspec.structs.replace(document, rules=tuple(rules.rule_to_data(rule) for rule in parsed))


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


def _check_slides(template: CfsTemplate, path: str) -> None:
    """Idle slides name nothing of a sale; their images are URLs a screen can load."""
    for j, slide in enumerate(template.slides):
        for name in ("title", "body"):
            shopper = sorted(names(getattr(slide, name)) - IDLE_PLACEHOLDERS)
            if shopper:
                raise SetupError(
                    f"{{{shopper[0]}}}: idle slides are shown to every shopper, so they may only use "
                    "{companyName} and {locationName}; greet the shopper in `thanks`",
                    field=f"{path}.slides[{j}].{name}",
                )
        if slide.imageUrl is not None:
            _check_image(slide.imageUrl, f"{path}.slides[{j}].imageUrl")


def _check_image(url: str, path: str) -> None:
    parts = urlsplit(url)
    if url.startswith("data:image/") or (parts.scheme in {"http", "https"} and parts.netloc):
        return
    raise SetupError("must be an absolute http(s) URL or a data:image/... URL", field=path)


def _convert(raw: object, kind: Any, path: str) -> Any:
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        message, at, where = str(exc).rpartition(" - at `")
        if not at:  # a problem with the value itself: msgspec names no path inside it
            message, where = str(exc), ""
        where = where.rstrip("`").removeprefix("$")
        raise SetupError(message, field=f"{path}{where}") from None


def _unique(ids: list[Any], path: str) -> None:
    seen: set[Any] = set()
    for i, value in enumerate(ids):
        if value in seen:
            raise SetupError(f"duplicate id {value!r}", field=f"{path}[{i}].id")
        seen.add(value)
