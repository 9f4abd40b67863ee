"""The real CMC service for SDK tests: a SQLite file, uvicorn on loopback (thread or subprocess).

Shared by ``test_sdk_real_server.py`` and ``test_sdk_crash.py``. Nothing here is faked: the server is
``cmc.api.app:create_app`` with the demo registry applied (``examples/demo.yaml``). In a thread, the
app runs on a :class:`ManualClock` when given one, so a test moves time on instead of sleeping.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import uvicorn
import yaml

from cmc import registry
from cmc.api.app import create_app
from cmc.clock import Clock, system_clock
from cmc.config import Settings
from cmc.store import migrate
from cmc.store.database import Database
from cmc_client import Contact, Customer, Product, Tender

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "examples" / "demo.yaml"
POS, CLIENT_ID, SECRET = "pax", "pax-demo", "s3cr3t!"


class ManualClock:
    """One clock for CMC and the SDK in a test: time passes only when told to (:meth:`advance`)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        """CMC's clock (``create_app(clock=...)``): an aware UTC instant."""
        return self.now

    def seconds(self) -> float:
        """The SDK's clock (``Client(clock=...)``): seconds since the epoch."""
        return self.now.timestamp()

    def advance(self, **delta: float) -> None:
        """Move the clock forward by ``timedelta(**delta)``."""
        self.now += timedelta(**delta)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a Python subprocess of a test.

    Spawned processes import the whole service; without a bytecode cache (``PYTHONDONTWRITEBYTECODE``)
    each one compiles it again. Children therefore cache bytecode under the temp dir, never in the repo.
    """
    env = {**os.environ, **extra}
    if env.pop("PYTHONDONTWRITEBYTECODE", None):
        env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "cmc-test-pycache"))
    return env


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_for(tmp: Path, **overrides: Any) -> Settings:
    """Server settings on ``tmp/cmc.db``: quiet logs, no notification dispatcher."""
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp}/cmc.db",
        "public_url": "http://cmc.test",
        "access_log": False,
        "log_level": "warning",
        "dispatcher": False,
    }
    values.update(overrides)
    return Settings(**values)


def registry_file(tmp: Path, **flags: bool) -> Path:
    """The demo registry, with ``pax``'s settings flags changed (e.g. ``isTransactionsEnabled=False``)."""
    spec = yaml.safe_load(DEMO.read_text())
    spec["posSystems"][0]["settings"].update(flags)
    path = tmp / "registry.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


_templates: dict[str, Path] = {}


def prepare(settings: Settings, path: Path = DEMO) -> None:
    """``cmc apply``: migrate the database and load the registry file.

    Done once per registry content in this process; later calls copy that database file.
    """
    key = path.read_text()
    template = _templates.get(key)
    if template is None:
        folder = tempfile.mkdtemp(prefix="cmc-template-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        template = Path(folder) / "cmc.db"
        db = Database.open(f"sqlite:///{template}")
        try:
            migrate.upgrade(db)
            db.run_sync(registry.apply, registry.load_file(str(path)))
        finally:
            asyncio.run(db.close())
        with sqlite3.connect(template) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _templates[key] = template
    shutil.copyfile(template, db_path(settings))


def db_path(settings: Settings) -> Path:
    return Path(settings.database_url.removeprefix("sqlite:///"))


def transaction_counts(path: Path) -> Counter[str]:
    """How many times CMC stored each POS transactionId (read straight from the server's file)."""
    with sqlite3.connect(path, timeout=10) as db:
        rows = db.execute("SELECT pos_transaction_id, count(*) FROM transactions GROUP BY 1").fetchall()
    return Counter(dict(rows))


def rule_firings(path: Path) -> Counter[str]:
    with sqlite3.connect(path, timeout=10) as db:
        return Counter(dict(db.execute("SELECT rule, count(*) FROM rule_firings GROUP BY 1").fetchall()))


def tender(tx_id: str, *, amount: str = "23.50", terminal: str = "term5", location: str = "loc5") -> Tender:
    """A sale the demo rules answer with a QR widget, a CFS template and messages (amount 15-50 at loc5)."""
    number = zlib.crc32(tx_id.encode()) % 10**4
    return Tender(
        transactionId=tx_id,
        terminalId=terminal,
        posLocationId=location,
        transactionType="Sale",
        transactionAmount=Decimal(amount),
        customer=Customer(
            id=f"C-{tx_id}",
            firstName="Ada",
            lastName="Lovelace",
            contacts=[Contact(email=f"ada.{tx_id.lower()}@example.com", phone=f"+1415555{number:04d}")],
        ),
        products=[Product(productId="LAT-01", productName="Oat latte", quantity=Decimal(2))],
    )


class ThreadServer:
    """uvicorn serving the real app on a fixed loopback port in a thread; can be stopped and restarted."""

    def __init__(self, settings: Settings, port: int | None = None, *, clock: Clock = system_clock) -> None:
        self.settings = settings
        self.clock = clock
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ThreadServer:
        config = uvicorn.Config(
            create_app(self.settings, clock=self.clock),
            host="127.0.0.1",
            port=self.port,
            lifespan="on",
            access_log=False,
            log_config=None,
            log_level="warning",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(20)
            assert not self._thread.is_alive(), "uvicorn did not stop"
        self._server = self._thread = None

    def __enter__(self) -> ThreadServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_STANDBY = """
import sys
import cmc.api.app, uvicorn  # the slow part: imports, done before the go signal
from cmc.cli import main
if sys.stdin.readline().strip() != "go":
    sys.exit(0)
sys.exit(main(["serve", "--host", "127.0.0.1", "--port", sys.argv[1]]))
"""


class ServeProcess:
    """``cmc serve`` as a subprocess on SQLite; ``kill()`` is SIGKILL (no graceful shutdown).

    A restart must be quick even when importing the service takes seconds (a loaded machine, no
    bytecode cache), so the next process is always spawned ahead with its imports done, waiting on
    stdin; ``start()`` tells it to go and spawns the next standby.
    """

    def __init__(self, settings: Settings, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = child_env(
            CMC_DATABASE_URL=settings.database_url,
            CMC_PUBLIC_URL=self.url,
            CMC_LOG_LEVEL="warning",
            CMC_ACCESS_LOG="0",
            CMC_DISPATCHER="0",
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._standby = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 (our own interpreter and script)
            [sys.executable, "-c", _STANDBY, str(self.port)],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )

    def start(self, timeout: float = 60.0) -> ServeProcess:
        assert self.proc is None, "already running"
        self.proc, self._standby = self._standby, self._spawn()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cmc serve exited with {self.proc.returncode}")
            try:
                if httpx2.get(f"{self.url}/health", timeout=0.5).status_code < 500:
                    return self
            except httpx2.TransportError:
                pass
            time.sleep(0.02)
        raise RuntimeError("cmc serve did not come up")

    def kill(self) -> None:
        """SIGKILL the serving process (the standby stays ready for ``start()``)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        """Kill everything, the standby included."""
        self.kill()
        self._standby.kill()
        self._standby.wait(10)
        if self._standby.stdin is not None:
            self._standby.stdin.close()


__all__ = [
    "CLIENT_ID",
    "DEMO",
    "POS",
    "SECRET",
    "ManualClock",
    "ServeProcess",
    "ThreadServer",
    "child_env",
    "db_path",
    "free_port",
    "prepare",
    "registry_file",
    "rule_firings",
    "settings_for",
    "tender",
    "transaction_counts",
]
