"""Signed session ids: what they carry, what each failure answers, and key rotation."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cmc import sessions
from cmc.errors import SessionAlreadyUsed, SessionExpired, SessionMismatch, SessionNotFound
from cmc.ids import new_id
from cmc.registry import store as registry_store
from support import ManualClock, binding_tags_match, seed_transaction

KEY = secrets.token_bytes(32)
HERE = sessions.Where("pax", "loc5", "term5")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=15)


def check(
    session_id: str, *, keys: tuple[bytes, ...] = (KEY,), where: sessions.Where = HERE, **kw: Any
) -> None:
    sessions.check(session_id, keys, where, now=kw.pop("now", NOW), ttl=TTL, **kw)


def test_a_session_is_a_canonical_uuid_v8_that_checks_where_it_was_issued() -> None:
    session = sessions.issue(KEY, HERE, now=NOW)
    parsed = uuid.UUID(session)
    assert str(parsed) == session and parsed.version == 8 and parsed.variant == uuid.RFC_4122
    check(session)
    check(session.upper())  # a POS may print GUIDs in capitals
    assert len({sessions.issue(KEY, HERE, now=NOW) for _ in range(10_000)}) == 10_000


@pytest.mark.parametrize("bit", [0, 13, 40, 70, 100, 127])
def test_a_forged_or_garbled_session_is_unknown(bit: int) -> None:
    session = uuid.UUID(sessions.issue(KEY, HERE, now=NOW))
    flipped = str(uuid.UUID(int=session.int ^ (1 << bit)))
    with pytest.raises(SessionNotFound):
        check(flipped)


@pytest.mark.parametrize(
    "text",
    ["", "no-such-session", str(uuid.uuid4()), new_id(), "0" * 36],
    ids=["empty", "word", "uuid4", "new-id", "zeros"],  # fixed ids: xdist's workers must collect alike
)
def test_anything_but_our_ids_is_unknown(text: str) -> None:
    with pytest.raises(SessionNotFound):
        check(text)


def test_another_key_or_pos_system_is_unknown() -> None:
    session = sessions.issue(KEY, HERE, now=NOW)
    with pytest.raises(SessionNotFound):
        check(session, keys=(secrets.token_bytes(32),))
    with pytest.raises(SessionNotFound):
        check(session, where=sessions.Where("clover", "loc5", "term5"))


def issued_told_apart(other_terminal: sessions.Where, elsewhere: sessions.Where) -> str:
    """A session for HERE whose tags differ from those of another terminal and of another location
    with its terminal (1 in 1,024 per tag would not: the next test)."""
    while True:
        session = sessions.issue(KEY, HERE, now=NOW)
        _, terminal = binding_tags_match(session, KEY, other_terminal)
        location_there, terminal_there = binding_tags_match(session, KEY, elsewhere)
        if not (terminal or location_there or terminal_there):
            return session


def test_another_terminal_or_location_is_a_mismatch_naming_the_field() -> None:
    other_terminal, elsewhere = sessions.Where("pax", "loc5", "term6"), sessions.Where("pax", "loc9", "term9")
    session = issued_told_apart(other_terminal, elsewhere)
    with pytest.raises(SessionMismatch) as terminal:
        check(session, where=other_terminal)
    assert set(terminal.value.errors or {}) == {"terminalId"}
    with pytest.raises(SessionMismatch) as both:
        check(session, where=elsewhere)
    assert set(both.value.errors or {}) == {"terminalId", "posLocationId"}


def test_one_session_in_1024_is_not_told_apart_from_another_terminals() -> None:
    """The terminal's tag is a 10-bit MAC: where another terminal's would be the same, the session
    is accepted there (documented; the session is no credential, the POS's token is)."""
    other = sessions.Where("pax", "loc5", "term6")
    issued = [sessions.issue(KEY, HERE, now=NOW) for _ in range(20_000)]
    colliding = [s for s in issued if binding_tags_match(s, KEY, other)[1]]
    assert 5 <= len(colliding) <= 50  # about 20,000 / 1,024
    check(colliding[0], where=other)  # accepted at term6
    told_apart = next(s for s in issued if not binding_tags_match(s, KEY, other)[1])
    with pytest.raises(SessionMismatch):
        check(told_apart, where=other)


def test_expiry_comes_from_the_time_the_id_carries() -> None:
    session = sessions.issue(KEY, HERE, now=NOW)
    check(session, now=NOW + TTL - timedelta(milliseconds=1))
    with pytest.raises(SessionExpired):
        check(session, now=NOW + TTL)
    # Another node's clock a little ahead is fine; an id from far in the future is not ours.
    check(sessions.issue(KEY, HERE, now=NOW + timedelta(seconds=3)))
    with pytest.raises(SessionNotFound):
        check(sessions.issue(KEY, HERE, now=NOW + timedelta(minutes=1)))


def test_the_order_of_verdicts() -> None:
    """Unknown before used, used before expired, expired before mismatched (as documented)."""
    session = sessions.issue(KEY, HERE, now=NOW)
    elsewhere, late = sessions.Where("pax", "loc9", "term9"), NOW + TTL
    with pytest.raises(SessionNotFound):
        check(session, keys=(secrets.token_bytes(32),), used=True)
    with pytest.raises(SessionAlreadyUsed):
        check(session, where=elsewhere, now=late, used=True)
    with pytest.raises(SessionExpired):
        check(session, where=elsewhere, now=late)


def test_rotation_keeps_keys_while_their_sessions_may_live(tmp_path: Any) -> None:
    from cmc.store import migrate
    from cmc.store.database import Database

    db = Database.open(f"sqlite:///{tmp_path}/keys.db")
    try:
        migrate.upgrade(db)
        db.run_sync(sessions.ensure_key, now=NOW)
        [first] = db.run_sync(sessions.stored_keys)
        db.run_sync(sessions.ensure_key, now=NOW)  # idempotent
        assert db.run_sync(sessions.stored_keys) == (first,)
        old_session = sessions.issue(first, HERE, now=NOW)
        assert db.run_sync(sessions.rotate, now=NOW + timedelta(minutes=1), ttl=TTL) == 2
        second, kept = db.run_sync(sessions.stored_keys)
        assert kept == first and second != first
        check(old_session, keys=(second, first), now=NOW + timedelta(minutes=5))
        # Rotating again before the first key's sessions could have expired keeps it...
        assert db.run_sync(sessions.rotate, now=NOW + timedelta(minutes=10), ttl=TTL) == 3
        # ...and one session lifetime after it retired, it goes.
        assert db.run_sync(sessions.rotate, now=NOW + timedelta(minutes=17), ttl=TTL) == 3
        assert first not in db.run_sync(sessions.stored_keys)
    finally:
        asyncio.run(db.close())


# --- through the API -------------------------------------------------------------------------------


async def test_start_interaction_writes_nothing(api_factory: Callable[..., Any]) -> None:
    from support import count_rows

    # The roll-up loop off: its first step writes its coverage to meta whenever it runs, which would
    # make the count below depend on timing rather than on what startInteraction writes.
    async with api_factory(rollup_every=timedelta(0)) as api:
        before = {t: await count_rows(api, t) for t in ("transactions", "meta", "profiles")}
        for _ in range(5):
            await api.session()
        assert {t: await count_rows(api, t) for t in before} == before


async def test_a_rotated_key_keeps_live_sessions_and_signs_new_ones(api_factory: Any) -> None:
    clock = ManualClock(NOW)
    async with api_factory(clock=clock, registry_refresh=timedelta(milliseconds=50)) as api:
        before = await api.session()
        db = api.db()
        try:

            def rotate(conn: Any) -> None:
                sessions.rotate(conn, now=clock(), ttl=TTL)
                registry_store.bump_version(conn)

            await db.write(rotate)
            keys = await db.read(sessions.stored_keys)
        finally:
            await db.close()
        services = api.app.app.state.services
        for _ in range(100):
            if services.directory.current.session_keys == keys:
                break
            await asyncio.sleep(0.05)
        assert services.directory.current.session_keys == keys
        after = await api.session()
        check(after, keys=keys[:1], now=clock())  # signed with the new key
        with pytest.raises(SessionNotFound):
            check(after, keys=keys[1:], now=clock())
        for session in (before, after):
            answer = await api.send(seed_transaction(sessionId=session))
            assert answer.status_code == 200, answer.text


async def test_configured_secrets_sign_and_verify(api_factory: Any) -> None:
    new, old = "n" * 32, "o" * 32
    clock = ManualClock(NOW)
    async with api_factory(clock=clock, session_secrets=f"{new},{old}") as api:
        session = await api.session()
        check(session, keys=(new.encode(),), now=clock())
        from_old = sessions.issue(old.encode(), HERE, now=clock())
        assert (await api.send(seed_transaction(sessionId=from_old))).status_code == 200
        stranger = sessions.issue(b"x" * 32, HERE, now=clock())
        assert (await api.send(seed_transaction(sessionId=stranger))).status_code == 404


def test_configured_secrets_must_be_long_enough() -> None:
    from cmc.config import Settings
    from cmc.errors import ConfigError

    with pytest.raises(ConfigError, match="CMC_SESSION_SECRETS"):
        Settings.from_env({"CMC_SESSION_SECRETS": "short," + "x" * 32})
