"""The analytics roll-up answers what the rows answer, on both engines, late sales included.

Sales go through the POS API on tests/analytics.yaml (``test_analytics_api``'s shop) with the app's
clock moved by hand, over three days at both locations (the coupon rule fires at loc5 for 15 to 50,
the held-out-half rule at loc6). Each test compares the summary and the series read with the roll-up
against the same reads with the roll-up's coverage emptied (every row counted), for windows that
start and end inside hours, on hour boundaries, and around the roll-up's edges.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, func, select, update

from cmc import analytics, rollup, sessions
from cmc.store import meta, tables
from cmc.store.database import Database
from support import seed_transaction
from test_analytics_api import T0, Shop, person, provider, shop  # noqa: F401  (fixtures)

TTL = timedelta(minutes=15)  # the app's session lifetime (the default)
COMPANY = {"pos_system_id": "pax", "company_id": "comp5"}


@pytest.fixture
async def db(shop: Shop) -> AsyncIterator[Database]:  # noqa: F811
    opened = shop.api.db()
    yield opened
    await opened.close()


async def history(shop: Shop, *, hours: int, seed: int = 7) -> int:  # noqa: F811
    """Sales over ``hours`` hours, a few an hour at irregular minutes; returns how many."""
    rng = random.Random(seed)
    posted = 0
    for _ in range(hours):
        for _ in range(rng.randint(0, 3)):
            shop.clock.advance(minutes=rng.randint(1, 19))
            n = rng.randint(0, 40)
            customer = person(f"c-{n}", "Pat", f"N{n}", f"pat{n}@example.com") if n % 5 else None
            where = ("loc5", "term5") if rng.random() < 0.6 else ("loc6", "term6")
            await shop.sale(rng.choice([9.5, 20, 33.33, 49.99, 70]), customer=customer, location=where[0],
                            terminal=where[1])  # fmt: skip
            posted += 1
        shop.clock.advance(minutes=60 - shop.clock.now.minute)  # the next hour
    return posted


async def forget(db: Database) -> str | None:
    """Empty the roll-up's coverage (every read counts the rows); returns it, to restore."""
    return await db.write(lambda conn: (meta.get(conn, rollup.KEY), meta.put(conn, rollup.KEY, "{}"))[0])


async def restore(db: Database, saved: str | None) -> None:
    await db.write(meta.put, rollup.KEY, saved or "{}")


def windows(start: datetime, end: datetime, rng: random.Random, n: int) -> list[tuple[datetime, datetime]]:
    span = int((end - start).total_seconds())
    found = [(start, end), (start + timedelta(minutes=30), end - timedelta(minutes=7))]
    for _ in range(n):
        a, b = sorted(rng.sample(range(span), 2))
        found.append((start + timedelta(seconds=a), start + timedelta(seconds=b)))
    return found


async def reads(db: Database, since: datetime, until: datetime, now: datetime) -> dict[str, Any]:
    summary = await analytics.summary(db, **COMPANY, since=since, until=until, now=now)
    series = {
        (metric, bucket, rule): await analytics.timeseries(
            db, **COMPANY, metric=metric, bucket=bucket, since=since, until=until, rule=rule, now=now
        )
        for metric in ("tenders", "firings")
        for bucket in ("hour", "day")
        for rule in ((None,) if metric == "tenders" else (None, "coupon"))
        if bucket == "day" or until - since <= analytics.MAX_HOURLY_WINDOW
    }
    return {"summary": summary, "series": series}


async def assert_same_as_the_rows(
    db: Database,
    shop: Shop,  # noqa: F811
    start: datetime,
    *,
    n: int = 12,
    seed: int = 3,
) -> None:
    now = shop.clock.now
    cases = windows(start, now, random.Random(seed), n)
    rolled = [await reads(db, since, until, now) for since, until in cases]
    saved = await forget(db)
    try:
        for (since, until), got in zip(cases, rolled, strict=True):
            expected = await reads(db, since, until, now)
            assert got["summary"] == expected["summary"], (since, until)
            assert got == expected, (since, until)
    finally:
        await restore(db, saved)


async def rolled_rows(db: Database) -> int:
    return await db.read(
        lambda conn: int(conn.execute(select(func.count()).select_from(tables.rollups)).scalar_one())
    )


# --- the tests ------------------------------------------------------------------------------------


async def test_a_rolled_up_window_counts_what_its_rows_count(shop: Shop, db: Database) -> None:  # noqa: F811
    posted = await history(shop, hours=72)
    steps = await rollup.catch_up(db, now=shop.clock.now, session_ttl=TTL)
    assert steps >= 1
    assert await rolled_rows(db) > 0
    cover = await db.read(rollup.coverage)
    assert cover.closed_before == rollup.floor_hour(shop.clock.now - rollup.SETTLE)
    summary = await analytics.summary(db, **COMPANY, since=T0, until=shop.clock.now, now=shop.clock.now)
    assert summary.tenders == posted
    await assert_same_as_the_rows(db, shop, T0)


