"""QR rendering: the PNG, the SVG and the terminal text all decode back to the data."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

import pytest
import segno
import zxingcpp
from PIL import Image

from cmc.qr import qr_png, qr_svg, qr_terminal

SVG = "{http://www.w3.org/2000/svg}"
DATA = [
    "https://cmc.example.com/s/Xk3_9aQzPw",
    "https://cmc.example.com/s/" + "a" * 120,
    "hi",  # short data must still be a full QR code, never a Micro QR
    "Grüße, café ☕",
]


def decode(image: Image.Image) -> list[zxingcpp.Barcode]:
    return zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)


def matrix_image(dark: set[tuple[int, int]], size: int, *, scale: int = 4, quiet: int = 4) -> Image.Image:
    """Rasterise a set of dark (x, y) modules into a black-on-white image."""
    side = (size + 2 * quiet) * scale
    img = Image.new("L", (side, side), 255)
    for x, y in dark:
        left, top = (x + quiet) * scale, (y + quiet) * scale
        img.paste(0, (left, top, left + scale, top + scale))
    return img


def expected_modules(data: str, border: int) -> set[tuple[int, int]]:
    matrix = segno.make_qr(data, error="m", boost_error=False).matrix
    return {(x + border, y + border) for y, row in enumerate(matrix) for x, bit in enumerate(row) if bit}


def svg_modules(svg: bytes) -> tuple[set[tuple[int, int]], int, int]:
    """Parse segno's SVG: the stroked path's M/m/h commands draw rows of dark modules at y + 0.5."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    width = int(root.attrib["width"])
    (group,) = root.iter(f"{SVG}g")
    scale = int(re.fullmatch(r"scale\((\d+)\)", group.attrib["transform"])[1])
    (path,) = [p for p in root.iter(f"{SVG}path") if p.attrib.get("stroke")]
    assert path.attrib["stroke"] == "#000"
    dark: set[tuple[int, int]] = set()
    x = y = 0.0
    for cmd, a, b in re.findall(r"([Mmh])(-?\d+(?:\.\d+)?)(?: (-?\d+(?:\.\d+)?))?", path.attrib["d"]):
        if cmd == "M":
            x, y = float(a), float(b)
        elif cmd == "m":
            x, y = x + float(a), y + float(b)
        else:
            dark |= {(int(x) + i, int(y - 0.5)) for i in range(int(a))}
            x += float(a)
    assert re.sub(r"[Mmh]-?\d+(\.\d+)?( -?\d+(\.\d+)?)?", "", path.attrib["d"]) == "", "unexpected commands"
    return dark, width, scale


@pytest.mark.parametrize("data", DATA)
def test_png_decodes_back_to_the_data(data: str) -> None:
    png = qr_png(data)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    (result,) = decode(Image.open(io.BytesIO(png)))
    assert result.text == data
    assert result.ec_level == "M"


@pytest.mark.parametrize(("scale", "border"), [(1, 0), (3, 4), (8, 2)])
def test_png_size_follows_scale_and_border(scale: int, border: int) -> None:
    data = DATA[0]
    modules = segno.make_qr(data, error="m", boost_error=False).symbol_size(scale=1, border=0)[0]
    image = Image.open(io.BytesIO(qr_png(data, scale=scale, border=border)))
    assert image.size == ((modules + 2 * border) * scale,) * 2


@pytest.mark.parametrize("data", DATA)
def test_svg_draws_the_same_modules_and_decodes(data: str) -> None:
    svg = qr_svg(data, scale=5, border=3)
    assert not svg.startswith(b"<?xml")
    dark, width, scale = svg_modules(svg)
    expected = expected_modules(data, border=3)
    assert dark == expected
    size = width // scale
    assert width == size * scale == (max(x for x, _ in expected) + 1 + 3) * 5
    (result,) = decode(matrix_image(dark, size))
    assert result.text == data


def test_svg_has_a_white_background_for_dark_pages() -> None:
    root = ET.fromstring(qr_svg("x"))
    fills = [p.attrib.get("fill") for p in root.iter(f"{SVG}path")]
    assert "#fff" in fills


@pytest.mark.parametrize("data", DATA[:2])
def test_terminal_text_encodes_the_same_modules(data: str) -> None:
    text = qr_terminal(data, border=2)
    rows = text.rstrip("\n").split("\n")
    # segno prints light modules as ink (for dark terminals): a char is two rows, top and bottom.
    halves = {"█": (True, True), "▀": (True, False), "▄": (False, True), " ": (False, False)}
    light: set[tuple[int, int]] = set()
    for r, row in enumerate(rows):
        for x, char in enumerate(row):
            top, bottom = halves[char]
            light |= {(x, 2 * r)} if top else set()
            light |= {(x, 2 * r + 1)} if bottom else set()
    expected = expected_modules(data, border=2)
    side = max(x for x, _ in expected) + 1 + 2
    dark = {(x, y) for x in range(side) for y in range(side)} - light
    assert dark == expected
    (result,) = decode(matrix_image(dark, side))
    assert result.text == data


@pytest.mark.parametrize(("scale", "border"), [(0, 2), (8, -1)])
def test_bad_scale_or_border_is_refused(scale: int, border: int) -> None:
    with pytest.raises(ValueError, match="scale"):
        qr_png("x", scale=scale, border=border)
    with pytest.raises(ValueError, match="scale"):
        qr_svg("x", scale=scale, border=border)
