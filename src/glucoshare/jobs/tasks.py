"""The tasks a ``glucoshare worker`` runs, registered on one procrastinate blueprint.

Every task is idempotent: running it twice (a retry after a crash between the work and the
job's completion) does no harm. Summary refreshes work from the backlog, which a repeat finds
empty; a mail repeated after a crash is at worst delivered twice, never lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from procrastinate import Blueprint, JobContext, RetryStrategy
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.errors import GlucoshareError
from glucoshare.ingest.queued import (
    claim_import_request,
    fail_import_request,
    record_refusal,
    run_import_request,
)
from glucoshare.jobs.schemas import (
    DELIVER_MAIL,
    REFRESH_SUMMARIES,
    REMOVE_OLD_JOBS,
    RENDER_REPORT,
    RETRY_STALLED,
    RUN_IMPORT,
    SWEEP_SUMMARIES,
    SealedPayload,
)
from glucoshare.mail.service import Mail, send_now, write_outbox
from glucoshare.reports.renders import claim_render, record_render_refusal, run_render
from glucoshare.summaries.service import refresh_outdated
from glucoshare.vault.service import bound_keyring

LOG = logging.getLogger(__name__)

blueprint = Blueprint()

MAIL_ATTEMPTS = 6
"""SMTP tries before a message goes to the outbox: over about 20 minutes (waits of 4, 16, 64, 256 s...)."""

STALLED_AFTER_S = 60
"""A running job whose worker sent no heartbeat for this long is given to another worker."""


def _engine(context: JobContext) -> Engine:
    engine = context.additional_context["engine"]
    if not isinstance(engine, Engine):
        msg = "the worker was started without a database engine"
        raise TypeError(msg)
    return engine


def _settings(context: JobContext) -> Settings:
    settings = context.additional_context["settings"]
    if not isinstance(settings, Settings):
        msg = "the worker was started without settings"
        raise TypeError(msg)
    return settings


@blueprint.task(
    name=REFRESH_SUMMARIES, pass_context=True, retry=RetryStrategy(max_attempts=5, exponential_wait=3)
)
def refresh_summaries(context: JobContext, patient_ids: list[str]) -> None:
    """Recompute the daily and period aggregates of the patients' backlog."""
    with session_scope(_engine(context)) as session:
        refresh_outdated(session, patient_ids)


IMPORT_ATTEMPTS = 4
"""Runs of an import before it is given up as failed (a refused file ends at the first)."""


def _to_outcome(
    engine: Engine,
    claim: Callable[[Session], bool],
    work: Callable[[Session], None],
    refuse: Callable[[Session, GlucoshareError], None],
) -> None:
    """Run a request (an import, a render) to its outcome, each step in a transaction of its own.

    ``claim`` marks it running (``False``: finished already); ``work`` does it and records the
    outcome in one transaction; a refusal (exit code 2: bad input) is recorded by ``refuse``,
    after ``work``'s transaction rolled back. Any other error propagates, for a retry.
    """
    with session_scope(engine) as session:
        if not claim(session):
            return
    try:
        with session_scope(engine) as session:
            work(session)
    except GlucoshareError as exc:
        if exc.exit_code != 2:  # noqa: PLR2004 - an environment fault is retried, not recorded
            raise
        with session_scope(engine) as session:
            refuse(session, exc)


def perform_import(engine: Engine, settings: Settings, request_id: str) -> None:
    """Run one queued import to its outcome: stored and ``done``, or refused and ``failed``.

    The import and its outcome commit together; a process killed on the way leaves the request
    ``running`` with its files, and the next run starts it again from the beginning.
    """
    _to_outcome(
        engine,
        lambda session: claim_import_request(session, request_id) is not None,
        lambda session: run_import_request(session, settings, request_id),
        lambda session, error: record_refusal(session, request_id, error),
    )


