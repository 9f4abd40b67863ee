"""The steps a flow asks its driver to perform: the one interface between the SDK's core and its I/O.

A *flow* is a generator written once in ``_core.py`` and ``_protocol.py``: it yields a step, the driver
performs it and sends back the answer (or throws in the exception performing it raised), until the flow
returns. Every decision is in the flows; a driver (``Client``: threads; ``AsyncClient``: asyncio) only
performs the five steps below, each in the way of its I/O model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

import httpx2
import stamina

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """Make one HTTP request; answer the ``httpx2.Response`` (a transport error is thrown in)."""

    method: str
    url: str
    headers: dict[str, str]
    content: bytes = b""


@dataclass(frozen=True, slots=True)
class Local:
    """Run blocking local work (an outbox read or write) and answer its result.

    Local work always runs to its end, even when the caller is being cancelled, so a flow always learns
    what its outbox write did.
    """

    work: Callable[[], object]


@dataclass(frozen=True, slots=True)
class Concurrently:
    """Start ``flow`` in the background; answer its result if it ends within ``wait`` s, else ``None``.

    The flow goes on either way (``close()`` waits for it). At most ``workers`` such flows run at once;
    the others wait their turn.
    """

    flow: Flow[Any]
    wait: float


class Schedule(Protocol):
    """stamina's retry schedule: one attempt per item, with ``for`` or ``async for``."""

    def __iter__(self) -> Iterator[stamina.Attempt]: ...

    def __aiter__(self) -> AsyncIterator[stamina.Attempt]: ...


@dataclass(frozen=True, slots=True)
class Retrying:
    """Run ``attempt()`` (a fresh flow each time) with stamina's jittered exponential backoff.

    Retries the errors ``should_retry`` accepts (a float is the wait CMC asked for) and answers what the
    attempt returned; the last error is thrown in when the retries are used up.
    """

    attempt: Callable[[], Flow[Any]]
    should_retry: Callable[[Exception], bool | float]
    attempts: int
    timeout: float
    wait_max: float

    def backoff(self) -> Schedule:
        """The retry schedule: iterate it and run one attempt per item."""
        return stamina.retry_context(
            on=self.should_retry, attempts=self.attempts, timeout=self.timeout, wait_max=self.wait_max
        )


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait ``seconds`` (the drainer between passes); :class:`Interrupted` is thrown in on close."""

    seconds: float


Step = Call | Local | Concurrently | Retrying | Pause
Flow = Generator[Step, Any, T]
"""A generator that yields steps and returns a ``T``."""


class Interrupted(Exception):
    """The driver stopped a step: the client is closing, or the asyncio task was cancelled."""


@dataclass(frozen=True, slots=True)
class Finished(Generic[T]):
    """The flow returned ``value``."""

    value: T


def advance(flow: Flow[T], answer: object = None, *, error: Exception | None = None) -> Step | Finished[T]:
    """Give the flow the answer to its last step (or the error performing it raised); get its next step."""
    try:
        return flow.send(answer) if error is None else flow.throw(error)
    except StopIteration as stop:
        return Finished(stop.value)


def local(work: Callable[[], T]) -> Flow[T]:
    """Run ``work`` as a :class:`Local` step; return its result."""
    result = yield Local(work)
    return cast(T, result)


def request(call: Call) -> Flow[httpx2.Response]:
    """Make ``call``; return the response."""
    response = yield call
    assert isinstance(response, httpx2.Response), "a driver answers a Call with a response"
    return response
