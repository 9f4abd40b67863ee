"""A POS simulator: N terminals ringing up realistic sales against CMC through the SDK.

A public module: ``cmc-pos simulate`` and the CMC server's ``cmc demo`` drive it. Sales carry no
``transactionDate``: like a till that leaves it out, they get the SDK's stamp.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import TextIO

import msgspec

from cmc_client import wire
from cmc_client._results import TenderResult
from cmc_client.wire import Tender

CATALOG = (
    ("ESP-01", "Espresso", "Lavazza", "Coffee", Decimal("2.80")),
    ("LAT-01", "Oat latte", "Oatly", "Coffee", Decimal("4.60")),
    ("CRO-01", "Butter croissant", "Maison Roux", "Bakery", Decimal("3.20")),
    ("BAG-02", "Sesame bagel", "Maison Roux", "Bakery", Decimal("2.90")),
    ("JUI-03", "Orange juice 33cl", "Tropicana", "Drinks", Decimal("3.90")),
    ("WAT-01", "Sparkling water", "Perrier", "Drinks", Decimal("2.20")),
    ("SAL-05", "Quinoa salad", "Green Kitchen", "Food", Decimal("9.50")),
    ("SAN-02", "Club sandwich", "Green Kitchen", "Food", Decimal("7.80")),
    ("BEA-01", "Coffee beans 1 kg", "Lavazza", "Retail", Decimal("24.90")),
    ("MUG-01", "Branded mug", "CMC Goods", "Retail", Decimal("12.00")),
)
FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Frances", "Linus")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson", "Allen")


class SimulationReport(msgspec.Struct, kw_only=True):
    """What a simulation run did."""

    sent: int = 0
    statuses: dict[str, int] = {}
    latencies_ms: list[float] = []
    elapsed: float = 0.0

    def percentile(self, p: float) -> float:
        """Latency percentile ``p`` (0-100) in milliseconds; 0 when nothing was sent."""
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def line(self) -> str:
        """One progress line."""
        counts = " ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        return (
            f"sent {self.sent}  {counts}  p50 {self.percentile(50):.1f} ms  p99 {self.percentile(99):.1f} ms"
        )


class Shop:
    """Makes realistic tenders: baskets from a small catalog, a pool of returning customers."""

    def __init__(self, rng: random.Random, *, location: str, returning: float = 0.6) -> None:
        self.rng = rng
        self.location = location
        self.returning = returning
        self.customers: list[wire.Customer] = []
        self.run = uuid.uuid4().hex[:8]

    def customer(self) -> wire.Customer | None:
        """A returning customer, a new one, or (one sale in five) an anonymous one."""
        rng = self.rng
        if rng.random() < 0.2:
            return None
        if self.customers and rng.random() < self.returning:
            return rng.choice(self.customers)
        first, last = rng.choice(FIRST), rng.choice(LAST)
        number = len(self.customers) + 1
        email = f"{first}.{last}.{self.run}{number}@example.com".lower()
        contacts = [wire.Contact(email=email), wire.Contact(phone=f"+1555{rng.randrange(10**6, 10**7)}")]
        customer = wire.Customer(
            id=f"C-{self.run}-{number}", firstName=first, lastName=last, contacts=contacts
        )
        self.customers.append(customer)
        return customer

    def tender(self, terminal: str, number: int) -> Tender:
        """One sale on ``terminal``."""
        lines = self.rng.sample(CATALOG, k=self.rng.choice((1, 1, 2, 2, 3, 4)))
        products, amount = [], Decimal(0)
        for product_id, name, maker, category, price in lines:
            quantity = self.rng.choice((1, 1, 1, 2, 3))
            amount += price * quantity
            products.append(
                wire.Product(
                    productId=product_id,
                    productName=name,
                    manufacturer=maker,
                    productCategory=category,
                    quantity=Decimal(quantity),
                )
            )
        return Tender(
            transactionId=f"SIM-{self.run}-{terminal}-{number}",
            terminalId=terminal,
            posLocationId=self.location,
            transactionType="Sale",
            transactionAmount=amount,
            customer=self.customer(),
            products=products,
        )


def simulate(
    post: Callable[[Tender], TenderResult],
    *,
    terminals: list[str],
    location: str,
    rate: float,
    duration: float,
    seed: int | None = None,
    progress: TextIO | None = None,
) -> SimulationReport:
    """Post tenders from every terminal (Poisson arrivals, ``rate`` per second in all) for ``duration`` s.

    ``post`` is usually ``client.post_tender``. With ``progress``, a live line is redrawn there.
    """
    shop = Shop(random.Random(seed), location=location)
    report = SimulationReport(statuses=Counter())
    lock = threading.Lock()
    stop = time.monotonic() + duration
    per_terminal = rate / max(1, len(terminals))

    def ring_up(terminal: str, rng: random.Random) -> None:
        number = 0
        while True:
            time.sleep(rng.expovariate(per_terminal))
            if time.monotonic() >= stop:
                return
            number += 1
            with lock:
                tender = shop.tender(terminal, number)
            started = time.perf_counter()
            result = post(tender)
            with lock:
                report.sent += 1
                report.statuses[result.status] = report.statuses.get(result.status, 0) + 1
                report.latencies_ms.append((time.perf_counter() - started) * 1000)

    threads = [
        threading.Thread(target=ring_up, args=(t, random.Random(f"{seed}-{t}")), daemon=True)
        for t in terminals
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        if progress is not None:
            with lock:
                progress.write("\r\033[K" + report.line())
            progress.flush()
        time.sleep(0.2)
    report.elapsed = time.monotonic() - started
    if progress is not None:
        progress.write("\r\033[K" + report.line() + "\n")
    return report


__all__ = ["SimulationReport", "simulate"]
