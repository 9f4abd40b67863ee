"""The POS in the crash test: posts tenders through ``cmc_client.Client`` until it is SIGKILLed.

``python crash_child.py URL OUTBOX PREFIX COUNT SEED``. Imports, then waits for ``go`` on stdin (so the
parent can spawn it ahead of time). Prints ``ready`` once the client is up, then for
each tender ``try <id>`` before ``post_tender`` and ``<status> <id>`` after it, flushing each line
before going on, so the parent knows exactly what the POS was told.
"""

from __future__ import annotations

import random
import sys
import time
from decimal import Decimal

import stamina

from cmc_client import Client, Contact, Customer, Product, Tender


def main(url: str, outbox: str, prefix: str, count: int, seed: int) -> None:
    if sys.stdin.readline().strip() != "go":
        return
    stamina.instrumentation.set_on_retry_hooks([])  # stdout carries only the lines below
    rng = random.Random(seed)
    client = Client(
        url,
        "pax",
        "pax-demo",
        "s3cr3t!",
        outbox_path=outbox,
        request_timeout=2.0,
        retry_attempts=3,
        retry_timeout=2.0,
        retry_wait_max=0.2,
        poll_interval=0.2,
        offline_window=0.2,
    ).start()
    print("ready", flush=True)
    for n in range(count):
        tx = f"{prefix}-{n}"
        print(f"try {tx}", flush=True)
        customer = rng.randrange(20)
        result = client.post_tender(
            Tender(
                transactionId=tx,
                terminalId=rng.choice(["term5", "term6", "term7"]),
                posLocationId="loc5",
                transactionType="Sale",
                transactionAmount=Decimal(rng.randrange(100, 6000)) / 100,
                customer=Customer(
                    id=f"C-{customer}", firstName="Ada", contacts=[Contact(email=f"c{customer}@example.com")]
                ),
                products=[Product(productId="LAT-01", productName="Oat latte", quantity=Decimal(2))],
            ),
            deadline=0.5,
        )
        print(f"{result.status} {tx}", flush=True)
        time.sleep(rng.uniform(0.03, 0.15))
    client.close(grace=1.0)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
