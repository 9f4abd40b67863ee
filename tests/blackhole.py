"""A TCP proxy whose flows can fall silent: a network cut as a client sees it, with no FIN and no RST.

A half-open connection (the peer's host crashed, a firewall or a NAT forgot the flow, a cable was
pulled) looks alive to the client's kernel: writes succeed and nothing ever comes back. Closing a
socket or terminating a backend, what the other failure tests do, tells the client at once; this
does not. ``silence()`` silences every flow open at the time and every new one; ``heal()`` lets new
flows pass again, as when a route comes back, while the silenced ones stay lost (their bytes are
dropped and their peers never hear a FIN). ``cut_on(pattern)`` silences only the flow whose client
sends ``pattern``: dropped, or (``forward=True``) delivered to the server with the answer lost, as
when a COMMIT happened and its answer never came back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit


class _Flow:
    def __init__(self, *, silent: bool) -> None:
        self.silent = silent


class Blackhole:
    """Forwards every connection to ``target`` (host, port), each flow until it is silenced."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self._flows: list[_Flow] = []
        self._down = False
        self._pattern: bytes | None = None
        self._forward = False
        self.triggered = asyncio.Event()
        """Set when ``cut_on``'s pattern went by and its flow fell silent."""
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def silence(self) -> None:
        """Every open flow falls silent, and so does every new one until ``heal()``."""
        self._down = True
        for flow in self._flows:
            flow.silent = True

    def heal(self) -> None:
        """New flows pass again; the silenced ones stay silent."""
        self._down = False

    def cut_on(self, pattern: bytes, *, forward: bool = False) -> None:
        """Silence the next flow whose client sends ``pattern``; the others go on as they were."""
        self._pattern, self._forward = pattern, forward
        self.triggered.clear()

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
        flow = _Flow(silent=self._down)
        self._flows.append(flow)
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.append(upstream)
        await asyncio.gather(
            self._pipe(flow, reader, upstream, from_client=True),
            self._pipe(flow, upstream_reader, writer, from_client=False),
        )

    async def _pipe(
        self, flow: _Flow, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, from_client: bool
    ) -> None:
        """Copy until the source ends, then end the destination too: a close travels through, except
        on a silent flow (the FIN is lost with everything else, so the other side never learns)."""
        try:
            while data := await reader.read(65536):
                if from_client and not flow.silent and self._pattern is not None and self._pattern in data:
                    self._pattern = None
                    flow.silent = True
                    self.triggered.set()
                    if self._forward:
                        writer.write(data)
                        await writer.drain()
                    continue
                if not flow.silent:
                    writer.write(data)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            if not flow.silent:
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
