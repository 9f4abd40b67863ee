"""Lean load generator for ``make bench``: virtual POS terminals doing the real two-call tender.

Each virtual client holds one HTTP/1.1 keep-alive connection and repeats, for a bounded time,
``startInteraction`` -> read ``sessionId`` -> ``transaction`` with a realistic body (a customer with
contacts drawn from a pool of 5,000, a sales person, 3 products, a loyalty card for some). Latency is
that of the whole tender (both calls). Any answer other than 200 is an error.

Requests are hand-built bytes over asyncio streams and responses are parsed just enough (status line,
``Content-Length`` or chunked) because the generator shares this machine's 2 cores with the server:
a full HTTP client (httpx) would spend more CPU than the server under test and cap the figures.

Run: ``python bench/load.py --url http://127.0.0.1:8090 --duration 10``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import msgspec
import uvloop

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
CUSTOMER_POOL_SIZE = 5000
PRODUCTS_PER_TENDER = 3
MAX_ERRORS_SHOWN = 3
MAX_HEADER_BYTES = 64 * 1024
MAX_CHUNKS = 10_000

FIRST_NAMES = ["Ana", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kira"]
LAST_NAMES = ["Nguyen", "Smith", "Garcia", "Kowalski", "Okafor", "Rossi", "Tanaka", "Dubois", "Silva"]
AREA_CODES = ["206", "213", "312", "415", "503", "617", "702", "808"]
CATEGORIES = ["Flower", "Edibles", "Vapes", "Pre-rolls", "Beverages", "Accessories", "Topicals", "Tinctures"]
MANUFACTURERS = ("Green Leaf Farms", "Sunset Labs", "Cascade Botanicals", "Pacific Roots", "Evergreen Co")


class _SessionData(msgspec.Struct):
    sessionId: str | None = None


class _SessionEnvelope(msgspec.Struct):
    data: _SessionData


class _TransactionData(msgspec.Struct):
    id: str | int


class _TransactionEnvelope(msgspec.Struct):
    data: _TransactionData


class _Token(msgspec.Struct):
    access_token: str


SESSION_DECODER = msgspec.json.Decoder(_SessionEnvelope)
TRANSACTION_DECODER = msgspec.json.Decoder(_TransactionEnvelope)
"""A 200 without ``data.id`` is a wrong answer, not a tender: decoding it raises."""
ENCODER = msgspec.json.Encoder(decimal_format="number")
"""Amounts go out as JSON numbers (``23.47``), as POS systems send them."""


@dataclass(frozen=True)
class Options:
    """What to load, how hard and for how long."""

    url: str = "http://127.0.0.1:8090"
    pos: str = "pax"
    location: str = "loc5"
    terminals: tuple[str, ...] = ("term5",)
    client_id: str = "pax-demo"
    client_secret: str = "s3cr3t!"  # the demo registry's published secret
    concurrency: int = 16
    duration: float = 10.0
    warmup: float = 2.0
    seed: int = 5
    cpu: Callable[[], dict[str, float]] | None = None
    """CPU seconds used so far by each part measured (server, database), read at the window's ends."""


@dataclass
class Result:
    """Figures of one run; latencies are of whole tenders completed in the measured window."""

    tenders: int
    seconds: float
    tenders_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    concurrency: int
    error_samples: list[str] = field(default_factory=list)
    cpu_us: dict[str, float] = field(default_factory=dict)
    """CPU microseconds per tender of each part ``Options.cpu`` reads, over the measured window."""

    def summary(self) -> str:
        """One human-readable line."""
        return (
            f"{self.tenders_per_s:,.0f} tenders/s  p50 {self.p50_ms:.1f} ms  p99 {self.p99_ms:.1f} ms  "
            f"errors {self.errors}  ({self.tenders} tenders in {self.seconds:.1f} s, {self.concurrency} conn)"
        )


