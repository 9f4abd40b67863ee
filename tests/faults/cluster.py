"""Real ``cmc serve`` processes on one database (a SQLite file or a PostgreSQL database), for fault tests.

Each process is a subprocess on its own port with its output in files; a test can kill one (SIGKILL),
start it again, and read every process's log. Clients talk to them over real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from sqlalchemy import Connection, text

import pg_databases
from cmc.store.database import Database
from support import apply_registry, basic, make_settings

ROOT = Path(__file__).resolve().parents[2]
CMC = ROOT / ".venv" / "bin" / "cmc"
REGISTRY = Path(__file__).with_name("faults.yaml")
STARTUP_SECONDS = 60.0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """Running ``cmc serve`` processes sharing ``database_url``."""

    database_url: str
    env: dict[str, str]
    logs: Path
    ports: list[int] = field(default_factory=list)
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, port: int | None = None) -> int:
        """Start one more process (or restart the one on ``port``); returns its port once it is ready."""
        port = self._spawn(port)
        self._wait_ready(port)
        return port

    def start_many(self, count: int) -> None:
        """Start ``count`` processes at once (their imports overlap), and wait until each is ready."""
        for port in [self._spawn(None) for _ in range(count)]:
            self._wait_ready(port)

    def _spawn(self, port: int | None) -> int:
        port = port or free_port()
        if port not in self.ports:
            self.ports.append(port)
        log = self.logs / f"serve-{port}.log"
        with log.open("ab") as out:
            self.processes[port] = subprocess.Popen(
                [str(CMC), "serve", "--port", str(port)], env=self.env, cwd=ROOT, stdout=out, stderr=out
            )
        return port

    def kill(self, port: int) -> None:
        """SIGKILL the process on ``port``: no shutdown, whatever it was doing is cut off."""
        process = self.processes[port]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def log_text(self) -> str:
        """Everything every process wrote."""
        return "\n".join(log.read_text(errors="replace") for log in sorted(self.logs.glob("serve-*.log")))

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def _wait_ready(self, port: int) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        with httpx2.Client(timeout=5) as http:
            while True:
                process = self.processes[port]
                assert process.poll() is None, f"cmc serve exited early:\n{self.log_text()[-3000:]}"
                assert time.monotonic() < deadline, f"cmc serve not ready:\n{self.log_text()[-3000:]}"
                with contextlib.suppress(httpx2.HTTPError):
                    if http.get(f"{self.url(port)}/ready").status_code == 200:
                        return
                time.sleep(0.1)

    async def query(self, sql: str, **params: Any) -> list[Any]:
        """Rows of one SQL statement on the shared database."""

        def run(conn: Connection) -> list[Any]:
            return list(conn.execute(text(sql), params))

        db = Database.open(self.database_url)
        try:
            return await db.read(run)
        finally:
            await db.close()


@contextlib.contextmanager
def cluster(
    backend: str, tmp_path: Path, *, processes: int = 2, registry: Path = REGISTRY, **env: str
) -> Iterator[Cluster]:
    """``processes`` ``cmc serve`` on a fresh database of ``backend`` with ``registry`` applied."""
    url = f"sqlite:///{tmp_path}/cmc.db" if backend == "sqlite" else pg_databases.create()
    base = {k: v for k, v in os.environ.items() if not k.startswith("CMC_")}
    base.update(
        CMC_DATABASE_URL=url,
        CMC_PUBLIC_URL="http://cmc.test",
        CMC_DISPATCHER="false",
        CMC_LOG_LEVEL="info",
        CMC_ACCESS_LOG="false",
        CMC_REGISTRY_REFRESH_SECONDS="0.5",
    )
    base.update(env)
    # ``cmc apply`` as a function, on a thread of its own (no event loop there, so it closes its
    # database): the processes under test are the ``cmc serve`` ones; a subprocess for the apply
    # would only add two seconds of imports to every cluster.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(apply_registry, make_settings(tmp_path, database_url=url), registry).result()
    logs = tmp_path / "logs"
    logs.mkdir()
    running = Cluster(url, base, logs)
    try:
        running.start_many(processes)
        yield running
    finally:
        running.stop()
        if backend != "sqlite":
            pg_databases.drop(url)


@contextlib.asynccontextmanager
async def clients(running: Cluster) -> AsyncIterator[list[httpx2.AsyncClient]]:
    """One HTTP client per process, each with room for many concurrent connections."""
    limits = httpx2.Limits(max_connections=400, max_keepalive_connections=400)
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx2.AsyncClient(base_url=running.url(port), timeout=60, limits=limits)
            )
            for port in running.ports
        ]


async def token(http: httpx2.AsyncClient, pos: str = "pax") -> str:
    answer = await http.post(
        "/connect/token",
        headers={"Authorization": basic(pos)},
        data={"grant_type": "client_credentials", "scope": "pos_integration"},
    )
    assert answer.status_code == 200, answer.text
    value: str = answer.json()["access_token"]
    return value


async def session(http: httpx2.AsyncClient, bearer: str, body: dict[str, Any]) -> str:
    answer = await http.post(
        "/pos/pax/startInteraction",
        json={"terminalId": body["terminalId"], "posLocationId": body["posLocationId"]},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert answer.status_code == 200, answer.text
    value: str = answer.json()["data"]["sessionId"]
    return value


async def send(http: httpx2.AsyncClient, bearer: str, body: dict[str, Any]) -> httpx2.Response:
    return await http.post("/pos/pax/transaction", json=body, headers={"Authorization": f"Bearer {bearer}"})


async def at_once(*calls: Any) -> list[Any]:
    """Run the calls concurrently, all released at the same moment (a barrier), failures returned."""
    gate = asyncio.Event()

    async def held(call: Any) -> Any:
        await gate.wait()
        return await call

    tasks = [asyncio.ensure_future(held(call)) for call in calls]
    await asyncio.sleep(0)
    gate.set()
    return await asyncio.gather(*tasks, return_exceptions=True)
