"""PostgreSQL LISTEN/NOTIFY: wake other processes at once instead of at their next poll.

Every process polls the database on a short timer (registry version, CFS events), so the service is
correct on any engine. On PostgreSQL a sale that fires a QR code or an ``apply`` that changes the
registry also sends a NOTIFY inside its transaction (delivered at commit), and each process listens on
one dedicated connection and wakes the matching poller, so a CFS page connected to process A sees a
sale handled by process B within milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

import asyncpg
import structlog
from sqlalchemy import Connection, bindparam, func, literal, select, text

from cmc import background
from cmc.store.database import CONNECT_TIMEOUT_SECONDS
from cmc.store.driver import PG_FAILURES, Tx
from cmc.store.statements import Statement

CFS_CHANNEL = "cmc_cfs_events"
REGISTRY_CHANNEL = "cmc_registry"
RECONNECT_SECONDS = 2.0
HEARTBEAT_SECONDS = 30.0
"""How often an idle listener asks its connection a trivial query. A peer gone without a word (a
network cut, a crashed host: a half-open TCP connection) sends no notification and no error, so
without asking the listener would wait on it for ever, leaving every wake-up to the slow poll."""
HEARTBEAT_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 2.0

log = structlog.get_logger(__name__)


_NOTIFY = Statement(select(func.pg_notify(bindparam("channel"), literal(""))), name="notifications.notify")


def notify(conn: Connection, channel: str) -> None:
    """Queue a notification on ``channel``, sent when ``conn``'s transaction commits (PostgreSQL only)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})


async def notify_in(tx: Tx, channel: str) -> None:
    """``notify`` inside a driver transaction."""
    if tx.dialect == "postgresql":
        await tx.execute(_NOTIFY, {"channel": channel})


class Listener:
    """Runs ``callbacks[channel]()`` on each notification; reconnects after a lost connection.

    ``connect`` opens the listening connection (``asyncpg.connect``; a test's may fail first).
    """

    def __init__(
        self,
        dsn: str,
        callbacks: Mapping[str, Callable[[], None]],
        *,
        connect: Callable[[str], Awaitable[asyncpg.Connection]] | None = None,
    ) -> None:
        self._dsn = dsn
        self._callbacks = dict(callbacks)
        self._connect = connect or _connect
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start listening in a background task."""
        self._task = asyncio.create_task(self._run(), name="cmc-pg-listener")

    async def stop(self) -> None:
        """Stop listening."""
        await background.cancel(self._task)

    async def _run(self) -> None:
        # Nothing but a cancel ends this loop: a listener that died would leave every wake-up to
        # the slow poll, for the rest of the process's life, and nobody would notice.
        while True:
            try:
                await self._listen()
            except PG_FAILURES as exc:
                # asyncpg's InterfaceError and InternalClientError too: a cut can leave the protocol
                # mid-operation, and such a connection is as lost as a closed one. (A heartbeat that
                # timed out is here too: TimeoutError is an OSError.)
                log.warning("notification listener lost its connection", error=type(exc).__name__)
            except Exception:
                log.exception("notification listener failed")
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _listen(self) -> None:
        """Listen on one connection until it is lost."""
        conn = await self._connect(self._dsn)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            for channel, callback in self._callbacks.items():
                await conn.add_listener(channel, _caller(callback))
            # A notification may have been missed while (re)connecting: catch up once.
            for callback in self._callbacks.values():
                callback()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), HEARTBEAT_SECONDS)
                if not lost.is_set():
                    await conn.execute("SELECT 1", timeout=HEARTBEAT_TIMEOUT_SECONDS)
        finally:
            # Bounded: on a silent connection a graceful close would wait for an answer too.
            with contextlib.suppress(Exception):
                await conn.close(timeout=CLOSE_TIMEOUT_SECONDS)


async def _connect(dsn: str) -> asyncpg.Connection:
    # Bounded too: LISTEN itself is a statement, and a cut before its answer would hang the
    # listener before its heartbeat ever starts.
    return await asyncpg.connect(
        dsn, timeout=CONNECT_TIMEOUT_SECONDS, command_timeout=HEARTBEAT_TIMEOUT_SECONDS
    )


def _caller(callback: Callable[[], None]) -> Callable[..., None]:
    def on_notification(*_args: object) -> None:
        callback()

    return on_notification
