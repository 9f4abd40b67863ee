"""A TCP proxy that can fall silent: a network cut as a client sees it, with no FIN and no RST.

A half-open connection (the peer's host crashed, a firewall dropped the flow, a cable was pulled)
looks alive to the client's kernel: writes succeed and nothing ever comes back. Closing a socket or
terminating a backend, what the other failure tests do, tells the client at once; this does not.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit


class Blackhole:
    """Forwards every connection to ``target`` (host, port) until ``silence()``; then drops bytes both ways.

    The sockets stay open while silent, so neither side learns anything: the client's next
    statement waits for an answer that never comes.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self.silent = False
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def silence(self) -> None:
        self.silent = True

    def url_for(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's."""
        parts = urlsplit(url)
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    async def close(self) -> None:
        """Close every connection (both sides see it end) and wait for the pipes to stop."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.append(writer)
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.append(upstream)
        await asyncio.gather(self._pipe(reader, upstream), self._pipe(upstream_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy until the source ends, then end the destination too: a close travels through, except
        when silent (the FIN is lost with everything else, so the other side never learns)."""
        try:
            while data := await reader.read(65536):
                if not self.silent:
                    writer.write(data)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            if not self.silent:
                writer.close()


@contextlib.asynccontextmanager
async def blackhole_for(url: str) -> AsyncIterator[Blackhole]:
    """A started proxy in front of the PostgreSQL server of ``url``."""
    parts = urlsplit(url)
    proxy = Blackhole((parts.hostname or "127.0.0.1", parts.port or 5432))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
