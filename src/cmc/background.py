"""How the service's background loops end (CFS feed, registry watch, PostgreSQL listener, outbox)."""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

log = structlog.get_logger(__name__)

Step = tuple[str, Callable[[], Awaitable[None]]]
"""A named step of a process's shutdown."""


async def shut_down(steps: Sequence[Step]) -> None:
    """Run each ``(name, step)`` in order, every one even when one before it failed.

    A failure is logged and not raised: the process is ending either way and every step has had its
    turn; raised from a ``finally`` it would replace the exception (if any) that ended the process,
    which would then report only that the shutdown failed. The log names each failure.
    """
    for name, step in steps:
        try:
            await step()
        except Exception:
            log.exception("shutdown step failed", step=name)


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
