"""Whether the till should try CMC now, or only store the sale and leave it to the drainer."""

from __future__ import annotations

import threading


class Circuit:
    """Remembers that CMC was unreachable a moment ago, so the till does not wait on it again.

    Open for ``window`` seconds after a transient failure, and for as long as an attempt that missed
    its till's deadline is still waiting on CMC (a CMC that accepts connections and never answers
    would otherwise cost every sale its whole deadline). Time is the client's clock, passed in.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._tripped_at: float | None = None
        self._stalled: set[int] = set()
        self._lock = threading.Lock()

    def trip(self, now: float) -> None:
        """CMC just failed transiently."""
        with self._lock:
            self._tripped_at = now

    def stall(self, entry_id: int) -> None:
        """The attempt delivering ``entry_id`` missed the till's deadline and is still waiting on CMC."""
        with self._lock:
            self._stalled.add(entry_id)

    def unstall(self, entry_id: int) -> None:
        """The attempt delivering ``entry_id`` ended (whatever its outcome)."""
        with self._lock:
            self._stalled.discard(entry_id)

    def reset(self) -> None:
        """CMC just answered."""
        with self._lock:
            self._tripped_at = None
            self._stalled.clear()

    def is_open(self, now: float) -> bool:
        """Whether the till should skip trying CMC now."""
        with self._lock:
            if self._stalled:
                return True
            # A clock set back must not hold the circuit open for as long as it jumped.
            return self._tripped_at is not None and 0 <= now - self._tripped_at < self.window