class Connection:
    """One keep-alive HTTP/1.1 connection with just enough parsing for JSON answers."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: bytes, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request (headers: extra ``Name: value\\r\\n`` lines) and return status and body."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + headers + b"\r\n" + body)
        try:
            status, response_headers = parse_head(await self.reader.readuntil(b"\r\n\r\n"))
            payload = await self.read_body(response_headers)
        except BaseException:
            self.close()
            raise
        if b"\r\nconnection: close" in response_headers:
            self.close()
        return status, payload

    async def read_body(self, headers: bytes) -> bytes:
        """Read a ``Content-Length`` or chunked body (lower-cased headers)."""
        assert self.reader is not None
        marker = headers.find(b"\r\ncontent-length:")
        if marker >= 0:
            end = headers.find(b"\r\n", marker + 2)
            return await self.reader.readexactly(int(headers[marker + 17 : end]))
        if b"\r\ntransfer-encoding: chunked" not in headers:
            raise ValueError("response has neither Content-Length nor chunked encoding")
        chunks: list[bytes] = []
        for _ in range(MAX_CHUNKS):
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return b"".join(chunks)
            chunks.append(chunk[:-2])
        raise ValueError("too many chunks")

    def close(self) -> None:
        """Drop the connection; the next request opens a new one."""
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def parse_head(head: bytes) -> tuple[int, bytes]:
    """Status code and lower-cased header block of a response head."""
    if len(head) > MAX_HEADER_BYTES or not head.startswith(b"HTTP/1."):
        raise ValueError(f"bad response head: {head[:80]!r}")
    return int(head[9:12]), head.lower()


def make_customers(rng: random.Random) -> list[dict[str, Any]]:
    """A deterministic pool of distinct customers: email and phone each, a loyalty card for 40%."""
    customers = []
    for n in range(CUSTOMER_POOL_SIZE):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        customer = {
            "id": f"pos-cust-{n:05d}",
            "firstName": first,
            "lastName": last,
            "birthDate": f"{rng.randint(1950, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "contacts": [
                {
                    "email": f"{first}.{last}.{n}@example.com".lower(),
                    "phone": f"({rng.choice(AREA_CODES)}) 555-{n % 10000:04d}",
                }
            ],
        }
        card = f"LC{n:08d}" if rng.random() < 0.4 else None
        customers.append({"customer": customer, "card": card})
    return customers


def make_products(rng: random.Random, count: int = 300) -> list[dict[str, Any]]:
    """A deterministic catalogue the tenders pick their basket lines from."""
    products = []
    for n in range(count):
        category = rng.choice(CATEGORIES)
        products.append(
            {
                "productId": f"SKU-{n:05d}",
                "productName": f"{category} item {n}",
                "manufacturer": rng.choice(MANUFACTURERS),
                "productCategory": category,
            }
        )
    return products


Pools = tuple[list[dict[str, Any]], list[dict[str, Any]]]
"""The shared customer pool and product catalogue."""


class Tenders:
    """Builds request bodies; one instance per virtual client so each has its own seeded random stream."""

    def __init__(self, options: Options, client: int, run_tag: str, pools: Pools) -> None:
        self.options = options
        self.rng = random.Random(options.seed * 1000 + client)
        self.customers, self.catalogue = pools
        self.terminal = options.terminals[client % len(options.terminals)]
        self.prefix = f"{run_tag}-{client:03d}"
        self.count = 0
        self.start_body = ENCODER.encode({"terminalId": self.terminal, "posLocationId": options.location})

    def transaction_body(self, session_id: str) -> bytes:
        """One realistic SendTransaction body with a transactionId unique to this run."""
        rng = self.rng
        self.count += 1
        picked = rng.choice(self.customers)
        products = [
            {**p, "quantity": rng.randint(1, 3)} for p in rng.sample(self.catalogue, PRODUCTS_PER_TENDER)
        ]
        body: dict[str, Any] = {
            "sessionId": session_id,
            "transactionId": f"{self.prefix}-{self.count:08d}",
            "terminalId": self.terminal,
            "posLocationId": self.options.location,
            "customer": picked["customer"],
            "salesPerson": {"id": f"emp-{rng.randint(1, 8)}", "firstName": "Sam", "lastName": "Clerk"},
            "transactionType": "Sale",
            "transactionAmount": Decimal(rng.randint(199, 25000)).scaleb(-2),
            "transactionDate": dt.datetime.now().isoformat(timespec="seconds"),
            "products": products,
        }
        if picked["card"] is not None:
            body["loyalty"] = {"cardNumber": picked["card"]}
        return ENCODER.encode(body)


def split_url(url: str) -> tuple[str, int]:
    """Host and port of an ``http://`` loopback URL; anything else is refused."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS:
        raise SystemExit(f"load.py only targets http:// on loopback, not {url!r}")
    return parts.hostname, parts.port or 80


async def fetch_token(options: Options) -> str:
    """OAuth2 client credentials, as a POS does before its first call."""
    host, port = split_url(options.url)
    basic = base64.b64encode(f"{options.client_id}:{options.client_secret}".encode()).decode()
    headers = f"Authorization: Basic {basic}\r\nContent-Type: application/x-www-form-urlencoded\r\n".encode()
    connection = Connection(host, port)
    try:
        status, body = await connection.request(
            "POST", "/connect/token", headers, b"grant_type=client_credentials&scope=pos_integration"
        )
    finally:
        connection.close()
    if status != 200:
        raise SystemExit(f"token request failed: {status} {body[:300]!r}")
    return msgspec.json.decode(body, type=_Token).access_token


class Recorder:
    """Latencies of tenders completed in the measured window, and every error."""

    def __init__(self, measure_from: float, measure_to: float) -> None:
        self.measure_from = measure_from
        self.measure_to = measure_to
        self.latencies: list[float] = []
        self.errors = 0
        self.samples: list[str] = []

    def tender(self, started: float, finished: float) -> None:
        """Keep a tender's latency if it finished inside the window."""
        if self.measure_from <= finished <= self.measure_to:
            self.latencies.append(finished - started)

    def error(self, what: str) -> None:
        """Count an error; keep the first few for the report."""
        self.errors += 1
        if len(self.samples) < MAX_ERRORS_SHOWN:
            self.samples.append(what)
            print(f"error: {what}", file=sys.stderr)


