"""Scale-out on PostgreSQL: two real ``cmc serve`` processes and two ``cmc worker`` processes, one database.

What issue 5 asks of "many processes, one truth", shown end to end over real sockets:

- 200 concurrent duplicate posts of 20 transactions, spread over both API processes: 20 stored,
  one response per transactionId (byte for byte, so no second rule run either);
- 100 notifications (50 sales, SMS + email) each sent exactly once by two competing workers, counted
  at a real SMS HTTP endpoint and a real SMTP server (aiosmtpd);
- a ``cmc apply`` rule change seen by both API processes within 2 s;
- a CFS page's event stream on process A gets the QR of a sale posted to process B within 1 s;
- a merchant's activation on process A used by process B within 2 s; two publishers racing on two
  processes (one wins, the other gets 412); idempotent retries racing on two processes (one version);
- a rotated secret ends the tokens issued before in both processes within 2 s; failed guesses sent
  to both processes count together;
- a rotated screen URL stops working on every process within seconds.

Needs ``CMC_TEST_POSTGRES_URL``; the processes share one throw-away database from ``pg_databases``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import Connection, text

import pg_databases
from cmc.store.database import Database
from support import basic, basic_of, seed_transaction
from test_outbox_senders import Inbox, SmsApi, free_port, sms_server, smtp_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not pg_databases.POSTGRES_URL,
        reason="scale-out test: set CMC_TEST_POSTGRES_URL (a PostgreSQL server) to run it",
    ),
]

ROOT = Path(__file__).resolve().parent.parent
CMC = ROOT / ".venv" / "bin" / "cmc"
REGISTRY = Path(__file__).with_name("scale_out.yaml")
PUBLIC_URL = "http://cmc.test"
STARTUP_SECONDS = 60.0
"""How long four processes may take to come up on a loaded machine."""
RUN = uuid.uuid4().hex[:8]
_phones = itertools.count(1000)

NEW_RULE = """\
          - name: seven seven seven
            priority: 20
            locations: [loc5]
            when: {amount: {between: [777, 777]}}
            then: {qrWidget: 2}
