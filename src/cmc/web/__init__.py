"""Our HTML: the Jinja2 templates of pages, screens and emails, and the company look they wear.

Merchant text (widget titles, slides, names) is data: it fills our templates through autoescaped
variables and is never compiled as a template itself. Branding reaches style sheets only as
validated hex colours and a validated font name (``registry.setup.Branding``), so no merchant text
can break out of CSS. Every font stack ends with CJK and emoji fallbacks, so a shopper's name in
any script renders on a device that has the fonts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import msgspec

from cmc.registry import Company
from cmc.registry.setup import Branding

__all__ = ["FALLBACK_FONTS", "NEUTRAL", "Look", "company_look", "look_of", "render", "stored_look"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
FALLBACK_FONTS = (
    "system-ui",
    "-apple-system",
    '"Segoe UI"',
    "Roboto",
    '"Helvetica Neue"',
    "Arial",
    '"Noto Sans"',
    '"Noto Sans CJK SC"',
    '"Noto Sans CJK JP"',
    '"Noto Sans CJK KR"',
    '"PingFang SC"',
    '"Hiragino Sans"',
    '"Microsoft YaHei"',
    '"Malgun Gothic"',
    '"Apple Color Emoji"',
    '"Segoe UI Emoji"',
    '"Noto Color Emoji"',
    "sans-serif",
)
"""After the company's font: Latin system fonts, then CJK, then colour emoji, then the generic family."""

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
)
# The console's tables share one macro; a global, so that no page has to import it.
_env.globals["data_table"] = _env.get_template("console/_table.html").module.data_table  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Look:
    """A company's branding, resolved for our templates (defaults filled in)."""

    name: str
    logo_url: str | None = None
    primary: str = Branding().colors.primary
    background: str = Branding().colors.background
    text: str = Branding().colors.text
    font: str | None = None

    @property
    def font_stack(self) -> str:
        """The CSS ``font-family`` value: the company's font first, then every fallback."""
        first = [f'"{self.font}"'] if self.font else []
        return ", ".join([*first, *FALLBACK_FONTS])

    @property
    def on_primary(self) -> str:
        """Black or white, whichever reads on the primary colour (buttons, badges)."""
        # 0.179: the luminance at which black and white text contrast equally (WCAG ratios).
        return "#111111" if _luminance(self.primary) > 0.179 else "#ffffff"


NEUTRAL = Look(name="")
"""The look of a page that belongs to no company (an unknown link)."""


def look_of(company_name: str, branding: Branding) -> Look:
    """The look of a company: its branding, its name where the branding names none."""
    colors = branding.colors
    return Look(
        name=branding.name or company_name,
        logo_url=branding.logoUrl,
        primary=colors.primary,
        background=colors.background,
        text=colors.text,
        font=branding.font,
    )


def company_look(company: Company | None) -> Look:
    """The look of a company of the registry snapshot (neutral when it is gone)."""
    return NEUTRAL if company is None else look_of(company.name, company.setup.branding)


def stored_look(company_name: str | None, branding: object) -> Look:
    """The look from stored registry data (validated when applied; a deleted company has none)."""
    try:
        parsed = msgspec.convert(branding or {}, Branding)
    except msgspec.ValidationError:
        parsed = Branding()
    return look_of(company_name or "", parsed)


def render(template: str, **context: Any) -> str:
    """Render one of our templates (autoescaped; an unknown variable is an error, not a blank)."""
    return _env.get_template(template).render(**context)


def _luminance(hex_color: str) -> float:
    """Relative luminance (WCAG) of ``#rgb`` or ``#rrggbb``."""
    digits = hex_color.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    channels = [int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