async def tender_once(connection: Connection, tenders: Tenders, headers: bytes, rec: Recorder) -> None:
    """startInteraction then transaction; records the latency or the error."""
    pos = quote(tenders.options.pos, safe="")
    started = time.perf_counter()
    status, body = await connection.request(
        "POST", f"/pos/{pos}/startInteraction", headers, tenders.start_body
    )
    session_id = SESSION_DECODER.decode(body).data.sessionId if status == 200 else None
    if session_id is None:
        rec.error(f"startInteraction {status}: {body[:300]!r}")
        return
    status, body = await connection.request(
        "POST", f"/pos/{pos}/transaction", headers, tenders.transaction_body(session_id)
    )
    if status != 200:
        rec.error(f"transaction {status}: {body[:300]!r}")
        return
    TRANSACTION_DECODER.decode(body)
    rec.tender(started, time.perf_counter())


async def virtual_client(client: int, options: Options, token: str, tenders: Tenders, rec: Recorder) -> None:
    """One terminal: tender after tender on one connection until the run's end."""
    host, port = split_url(options.url)
    connection = Connection(host, port)
    headers = f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n".encode()
    try:
        while time.perf_counter() < rec.measure_to:
            try:
                await tender_once(connection, tenders, headers, rec)
            except (OSError, ValueError, asyncio.IncompleteReadError, msgspec.DecodeError) as exc:
                rec.error(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.01)  # a refused connection must not spin the loop
    finally:
        connection.close()


async def run_load(options: Options) -> Result:
    """Warm up, then measure for ``options.duration`` seconds; returns the figures."""
    token = await fetch_token(options)
    run_tag = uuid.uuid4().hex[:8]  # transactionIds stay unique when runs share a database
    pools = make_customers(random.Random(options.seed)), make_products(random.Random(options.seed + 1))
    clients = [Tenders(options, n, run_tag, pools) for n in range(options.concurrency)]
    now = time.perf_counter()
    rec = Recorder(now + options.warmup, now + options.warmup + options.duration)
    cpu = asyncio.create_task(cpu_over(options, rec.measure_from, rec.measure_to))
    await asyncio.gather(
        *(virtual_client(n, options, token, tenders, rec) for n, tenders in enumerate(clients))
    )
    used = await cpu
    latencies = sorted(rec.latencies)
    return Result(
        tenders=len(latencies),
        seconds=options.duration,
        tenders_per_s=len(latencies) / options.duration,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        errors=rec.errors,
        concurrency=options.concurrency,
        error_samples=rec.samples,
        cpu_us={part: seconds * 1e6 / len(latencies) for part, seconds in used.items()} if latencies else {},
    )


async def cpu_over(options: Options, start: float, end: float) -> dict[str, float]:
    """The CPU seconds each part used between ``start`` and ``end`` (``perf_counter`` times)."""
    if options.cpu is None:
        return {}
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    before = options.cpu()
    await asyncio.sleep(max(0.0, end - time.perf_counter()))
    after = options.cpu()
    return {part: after[part] - before.get(part, 0.0) for part in after}


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile; 0 for an empty list."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run(options: Options) -> Result:
    """Run the load on uvloop (less client CPU than the default loop) and return the figures."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run_load(options))


def parse_args(argv: list[str] | None = None) -> tuple[Options, bool]:
    """Command-line options (and whether to print JSON)."""
    defaults = Options()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default=defaults.url)
    parser.add_argument("--pos", default=defaults.pos)
    parser.add_argument("--location", default=defaults.location)
    parser.add_argument("--terminal", help="a single terminal id (same as --terminals with one id)")
    parser.add_argument(
        "--terminals", default=",".join(defaults.terminals), help="comma-separated, spread over clients"
    )
    parser.add_argument("--client-id", default=defaults.client_id)
    parser.add_argument("--client-secret", default=defaults.client_secret)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--duration", type=float, default=defaults.duration, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=defaults.warmup, help="unmeasured seconds first")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--json", action="store_true", help="print one machine-readable JSON line")
    args = parser.parse_args(argv)
    terminals = (args.terminal,) if args.terminal else tuple(t for t in args.terminals.split(",") if t)
    options = Options(
        url=args.url,
        pos=args.pos,
        location=args.location,
        terminals=terminals,
        client_id=args.client_id,
        client_secret=args.client_secret,
        concurrency=max(1, args.concurrency),
        duration=max(0.5, args.duration),
        warmup=max(0.0, args.warmup),
        seed=args.seed,
    )
    return options, args.json


def main(argv: list[str] | None = None) -> int:
    """Run once, print the figures; exit status 1 when any tender failed or none completed."""
    options, as_json = parse_args(argv)
    split_url(options.url)
    result = run(options)
    print(msgspec.json.encode(asdict(result)).decode() if as_json else result.summary())
    return 1 if result.errors or not result.tenders else 0


if __name__ == "__main__":
    sys.exit(main())
