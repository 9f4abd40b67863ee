"""QR code rendering with segno: PNG, SVG and terminal text. Pure: bytes in memory, no files.

Always a full QR code (never a Micro QR, which phone cameras rarely read) at error correction level M.
"""

from __future__ import annotations

import io

import segno

__all__ = ["qr_png", "qr_svg", "qr_terminal"]


def _make(data: str) -> segno.QRCode:
    return segno.make_qr(data, error="m", boost_error=False)


def _check(scale: int, border: int) -> None:
    if scale < 1 or border < 0:
        raise ValueError(f"scale must be >= 1 and border >= 0, not scale={scale}, border={border}")


def qr_png(data: str, *, scale: int = 8, border: int = 2) -> bytes:
    """A PNG image of ``data``; ``scale`` pixels per module, ``border`` quiet-zone modules."""
    _check(scale, border)
    out = io.BytesIO()
    _make(data).save(out, kind="png", scale=scale, border=border)
    return out.getvalue()


def qr_svg(data: str, *, scale: int = 8, border: int = 2) -> bytes:
    """A standalone SVG document of ``data`` (no XML declaration); white background, so dark pages scan."""
    _check(scale, border)
    out = io.BytesIO()
    options = {"xmldecl": False, "svgclass": None, "lineclass": None, "light": "#fff"}
    _make(data).save(out, kind="svg", scale=scale, border=border, **options)
    return out.getvalue()


def qr_terminal(data: str, *, border: int = 2) -> str:
    """``data`` as text for a terminal, two modules per character with Unicode half blocks."""
    _check(1, border)
    out = io.StringIO()
    _make(data).terminal(out=out, compact=True, border=border)
    return out.getvalue()