"""


@dataclass
class Cluster:
    """The running processes and what they talk to."""

    database_url: str
    ports: list[int]
    env: dict[str, str]
    sms: SmsApi
    inbox: Inbox
    logs: Path

    def tails(self) -> str:
        """The end of every process's stderr (for failure messages)."""
        parts = []
        for log in sorted(self.logs.glob("*.err")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One migrated PostgreSQL database, the registry applied, two ``cmc serve``, two ``cmc worker``."""
    logs = tmp_path_factory.mktemp("scale-out")
    url = pg_databases.create()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with sms_server(201) as sms, smtp_server() as inbox:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CMC_")}
            env.update(
                CMC_DATABASE_URL=url,
                CMC_PUBLIC_URL=PUBLIC_URL,
                CMC_DISPATCHER="false",
                CMC_SMS_URL=sms.url(),
                CMC_SMTP_URL=inbox.url,
                CMC_OUTBOX_POLL_SECONDS="0.2",
                CMC_REGISTRY_REFRESH_SECONDS="1",
                CMC_CFS_POLL_SECONDS="0.25",
                CMC_LOG_LEVEL="warning",
                CMC_ACCESS_LOG="false",
                # Failed logins count in fixed windows aligned to the clock: an hour, so that a test
                # of the limit (a second or two of guesses) does not straddle a window's end.
                CMC_AUTH_FAILURE_WINDOW_SECONDS="3600",
            )
            applied = subprocess.run(
                [str(CMC), "apply", str(REGISTRY)],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert applied.returncode == 0, applied.stderr
            ports = [free_port(), free_port()]
            serve = [[str(CMC), "serve", "--port", str(port)] for port in ports]
            commands = [*serve, [str(CMC), "worker"], [str(CMC), "worker"]]
            names = [f"serve-{port}" for port in ports] + ["worker-1", "worker-2"]
            for name, command in zip(names, commands, strict=True):
                processes.append(_spawn(command, env=env, logs=logs, name=name))
            running = Cluster(url, ports, env, sms, inbox, logs)
            _wait_ready(running, processes)
            yield running
    finally:
        _stop(processes)
        pg_databases.drop(url)


def _spawn(command: list[str], *, env: dict[str, str], logs: Path, name: str) -> subprocess.Popen[bytes]:
    # Output goes to files, never to pipes nobody reads (a full pipe would block the process).
    with (logs / f"{name}.out").open("wb") as out, (logs / f"{name}.err").open("wb") as err:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=err)


def _wait_ready(cluster: Cluster, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    pending = set(cluster.ports)
    with httpx2.Client(timeout=5) as http:
        while pending:
            exited = [p.args for p in processes if p.poll() is not None]
            assert not exited, f"exited early: {exited}\n{cluster.tails()}"
            assert time.monotonic() < deadline, f"not ready: {pending}\n{cluster.tails()}"
            for port in list(pending):
                with contextlib.suppress(httpx2.HTTPError):
                    if http.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                        pending.discard(port)
            time.sleep(0.1)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# --- talking to the processes -------------------------------------------------------------------


@pytest.fixture
async def clients(cluster: Cluster) -> AsyncIterator[list[httpx2.AsyncClient]]:
    """One client per API process (A, B)."""
    limits = httpx2.Limits(max_connections=200, max_keepalive_connections=200)
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, limits=limits)
            )
            for port in cluster.ports
        ]


async def token_from(http: httpx2.AsyncClient) -> str:
    """An access token (process A's token works on B: the signing key is shared through the database)."""
    answer = await http.post(
        "/connect/token",
        headers={"Authorization": basic("pax")},
        data={"grant_type": "client_credentials", "scope": "pos_integration"},
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


async def tender(http: httpx2.AsyncClient, token: str, body: dict[str, Any]) -> httpx2.Response:
    """startInteraction then transaction on one process; the body is copied, only sessionId changes."""
    headers = {"Authorization": f"Bearer {token}"}
    start = {"terminalId": body["terminalId"], "posLocationId": body["posLocationId"]}
    started = await http.post("/pos/pax/startInteraction", json=start, headers=headers)
    assert started.status_code == 200, started.text
    return await http.post(
        "/pos/pax/transaction",
        json={**body, "sessionId": started.json()["data"]["sessionId"]},
        headers=headers,
    )


def customer_sale(kind: str, n: int, amount: float, *, terminal: str = "term5") -> dict[str, Any]:
    """A sale by a customer no other sale in this module has (own id, card, email and phone)."""
    phone = next(_phones)
    return seed_transaction(
        transactionId=f"so-{RUN}-{kind}-{n}",
        terminalId=terminal,
        transactionAmount=amount,
        customer={
            "id": f"cust-{RUN}-{kind}-{n}",
            "firstName": f"{kind.title()}{n}",
            "lastName": "Scale",
            "contacts": [{"email": f"{kind}{n}.{RUN}@example.com", "phone": f"(415) 555-{phone:04d}"}],
        },
        loyalty={"cardNumber": f"SO-{RUN}-{kind}-{n}"},
        products=[{"productId": "p-2", "productName": "Tea", "manufacturer": "Leafy",
                   "productCategory": "Drinks", "quantity": 1}],
    )  # fmt: skip


async def query(cluster: Cluster, sql: str, **params: Any) -> list[Any]:
    """Rows of one SQL statement on the shared database."""

    def run(conn: Connection) -> list[Any]:
        return list(conn.execute(text(sql), params))

    db = Database.open(cluster.database_url)
    try:
        return await db.read(run)
    finally:
        await db.close()


async def count(cluster: Cluster, table: str, transaction_ids: list[str]) -> int:
    """Rows of ``table`` belonging to these (CMC) transaction ids."""
    sql = f"SELECT count(*) FROM {table} WHERE transaction_id = ANY(:ids)"
    [[n]] = await query(cluster, sql, ids=transaction_ids)
    return int(n)


# --- (a) idempotency under races -------------------------------------------------------------------


async def test_concurrent_duplicates_across_processes_are_stored_once(
    cluster: Cluster, clients: list[httpx2.AsyncClient]
) -> None:
    token = await token_from(clients[0])
    # 60-70 fires "review please": a QR (one short link per rule run) and no message.
    sales = [customer_sale("dup", i, 60 + i % 10) for i in range(20)]
    posts = [(sale, (i + j) % 2) for j in range(10) for i, sale in enumerate(sales)]
    random.Random(5).shuffle(posts)

    started = time.monotonic()
    answers = await asyncio.gather(*(tender(clients[p], token, sale) for sale, p in posts))
    elapsed = time.monotonic() - started

    by_id: dict[str, list[httpx2.Response]] = {}
    for (sale, _), answer in zip(posts, answers, strict=True):
        by_id.setdefault(sale["transactionId"], []).append(answer)
    assert len(by_id) == 20
    for transaction_id, group in by_id.items():
        assert [a.status_code for a in group] == [200] * 10, (transaction_id, [a.text for a in group])
        assert len({a.content for a in group}) == 1, (transaction_id, {a.content for a in group})
        data = group[0].json()["data"]
        assert data["qrCodeWidget"]["widgetId"] == 2, data  # the rule ran (once: one short link)
    ids = [group[0].json()["data"]["id"] for group in by_id.values()]
    pattern = f"so-{RUN}-dup-%"
    [[stored]] = await query(
        cluster, "SELECT count(*) FROM transactions WHERE pos_transaction_id LIKE :p", p=pattern
    )
    assert stored == 20
    assert (await count(cluster, "rule_firings", ids), await count(cluster, "short_links", ids)) == (20, 20)
    print(f"\n(a) 200 posts (400 requests) over 2 processes in {elapsed:.2f} s")


# --- (d) the CFS live push crosses processes -----------------------------------------------------


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs of a server-sent event stream (comments skipped)."""
    event, data = "message", []
    async for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


async def screen_path(http: httpx2.AsyncClient, token: str) -> str:
    """Terminal term5's screen page path, from the carousel call (ClearLine 2.7)."""
    headers = {"Authorization": f"Bearer {token}"}
    where = {"posLocationId": "loc5", "terminalId": "term5"}
    answer = await http.post("/v2/pos/pax/carousel", json=where, headers=headers)
    assert answer.status_code == 200, answer.text
    url: str = answer.json()["data"]["url"]
    return url.removeprefix(PUBLIC_URL)


async def test_a_cfs_page_on_process_a_gets_the_qr_of_a_sale_sent_to_process_b(
    cluster: Cluster, clients: list[httpx2.AsyncClient]
) -> None:
    a, b = clients
    token = await token_from(b)
    page = await screen_path(b, token)  # paired through B, shown through A: the key is shared
    timeout = httpx2.Timeout(30, read=30)
    async with a.stream("GET", f"{page}/events", timeout=timeout) as stream:
        assert stream.status_code == 200
        events = sse_events(stream.aiter_lines())
        first = await asyncio.wait_for(anext(events), 10)
        assert first[0] == "ready", first

        answer = await tender(b, token, customer_sale("cfs", 1, 65))
        sent = time.monotonic()
        assert answer.status_code == 200, answer.text
        code = answer.json()["data"]["qrCodeWidget"]["shortLinkUrl"].rsplit("/", 1)[1]

        async def the_qr() -> dict[str, Any]:
            async for event, data in events:
                state: dict[str, Any] = json.loads(data)
                if event == "state" and state.get("qr") == f"{PUBLIC_URL}/qr/{code}.svg":
                    return state
            raise AssertionError("stream ended")

        state = await asyncio.wait_for(the_qr(), 10)
        latency = time.monotonic() - sent
    assert (
        state["state"] == "sale"
        and "id" not in state
        and answer.json()["data"]["id"] not in json.dumps(state)
    )
    print(f"\n(d) QR of a sale on B reached A's CFS stream {latency * 1000:.0f} ms after B answered")
    assert latency <= 1.0, f"QR reached process A's stream {latency:.2f} s after B answered"


async def test_a_rotated_screen_url_stops_working_on_every_process(
    cluster: Cluster, clients: list[httpx2.AsyncClient]
) -> None:
    token = await token_from(clients[0])
    old = await screen_path(clients[0], token)
    where = ["--pos-system", "pax", "--location", "loc5", "--terminal", "term5"]
    rotated = subprocess.run(
        [str(CMC), "screens", "rotate", *where],
        env=cluster.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip().removeprefix(PUBLIC_URL)
    assert new != old
    deadline = time.monotonic() + 10
    for http in clients:
        while (await http.get(old)).status_code != 404:
            assert time.monotonic() < deadline, "the old screen URL still works"
            await asyncio.sleep(0.1)
        assert (await http.get(new)).status_code == 200
        assert await screen_path(http, token) == new


# --- (b) each notification sent exactly once -------------------------------------------------------


async def test_two_workers_send_each_notification_exactly_once(
    cluster: Cluster, clients: list[httpx2.AsyncClient]
) -> None:
    token = await token_from(clients[1])
    sales = [customer_sale("note", i, 15 + (i % 35) + 0.5) for i in range(50)]
    answers = await asyncio.gather(*(tender(clients[i % 2], token, sale) for i, sale in enumerate(sales)))
    assert [a.status_code for a in answers] == [200] * 50, [a.text for a in answers if a.status_code != 200]
    ids = [a.json()["data"]["id"] for a in answers]
    links = {a.json()["data"]["id"]: a.json()["data"]["qrCodeWidget"]["shortLinkUrl"] for a in answers}
    posted = time.monotonic()

    statuses: Counter[str] = Counter()
    deadline = posted + 30
    while True:
        rows = await query(cluster, "SELECT status, count(*) FROM messages WHERE transaction_id = ANY(:ids) "
                           "GROUP BY status", ids=ids)  # fmt: skip
        statuses = Counter(dict(rows))
        if statuses == Counter(sent=100) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    drained = time.monotonic() - posted
    assert statuses == Counter(sent=100), f"{statuses} after {drained:.1f} s\n{cluster.tails()}"
    await asyncio.sleep(1)  # a duplicate send would show up here, after every row says sent

    phones = [f"+1415555{int(s['customer']['contacts'][0]['phone'][-4:]):04d}" for s in sales]
    emails = [s["customer"]["contacts"][0]["email"] for s in sales]
    sms_to = Counter(r.form["To"] for r in cluster.sms.requests if r.form.get("To") in set(phones))
    assert sms_to == Counter(phones), sms_to - Counter(phones)
    for sale_id, phone in zip(ids, phones, strict=True):
        [body] = [r.form["Body"] for r in cluster.sms.requests if r.form["To"] == phone]
        assert links[sale_id] in body
    mail_to = Counter(to for mail in cluster.inbox.received for to in mail.rcpt_tos if to in set(emails))
    assert mail_to == Counter(emails), mail_to - Counter(emails)

    attempts = await query(
        cluster,
        "SELECT m.id, count(a.id) FILTER (WHERE a.ok), count(a.id) FROM messages m "
        "LEFT JOIN message_attempts a ON a.message_id = m.id "
        "WHERE m.transaction_id = ANY(:ids) GROUP BY m.id",
        ids=ids,
    )
    assert len(attempts) == 100
    assert [row for row in attempts if row[1] != 1] == []
    print(f"\n(b) 100 messages sent by 2 workers {drained:.2f} s after the last of 50 sales was answered")


# --- (c) a registry change reaches every process ---------------------------------------------------


async def fires(http: httpx2.AsyncClient, token: str, amount: float, rule: str) -> bool:
    """Whether a dry run of a sale of ``amount`` names ``rule`` (with a session, as a dry run needs)."""
    body = customer_sale("dry", 1, amount)
    auth = {"Authorization": f"Bearer {token}"}
    where = {"terminalId": body["terminalId"], "posLocationId": body["posLocationId"]}
    started = await http.post("/pos/pax/startInteraction", json=where, headers=auth)
    answer = await http.post(
        "/pos/pax/transaction",
        params={"dryRun": "true"},
        json={**body, "sessionId": started.json()["data"]["sessionId"]},
        headers=auth,
    )
    assert answer.status_code == 200, answer.text
    return any(effect["rule"] == rule for effect in answer.json()["data"]["effects"])


async def test_a_rule_change_reaches_both_processes_within_2_seconds(
    cluster: Cluster, clients: list[httpx2.AsyncClient], tmp_path: Path
) -> None:
    token = await token_from(clients[0])
    assert [await fires(http, token, 777, "seven seven seven") for http in clients] == [False, False]
    changed = tmp_path / "changed.yaml"
    changed.write_text(REGISTRY.read_text() + NEW_RULE)

    process = await asyncio.create_subprocess_exec(
        str(CMC), "apply", str(changed), env=cluster.env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    applied = time.monotonic()
    assert process.returncode == 0, err.decode()

    async def seen(http: httpx2.AsyncClient) -> float:
        while not await fires(http, token, 777, "seven seven seven"):
            assert time.monotonic() - applied < 10, "the rule change never arrived"
            await asyncio.sleep(0.05)
        return time.monotonic() - applied

    delays = await asyncio.gather(*(seen(http) for http in clients))
    print(f"\n(c) rule change seen by A after {delays[0]:.2f} s, by B after {delays[1]:.2f} s")
    assert max(delays) <= 2.0, delays


# --- per-customer rule limits under races (issue 5, "many processes") -----------------------------


async def test_a_per_customer_limit_holds_when_one_customer_buys_on_both_processes_at_once(
    cluster: Cluster, clients: list[httpx2.AsyncClient]
) -> None:
    token = await token_from(clients[0])
    customer = customer_sale("limit", 0, 20)
    sales = [
        {**customer, "transactionId": f"so-{RUN}-limit-{i}", "transactionAmount": 20 + i} for i in range(10)
    ]
    answers = await asyncio.gather(*(tender(clients[i % 2], token, sale) for i, sale in enumerate(sales)))
    assert [a.status_code for a in answers] == [200] * 10, [a.text for a in answers]
    data = [a.json()["data"] for a in answers]
    assert len({d["profile"]["id"] for d in data}) == 1, "one customer, one profile"
    coupons = [d for d in data if d["qrCodeWidget"] is not None]
    assert len(coupons) == 1, [d["effects"] for d in data]  # limit: 1 per customer per 7 days
    ids = [d["id"] for d in data]
    assert (await count(cluster, "rule_firings", ids), await count(cluster, "messages", ids)) == (1, 2)


# --- merchants: activation, races, tokens ---------------------------------------------------------

MERCHANT = "/v1/pos/pax/companies/comp5"


async def merchant_token(http: httpx2.AsyncClient, client_id: str, secret: str) -> dict[str, str]:
    answer = await http.post(
        "/connect/token",
        headers={"Authorization": basic_of(client_id, secret)},
        data={"grant_type": "client_credentials", "scope": "merchant"},
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def draft_with(http: httpx2.AsyncClient, headers: dict[str, str], rule: dict[str, Any]) -> int:
    """A new draft: the active document plus ``rule``."""
    document = (await http.get(f"{MERCHANT}/marketing", headers=headers)).json()["data"]["document"]
    document["rules"] = [r for r in document["rules"] if r["name"] != rule["name"]] + [rule]
    answer = await http.post(f"{MERCHANT}/marketing/versions", headers=headers, json={"document": document})
    assert answer.status_code == 201, answer.text
    number: int = answer.json()["data"]["version"]
    return number


async def active_version(http: httpx2.AsyncClient, headers: dict[str, str]) -> int:
    return int((await http.get(f"{MERCHANT}/marketing", headers=headers)).headers["etag"].strip('"'))


async def test_an_activation_on_one_process_is_used_by_the_other_within_2_seconds(
    cluster: Cluster, clients: list[httpx2.AsyncClient]
) -> None:
    a, b = clients
    headers = await merchant_token(a, "so-publisher", "s0publ!")
    pos_token = await token_from(b)
    rule = {"name": "eight eight eight", "priority": 30, "locations": ["loc5"],
            "when": {"amount": {"between": [888, 888]}}, "then": {"qrWidget": 2}}  # fmt: skip
    number = await draft_with(a, headers, rule)
    assert not await fires(b, pos_token, 888, "eight eight eight")
    current = await active_version(a, headers)
    answer = await a.post(f"{MERCHANT}/marketing/versions/{number}/activate",
                          headers={**headers, "If-Match": f'"{current}"'})  # fmt: skip
    assert answer.status_code == 200, answer.text
    activated = time.monotonic()
    while not await fires(b, pos_token, 888, "eight eight eight"):
        assert time.monotonic() - activated < 10, "the activation never arrived"
        await asyncio.sleep(0.05)
    delay = time.monotonic() - activated
    print(f"\n(e) an activation on A was used by B after {delay:.2f} s")
    assert delay <= 2.0


async def test_two_publishers_racing_on_two_processes_one_wins(
    cluster: Cluster, clients: list[httpx2.AsyncClient]
) -> None:
    a, b = clients
    first = await merchant_token(a, "so-publisher", "s0publ!")
    second = await merchant_token(b, "so-publisher-2", "s0publ2!")
    for round_ in range(5):
        rule = {"name": f"race {round_}", "when": {"amount": {"gte": 10_000}}, "then": {"qrWidget": 2}}
        mine, theirs = await draft_with(a, first, rule), await draft_with(b, second, {**rule, "priority": 1})
        current = await active_version(a, first)
        answers = await asyncio.gather(
            a.post(
                f"{MERCHANT}/marketing/versions/{mine}/activate",
                headers={**first, "If-Match": f'"{current}"'},
            ),
            b.post(
                f"{MERCHANT}/marketing/versions/{theirs}/activate",
                headers={**second, "If-Match": f'"{current}"'},
            ),
        )
        assert sorted(a.status_code for a in answers) == [200, 412], [a.text for a in answers]
        winner = next(answer for answer in answers if answer.status_code == 200).json()["data"]["version"]
        assert await active_version(b, second) == winner
    [[activations]] = await query(cluster, "SELECT count(*) FROM marketing_audit WHERE action = 'activate' "
                                  "AND summary LIKE '%race%'")  # fmt: skip
    assert activations >= 5


async def test_idempotent_retries_racing_on_two_processes_make_one_version(
    cluster: Cluster, clients: list[httpx2.AsyncClient]
) -> None:
    a, b = clients
    headers = await merchant_token(a, "so-publisher", "s0publ!")
    document = (await a.get(f"{MERCHANT}/marketing", headers=headers)).json()["data"]["document"]
    [[before]] = await query(cluster, "SELECT count(*) FROM marketing_versions")
    key = {**headers, "Idempotency-Key": f"retry-{RUN}"}
    body = {"document": document, "note": "retried"}
    answers = await asyncio.gather(*(
        http.post(f"{MERCHANT}/marketing/versions", headers=key, json=body) for http in (a, b, a, b, a, b)
    ))  # fmt: skip
    assert {answer.status_code for answer in answers} == {201}, [answer.text for answer in answers]
    assert len({answer.content for answer in answers}) == 1
    [[after]] = await query(cluster, "SELECT count(*) FROM marketing_versions")
    assert after == before + 1


async def test_a_rotated_secret_ends_its_tokens_in_both_processes_within_2_seconds(
    cluster: Cluster, clients: list[httpx2.AsyncClient], tmp_path: Path
) -> None:
    a = clients[0]
    answer = await a.post("/connect/token", headers={"Authorization": basic_of("pax-rotate", "r0tat3!")},
                          data={"grant_type": "client_credentials"})  # fmt: skip
    token = answer.json()["access_token"]
    start = {"terminalId": "term5", "posLocationId": "loc5"}

    async def status(http: httpx2.AsyncClient) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return (await http.post("/pos/pax/startInteraction", json=start, headers=headers)).status_code

    assert [await status(http) for http in clients] == [200, 200]
    rotated = tmp_path / "rotated.yaml"
    rotated.write_text(REGISTRY.read_text().replace("r0tat3!", "r0tat3d-again!"))
    process = await asyncio.create_subprocess_exec(
        str(CMC), "apply", str(rotated), env=cluster.env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    applied = time.monotonic()
    assert process.returncode == 0, err.decode()

    async def refused(http: httpx2.AsyncClient) -> float:
        while await status(http) != 401:
            assert time.monotonic() - applied < 10, "the old token still works"
            await asyncio.sleep(0.05)
        return time.monotonic() - applied

    delays = await asyncio.gather(*(refused(http) for http in clients))
    print(
        f"\n(f) a rotated secret ended its token on A after {delays[0]:.2f} s, on B after {delays[1]:.2f} s"
    )
    assert max(delays) <= 2.0, delays
    # Put the secret back for whatever runs next.
    restored = await asyncio.create_subprocess_exec(
        str(CMC), "apply", str(REGISTRY), env=cluster.env, cwd=ROOT
    )
    assert await restored.wait() == 0


async def test_failed_guesses_on_both_processes_count_together(
    cluster: Cluster, clients: list[httpx2.AsyncClient]
) -> None:
    wrong = {"Authorization": basic_of("so-publisher", "not-it")}
    form = {"grant_type": "client_credentials"}
    codes = [
        (await clients[n % 2].post("/connect/token", headers=wrong, data=form)).status_code for n in range(12)
    ]
    assert codes == [401] * 10 + [429, 429], codes  # CMC_AUTH_FAILURES_PER_CLIENT=10, over both
