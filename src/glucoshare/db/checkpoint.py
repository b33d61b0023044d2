"""WAL checkpoints of SQLite databases on a thread of their own, off the committing request.

In WAL mode a commit appends pages to the ``-wal`` file; a *checkpoint* copies them back into the
database file. SQLite's default runs the checkpoint inside the commit that lets the log pass 1,000
pages, so whichever import or request happens to cross that line waits for it (for a one-year
pump export about a tenth of the import). SQLite documents the alternative
(https://www.sqlite.org/wal.html#application_initiated_checkpoints): turn the automatic
checkpoint off and run ``PRAGMA wal_checkpoint(PASSIVE)`` elsewhere. This module does that on one
daemon thread for every database file of the process. A passive checkpoint never blocks a reader
or a writer; a crash before it loses nothing, since the committed pages are in the log and SQLite
replays them on the next open.

A transaction that changed rows asks for a checkpoint when it ends; a database is checkpointed at
most once every :data:`MIN_INTERVAL_S`, so that many small writes (an audit row per request) share
one checkpoint and its ``fsync``. At exit the process runs the checkpoints still asked for
(:meth:`Checkpointer.drain`), so that a short-lived command leaves no pages in the log.

The log's own bookkeeping (the ``-shm`` file) is left to SQLite: a process that opens and closes
that file itself drops the POSIX locks SQLite holds on it, and another process may then reset the
shared memory under this one's feet.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, event
from sqlalchemy.pool import ConnectionPoolEntry

logger = logging.getLogger(__name__)

MIN_INTERVAL_S = 1.0
"""The least time between two checkpoints of one database file."""
IDLE_EXIT_S = 2.0
"""How long the thread waits for work before it ends (it starts again on the next request)."""

_CHANGES = "glucoshare_total_changes"


def checkpoint(database: Path, *, timeout_s: float) -> None:
    """Copy the WAL log of ``database`` into the database file as far as readers allow (PASSIVE).

    Opens the file read-write without ever creating it: a database removed meanwhile (a test's,
    a restore's scratch file) is left alone, silently. Any other failure is logged, without the
    path, and left for the next checkpoint: the log keeps every committed page until then.
    """
    uri = f"file:{quote(str(database))}?mode=rw"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=timeout_s)) as conn:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error as exc:
        if database.exists():
            logger.warning("WAL checkpoint failed (%s); the next one retries", type(exc).__name__)


class Checkpointer:
    """One daemon thread that checkpoints the database files it is asked to, one at a time."""

    def __init__(self, *, min_interval_s: float = MIN_INTERVAL_S, timeout_s: float = 5.0) -> None:
        self.min_interval_s = min_interval_s
        self.timeout_s = timeout_s
        self.forget_thread()

    def forget_thread(self) -> None:
        """Start afresh (and in a forked child: the parent's thread and its locks are not there).

        The requests the parent had not handled yet stay the parent's.
        """
        self._cond = threading.Condition()
        self._due: dict[Path, float] = {}  # database -> when to checkpoint it (monotonic seconds)
        self._last: dict[Path, float] = {}  # database -> when its last checkpoint began
        self._running = False
        self._busy = False

    def request(self, database: Path) -> None:
        """Ask for a checkpoint of ``database``: now, or once :attr:`min_interval_s` has passed."""
        with self._cond:
            if database not in self._due:
                last = self._last.get(database)
                now = time.monotonic()
                self._due[database] = now if last is None else max(now, last + self.min_interval_s)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="glucoshare-wal-checkpoint", daemon=True).start()
            self._cond.notify()

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Run every requested checkpoint now, the interval waived, and wait for them.

        Registered to run at exit, so that a short-lived process (``glucoshare import``) does not
        leave its pages in the log for whichever process writes next. False if ``timeout_s``
        passed first.
        """
        with self._cond:
            now = time.monotonic()
            for database in self._due:
                self._due[database] = now
            self._cond.notify_all()
        return self.wait_idle(timeout_s)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every request has been handled; False if ``timeout_s`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._due and not self._busy, timeout_s)

    def run_checkpoint(self, database: Path) -> None:
        """Checkpoint one database (the thread's work; a subclass may watch it)."""
        checkpoint(database, timeout_s=self.timeout_s)

    def _next(self) -> Path | None:
        """The next database due, waiting for it; None when there was no work for a while."""
        with self._cond:
            idle_since = time.monotonic()
            while True:
                now = time.monotonic()
                if self._due:
                    database, due = min(self._due.items(), key=lambda item: item[1])
                    if due <= now:
                        del self._due[database]
                        self._last[database] = now  # the next one is due an interval after this
                        self._busy = True
                        return database
                    self._cond.wait(due - now)
                    idle_since = time.monotonic()
                elif now - idle_since >= IDLE_EXIT_S:
                    self._running = False
                    self._last = {db: at for db, at in self._last.items() if now - at < self.min_interval_s}
                    return None
                else:
                    self._cond.wait(IDLE_EXIT_S - (now - idle_since))

    def _run(self) -> None:
        while (database := self._next()) is not None:
            try:
                self.run_checkpoint(database)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


CHECKPOINTER = Checkpointer()
"""The process's checkpoint thread (one for every SQLite database file the process writes)."""
os.register_at_fork(after_in_child=CHECKPOINTER.forget_thread)
atexit.register(CHECKPOINTER.drain)


def checkpoint_off_the_commit(
    engine: Engine, database: Path, checkpointer: Checkpointer = CHECKPOINTER
) -> None:
    """Turn off SQLite's checkpoint inside commits of ``engine``; ``checkpointer`` runs them instead.

    A connection that changed rows (sqlite3's ``total_changes``) asks for a checkpoint when it
    goes back to the pool, that is after its transaction ended.
    """

    def on_connect(dbapi_connection: sqlite3.Connection, record: ConnectionPoolEntry) -> None:
        dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")
        record.info[_CHANGES] = dbapi_connection.total_changes

    def on_checkin(dbapi_connection: sqlite3.Connection | None, record: ConnectionPoolEntry) -> None:
        if dbapi_connection is None:  # invalidated: nothing to look at
            return
        changes = dbapi_connection.total_changes
        if changes != record.info.get(_CHANGES):
            record.info[_CHANGES] = changes
            checkpointer.request(database)

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "checkin", on_checkin)
