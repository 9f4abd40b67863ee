"""How the service's background loops end (CFS feed, registry watch, PostgreSQL listener, outbox)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended: its ``CancelledError`` is the expected end, not news."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
