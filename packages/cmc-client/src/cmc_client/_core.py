"""The SDK's one core: every decision ``Client`` and ``AsyncClient`` make, written once as flows.

A flow (see ``_steps``) is a generator that yields the I/O it needs (an HTTP call, outbox work, a
background attempt, a retry schedule, a pause) and decides everything else: what to store, when to try
CMC, what a failure means, what to record. The drivers subclass :class:`ClientCore` and only perform
steps: ``Client`` in threads, ``AsyncClient`` on the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Generic, TypeVar, cast

import httpx2
import msgspec

from cmc_client import wire
from cmc_client._circuit import Circuit
from cmc_client._errors import AuthenticationError, DuplicateTransactionError, OutboxError, TransientError
from cmc_client._outbox import Outbox, OutboxEntry, OutboxState, OutboxStatus
from cmc_client._protocol import Conversation, Delivered, Outcome, Rejected
from cmc_client._results import (
    Discrepancy,
    DrainReport,
    TenderResult,
    VerifyReport,
    delivered,
    not_sent,
    queued,
    rejected,
    result_of,
)
from cmc_client._steps import Concurrently, Flow, Interrupted, Pause, Retrying, local
from cmc_client._tender import TenderInput, dated, encode_tender, is_same_sale, validate_tender

HttpT = TypeVar("HttpT", httpx2.Client, httpx2.AsyncClient)
log = logging.getLogger("cmc_client")

VERIFY_PAGE = 200
"""Delivered rows read from the outbox at a time by ``verify()``."""


class ClientCore(ABC, Generic[HttpT]):
    """Configuration, caches and the flows shared by :class:`~cmc_client.Client` and ``AsyncClient``."""

    def __init__(
        self,
        base_url: str,
        pos_system_id: str,
        client_id: str,
        client_secret: str,
        *,
        outbox_path: str | Path,
        http: HttpT | None = None,
        request_timeout: float = 10.0,
        settings_ttl: float = 900.0,
        retry_attempts: int = 5,
        retry_timeout: float = 30.0,
        retry_wait_max: float = 5.0,
        poll_interval: float = 5.0,
        offline_window: float = 1.0,
        keep_delivered: float = 7 * 86400.0,
        workers: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Open (and check) the outbox and get ready to talk to CMC at ``base_url``.

        ``http`` is the HTTP client to use (the client closes only one it created itself). ``clock``
        returns seconds since the epoch: the client's only wall-clock time source (token and settings
        expiry, the circuit, the outbox's timestamps, the date stamped on a sale). The README's
        "Options" section says what every other option does.
        """
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.outbox = Outbox(outbox_path, lease=max(120.0, 12 * request_timeout))
        """The tender outbox (also usable on its own)."""
        self._clock = clock
        self.outbox.prune(before=clock() - keep_delivered)
        credentials = (client_id, client_secret)
        self._conversation = Conversation(
            base_url, pos_system_id, credentials, clock=clock, settings_ttl=settings_ttl
        )
        self._retry_attempts = retry_attempts
        self._retry_timeout = retry_timeout
        self._retry_wait_max = retry_wait_max
        self._poll_interval = poll_interval
        self._circuit = Circuit(offline_window)
        self._inflight: set[int] = set()
        """Outbox ids this client is delivering right now."""
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._owns_http = http is None
        timeout = httpx2.Timeout(request_timeout, connect=3.0)
        self._http: HttpT = self._open(http, timeout=timeout, workers=workers)

    @abstractmethod
    def _open(self, http: HttpT | None, *, timeout: httpx2.Timeout, workers: int) -> HttpT:
        """Set up the driver's I/O (``workers`` background attempts at most); return the HTTP client."""

    # --- the till ------------------------------------------------------------------------------

    def _post(self, tender: TenderInput, deadline: float) -> Flow[TenderResult]:
        """``post_tender``: store the tender durably, then try to deliver it within ``deadline`` s."""
        started = time.monotonic()
        offline = self._circuit.is_open(self._clock())
        entry, held = yield from local(partial(self._store, tender, claim=not offline))
        if entry.state != "queued":
            return result_of(entry)
        if offline:
            return queued(entry, "CMC was unreachable a moment ago; the drainer will deliver it")
        if not held or not self._hold(entry.id):
            return queued(entry, "already being delivered")
        wait = max(0.0, deadline - (time.monotonic() - started))
        try:
            result = yield Concurrently(self._attempt(entry), wait=wait)
        except Interrupted:  # the caller stopped waiting (a cancelled task): the attempt goes on
            result = None
        if result is None:
            with self._lock:  # until that attempt ends, the next sales do not wait on CMC
                if entry.id in self._inflight:
                    self._circuit.stall(entry.id)
            return queued(entry, f"no answer within {deadline:g} s; delivery goes on in the background")
        return cast(TenderResult, result)

    def _store(self, tender: TenderInput, *, claim: bool) -> tuple[OutboxEntry, bool]:
        """Validate, date and store a tender; return its row and whether this client now holds its lease.

        A tender the outbox already holds returns its row, leased only if it is queued and nobody else
        holds it; the same transactionId for another sale raises DuplicateTransactionError.
        """
        sale = validate_tender(tender)
        now = self._clock()
        entry, new = self.outbox.add(
            encode_tender(dated(sale, now)),
            transaction_id=sale.transactionId,
            company=sale.posCompanyId or "",
            terminal_id=sale.terminalId,
            location_id=sale.posLocationId,
            now=now,
            claim=claim,
        )
        if new:
            return entry, claim
        if not is_same_sale(entry.body, sale):
            raise DuplicateTransactionError(
                f"transactionId {sale.transactionId!r} is already in the outbox with a different body"
            )
        if entry.state != "queued" or not claim:
            return entry, False
        claimed = self.outbox.claim(entry.id, now=now)
        return (entry, False) if claimed is None else (claimed, True)

    def _hold(self, entry_id: int) -> bool:
        """Mark a row as being delivered by this client; False if it already is."""
        with self._lock:
            if entry_id in self._inflight:
                return False
            self._inflight.add(entry_id)
            return True

    def _let_go(self, entry_id: int) -> None:
        """The delivery of a held row ended (whatever its outcome)."""
        with self._lock:
            self._inflight.discard(entry_id)
            self._circuit.unstall(entry_id)

    def _attempt(self, entry: OutboxEntry) -> Flow[TenderResult]:
        """One delivery attempt of a row this client holds, recorded in the outbox."""
        try:
            outcome = yield from self._deliver(entry)
            return (yield from self._record(entry, outcome))
        except (TransientError, AuthenticationError, Interrupted) as exc:
            return (yield from self._keep_queued(entry, exc))
        finally:
            self._let_go(entry.id)

    def _deliver(self, entry: OutboxEntry) -> Flow[Outcome]:
        save_session = partial(self._save_session, entry.id)
        return (yield from self._conversation.deliver(entry, save_session=save_session))

    def _save_session(self, entry_id: int, session_id: str) -> None:
        self.outbox.save_session(entry_id, session_id, now=self._clock())

    def _keep_queued(self, entry: OutboxEntry, error: Exception) -> Flow[TenderResult]:
        """Leave the tender queued after a failed attempt, recording why."""
        if isinstance(error, TransientError):
            self._circuit.trip(self._clock())
        reason = f"{type(error).__name__}: {error}"
        yield from local(partial(self.outbox.release, entry.id, reason, now=self._clock()))
        return queued(entry, reason)

    def _record(self, entry: OutboxEntry, outcome: Outcome) -> Flow[TenderResult]:
        """Write what CMC did with the tender to the outbox."""
        self._circuit.reset()  # CMC answered
        now = self._clock()
        if isinstance(outcome, Delivered):
            yield from local(partial(self.outbox.mark_delivered, entry.id, outcome.raw, now=now))
            return delivered(entry, outcome.response)
        if isinstance(outcome, Rejected):
            problem = msgspec.json.encode(outcome.problem)
            yield from local(partial(self.outbox.mark_rejected, entry.id, problem, now=now))
            return rejected(entry, outcome.problem)
        yield from local(partial(self.outbox.mark_skipped, entry.id, outcome.state, outcome.reason, now=now))
        return not_sent(entry, outcome.state, outcome.reason)

    # --- the outbox ------------------------------------------------------------------------------

    def _drain(self, limit: int | None) -> Flow[DrainReport]:
        """``drain``: deliver queued tenders oldest first; stop at the first that still fails."""
        statuses: Counter[str] = Counter()
        error = None
        while limit is None or statuses.total() < limit:
            entry = yield from local(self._claim_next)
            if entry is None:
                break
            try:
                outcome = yield from self._deliver_with_retries(entry)
                result = yield from self._record(entry, outcome)
            except (TransientError, AuthenticationError, Interrupted) as exc:
                # CMC is down (or the client closing): the tenders behind this one would fail too.
                error = (yield from self._keep_queued(entry, exc)).reason
                break
            finally:
                self._let_go(entry.id)
            statuses[result.status] += 1
        status = yield from local(partial(self.outbox.status, now=self._clock()))
        return DrainReport(
            delivered=statuses["delivered"],
            rejected=statuses["rejected"],
            skipped=statuses["disabled"] + statuses["not-accepted"],
            remaining=status.queued,
            error=error,
        )

    def _claim_next(self) -> OutboxEntry | None:
        # The lease keeps others off the row; the lock is not held over the write (AsyncClient's
        # event loop takes it too).
        with self._lock:
            busy = set(self._inflight)
        entry = self.outbox.claim_next(now=self._clock(), exclude=busy)
        if entry is not None:
            with self._lock:
                self._inflight.add(entry.id)
        return entry

    def _deliver_with_retries(self, entry: OutboxEntry) -> Flow[Outcome]:
        outcome = yield Retrying(
            partial(self._retry_delivery, entry),
            self._should_retry,
            attempts=self._retry_attempts,
            timeout=self._retry_timeout,
            wait_max=self._retry_wait_max,
        )
        return cast(Outcome, outcome)

    def _retry_delivery(self, entry: OutboxEntry) -> Flow[Outcome]:
        """One try of a drain, with the row as stored now (a retry reuses the session saved before)."""
        if self._closing.is_set():
            raise Interrupted("the client is closing")
        current = yield from local(partial(self.outbox.get, entry.id))
        return (yield from self._deliver(current or entry))

    def _should_retry(self, error: Exception) -> bool | float:
        """stamina's hook: retry transient errors, after the wait CMC asked for (``Retry-After``).

        A wait longer than the whole retry budget ends the pass instead; the drainer comes back later.
        """
        if not isinstance(error, TransientError):
            return False
        if error.retry_after is None:
            return True
        return error.retry_after if error.retry_after <= self._retry_timeout else False

    def _drain_forever(self) -> Flow[None]:
        """The background drainer: a drain pass every ``poll_interval`` seconds until the client closes."""
        while not self._closing.is_set():
            try:
                report = yield from self._drain(None)
            except OutboxError as exc:  # keep going: the POS learns of it from status()
                log.error("cmc outbox drain failed: %s", exc)
            else:
                if report.error:
                    log.warning("cmc outbox: %s (%d queued)", report.error, report.remaining)
            try:
                yield Pause(self._poll_interval)
            except Interrupted:
                return

    def _abandon(self) -> Flow[None]:
        """On close: give back the rows still being delivered, so the next client need not wait a lease."""
        with self._lock:
            held = sorted(self._inflight)
        for entry_id in held:
            reason = "Interrupted: the client closed before CMC answered"
            yield from local(partial(self.outbox.release, entry_id, reason, now=self._clock()))

    def _status(self) -> Flow[OutboxStatus]:
        return (yield from local(lambda: self.outbox.status(now=self._clock())))

    def _entries(self, state: OutboxState | None, limit: int) -> Flow[list[OutboxEntry]]:
        return (yield from local(partial(self.outbox.entries, state, limit=limit)))

    def _retry(self, outbox_id: int) -> Flow[OutboxEntry]:
        return (yield from local(lambda: self.outbox.retry(outbox_id, now=self._clock())))

    def _settings(self, refresh: bool) -> Flow[wire.SettingsData]:
        return (yield from self._conversation.settings(refresh=refresh))

    # --- reconciliation ----------------------------------------------------------------------------

    def _verify(self) -> Flow[VerifyReport]:
        """``verify``: every delivered tender of the outbox, checked against the answer CMC stored."""
        checked = confirmed = 0
        discrepancies: list[Discrepancy] = []
        after = 0
        while True:
            page = yield from local(partial(self.outbox.entries, "delivered", limit=VERIFY_PAGE, after=after))
            for entry in page:
                checked += 1
                answer = yield from self._conversation.recorded(entry.transaction_id, entry.company)
                discrepancy = _compare(entry, answer)
                if discrepancy is None:
                    confirmed += 1
                else:
                    discrepancies.append(discrepancy)
            if len(page) < VERIFY_PAGE:
                return VerifyReport(checked=checked, confirmed=confirmed, discrepancies=discrepancies)
            after = page[-1].id


def _compare(entry: OutboxEntry, answer: bytes | wire.Problem) -> Discrepancy | None:
    """How CMC's record of a delivered tender disagrees with the outbox's, if it does."""
    if isinstance(answer, bytes):
        if answer == entry.response:
            return None
        detail = "CMC's stored answer is not the one the outbox recorded"
        return Discrepancy(kind="different", entry=entry, detail=detail)
    detail = f"{answer.status} {answer.title}" + (f": {answer.detail}" if answer.detail else "")
    if answer.status == 404 and answer.type.endswith("transaction-not-found"):
        return Discrepancy(kind="missing", entry=entry, detail=detail)
    return Discrepancy(kind="unverifiable", entry=entry, detail=detail)
