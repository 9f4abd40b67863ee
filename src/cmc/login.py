"""Checking credentials: API clients' secrets (``/connect/token``) and console users' passwords.

A hash check costs tens of milliseconds of CPU by design, which makes it a lever for whoever sends
wrong guesses. So, in order:

1. A credential verified recently (a POS asking for tokens often) is answered from memory: kept by
   a digest of id and secret, valid while the stored hash it matched is still the registry's, for
   ``REMEMBER``. It does not count against any limit, so a flood of wrong guesses at a client id
   does not lock out the client that knows its secret.
2. Failed checks are counted per client id (or console user) and per source address, in the
   database (``cmc.throttle``), so the limits hold across processes; at a limit the answer is 429
   with ``Retry-After``, without hashing.
3. Hashes run in worker threads, at most ``slots`` at once (the event loop keeps serving sales);
   when ``MAX_WAITING`` checks already wait for a slot the answer is 429 too.
   A 429 is held for ``tarpit`` before it is sent: a flood retrying as fast as it is answered slows to
   one attempt per connection per ``tarpit``, so refusing it costs next to no CPU (sales keep theirs).
4. An unknown id is checked against a dummy hash of the same cost: known and unknown ids take the
   same time, so timing does not tell which ids exist.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from cmc import credentials, throttle
from cmc.clock import Clock
from cmc.errors import InvalidClient, TooManyRequests, Unauthorized
from cmc.registry import DirectoryCache
from cmc.registry.snapshot import Client, ConsoleUser
from cmc.store.database import Database

C = TypeVar("C", Client, ConsoleUser)
REMEMBER = timedelta(minutes=5)
MAX_WAITING = 16
_REMEMBERED_SIZE = 10_000


@dataclass(frozen=True)
class _Scheme(Generic[C]):
    """How one kind of credential is checked: its stored hash, the hash's check, a dummy, the refusal."""

    stored: Callable[[C], str]
    verify: Callable[[str, str], bool]
    dummy: Callable[[], str]
    refused: Callable[[], Exception]


_SECRETS = _Scheme[Client](
    lambda client: client.secret_hash, credentials.verify_secret, credentials.dummy_secret_hash, InvalidClient
)
_PASSWORDS = _Scheme[ConsoleUser](
    lambda user: user.password_hash,
    credentials.verify_password,
    credentials.dummy_password_hash,
    lambda: Unauthorized("Unknown user or wrong password."),
)


def default_slots() -> int:
    """Hash checks at once: half the cores, so the other half keeps serving everything else."""
    return max(1, (os.cpu_count() or 2) // 2)


class Login:
    """Verifies credentials against the registry snapshot, throttled and in constant time."""

    def __init__(
        self,
        db: Database,
        directory: DirectoryCache,
        *,
        limits: throttle.Limits,
        clock: Clock,
        tarpit: timedelta = timedelta(0),
        slots: int | None = None,
    ) -> None:
        self._db = db
        self._directory = directory
        self._limits = limits
        self._clock = clock
        self._tarpit = tarpit.total_seconds()
        self._slots = asyncio.Semaphore(slots or default_slots())
        self._waiting = 0
        self._remembered: dict[str, tuple[str, datetime]] = {}
        self._blocked: dict[str, datetime] = {}
        """Keys known to be at their limit, until when: answered without asking the database."""

    async def client(self, client_id: str, secret: str, *, address: str) -> Client:
        """The API client (POS or merchant) whose secret this is, or ``InvalidClient`` / 429."""
        directory = self._directory
        return await self._check(
            "client", client_id, secret, address, lambda: directory.current.clients.get(client_id), _SECRETS
        )

    async def user(
        self, pos_system_id: str, company_id: str, email: str, password: str, *, address: str
    ) -> ConsoleUser:
        """The console user of this company with this email and password (the console's login).

        ``email`` is compared lower-cased; a wrong or unknown one is ``Unauthorized`` (or 429).
        """
        wanted = (pos_system_id, company_id, email.strip().lower())
        directory = self._directory
        return await self._check(
            "user",
            "\0".join(wanted),
            password,
            address,
            lambda: directory.current.users.get(wanted),
            _PASSWORDS,
        )

    async def _check(
        self, kind: str, who: str, secret: str, address: str, find: Callable[[], C | None], scheme: _Scheme[C]
    ) -> C:
        """What ``find()`` returns when ``secret`` matches its stored hash; else refused (or 429)."""
        keys = {
            throttle.key(kind, who): self._limits.per_client,
            throttle.key("address", address): self._limits.per_address,
        }
        stored = scheme.stored
        verify, dummy, refused = scheme.verify, scheme.dummy, scheme.refused()
        memo = hashlib.sha256(f"{kind}\0{who}\0{secret}".encode()).hexdigest()
        now = self._clock()
        remembered = self._remembered.get(memo)
        if remembered is not None and remembered[1] > now:
            await self._directory.catch_up()
            found = find()
            if found is not None and stored(found) == remembered[0]:
                return found
        await self._refuse_when_over(keys, now)
        await self._directory.catch_up()
        found = find()
        expected = stored(found) if found is not None else None
        matched = await self._hash(verify, secret, expected or dummy())
        # The snapshot may have moved while the hash ran: what matched must still be the registry's.
        current = find()
        if found is None or current is None or not matched or stored(current) != expected:
            await self._db.write(throttle.record, list(keys), now=now, window=self._limits.window)
            raise refused
        if len(self._remembered) >= _REMEMBERED_SIZE:
            self._remembered.clear()
        self._remembered[memo] = (stored(current), now + REMEMBER)
        return current

    async def _refuse_when_over(self, keys: dict[str, int], now: datetime) -> None:
        _, end = throttle.window_of(now, self._limits.window)
        blocked = any(self._blocked.get(k, now) > now for k in keys)
        if not blocked:
            over = await self._db.read(throttle.over_limit, keys, now=now, window=self._limits.window)
            if len(self._blocked) >= _REMEMBERED_SIZE:
                self._blocked.clear()
            self._blocked.update((k, end) for k in over)
            blocked = bool(over)
        if blocked:
            retry = max(1, math.ceil((end - now).total_seconds()))
            await self._hold()
            raise TooManyRequests("Too many failed attempts: try again later.", retry_after=retry)

    async def _hold(self) -> None:
        """Hold a refusal for ``tarpit`` (the caller's connection waits; no CPU is spent)."""
        if self._tarpit:
            await asyncio.sleep(self._tarpit)

    async def _hash(self, verify: Callable[[str, str], bool], secret: str, stored: str) -> bool:
        """``verify(secret, stored)`` in a worker thread, at most ``slots`` at once."""
        if self._waiting >= MAX_WAITING:
            await self._hold()
            raise TooManyRequests("Too many credential checks at once: try again shortly.", retry_after=1)
        self._waiting += 1
        try:
            async with self._slots:
                return await asyncio.to_thread(verify, secret, stored)
        finally:
            self._waiting -= 1
