"""``cmc worker``: a process that only sends the outbox, until SIGINT or SIGTERM.

Run any number of them next to (or instead of) the API's in-process dispatcher; on PostgreSQL
they share the outbox through ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import asyncio
import signal

import structlog

from cmc import background
from cmc.config import Settings
from cmc.outbox.dispatch import Dispatcher

SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Dispatch until ``stop`` is set, or, without one, until SIGINT/SIGTERM."""
    log = structlog.get_logger(__name__)
    loop = asyncio.get_running_loop()
    handle_signals = stop is None
    stop = stop or asyncio.Event()
    if handle_signals:
        for sig in SIGNALS:
            loop.add_signal_handler(sig, stop.set)
    db = settings.open_database()
    dispatcher = Dispatcher(db, settings)
    try:
        await dispatcher.start()
        log.info("outbox worker started", poll_seconds=settings.outbox_poll.total_seconds())
        await stop.wait()
        log.info("outbox worker stopping")
    finally:
        await background.shut_down([("dispatcher", dispatcher.stop), ("database", db.close)])
        if handle_signals:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)
