"""Faults of the database and of the disk, as clean errors.

A lost connection, a database locked past the busy timeout, or a full disk is no bug and no bad
input: it is a fault of the environment (exit code 1, like every :class:`InternalError`). Its
message says what happened and, when certain, that nothing was stored (the unit of work that met
it rolled back; see :func:`glucoshare.db.session.session_scope`). :func:`database_fault`
recognises these faults among the exceptions of SQLAlchemy, of the database drivers (the record
writer uses the driver's connection directly) and of the operating system, so that the command
line says so in one line and the HTTP API answers ``503`` (try again) or ``507`` (insufficient
storage) instead of a bare ``500``. Messages name the fault only: never SQL, values or paths.
"""

from __future__ import annotations

import errno
import sqlite3
from typing import ClassVar

import psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from glucoshare.errors import InternalError

RETRY_AFTER_SECONDS = 5
"""What ``Retry-After`` suggests when the database is unavailable or busy."""

_SQLITE_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_SQLITE_GONE = (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOTADB)
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_POSTGRES_DISK_FULL = "53100"
_POSTGRES_UNAVAILABLE_CLASSES = ("08", "53", "57P")
"""Connection exceptions, insufficient resources, operator intervention (the session was ended)."""


class DatabaseFaultError(InternalError):
    """A fault of the database or of the disk under it (see the subclasses)."""

    code = "database_fault"


class DatabaseUnavailableError(DatabaseFaultError):
    """The database cannot be reached, the connection was lost, or it stayed locked: try again later."""

    code = "database_unavailable"
    http_status = 503
    retry_after: ClassVar[int] = RETRY_AFTER_SECONDS


class StorageFullError(DatabaseFaultError):
    """The disk of the database or of the data directory is full."""

    code = "storage_full"
    http_status = 507


def _told(what: str, *, stored_nothing: bool, again: bool) -> str:
    """The message: what happened, that nothing was stored (when so), and to try again (when it may help)."""
    parts = [what]
    if stored_nothing:
        parts.append("nothing was stored")
    if again:
        parts.append("try again later")
    return "; ".join(parts)


def _sqlite_fault(exc: sqlite3.Error, stored_nothing: bool) -> DatabaseFaultError | None:
    primary = getattr(exc, "sqlite_errorcode", -1) & 0xFF
    if primary == sqlite3.SQLITE_FULL:
        return StorageFullError(_told("the disk is full", stored_nothing=stored_nothing, again=False))
    if primary in _SQLITE_BUSY:
        what = "the database is locked by another process"
        return DatabaseUnavailableError(_told(what, stored_nothing=stored_nothing, again=True))
    if primary in _SQLITE_GONE:
        what = "the database file cannot be opened"
        return DatabaseUnavailableError(_told(what, stored_nothing=stored_nothing, again=False))
    return None


def _postgres_fault(exc: psycopg.Error, stored_nothing: bool) -> DatabaseFaultError | None:
    """The driver's errors carry the server's ``sqlstate``; a connection lost without a word has none."""
    sqlstate = exc.sqlstate
    if sqlstate == _POSTGRES_DISK_FULL:
        what = "the database server's disk is full"
        return StorageFullError(_told(what, stored_nothing=stored_nothing, again=False))
    lost = sqlstate is None and isinstance(exc, psycopg.OperationalError)
    if lost or (sqlstate is not None and sqlstate.startswith(_POSTGRES_UNAVAILABLE_CLASSES)):
        what = "the connection to the database was lost or refused"
        return DatabaseUnavailableError(_told(what, stored_nothing=stored_nothing, again=True))
    return None


def database_fault(exc: BaseException, *, stored_nothing: bool = False) -> DatabaseFaultError | None:
    """The clean error for ``exc`` when it is a fault of the database or the disk, else ``None``.

    Recognises SQLAlchemy's wrapped driver errors and the drivers' own (sqlite3, psycopg), the
    pool's timeout, and the operating system's "no space left" (``ENOSPC``, ``EDQUOT``, ``EFBIG``).
    ``stored_nothing``: the unit of work that met the fault was rolled back, and the message says so.
    """
    if isinstance(exc, PoolTimeoutError):
        what = "the database is too busy"
        return DatabaseUnavailableError(_told(what, stored_nothing=stored_nothing, again=True))
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
        return StorageFullError(_told("the disk is full", stored_nothing=stored_nothing, again=False))
    driver: BaseException | None = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(driver, sqlite3.Error):
        return _sqlite_fault(driver, stored_nothing)
    if isinstance(driver, psycopg.Error):
        found = _postgres_fault(driver, stored_nothing)
        if found is not None:
            return found
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        what = "the connection to the database was lost"
        return DatabaseUnavailableError(_told(what, stored_nothing=stored_nothing, again=True))
    return None
