"""Turning a protocol outcome into an outbox record and a :class:`~cmc_client.TenderResult`.

Shared by the sync and async clients; the only I/O is the outbox write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import msgspec

from cmc_client import wire
from cmc_client.errors import InvalidTenderError, TransientError
from cmc_client.outbox import Entry, Outbox
from cmc_client.protocol import Delivered, Outcome, Rejected, Skipped, TenderRef
from cmc_client.results import TenderResult, TenderStatus
from cmc_client.tender import TenderInput, decode_tender, encode_tender


class Circuit:
    """Remembers that CMC was unreachable a moment ago, so the till does not wait on it again.

    Open for ``window`` seconds after a transient failure, and for as long as an attempt that missed
    the till's deadline is still waiting on CMC (a CMC that accepts connections and never answers
    would otherwise cost every sale its whole deadline). While open, ``post_tender`` only stores the
    tender and leaves delivery to the drainer.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._open_until = 0.0
        self._stalled = 0
        self._lock = threading.Lock()

    def trip(self) -> None:
        """CMC just failed transiently."""
        self._open_until = time.monotonic() + self.window

    def stall(self) -> None:
        """An attempt missed the till's deadline and is still waiting on CMC."""
        with self._lock:
            self._stalled += 1

    def unstall(self) -> None:
        """A stalled attempt ended (whatever its outcome)."""
        with self._lock:
            self._stalled = max(0, self._stalled - 1)

    def reset(self) -> None:
        """CMC just answered."""
        with self._lock:
            self._open_until = 0.0
            self._stalled = 0

    def is_open(self) -> bool:
        """Whether the till should skip trying CMC now."""
        return self._stalled > 0 or time.monotonic() < self._open_until


def store(
    outbox: Outbox, tender: TenderInput, *, now: Callable[[], float], claim: bool = True
) -> tuple[Entry, bool]:
    """Validate and store a tender; return its row and whether the caller now holds its lease.

    A tender already in the outbox (same transactionId and body) returns its existing row, leased to
    the caller only if it is queued and nobody else is delivering it. Without ``claim`` nothing is
    leased (the drainer will deliver the tender).
    """
    try:
        body = encode_tender(tender)
    except (msgspec.ValidationError, TypeError) as exc:
        raise InvalidTenderError(str(exc)) from exc
    fields = decode_tender(body)
    entry, new = outbox.add(
        body,
        transaction_id=fields.transactionId,
        company=fields.posCompanyId or "",
        terminal_id=fields.terminalId,
        location_id=fields.posLocationId,
        now=now(),
        claim=claim,
    )
    if new or entry.state != "queued" or not claim:
        return entry, new and claim
    claimed = outbox.claim(entry.id, now=now())
    return (entry, False) if claimed is None else (claimed, True)


def tender_ref(entry: Entry) -> TenderRef:
    """The part of an outbox row the protocol needs."""
    return TenderRef(
        body=entry.body,
        terminal_id=entry.terminal_id,
        location_id=entry.location_id,
        company=entry.company,
        session_id=entry.session_id,
    )


def record(outbox: Outbox, entry: Entry, outcome: Outcome, *, now: float) -> TenderResult:
    """Write the outcome of one delivery attempt to the outbox and describe it."""
    if isinstance(outcome, Delivered):
        outbox.mark_delivered(entry.id, outcome.raw, now=now)
        return _result(entry, "delivered", response=outcome.response)
    if isinstance(outcome, Rejected):
        outbox.mark_rejected(entry.id, msgspec.json.encode(outcome.problem), now=now)
        return _result(entry, "rejected", problem=outcome.problem, reason=outcome.problem.title)
    outbox.mark_skipped(entry.id, outcome.state, outcome.reason, now=now)
    return _result(entry, outcome.state, reason=outcome.reason)


def record_failure(outbox: Outbox, entry: Entry, error: Exception, *, now: float) -> TenderResult:
    """Keep the tender queued after a failed attempt, recording why."""
    reason = f"{type(error).__name__}: {error}"
    outbox.release(entry.id, reason, now=now)
    return queued(entry, reason)


def queued(entry: Entry, reason: str) -> TenderResult:
    """The result for a tender left in the outbox."""
    return _result(entry, "queued", reason=reason)


def result_of(entry: Entry) -> TenderResult:
    """The result a stored row stands for (used when the POS posts a tender the outbox already has)."""
    if entry.state == "delivered" and entry.response is not None:
        response = msgspec.json.decode(entry.response, type=wire.TransactionResponse)
        return _result(entry, "delivered", response=response)
    if entry.state == "rejected" and entry.problem is not None:
        problem = msgspec.json.decode(entry.problem, type=wire.Problem)
        return _result(entry, "rejected", problem=problem, reason=problem.title)
    return _result(entry, entry.state, reason=entry.last_error)


def _result(
    entry: Entry,
    status: TenderStatus,
    *,
    response: wire.TransactionResponse | None = None,
    problem: wire.Problem | None = None,
    reason: str | None = None,
) -> TenderResult:
    return TenderResult(
        status=status,
        transaction_id=entry.transaction_id,
        outbox_id=entry.id,
        response=response,
        problem=problem,
        reason=reason,
    )


def should_retry(error: Exception) -> bool | float:
    """stamina backoff hook: retry transient errors, waiting ``Retry-After`` when CMC sent one."""
    if isinstance(error, TransientError):
        return error.retry_after if error.retry_after is not None else True
    return False


def describe(outcome: Outcome) -> str:
    """One word for a drain report."""
    if isinstance(outcome, Delivered):
        return "delivered"
    if isinstance(outcome, Rejected):
        return "rejected"
    assert isinstance(outcome, Skipped)
    return "skipped"
