"""No customer contact data in logs, on every error path: provoked here, then grepped for.

Each path is driven with a customer whose name, email and phone are unique to this run; the
processes' whole log output must not contain any of them, nor the SQL parameters of a failed
statement.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from cmc.store.database import Database
from faults.cluster import clients, cluster, send, session, token
from support import seed_transaction

pytestmark = pytest.mark.slow
RUN = uuid.uuid4().hex[:10]
FIRST, LAST = f"Zed{RUN}", f"Quux{RUN}"
EMAIL, PHONE, PHONE_E164 = f"secret.{RUN}@example.com", "(415) 555-0142", "+14155550142"


def customer_sale(**changes: object) -> dict[str, object]:
    body = seed_transaction(transactionId=f"log-{RUN}-{uuid.uuid4().hex[:6]}", **changes)
    body["customer"] = {"firstName": FIRST, "lastName": LAST, "contacts": [{"email": EMAIL, "phone": PHONE}]}
    return body


def refuse_inserts(conn: Connection) -> None:
    """Make every new profile a database error (a failing trigger), on either engine."""
    if conn.dialect.name == "sqlite":
        conn.execute(
            text("CREATE TRIGGER refuse BEFORE INSERT ON profiles BEGIN SELECT RAISE(ABORT, 'no'); END")
        )
        return
    conn.execute(
        text(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'refused %', NEW.email; END $$ LANGUAGE plpgsql"
        )
    )
    conn.execute(
        text("CREATE TRIGGER refuse BEFORE INSERT ON profiles FOR EACH ROW EXECUTE FUNCTION refuse()")
    )


async def test_error_paths_log_no_contacts(backend: str, tmp_path: Path) -> None:
    with cluster(backend, tmp_path, processes=1, CMC_ACCESS_LOG="true", CMC_LOG_LEVEL="debug") as running:
        async with clients(running) as (http,):
            bearer = await token(http)
            statuses = []
            # A validation error, an unknown session, a good sale, its conflicting reuse, a used session.
            bad = customer_sale(transactionAmount="lots")
            statuses.append((await send(http, bearer, {**bad, "sessionId": "x"})).status_code)
            statuses.append(
                (await send(http, bearer, customer_sale(sessionId="no-such-session"))).status_code
            )
            good = customer_sale()
            good["sessionId"] = await session(http, bearer, good)
            statuses.append((await send(http, bearer, good)).status_code)
            changed = {**good, "transactionAmount": 1.0, "sessionId": await session(http, bearer, good)}
            statuses.append((await send(http, bearer, changed)).status_code)
            reused = {**customer_sale(), "sessionId": good["sessionId"]}
            statuses.append((await send(http, bearer, reused)).status_code)
            # A database error on the tender path (the store refuses the new profile).
            db = Database.open(running.database_url)
            try:
                await db.write(refuse_inserts)
            finally:
                await db.close()
            failing = customer_sale(loyalty=None)  # no card either: a new customer, a new profile
            failing["customer"]["contacts"] = [{"email": f"x{EMAIL}", "phone": "(415) 555-0143"}]
            failing["sessionId"] = await session(http, bearer, failing)
            statuses.append((await send(http, bearer, failing)).status_code)
        logs = running.log_text()
    assert statuses == [400, 404, 200, 409, 409, 500], statuses
    assert '"database error"' in logs, "the database error was logged"
    for secret in (FIRST, LAST, EMAIL, PHONE, PHONE_E164, "555-0143", "14155550143"):
        assert secret not in logs, f"{secret!r} is in the logs"