@blueprint.task(
    name=RUN_IMPORT, pass_context=True, retry=RetryStrategy(max_attempts=IMPORT_ATTEMPTS, exponential_wait=5)
)
def run_import(context: JobContext, request_id: str) -> None:
    """Import a queued batch of files; after the last failed attempt, record the request as failed."""
    engine, settings = _engine(context), _settings(context)
    try:
        perform_import(engine, settings, request_id)
    except Exception:
        if context.job.attempts + 1 < IMPORT_ATTEMPTS:
            raise
        LOG.exception("import %s failed after %d attempts", request_id, IMPORT_ATTEMPTS)
        with session_scope(engine) as session:
            fail_import_request(session, request_id, "the import failed on the server; try again later")


def perform_render(engine: Engine, render_id: str) -> None:
    """Render one queued report to its outcome: the PDF kept and ``done``, or ``failed``."""
    _to_outcome(
        engine,
        lambda session: claim_render(session, render_id),
        lambda session: run_render(session, render_id),
        lambda session, error: record_render_refusal(session, render_id, error),
    )


@blueprint.task(
    name=RENDER_REPORT, pass_context=True, retry=RetryStrategy(max_attempts=3, exponential_wait=5)
)
def render_report(context: JobContext, render_id: str) -> None:
    """Render a queued report as a PDF (a refused one ends ``failed`` at once)."""
    perform_render(_engine(context), render_id)


@blueprint.periodic(cron="*/5 * * * *")
@blueprint.task(name=SWEEP_SUMMARIES, pass_context=True, queueing_lock="summaries-sweep")
def sweep_summaries(context: JobContext, timestamp: int) -> None:
    """Every five minutes: refresh whatever is still in the backlog (a refresh that failed for good)."""
    del timestamp
    with session_scope(_engine(context)) as session:
        refreshed = refresh_outdated(session)
    if refreshed:
        LOG.info("summary sweep refreshed %d patients", refreshed)


@blueprint.task(
    name=DELIVER_MAIL, pass_context=True, retry=RetryStrategy(max_attempts=MAIL_ATTEMPTS, exponential_wait=4)
)
def deliver_mail(context: JobContext, payload: dict[str, Any]) -> None:
    """Send one sealed message by SMTP; after the last failed attempt, keep it in the outbox."""
    engine, settings = _engine(context), _settings(context)
    ring = bound_keyring(engine)
    if ring is None:
        msg = "the worker has no master key to open the message with"
        raise RuntimeError(msg)
    fields = SealedPayload.model_validate(payload).open(ring)
    mail = Mail(to=fields["to"], subject=fields["subject"], body=fields["body"])
    try:
        send_now(mail, settings)
    except Exception:
        attempts = context.job.attempts + 1
        if attempts < MAIL_ATTEMPTS:
            raise
        LOG.warning("mail not sent after %d attempts; kept in the outbox", attempts)
        write_outbox(mail, settings)


@blueprint.periodic(cron="* * * * *")
@blueprint.task(name=RETRY_STALLED, pass_context=True, queueing_lock="jobs-retry-stalled")
async def retry_stalled_jobs(context: JobContext, timestamp: int) -> None:
    """Every minute: put back on the queue the jobs of a worker that died (killed, machine lost)."""
    del timestamp
    manager = context.app.job_manager
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER_S):
        LOG.warning("job %s of a stalled worker put back on the queue", job.id)
        await manager.retry_job(job)


@blueprint.periodic(cron="17 3 * * *")
@blueprint.task(name=REMOVE_OLD_JOBS, pass_context=True, queueing_lock="jobs-remove-old")
async def remove_old_jobs(context: JobContext, timestamp: int) -> None:
    """Every night: forget jobs finished more than a week ago (failed ones after 30 days)."""
    del timestamp
    manager = context.app.job_manager
    await manager.delete_old_jobs(nb_hours=7 * 24)
    await manager.delete_old_jobs(nb_hours=30 * 24, include_failed=True)
