"""Races across two real processes on one database: nothing lost, nothing twice, never a 5xx but 503.

On PostgreSQL the two ``cmc serve`` processes race for real (row locks, advisory locks, unique keys);
on SQLite they share one file (its single writer serializes them). Each test releases its requests
at once (a barrier) and reports what it sent, what was stored and what was answered.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
import pytest

from faults.cluster import at_once, clients, cluster, send, session, token
from support import seed_transaction

pytestmark = pytest.mark.slow
RUN = uuid.uuid4().hex[:8]
_n = itertools.count(1)


def sale(*, amount: float = 9.0, **customer: Any) -> dict[str, Any]:
    body = seed_transaction(transactionId=f"f-{RUN}-{next(_n)}", transactionAmount=amount)
    body["customer"] = {"firstName": "Ada", **customer}
    body["loyalty"] = None
    return body


def verdicts(answers: list[Any]) -> Counter[int | str]:
    return Counter(a.status_code if isinstance(a, httpx2.Response) else type(a).__name__ for a in answers)


async def test_concurrent_duplicates_with_one_session_each(backend: str, tmp_path: Path) -> None:
    """What a POS retrying a slow request does: the same body, the same session, ten times at once."""
    with cluster(backend, tmp_path) as running:
        async with clients(running) as (a, b):
            bearer = await token(a)
            sales = [sale(contacts=[{"email": f"dup{i}.{RUN}@example.com"}]) for i in range(20)]
            for body in sales:
                body["sessionId"] = await session(a, bearer, body)
            posts = [(body, (i + j) % 2) for j in range(10) for i, body in enumerate(sales)]
            answers = await at_once(*(send((a, b)[p], bearer, body) for body, p in posts))
            seen = verdicts(answers)
            print(f"\nsent 200 (20 transactions x 10, one session each) -> answered {dict(seen)}")
            assert seen == {200: 200}
            bodies: dict[str, set[bytes]] = {}
            for (body, _), answer in zip(posts, answers, strict=True):
                bodies.setdefault(body["transactionId"], set()).add(answer.content)
            assert all(len(group) == 1 for group in bodies.values()), "one answer per transaction"
            [[stored]] = await running.query(
                "SELECT count(*) FROM transactions WHERE pos_transaction_id LIKE :p", p=f"f-{RUN}-%"
            )
            print(f"stored {stored} transactions")
            assert stored == 20


async def test_concurrent_duplicates_with_fresh_sessions(backend: str, tmp_path: Path) -> None:
    """A POS that lost the answer and opened a new session for each retry."""
    with cluster(backend, tmp_path) as running:
        async with clients(running) as (a, b):
            bearer = await token(a)
            sales = [sale(contacts=[{"email": f"fresh{i}.{RUN}@example.com"}]) for i in range(10)]
            posts = []
            for j in range(8):
                for i, body in enumerate(sales):
                    posts.append(({**body, "sessionId": await session(a, bearer, body)}, (i + j) % 2))
            answers = await at_once(*(send((a, b)[p], bearer, body) for body, p in posts))
            seen = verdicts(answers)
            print(f"\nsent 80 (10 transactions x 8, a fresh session each) -> answered {dict(seen)}")
            assert seen == {200: 80}
            ids = {answer.json()["data"]["id"] for answer in answers}
            assert len(ids) == 10
            [[stored]] = await running.query(
                "SELECT count(*) FROM transactions WHERE pos_transaction_id LIKE :p", p=f"f-{RUN}-%"
            )
            assert stored == 10


async def test_one_customer_known_as_two_profiles_hit_at_once(backend: str, tmp_path: Path) -> None:
    """P1 = {phone, POS customer id}, P2 = {card, email}; sales name one of each: no deadlock, no merge."""
    with cluster(backend, tmp_path) as running:
        async with clients(running) as (a, b):
            bearer = await token(a)
            phone, email, card, customer = (
                "(415) 555-0199",
                f"two.{RUN}@example.com",
                f"C-{RUN}",
                f"cust-{RUN}",
            )
            first = sale(id=customer, contacts=[{"phone": phone}])
            second = sale(contacts=[{"email": email}])
            second["loyalty"] = {"cardNumber": card}
            for body in (first, second):
                body["sessionId"] = await session(a, bearer, body)
                assert (await send(a, bearer, body)).status_code == 200
            seen: Counter[int | str] = Counter()
            for _ in range(5):
                bodies = []
                for i in range(16):
                    if i % 2:
                        body = sale(contacts=[{"phone": phone}, {"email": email}])
                    else:
                        body = sale(id=customer)
                        body["loyalty"] = {"cardNumber": card}
                    body["sessionId"] = await session(a, bearer, body)
                    bodies.append((body, i % 2))
                seen += verdicts(await at_once(*(send((a, b)[p], bearer, body) for body, p in bodies)))
            print(f"\nsent 80 sales naming both profiles -> answered {dict(seen)}")
            assert seen == {200: 80}
            [[profiles]] = await running.query("SELECT count(*) FROM profiles")
            [[visits]] = await running.query("SELECT sum(visit_count) FROM profiles")
            print(f"profiles {profiles}, visits {visits}")
            assert (profiles, visits) == (2, 82)  # never merged; every visit counted once


async def test_a_limited_rule_fires_once_for_a_customer_buying_at_once(backend: str, tmp_path: Path) -> None:
    """Twenty sales of one new customer at once, on two processes: the once-a-week coupon fires once."""
    with cluster(backend, tmp_path) as running:
        async with clients(running) as (a, b):
            bearer = await token(a)
            email = f"limit.{RUN}@example.com"
            bodies = [sale(amount=20, contacts=[{"email": email}]) for _ in range(20)]
            for body in bodies:
                body["sessionId"] = await session(a, bearer, body)
            answers = await at_once(*(send((a, b)[i % 2], bearer, body) for i, body in enumerate(bodies)))
            seen = verdicts(answers)
            widgets = sum(1 for answer in answers if answer.json()["data"]["qrCodeWidget"])
            [[firings]] = await running.query("SELECT count(*) FROM rule_firings")
            [[profiles]] = await running.query("SELECT count(*) FROM profiles")
            print(f"\nsent 20 sales of one new customer -> {dict(seen)}, {widgets} QR, {firings} firing(s)")
            assert seen == {200: 20}
            assert (widgets, firings, profiles) == (1, 1, 1)
