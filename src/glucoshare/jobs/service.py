"""Defer background jobs inside the caller's transaction (PostgreSQL), or do the work now (SQLite).

:func:`defer` writes a procrastinate job on the session's own connection, so the job is committed
with the request's data or rolled back with it: there is no window in which one exists without the
other, and nothing to reconcile after a crash. A *queueing lock* makes a deferral idempotent: while
a job with the same lock waits in the queue, deferring another one does nothing (the waiting job
will do the work), which is how a burst of uploads for one patient becomes one summary refresh.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

import procrastinate
import psycopg
import psycopg_pool
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.types import JSONValue
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from glucoshare.jobs.errors import JobsUnavailableError
from glucoshare.jobs.schemas import NAMESPACE, REFRESH_SUMMARIES, SWEEP_SUMMARIES, QueueCount, queued_name
from glucoshare.summaries.service import refresh_outdated


def queue_available(bind: Engine | Session) -> bool:
    """Whether the database holds the job queue: PostgreSQL does, SQLite does not."""
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    return engine.dialect.name == "postgresql"


class _SessionConnection:
    """A stand-in for a connection pool that lends out one connection and never commits it."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self._connection = connection

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        yield self._connection


def _driver_connection(session: Session) -> psycopg.Connection[Any]:
    raw = session.connection().connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        msg = "jobs are deferred on a psycopg connection (PostgreSQL)"
        raise TypeError(msg)
    if raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        # psycopg opens the transaction with the first statement; without one, its savepoint block
        # below would be a transaction of its own and commit the job whatever the caller does.
        session.execute(text("SELECT 1"))
    return raw


def defer(
    session: Session, task: str, *, queueing_lock: str | None = None, **arguments: JSONValue
) -> int | None:
    """Put one job on the queue in the session's transaction.

    Returns the job's id, or ``None`` when a job with the same ``queueing_lock`` already waits (the
    deferral is then a no-op: the waiting job does the work).

    PostgreSQL only (see :func:`queue_available`). Arguments must be JSON values and must not carry
    health data or secrets in clear (seal them: :class:`glucoshare.jobs.schemas.SealedPayload`).
    """
    raw = _driver_connection(session)
    connector = procrastinate.SyncPsycopgConnector()
    connector.open(pool=cast("psycopg_pool.ConnectionPool[Any]", _SessionConnection(raw)))
    deferrer = procrastinate.App(connector=connector).configure_task(
        name=queued_name(task), allow_unknown=True, queueing_lock=queueing_lock
    )
    try:
        # A savepoint of the driver's: a refused deferral (the lock is taken) must not abort the
        # caller's transaction, which would then silently roll back at commit.
        with raw.transaction():
            return deferrer.defer(**arguments)
    except AlreadyEnqueued:
        return None


def refresh_summaries_later(session: Session, patient_ids: list[str] | None = None) -> None:
    """Bring the daily aggregates of the patients (``None``: everyone in the backlog) up to date.

    On PostgreSQL a worker does it once this transaction commits (at most one waiting job per
    patient); on SQLite it happens now, in this transaction.

    Either way no reader sees stale figures: population reads refresh backlog patients first, and a
    worker sweeps the backlog every five minutes.
    """
    if not queue_available(session):
        refresh_outdated(session, patient_ids)
        return
    if patient_ids is None:
        defer(session, SWEEP_SUMMARIES, queueing_lock="summaries-sweep", timestamp=0)
        return
    for patient_id in dict.fromkeys(patient_ids):
        defer(session, REFRESH_SUMMARIES, queueing_lock=f"refresh:{patient_id}", patient_ids=[patient_id])


def queue_counts(session: Session) -> list[QueueCount]:
    """The jobs in the queue, counted by task and state (an operator's view; no arguments shown)."""
    if not queue_available(session):
        msg = "the job queue lives in PostgreSQL; on SQLite there is none to show"
        raise JobsUnavailableError(msg)
    rows = session.execute(
        text(
            "SELECT task_name, status::text, count(*) FROM procrastinate_jobs "
            "GROUP BY task_name, status ORDER BY task_name, status"
        )
    ).all()
    prefix = f"{NAMESPACE}:"
    return [QueueCount(task=name.removeprefix(prefix), status=state, count=n) for name, state, n in rows]
