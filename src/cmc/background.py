"""How the service's background loops end (CFS feed, registry watch, PostgreSQL listener, outbox)."""

from __future__ import annotations

import abc
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


class Loop(abc.ABC):
    """A background task of one process, started with the app and ended (``cancel``) with it."""

    name = "cmc-loop"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=self.name)

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    @abc.abstractmethod
    async def run(self) -> None:
        """The loop itself (it may return: its work is done)."""
