"""The store fails under load: connections cut, the server killed. No sale lost, none twice, no 500.

- PostgreSQL backends terminated mid-load (``pg_terminate_backend``): every answer is a 200 or a
  503 with ``Retry-After``, never a 500, and the service answers 200 again within 2 s.
- A server SIGKILLed mid-load with the POS SDK in front: after a restart and a drain every tender is
  stored exactly once (both backends).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

import pg_databases
from cmc.store.database import libpq_dsn
from cmc_client import Client
from faults.cluster import clients, cluster, send, session, token
from support import SECRETS, seed_transaction

pytestmark = pytest.mark.slow
RUN = uuid.uuid4().hex[:8]


@pytest.mark.skipif(not pg_databases.POSTGRES_URL, reason="PostgreSQL only: set CMC_TEST_POSTGRES_URL")
async def test_terminated_backends_give_503s_not_500s_and_recover_within_2_seconds(tmp_path: Path) -> None:
    with cluster("postgresql", tmp_path) as running:
        async with clients(running) as (a, b):
            bearer = await token(a)
            answers: list[tuple[float, int]] = []
            stop = asyncio.Event()

            async def shopper(n: int) -> None:
                http = (a, b)[n % 2]
                for i in itertools.count():
                    if stop.is_set():
                        return
                    body = seed_transaction(transactionId=f"kill-{RUN}-{n}-{i}")
                    with contextlib.suppress(Exception):
                        body["sessionId"] = await session(http, bearer, body)
                    answer = await send(http, bearer, body)
                    if answer.status_code == 503:
                        assert answer.headers.get("retry-after"), answer.headers
                    answers.append((time.monotonic(), answer.status_code))

            shoppers = [asyncio.create_task(shopper(n)) for n in range(8)]
            await asyncio.sleep(1.5)
            killed_at = time.monotonic()
            killed = await _terminate_backends(running.database_url)
            await asyncio.sleep(3)
            stop.set()
            await asyncio.gather(*shoppers)

            seen = Counter(status for _, status in answers)
            after = [(t, s) for t, s in answers if t > killed_at]
            first_ok = next((t for t, s in after if s == 200), None)
            print(f"\nterminated {killed} backends mid-load; answers {dict(seen)}; first 200 after it "
                  f"{(first_ok or 0) - killed_at:.2f} s later")  # fmt: skip
            assert killed > 0
            assert set(seen) <= {200, 503}, seen
            assert first_ok is not None and first_ok - killed_at < 2.0


async def _terminate_backends(url: str) -> int:
    """Cut every connection the service holds to ``url``'s database; returns how many."""
    database = url.rsplit("/", 1)[-1]
    admin = await asyncpg.connect(libpq_dsn(pg_databases.POSTGRES_URL))
    try:
        rows = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await admin.close()
    return len(rows)


def test_a_server_killed_mid_load_loses_nothing_with_the_sdk_in_front(backend: str, tmp_path: Path) -> None:
    with cluster(backend, tmp_path, processes=1) as running:
        [port] = running.ports
        client_id, secret = SECRETS["pax"]
        ids = [f"sdk-{RUN}-{n}" for n in range(60)]
        with Client(
            running.url(port),
            "pax",
            client_id,
            secret,
            outbox_path=tmp_path / "pos.sqlite3",
            request_timeout=2.0,
        ) as pos:
            killer = threading.Timer(0.8, running.kill, args=(port,))
            killer.start()
            results: Counter[str] = Counter()
            for transaction_id in ids:
                body = seed_transaction(transactionId=transaction_id)
                del body["sessionId"]
                results[pos.post_tender(body, deadline=0.5).status] += 1
                time.sleep(0.02)
            killer.join()
            running.start(port)
            drained = pos.drain()
            status = pos.status()
        stored = asyncio.run(
            running.query(
                "SELECT pos_transaction_id, count(*) FROM transactions WHERE pos_transaction_id LIKE :p "
                "GROUP BY pos_transaction_id",
                p=f"sdk-{RUN}-%",
            )
        )
        print(f"\nposted {len(ids)} tenders, server SIGKILLed after 0.8 s: {dict(results)} at the till; "
              f"drain delivered {drained.delivered}; stored {len(stored)} distinct")  # fmt: skip
        assert status.queued == 0 and status.delivered == len(ids), status
        assert sorted(row[0] for row in stored) == sorted(ids)
        assert {row[1] for row in stored} == {1}
        assert results["queued"] > 0, "the kill happened while tenders were in flight"
