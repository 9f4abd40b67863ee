"""The merchant console's static files: our script and style sheet, and the vendored libraries.

Everything is served from ``/console/static/`` with a year-long, immutable cache. A vendored file's
folder names its version (``vendor/README.md``); our own files are linked with a digest of their
content (``?v=...``), so a new release is fetched at once while an unchanged file never is.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
URL = "/console/static"
CHART_JS = "vendor/chart.js-4.6.1/chart.umd.min.js"
HTMX = "vendor/htmx.org-2.0.11/htmx.min.js"
OURS = ("console.css", "console.js")


@cache
def url(name: str) -> str:
    """The URL of a static file; ours carry a digest of their content, vendored ones their version."""
    if name not in OURS:
        return f"{URL}/{name}"
    digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]
    return f"{URL}/{name}?v={digest}"
