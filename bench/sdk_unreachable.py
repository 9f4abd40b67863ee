"""Micro-benchmark: ``cmc_client.Client.post_tender`` latency with CMC unreachable (outbox write included).

Issue 4 target: p99 < 5 ms. Two ways of being unreachable, both on loopback:

- ``refused`` (default): a closed port, the connection is refused (CMC down, host up);
- ``hanging``: a socket that accepts connections and never answers (a stuck CMC or proxy). The first
  sale waits its whole ``--deadline``; while that attempt is still waiting, later sales are only stored.

Every call writes the tender to the outbox (SQLite WAL, ``synchronous=FULL``: fsync'd) first.

Run: ``.venv/bin/python bench/sdk_unreachable.py [-n 2000] [--mode refused|hanging] [--gap 0]``
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

from cmc_client import Client, Customer, Product, Tender

TARGET_P99_MS = 5.0


def closed_port() -> str:
    """A loopback URL nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class Hanging:
    """A loopback socket that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def run(n: int, mode: str, gap: float, deadline: float) -> list[float]:
    """Post ``n`` tenders ``gap`` seconds apart; return each call's latency in ms."""
    hanging = Hanging() if mode == "hanging" else None
    url = hanging.url if hanging else closed_port()
    timings = []
    with tempfile.TemporaryDirectory() as tmp:
        client = Client(url, "pax", "id", "secret", outbox_path=Path(tmp) / "outbox.sqlite3")
        try:
            for i in range(n):
                tender = Tender(
                    transactionId=f"B-{i}",
                    terminalId="TERM-01",
                    posLocationId="LOC-1",
                    transactionAmount=Decimal("12.50"),
                    customer=Customer(id=f"C-{i % 50}", firstName="Ada"),
                    products=[Product(productId="P-1", productName="Latte", quantity=Decimal(2))],
                )
                started = time.perf_counter()
                result = client.post_tender(tender, deadline=deadline)
                timings.append((time.perf_counter() - started) * 1000)
                assert result.status == "queued", result
                if gap:
                    time.sleep(gap)
            assert client.status().queued == n
        finally:
            if hanging:
                hanging.close()
            client.close(grace=1.0)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=2000, help="tenders (default 2000)")
    parser.add_argument("--mode", choices=["refused", "hanging"], default="refused")
    parser.add_argument("--gap", type=float, default=0.0, help="seconds between sales (default 0)")
    parser.add_argument("--deadline", type=float, default=2.0, help="post_tender deadline (default 2 s)")
    args = parser.parse_args()
    timings = sorted(run(args.n, args.mode, args.gap, args.deadline))
    n = len(timings)
    pct = {p: timings[min(n - 1, int(p / 100 * n))] for p in (50, 90, 99)}
    verdict = "met" if pct[99] < TARGET_P99_MS else "NOT met"
    print(
        f"post_tender, CMC unreachable ({args.mode}), n={n}: p50 {pct[50]:.2f} ms  p90 {pct[90]:.2f} ms"
        f"  p99 {pct[99]:.2f} ms  max {timings[-1]:.2f} ms  (target p99 < {TARGET_P99_MS:g} ms: {verdict})"
    )


if __name__ == "__main__":
    main()
