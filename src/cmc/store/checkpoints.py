"""SQLite WAL checkpoints in a thread of their own, never in a sale's commit on the event loop.

In WAL mode every commit appends the pages it changed to the ``-wal`` file, and a checkpoint copies
them back into the database file. By default the commit that takes the WAL past a threshold runs
that checkpoint itself. CMC commits on the event loop's thread, so that commit held every open
request for as long as the copy took: about 40 ms once a second under load, which was the tail of
the tender latency (1-2% of tenders answered 40 ms late).

So each process's write connections only checkpoint as a backstop (``BACKSTOP_PAGES``, far above
what the thread lets the WAL reach), and ``Checkpointer`` runs a ``PASSIVE`` checkpoint every
``INTERVAL_SECONDS`` on a connection of its own: a passive checkpoint takes no lock that writers
need, and the driver releases the GIL while SQLite copies, so the copy runs beside the sales.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

INTERVAL_SECONDS = 0.5
BACKSTOP_PAGES = 50_000
"""A write connection's own auto-checkpoint (~200 MB of WAL): reached only if the thread stalls."""


class Checkpointer:
    """A daemon thread checkpointing one SQLite file's WAL until ``stop()``."""

    def __init__(self, path: str, *, interval: float = INTERVAL_SECONDS) -> None:
        self._path = path
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cmc-sqlite-checkpoint", daemon=True)
        self.rounds = 0
        """Checkpoints run (tests read it)."""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        # mode=rw: a missing file is not created (an empty database would only hide the mistake).
        uri = Path(self._path).resolve().as_uri() + "?mode=rw"
        try:
            connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            # The file is gone (a test's temporary directory): the commits' backstop is what remains.
            return
        try:
            # Waiting for another process's checkpoint is pointless: the next round comes soon.
            connection.execute("PRAGMA busy_timeout=0")
            while not self._stopped.wait(self._interval):
                # Busy (another process is checkpointing) or a transient error: try next round.
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.rounds += 1
        finally:
            connection.close()
