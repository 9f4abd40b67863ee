"""Where the dispatcher runs: inside the API process (lifespan) and as the ``cmc worker`` process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from cmc.ids import new_id
from cmc.store import migrate, tables
from cmc.store.database import Database
from test_outbox_dispatch import enqueue, seed_registry, wait_for
from test_outbox_senders import smtp_server

ROOT = Path(__file__).resolve().parent.parent
CMC = ROOT / ".venv" / "bin" / "cmc"


async def queue_for_loc5(db: Database) -> str:
    """A due email from the test registry's merchant (pax / comp5 / loc5)."""
    message_id = new_id()
    now = datetime.now(UTC)
    values = {
        "id": message_id,
        "pos_system_id": "pax",
        "company_id": "comp5",
        "location_id": "loc5",
        "transaction_id": new_id(),
        "rule": "r",
        "template_id": "thanks-email",
        "channel": "email",
        "recipient": "ada@example.com",
        "subject": "Your coupon",
        "body": "Hi Ada",
        "optout_token": new_id(),
        "status": "queued",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    await db.write(lambda conn: conn.execute(insert(tables.messages).values(values)))
    return message_id


async def status(db: Database, message_id: str) -> str:
    m = tables.messages
    result: str = await db.read(
        lambda conn: conn.execute(select(m.c.status).where(m.c.id == message_id)).scalar()
    )
    return result


async def test_the_api_process_sends_the_outbox(api_factory: Callable[..., Any]) -> None:
    with smtp_server() as inbox:
        async with api_factory(smtp_url=inbox.url, outbox_poll=timedelta(milliseconds=50)) as api:
            db = api.db()
            try:
                message_id = await queue_for_loc5(db)
                await wait_for(lambda: len(inbox.received) == 1)
                assert inbox.received[0].message["Subject"] == "Your coupon"
            finally:
                await db.close()
    db = api.db()
    try:
        assert await status(db, message_id) == "sent"
    finally:
        await db.close()


async def test_the_api_process_leaves_the_outbox_to_workers_when_told(
    api_factory: Callable[..., Any],
) -> None:
    with smtp_server() as inbox:
        async with api_factory(
            smtp_url=inbox.url, dispatcher=False, outbox_poll=timedelta(milliseconds=20)
        ) as api:
            db = api.db()
            try:
                message_id = await queue_for_loc5(db)
                await asyncio.sleep(0.3)
                assert await status(db, message_id) == "queued"
            finally:
                await db.close()
    assert inbox.received == []


async def test_cmc_worker_sends_until_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cmc.db"
    db = Database.open(url)
    try:
        await asyncio.to_thread(migrate.upgrade, db)
        await db.write(seed_registry)
        queued = await enqueue(db, due=datetime.now(UTC))
        with smtp_server() as inbox:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CMC_")}
            env.update(
                CMC_DATABASE_URL=url,
                CMC_SMTP_URL=inbox.url,
                CMC_OUTBOX_POLL_SECONDS="0.05",
                CMC_LOG_LEVEL="info",
            )
            worker = subprocess.Popen(
                [str(CMC), "worker"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                await wait_for(lambda: len(inbox.received) == 1, timeout=40)
            finally:
                worker.send_signal(signal.SIGTERM)
                _, stderr = await asyncio.to_thread(worker.communicate, timeout=15)
        assert worker.returncode == 0, stderr
        assert "outbox worker started" in stderr
        assert "ada@example.com" not in stderr  # contacts are never logged
        assert await status(db, queued.id) == "sent"
    finally:
        await db.close()
