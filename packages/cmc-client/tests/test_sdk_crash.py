"""Crash test: a POS posting tenders is SIGKILLed at random points while CMC is killed and restarted.

The POS is ``crash_child.py`` (a real ``cmc_client.Client`` with an outbox file); CMC is ``cmc serve``
on SQLite, killed with SIGKILL too. After three rounds a fresh client on the same outbox drains it,
and the server's ``transactions`` table must hold every tender the POS was told was queued or
delivered, exactly once, and nothing the POS never posted. Bounded: 3 rounds of at most 20 tenders.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from real_cmc import (
    CLIENT_ID,
    POS,
    SECRET,
    ServeProcess,
    child_env,
    db_path,
    prepare,
    settings_for,
    transaction_counts,
)

from cmc_client import Client

CHILD = Path(__file__).with_name("crash_child.py")
ROUNDS, PER_ROUND = 3, 20
STATUSES = {"delivered", "queued", "rejected", "disabled", "not-accepted"}


def spawn_child(url: str, outbox: Path, prefix: str, seed: int) -> subprocess.Popen[str]:
    """A POS process with its imports done, waiting for ``go``."""
    return subprocess.Popen(  # noqa: S603 (our own interpreter and script)
        [sys.executable, str(CHILD), url, str(outbox), prefix, str(PER_ROUND), str(seed)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )


def run_round(
    child: subprocess.Popen[str], server: ServeProcess, rng: random.Random
) -> tuple[list[str], dict[str, str]]:
    """One POS life: let it post, kill (and restart) CMC at a random moment, SIGKILL the POS.

    Returns the ids the POS tried to post and what it was told for each.
    """
    try:
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.write("go\n")
        child.stdin.close()
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.3, 1.0))
        server.kill()  # CMC dies mid-traffic
        if rng.random() < 0.5:  # the POS dies while CMC is down...
            time.sleep(rng.uniform(0.05, 0.5))
            child.kill()
            server.start()
        else:  # ... or after CMC came back
            time.sleep(rng.uniform(0.05, 0.3))
            server.start()
            time.sleep(rng.uniform(0.2, 1.0))
            child.kill()
        output = child.stdout.read()
    finally:
        child.kill()
        child.wait(10)
    tried, told = [], {}
    for line in output.splitlines(keepends=True):
        if not line.endswith("\n"):
            continue  # cut by the kill
        word, _, tx = line.strip().partition(" ")
        if word == "try":
            tried.append(tx)
        elif word in STATUSES:
            told[tx] = word
    return tried, told


@pytest.mark.slow
def test_sigkilled_pos_and_restarted_cmc_lose_nothing_and_count_once(tmp_path: Path) -> None:
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    settings = settings_for(tmp_path)
    prepare(settings)
    outbox = tmp_path / "pos-outbox.sqlite3"
    server = ServeProcess(settings)
    children = [spawn_child(server.url, outbox, f"R{n}", rng.randrange(10**9)) for n in range(ROUNDS)]
    server.start()
    started = time.monotonic()
    tried: set[str] = set()
    told: dict[str, str] = {}
    try:
        for child in children:
            round_tried, round_told = run_round(child, server, rng)
            tried.update(round_tried)
            told.update(round_told)
        if server.proc is None:
            server.start()
        elapsed = time.monotonic() - started
        # Recovery: a fresh client on the same outbox. Its clock runs past the killed POS's leases
        # (a row being delivered is leased for 120 s so no second process sends it meanwhile).
        with Client(
            server.url, POS, CLIENT_ID, SECRET, outbox_path=outbox, clock=lambda: time.time() + 600
        ) as client:
            deadline = time.monotonic() + 20
            while client.status().queued and time.monotonic() < deadline:
                client.drain()
            status = client.status()
            stored = {e.transaction_id: e.state for e in client.entries(limit=10_000)}
    finally:
        server.close()
        for child in children:
            child.kill()
            child.wait(10)

    context = f"seed {seed}: tried {len(tried)}, told {len(told)}, rounds took {elapsed:.1f} s"
    print(context, {s: list(told.values()).count(s) for s in set(told.values())})
    assert status.queued == 0, context
    assert set(told.values()) <= {"queued", "delivered"}, context
    assert len(told) >= 5, f"the POS barely ran ({context})"
    counts = transaction_counts(db_path(settings))
    assert all(n == 1 for n in counts.values()), context
    assert set(told) <= set(counts), f"lost: {sorted(set(told) - set(counts))} ({context})"
    assert set(counts) <= tried, f"never posted: {sorted(set(counts) - tried)} ({context})"
    assert set(counts) == set(stored), context
    assert set(stored.values()) == {"delivered"}, context
