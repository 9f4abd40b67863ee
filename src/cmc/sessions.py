"""Interaction sessions: a signed GUID that carries what CMC needs to check it, and is stored nowhere.

``startInteraction`` writes nothing: its ``sessionId`` is an RFC 9562 UUIDv8 (a canonical GUID, as
ClearLine's are) whose 122 free bits hold

    46 bits  the issue time, Unix milliseconds
    32 bits  randomness (two sessions of one terminal in one millisecond still differ)
    24 bits  a MAC over (posSystemId, time, randomness, the two bindings): a forged or garbled id
             fails it → 404
    10 bits  a MAC binding the location  → another location: 400 (``posLocationId``)
    10 bits  a MAC binding the terminal  → another terminal: 400 (``terminalId``)

The MACs are short because a session is no credential (the Bearer token is): they tell a POS's
mistake (an id from another terminal, a mangled one) from a good id, with 1/1024 and 1/16M odds of
missing one.

keyed by a secret every process shares. The time gives the expiry (410). One transaction per session
is not a property of the id: the sale stores the session id as its own primary key, in the same
commit, so a second transaction with a used session collides (409) and a replay finds its answer.

Keys rotate without refusing live sessions: the newest key signs, every key still listed verifies,
and a key is dropped only one session lifetime after its successor took over.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Connection

from cmc.errors import SessionAlreadyUsed, SessionExpired, SessionMismatch, SessionNotFound
from cmc.store import meta

KEYS = "session_keys"
"""The ``meta`` key holding the generated keys, newest first."""
CLOCK_SKEW = timedelta(seconds=5)
"""A session issued this far in the future (another node's clock) is still accepted."""

_TIME, _RANDOM, _AUTH, _BIND = 46, 32, 24, 10


@dataclass(frozen=True)
class Where:
    """What a session is bound to."""

    pos_system_id: str
    location_id: str
    terminal_id: str


def issue(key: bytes, where: Where, *, now: datetime) -> str:
    """A new session id for ``where``, signed with ``key``."""
    millis = int(now.timestamp() * 1000) & ((1 << _TIME) - 1)
    random = secrets.randbits(_RANDOM)
    location, terminal = _bindings(key, where, millis, random)
    auth = _auth(key, where, millis, random, location, terminal)
    payload = (((((millis << _RANDOM | random) << _AUTH | auth) << _BIND) | location) << _BIND) | terminal
    return _to_text(payload)


def canonical(session_id: str) -> str:
    """The id as CMC stores it (a GUID in lower case); anything else as sent (it will not check)."""
    if len(session_id) == 36 and session_id.islower():
        return session_id  # what CMC hands out: already canonical (checked when it is verified)
    try:
        return str(uuid.UUID(session_id))
    except ValueError:
        return session_id


def check(
    session_id: str, keys: Sequence[bytes], where: Where, *, now: datetime, ttl: timedelta, used: bool = False
) -> None:
    """Raise why ``session_id`` cannot carry a transaction at ``where`` now (None when it can).

    In this order: unknown (not ours, forged, or another POS system's) 404; ``used`` by another
    transaction 409; expired 410; another location or terminal 400.
    """
    parts = _parts(session_id)
    if parts is not None:
        millis, random, auth, location, terminal = parts
        for key in keys:
            expected = _auth(key, where, millis, random, location, terminal)
            if hmac.compare_digest(expected.to_bytes(3, "big"), auth.to_bytes(3, "big")):
                if used:
                    raise SessionAlreadyUsed()
                _check_time(millis, now=now, ttl=ttl)
                _check_binding(_bindings(key, where, millis, random), location, terminal)
                return
    raise SessionNotFound(f"Unknown sessionId {session_id!r}: call startInteraction first.")


class _Parts(NamedTuple):
    millis: int
    random: int
    auth: int
    location: int
    terminal: int


def _parts(session_id: str) -> _Parts | None:
    """The fields of a session id of ours (``issue`` packs them), or None for anything else."""
    payload = _from_uuid(session_id)
    if payload is None:
        return None
    terminal = payload & ((1 << _BIND) - 1)
    location = (payload >> _BIND) & ((1 << _BIND) - 1)
    auth = (payload >> 2 * _BIND) & ((1 << _AUTH) - 1)
    random = (payload >> (2 * _BIND + _AUTH)) & ((1 << _RANDOM) - 1)
    millis = payload >> (2 * _BIND + _AUTH + _RANDOM)
    return _Parts(millis, random, auth, location, terminal)


def _check_binding(expected: tuple[int, int], location: int, terminal: int) -> None:
    held = {"posLocationId": (location, expected[0]), "terminalId": (terminal, expected[1])}
    mismatched = [name for name, (stored, sent) in held.items() if stored != sent]
    if mismatched:
        raise SessionMismatch(errors={name: ["does not match the session's value"] for name in mismatched})


def _check_time(millis: int, *, now: datetime, ttl: timedelta) -> None:
    issued = datetime.fromtimestamp(millis / 1000, UTC)
    if issued > now + CLOCK_SKEW:
        raise SessionNotFound("Unknown sessionId: it was issued in the future (check the servers' clocks).")
    if issued + ttl <= now:
        raise SessionExpired()


def _mac(key: bytes, label: bytes, *parts: bytes) -> int:
    # Keyed BLAKE2b is a MAC by design (no HMAC construction needed) and a third of HMAC-SHA256's cost.
    digest = hashlib.blake2b(b"\0".join((label, *parts)), key=key[:64], digest_size=4).digest()
    return int.from_bytes(digest, "big")


def _stamp(millis: int, random: int) -> bytes:
    return millis.to_bytes(6, "big") + random.to_bytes(4, "big")


def _bindings(key: bytes, where: Where, millis: int, random: int) -> tuple[int, int]:
    """The location and terminal bindings of an id issued at ``millis`` with ``random``."""
    pos, stamp, bits = where.pos_system_id.encode(), _stamp(millis, random), (1 << _BIND) - 1
    location = _mac(key, b"loc", pos, where.location_id.encode(), stamp)
    terminal = _mac(key, b"term", pos, where.terminal_id.encode(), stamp)
    return location & bits, terminal & bits


def _auth(key: bytes, where: Where, millis: int, random: int, location: int, terminal: int) -> int:
    """The MAC of the whole id: every bit of it but this one, and the POS system it belongs to."""
    tags = location.to_bytes(2, "big") + terminal.to_bytes(2, "big")
    return _mac(key, b"id", where.pos_system_id.encode(), _stamp(millis, random), tags) & ((1 << _AUTH) - 1)


def first_id_at(at: datetime) -> str:
    """The smallest id ``issue`` can make at ``at``: every session issued before ``at`` sorts below it,
    as text, and every one issued at or after it does not (the time leads the id). The roll-up of
    sales uses it as a mark (``cmc.rollup``)."""
    millis = max(int(at.timestamp() * 1000), 0) & ((1 << _TIME) - 1)
    return _to_text(millis << (_RANDOM + _AUTH + 2 * _BIND))


def _to_text(payload: int) -> str:
    """Spread 122 payload bits around the version (8) and variant (RFC 9562) bits; canonical text."""
    high, middle, low = payload >> 74, (payload >> 62) & 0xFFF, payload & ((1 << 62) - 1)
    value = f"{(high << 80) | (0x8 << 76) | (middle << 64) | (0b10 << 62) | low:032x}"
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"


def _from_uuid(text: str) -> int | None:
    """The payload of a UUIDv8 of ours, or None for anything else."""
    digits = text.replace("-", "")
    if len(digits) != 32 or len(text) not in (32, 36):
        return None
    try:
        value = int(digits, 16)
    except ValueError:
        return None
    if (value >> 76) & 0xF != 0x8 or (value >> 62) & 0b11 != 0b10:
        return None
    return (value >> 80) << 74 | ((value >> 64) & 0xFFF) << 62 | value & ((1 << 62) - 1)


# --- keys ---------------------------------------------------------------------------------------


def stored_keys(conn: Connection) -> tuple[bytes, ...]:
    """The generated keys, newest (the signing one) first."""
    return tuple(base64.b64decode(entry["key"]) for entry in _entries(conn))


def ensure_key(conn: Connection, *, now: datetime) -> None:
    """Generate the first key when there is none."""
    if not _entries(conn):
        _store(conn, [_new_entry(now)])


def rotate(conn: Connection, *, now: datetime, ttl: timedelta) -> int:
    """Sign new sessions with a fresh key; keep older keys while sessions they signed may live.

    A key retires when its successor is made; it is dropped once it has been retired for ``ttl``.
    Returns how many keys verify afterwards.
    """
    entries = [_new_entry(now), *_entries(conn)]
    kept = [entries[0]] + [
        entry
        for successor, entry in itertools.pairwise(entries)
        if datetime.fromisoformat(successor["created"]) + ttl > now
    ]
    _store(conn, kept)
    return len(kept)


def _entries(conn: Connection) -> list[dict[str, str]]:
    raw = meta.get(conn, KEYS)
    entries: list[dict[str, str]] = json.loads(raw) if raw else []
    return entries


def _store(conn: Connection, entries: list[dict[str, str]]) -> None:
    meta.put(conn, KEYS, json.dumps(entries))


def _new_entry(now: datetime) -> dict[str, str]:
    return {"key": base64.b64encode(secrets.token_bytes(32)).decode(), "created": now.isoformat()}
