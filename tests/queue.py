"""Run the background jobs a test's requests deferred (PostgreSQL); on SQLite there is no queue."""

from __future__ import annotations

import threading

from sqlalchemy import Engine, text

from glucoshare.config import Settings
from glucoshare.jobs.schemas import DELIVER_MAIL, queued_name
from glucoshare.jobs.service import queue_available
from glucoshare.jobs.tasks import MAIL_ATTEMPTS
from glucoshare.jobs.worker import run_worker


def run_queued_jobs(engine: Engine, settings: Settings) -> None:
    """Let a real worker run every waiting job, then return (nothing to do on SQLite).

    The worker runs in a thread of its own: the calling thread may already run an event loop
    (Playwright's, a test client's), and a worker starts its own.
    """
    if not queue_available(engine):
        return
    failures: list[BaseException] = []

    def work() -> None:
        try:
            run_worker(engine, settings, wait=False, install_signal_handlers=False, name="test-worker")
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            failures.append(exc)

    thread = threading.Thread(target=work, name="test-worker")
    thread.start()
    thread.join(timeout=300)
    assert not thread.is_alive(), "the worker did not finish the queued jobs"
    if failures:
        raise failures[0]


def exhaust_mail_retries(engine: Engine, settings: Settings) -> None:
    """Run the mail jobs through every attempt at once (PostgreSQL): a failed send waits for its
    retry, so the test moves each waiting mail job to its last attempt, due now, and runs it."""
    if not queue_available(engine):
        return
    run_queued_jobs(engine, settings)
    with engine.begin() as conn:
        waiting = conn.execute(
            text(
                "UPDATE procrastinate_jobs SET attempts = :last, scheduled_at = now() "
                "WHERE task_name = :task AND status = 'todo' RETURNING id"
            ),
            {"last": MAIL_ATTEMPTS - 1, "task": queued_name(DELIVER_MAIL)},
        ).all()
    assert waiting, "a mail whose send failed should wait for its retry"
    run_queued_jobs(engine, settings)
