"""The dispatcher: claims due messages, hands each to its channel's sender, records the outcome.

Runs in the API process (``CMC_DISPATCHER``, the default) or as ``cmc worker``; any number of
either may share one database. Every state change is its own short transaction, and none is open
while a message is on the network. Recording a pass's outcome is tried again after a lost connection
(``_record``): a sent message left unrecorded would go out again when its lease runs out. Time comes
from ``now`` (``run_once``) or the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog

from cmc import background
from cmc.clock import Clock, system_clock
from cmc.config import Settings
from cmc.outbox import queue
from cmc.outbox.senders import DeliveryFailed, Outgoing, PermanentFailure, Sender, senders_from
from cmc.quiet_hours import next_allowed
from cmc.store import failures
from cmc.store.database import Database

T = TypeVar("T")

MAX_BACKOFF = timedelta(hours=1)
RECORD_TRIES = 5
RECORD_BACKOFF = timedelta(milliseconds=50)
RECORD_BACKOFF_CAP = timedelta(seconds=1)
"""Recording a pass's outcome: up to 5 tries, 50 ms doubling (jittered), about 0.75 s of waiting in
all; a lost connection is replaced at the next checkout, so one retry usually does. On a connection
gone silent each try can take a whole statement timeout (``ENGINE_STATEMENT_TIMEOUT_SECONDS``, 20 s):
the tries must end inside the lease (2 minutes), or another dispatcher would claim the sent message
again and send it twice (``tests/test_network_cuts.py`` holds the two together)."""
JITTER = 0.2
"""Each retry delay is scaled by a random factor in [1 - JITTER, 1 + JITTER] so retries spread out."""


def retry_delay(
    attempts: int, *, base: timedelta, rng: random.Random, cap: timedelta = MAX_BACKOFF
) -> timedelta:
    """The wait after ``attempts`` failed attempts: ``base * 2**(attempts-1)``, jittered, at most ``cap``.

    With ±20% jitter each delay still exceeds the one before (until the cap).
    """
    exponent = min(max(attempts - 1, 0), 30)
    delay: timedelta = min(base * 2**exponent, cap)
    jittered: timedelta = delay * rng.uniform(1 - JITTER, 1 + JITTER)
    return min(jittered, cap)


class Dispatcher:
    """Sends the outbox: ``run_once(now)`` for one pass, ``start()``/``stop()`` for the polling loop."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        senders: Mapping[str, Sender] | None = None,
        clock: Clock = system_clock,
        rng: random.Random | None = None,
        batch: int = 50,
        lease: timedelta = timedelta(minutes=2),
    ) -> None:
        self._db = db
        self._settings = settings
        self._owns_senders = senders is None
        self._senders: Mapping[str, Sender] = senders_from(settings) if senders is None else senders
        self._clock = clock
        self._rng = rng or random.Random()
        self.batch = batch
        self.lease = lease
        self._nudge = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # Bound on first use, per dispatcher: a module-level logger would keep the first stream it saw.
        self._log = structlog.get_logger(__name__)

    async def run_once(self, now: datetime | None = None) -> int:
        """Claim up to ``batch`` due messages and settle each; returns how many were handled."""
        now = self._clock() if now is None else now
        claim = await self._db.write(
            queue.claim,
            now=now,
            limit=self.batch,
            lease=self.lease,
            max_attempts=self._settings.outbox_max_attempts,
            base_url=self._settings.base_url,
        )
        outcomes = await asyncio.gather(
            *(self._deliver(message, now=now) for message in claim.messages), return_exceptions=True
        )
        accepted = {
            m.id: o for m, o in zip(claim.messages, outcomes, strict=True) if isinstance(o, _Accepted)
        }
        sent = [message for message in claim.messages if message.id in accepted]
        if sent:
            # One write for the whole pass: the store's writer is shared with the tender path. It
            # comes before any failure is raised: a sent message left unrecorded is sent again
            # once its lease runs out, a duplicate to the shopper.
            provider_ids = {mid: a.provider_id for mid, a in accepted.items() if a.provider_id}
            owned = await self._record(queue.mark_all_sent, sent, now=now, provider_ids=provider_ids)
            for message, still_ours in zip(sent, owned, strict=True):
                self._log.info(
                    "message sent", message_id=message.id, channel=message.channel, attempt=message.attempts
                )
                self._lost(message, still_ours)
        if claim.suppressed or claim.dead:
            self._log.info("outbox settled without sending", suppressed=claim.suppressed, dead=claim.dead)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                # Recording a failed attempt failed even when retried: that message stays leased
                # and is tried again once the lease runs out (it was not sent: no duplicate).
                raise outcome
        return claim.handled

    def wake(self) -> None:
        """Run the next pass now instead of at the next poll (after queueing a message in-process)."""
        self._nudge.set()

    async def start(self) -> None:
        """Start polling every ``CMC_OUTBOX_POLL_SECONDS`` in a background task."""
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name="cmc-outbox-dispatcher")

    async def stop(self, *, grace: float = 10.0) -> None:
        """Finish the pass in progress (up to ``grace`` seconds), stop, and close the senders."""
        self._stopping = True
        self._nudge.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                # Messages still on the wire stay leased and are retried once the lease runs out.
                await background.cancel(self._task)
            self._task = None
        if self._owns_senders:
            for sender in self._senders.values():
                await sender.aclose()

    async def _loop(self) -> None:
        poll = self._settings.outbox_poll.total_seconds()
        while not self._stopping:
            handled = 0
            try:
                handled = await self.run_once()
            except Exception:
                # A database hiccup must not end the loop; the next pass tries again.
                self._log.exception("outbox pass failed")
            if handled >= self.batch or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), poll)
            self._nudge.clear()

    async def _deliver(self, message: queue.Claimed, *, now: datetime) -> _Accepted | None:
        """Send one message: accepted (the pass records it), or None after recording a failure."""
        try:
            provider_id = await self._sender(message.channel).send(message.message)
        except DeliveryFailed as exc:
            await self._failed(message, exc, now=now)
        except Exception as exc:
            self._log.exception("sender crashed", message_id=message.id, channel=message.channel)
            await self._failed(message, DeliveryFailed(f"{type(exc).__name__}: {exc}", code="crash"), now=now)
        else:
            return _Accepted(provider_id)
        return None

    async def _failed(self, message: queue.Claimed, exc: DeliveryFailed, *, now: datetime) -> None:
        retry_at = self._retry_at(message, exc, now=now)
        final, reason = exc.final, exc.code
        if retry_at is not None and message.stale(retry_at):
            # Quiet hours would push the retry too far past the sale: a late thank-you is worse than none.
            retry_at, final, reason = None, "suppressed", "quiet-hours"
        owned = await self._record(
            queue.mark_failed,
            message,
            now=now,
            error=exc.detail,
            retry_at=retry_at,
            final=final,
            reason=reason,
        )
        self._log.warning(
            "message not delivered",
            message_id=message.id,
            channel=message.channel,
            attempt=message.attempts,
            error=exc.code,
            outcome="retry" if retry_at else final,
        )
        self._lost(message, owned)

    async def _record(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``db.write(fn, ...)``, tried again (``RECORD_TRIES`` in all) after a failure the store calls
        transient (``failures.is_transient``: a lost connection, contention).

        Safe to repeat: each recording updates only the rows still held under this pass's lease
        (``lease_until`` is the claim token), so a retry can never settle another worker's message;
        and a retry of a recording that had committed finds it done (``again``): no second attempt
        row, no false "lease lost".
        ``PostgresDatabase.write`` does not retry by itself, and one lost connection here would
        otherwise send the whole pass again when its lease runs out.
        """
        for attempt in range(1, RECORD_TRIES + 1):
            try:
                # Tried again, the write may have committed before its answer was lost (``again``).
                return await self._db.write(fn, *args, again=attempt > 1, **kwargs)
            except Exception as exc:
                if attempt == RECORD_TRIES or not failures.is_transient(exc):
                    raise
                self._log.warning(
                    "outbox recording failed; trying again",
                    record=fn.__name__,
                    attempt=attempt,
                    error=failures.code(exc) or type(exc).__name__,
                )
            delay = retry_delay(attempt, base=RECORD_BACKOFF, rng=self._rng, cap=RECORD_BACKOFF_CAP)
            await asyncio.sleep(delay.total_seconds())
        raise AssertionError("the loop returns or raises")

    def _lost(self, message: queue.Claimed, owned: bool) -> None:
        if not owned:
            # The send outlived the lease and another worker re-claimed the message.
            self._log.warning("outbox lease lost; the message may go out twice", message_id=message.id)

    def _retry_at(self, message: queue.Claimed, exc: DeliveryFailed, *, now: datetime) -> datetime | None:
        if exc.permanent or message.attempts >= self._settings.outbox_max_attempts:
            return None
        at = now + retry_delay(message.attempts, base=self._settings.outbox_backoff, rng=self._rng)
        return next_allowed(at, message.tz, message.quiet) if message.channel == "sms" else at

    def _sender(self, channel: str) -> Sender:
        sender = self._senders.get(channel)
        return sender if sender is not None else _Unroutable()


@dataclass(frozen=True)
class _Accepted:
    """A message the provider took, with its id for it (if it gave one)."""

    provider_id: str | None


class _Unroutable:
    """The sender for a channel nobody sends: every message fails for good."""

    async def send(self, message: Outgoing) -> str | None:
        raise PermanentFailure(f"no sender for channel {message.channel!r}", code="no-channel")

    async def aclose(self) -> None:
        return None