async def test_the_summary_reads_the_roll_up_for_its_whole_hours(shop: Shop, db: Database) -> None:  # noqa: F811
    """Proof that the roll-up is what answers: a changed roll-up row changes the answer."""
    await history(shop, hours=30)
    await rollup.catch_up(db, now=shop.clock.now, session_ttl=TTL)
    now = shop.clock.now
    since, until = rollup.ceil_hour(T0), rollup.floor_hour(now)  # whole hours: all from the roll-up
    before = await analytics.summary(db, **COMPANY, since=since, until=until, now=now)

    def inflate(conn: Connection) -> int:
        r = tables.rollups
        mine = [r.c.company_id == "comp5", r.c.metric == "tenders", r.c.hour >= since, r.c.hour < until]
        return conn.execute(update(r).where(*mine).values(count=r.c.count + 1000)).rowcount

    hours = await db.write(inflate)
    assert hours > 0
    after = await analytics.summary(db, **COMPANY, since=since, until=until, now=now)
    assert after.tenders == before.tenders + 1000 * hours
    # Without a roll-up (turned off, or not run yet) the rows answer, whatever the table holds.
    await forget(db)
    assert (
        await analytics.summary(db, **COMPANY, since=since, until=until, now=now)
    ).tenders == before.tenders


async def test_a_sale_that_arrives_late_is_counted_once(shop: Shop, db: Database) -> None:  # noqa: F811
    """A POS's offline outbox delivers a sale of two days ago: its hour was rolled up long before."""
    await history(shop, hours=60)
    await rollup.catch_up(db, now=shop.clock.now, session_ttl=TTL)
    late_at = T0 + timedelta(hours=5, minutes=10)
    body_time = late_at.isoformat().replace("+00:00", "Z")
    late = {"customer": person("c-late", "Lou", "Late", "lou@example.com")}
    now = shop.clock.now
    before = await analytics.summary(db, **COMPANY, since=T0, until=now, now=now)
    posted_at = shop.clock.now
    answer = await shop.api.tender({**_late_body(body_time), **late})
    assert answer.status_code == 200, answer.text
    # Before the next roll-up: counted from the rows above the roll-up's mark.
    shop.clock.advance(minutes=1)
    now = shop.clock.now
    assert (
        await analytics.summary(db, **COMPANY, since=T0, until=now, now=now)
    ).tenders == before.tenders + 1
    await assert_same_as_the_rows(db, shop, T0, n=6)
    # After it (the session long expired): counted in the roll-up of its own hour, still once.
    shop.clock.advance(minutes=40)
    await rollup.catch_up(db, now=shop.clock.now, session_ttl=TTL)
    now = shop.clock.now
    cover = await db.read(rollup.coverage)
    assert cover.sales_before > sessions.first_id_at(posted_at + timedelta(seconds=1))  # it is rolled up
    assert (
        await analytics.summary(db, **COMPANY, since=T0, until=now, now=now)
    ).tenders == before.tenders + 1
    await assert_same_as_the_rows(db, shop, T0, n=6)


def _late_body(transaction_date: str) -> dict[str, Any]:
    return seed_transaction(
        transactionAmount=20, transactionDate=transaction_date, posLocationId="loc5", terminalId="term5",
        products=[],
    )  # fmt: skip


async def test_processes_rolling_up_at_once_count_each_row_once(shop: Shop, db: Database) -> None:  # noqa: F811
    """Two databases (two pools: two processes' worth of connections) roll up the same history at once."""
    posted = await history(shop, hours=48)
    other = shop.api.db()
    try:
        now = shop.clock.now
        done = await asyncio.gather(*(
            rollup.catch_up(each, now=now, session_ttl=TTL) for each in (db, other, db, other)
        ))  # fmt: skip
        assert all(steps >= 1 for steps in done)
    finally:
        await other.close()
    summary = await analytics.summary(db, **COMPANY, since=T0, until=now, now=now)
    assert summary.tenders == posted
    await assert_same_as_the_rows(db, shop, T0, n=4)


async def test_another_companys_roll_up_counts_nowhere_here(shop: Shop, db: Database) -> None:  # noqa: F811
    await history(shop, hours=10)
    for _ in range(3):
        await shop.sale(20, customer=None, location="loc9", terminal="term9")  # Blue Door's
    shop.clock.advance(hours=2)
    await rollup.catch_up(db, now=shop.clock.now, session_ttl=TTL)
    now = shop.clock.now
    theirs = await analytics.summary(
        db, pos_system_id="pax", company_id="comp6", since=T0, until=now, now=now
    )
    assert theirs.tenders == 3
    assert theirs.firings["treatment"] == 3
    nobody = await analytics.summary(
        db, pos_system_id="clover", company_id="comp7", since=T0, until=now, now=now
    )
    assert (nobody.tenders, nobody.links, sum(nobody.firings.values())) == (0, 0, 0)
