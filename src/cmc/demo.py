"""``cmc demo``: CMC on a throwaway SQLite file with the demo registry, and a POS simulator against it.

It starts the real service (uvicorn on loopback, in this process), rings up sales from the demo
location's terminals through the POS SDK (``cmc_client``) for a few seconds, then shows what CMC did:
the tenders sent, the POS Rules that fired and one QR code a rule produced, rendered in the terminal.
Then it keeps serving until Ctrl-C, so that QR code's link can be opened (``--exit`` stops at once);
nothing outlives it unless ``--dir`` names a directory to keep.
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cmc.config import Settings
from cmc.errors import CmcError

if TYPE_CHECKING:  # the SDK, uvicorn and segno load only when the demo runs
    from cmc_client import TenderResult

DEMO_REGISTRY = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
POS, CLIENT_ID, SECRET = "pax", "pax-demo", "s3cr3t!"
LOCATION, TERMINALS = "loc5", ("term5", "term6", "term7")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``cmc demo`` options."""
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the POS simulator runs")
    parser.add_argument("--rate", type=float, default=8.0, help="tenders per second, all terminals")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--dir", help="keep the database and the POS outbox here (default: a temp dir)")
    parser.add_argument("--registry", default=str(DEMO_REGISTRY), help="registry file (examples/demo.yaml)")
    parser.add_argument("--seed", type=int, help="simulator random seed")
    parser.add_argument(
        "--exit",
        action="store_true",
        help="stop the service after the report (default: keep serving until Ctrl-C)",
    )


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    """Run the demo; ``settings`` supplies everything but the database, URL and logging."""
    out = out or sys.stdout
    if args.seconds <= 0 or args.rate <= 0:
        raise CmcError("--seconds and --rate must be positive")
    with ExitStack() as stack:
        if args.dir:
            folder = Path(args.dir)
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cmc-demo-")))
        listener = stack.enter_context(_listen(args.host, args.port))
        url = f"http://{args.host}:{listener.getsockname()[1]}"
        settings = dataclasses.replace(
            settings,
            database_url=f"sqlite:///{folder / 'cmc.db'}",
            public_url=url,
            access_log=False,
            log_level="warning",
            dispatcher=False,  # no SMTP/SMS gateway in a demo: messages stay queued in the outbox
        )
        out.write(f"CMC demo: {_apply(settings, args.registry)}\n")
        server = _Server(settings, listener)
        server.start()
        stack.callback(server.stop)
        out.write(f"Service up at {url} (SQLite {folder / 'cmc.db'})\n")
        results = _simulate(args, url, folder, out)
        _report(settings, results, out)
        if not args.exit:
            _keep_serving(url, out)
    out.write("Service stopped.\n" + (f"Data kept in {args.dir}\n" if args.dir else ""))
    out.flush()
    return 0


def _keep_serving(url: str, out: TextIO) -> None:
    """Serve until Ctrl-C (or SIGTERM), so the links the demo printed can be opened."""
    import signal

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    out.write(
        f"\nStill serving at {url}: open the QR code's link above in a browser (its page is the link with"
        " /s/ replaced by /qr/). Press Ctrl-C to stop.\n"
    )
    out.flush()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        out.write("\n")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _listen(host: str, port: int) -> socket.socket:
    try:
        listener = socket.create_server((host, port))
    except OSError as exc:
        raise CmcError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return listener


def _apply(settings: Settings, path: str) -> str:
    import asyncio

    from cmc import registry
    from cmc.store import migrate

    spec = registry.load_file(path)
    db = settings.open_database()
    try:
        migrate.upgrade(db)
        report = db.run_sync(registry.apply, spec)
    finally:
        asyncio.run(db.close())
    return f"{Path(path).name} applied ({report.summary()})"


class _Server:
    """uvicorn serving the app on an already bound socket, in a background thread."""

    def __init__(self, settings: Settings, listener: socket.socket) -> None:
        import uvicorn

        from cmc.api.app import create_app

        config = uvicorn.Config(
            create_app(settings),
            lifespan="on",
            access_log=False,
            log_config=None,
            log_level="warning",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name="cmc-demo-server", daemon=True
        )

    def start(self, timeout: float = 60.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise CmcError("the demo service did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(15)


def _simulate(args: argparse.Namespace, url: str, folder: Path, out: TextIO) -> list[TenderResult]:
    from cmc_client import Client, Tender
    from cmc_client.simulate import simulate

    results: list[TenderResult] = []
    lock = threading.Lock()
    out.write(
        f"POS simulator: terminals {', '.join(TERMINALS)} at {LOCATION}, {args.rate:g} tenders/s"
        f" for {args.seconds:g} s, through the cmc_client SDK\n"
    )
    out.flush()
    with Client(url, POS, CLIENT_ID, SECRET, outbox_path=folder / "pos-outbox.sqlite3").start() as client:

        def post(tender: Tender) -> TenderResult:
            result = client.post_tender(tender, deadline=2.0)
            with lock:
                results.append(result)
            return result

        report = simulate(
            post,
            terminals=list(TERMINALS),
            location=LOCATION,
            rate=args.rate,
            duration=args.seconds,
            seed=args.seed,
            progress=out,
        )
        drained = client.drain()
    statuses = ", ".join(f"{n} {status}" for status, n in sorted(report.statuses.items()))
    out.write(
        f"Tenders sent: {report.sent} ({statuses or 'none'}); latency p50 {report.percentile(50):.1f} ms,"
        f" p99 {report.percentile(99):.1f} ms; still queued after drain: {drained.remaining}\n"
    )
    return list(results)


def _report(settings: Settings, results: list[TenderResult], out: TextIO) -> None:
    import asyncio

    from cmc import firings
    from cmc.outbox import queue
    from cmc.qr import qr_terminal
    from cmc.store.database import Database

    delivered = [r for r in results if r.response is not None]
    db = Database.open(settings.database_url)
    try:
        fired = Counter(db.run_sync(firings.counts_by_rule))
        messages = db.run_sync(queue.count)
    finally:
        asyncio.run(db.close())
    effects = Counter(
        (effect.rule, effect.kind) for r in delivered if r.response for effect in r.response.data.effects
    )
    out.write("Rules that fired:\n")
    if not fired:
        out.write("  none\n")
    for rule, count in fired.most_common():
        kinds = ", ".join(f"{n} {kind}" for (name, kind), n in sorted(effects.items()) if name == rule)
        out.write(
            f"  {rule}: {count} time{'s' if count != 1 else ''}" + (f" ({kinds})" if kinds else "") + "\n"
        )
    out.write(f"Messages queued for customers: {messages}\n")
    link = next((r.qr_link for r in delivered if r.qr_link), None)
    if link is None:
        out.write("No QR code fired this time (try a longer --seconds).\n")
        return
    out.write(f"One QR code a rule produced ({link}):\n")
    out.write(qr_terminal(link))
    out.flush()
