"""The one clock of a running service: ``Clock`` is any callable returning an aware UTC instant.

Routes, the dispatcher and the feeds read the time from the app's clock (``create_app(clock=...)``),
never from ``datetime.now`` directly, so tests set the time instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""Returns now, aware, in UTC."""


def system_clock() -> datetime:
    """The wall clock, aware UTC."""
    return datetime.now(UTC)
