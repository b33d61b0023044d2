"""Engines and units of work.

Services add and flush but never commit: the command, request or job that calls them owns the
transaction through :func:`session_scope`, so a failed command stores nothing.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from glucoshare.db.checkpoint import checkpoint_off_the_commit
from glucoshare.db.errors import DatabaseUnavailableError, database_fault
from glucoshare.files import private_file
from glucoshare.vault.keyfile import KeyRing
from glucoshare.vault.service import bind_keyring


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # Overwrite deleted content (a destroyed data key must not linger in a free page).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long an SQLite statement waits for another process's lock before it fails (the URL's
``?timeout=SECONDS`` overrides it)."""


def create_db_engine(url: str, keyring: KeyRing | None = None, key_file: Path | None = None) -> Engine:
    """Create an engine for ``url``; with ``keyring``, its sessions seal and open identifying data.

    ``key_file`` is where the key ring came from: it is read again when it changes (key rotation).

    For SQLite the database file is created owner-only and safe pragmas are set (foreign keys, WAL,
    secure delete), and the WAL log is checkpointed on a thread of its own
    (:mod:`glucoshare.db.checkpoint`), not inside a commit; a lock held by another process is
    waited for :data:`SQLITE_BUSY_TIMEOUT_S` unless the URL says otherwise
    (``sqlite:///PATH?timeout=SECONDS``).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        waits = {} if "timeout" in parsed.query else {"timeout": SQLITE_BUSY_TIMEOUT_S}
        engine = create_engine(url, connect_args=waits)
        event.listen(engine, "connect", _sqlite_pragmas)
        if parsed.database and parsed.database != ":memory:":
            # Owner-only from the start; SQLite gives its -wal and -shm files the same mode.
            database = Path(parsed.database).absolute()
            private_file(database)
            checkpoint_off_the_commit(engine, database)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    if keyring is not None:
        bind_keyring(engine, keyring, key_file)
    return engine


_COMMIT_HOOKS = "commit_hooks"
_ROLLBACK_HOOKS = "rollback_hooks"


def after_commit(session: Session, hook: Callable[[], object]) -> None:
    """Run ``hook`` once the session's transaction has committed (remove a file, send a mail)."""
    hooks: list[Callable[[], object]] = session.info.setdefault(_COMMIT_HOOKS, [])
    hooks.append(hook)


def after_rollback(session: Session, hook: Callable[[], object]) -> None:
    """Run ``hook`` if the session's transaction rolls back (undo a file written for it)."""
    hooks: list[Callable[[], object]] = session.info.setdefault(_ROLLBACK_HOOKS, [])
    hooks.append(hook)


def _stored_nothing(engine: Engine, exc: BaseException, committing: bool, committed: bool) -> bool:
    """Whether a unit of work that raised ``exc`` certainly stored nothing."""
    if committed:  # an after-commit hook failed
        return False
    if not committing or engine.dialect.name == "sqlite":  # SQLite's failed commit rolls back
        return True
    # PostgreSQL's commit failed: certain when the server said why, unknown when the connection broke.
    return not isinstance(database_fault(exc), DatabaseUnavailableError)


@contextlib.contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit when the block succeeds, roll back when it raises.

    Services that touch files as well as rows register hooks with :func:`after_commit` (what may
    only happen once the rows are committed) and :func:`after_rollback` (undo a file written for a
    transaction that then failed).

    A fault of the database or the disk (a lost connection, a lock held past the busy timeout, a
    full disk) is raised as its clean error (:func:`glucoshare.db.errors.database_fault`), which
    says that nothing was stored when that is certain: the fault came before the commit, or the
    commit failed on SQLite or with the server's answer (a PostgreSQL connection lost during the
    commit leaves unknown whether the server committed).
    """
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    session = factory()
    committing = committed = False
    try:
        yield session
        committing = True
        session.commit()
        committed = True
        session.info.pop(_ROLLBACK_HOOKS, None)
        for hook in session.info.pop(_COMMIT_HOOKS, []):
            hook()
    except BaseException as exc:
        # A lost connection cannot roll back (the server drops its transaction itself): raise the
        # error that says why, not the rollback's, and still undo the files.
        with contextlib.suppress(DBAPIError):
            session.rollback()
        for hook in session.info.pop(_ROLLBACK_HOOKS, []):
            hook()
        fault = database_fault(exc, stored_nothing=_stored_nothing(engine, exc, committing, committed))
        if fault is not None:
            raise fault from exc
        raise
    finally:
        session.close()
