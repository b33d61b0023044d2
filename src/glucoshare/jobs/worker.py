"""Run the background jobs: the worker's procrastinate app on the configured PostgreSQL database."""

from __future__ import annotations

import asyncio
import functools
import logging

import procrastinate
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from glucoshare.config import Settings
from glucoshare.jobs.errors import JobsUnavailableError
from glucoshare.jobs.schemas import NAMESPACE
from glucoshare.jobs.service import queue_available
from glucoshare.jobs.tasks import blueprint

LOG = logging.getLogger(__name__)

FETCH_POLL_S = 5.0
"""Seconds between polls for new jobs; LISTEN/NOTIFY wakes a worker at once in between."""


def conninfo(engine: Engine) -> str:
    """The libpq connection string of ``engine``'s PostgreSQL database (for psycopg's own pool)."""
    url = engine.url.set(drivername="postgresql")
    return make_url(url).render_as_string(hide_password=False)


@functools.cache
def _app() -> procrastinate.App:
    # One app per process: adding the blueprint renames its tasks, so it can happen only once.
    app = procrastinate.App(connector=procrastinate.PsycopgConnector())
    app.add_tasks_from(blueprint, namespace=NAMESPACE)
    return app


def worker_app(engine: Engine) -> procrastinate.App:
    """The procrastinate app with every Glucoshare task; refuses a database that holds no queue."""
    if not queue_available(engine):
        msg = (
            "background workers need PostgreSQL (GLUCOSHARE_DATABASE_URL=postgresql+psycopg://...); "
            "on SQLite the serving process does the work itself"
        )
        raise JobsUnavailableError(msg)
    return _app()


def run_worker(
    engine: Engine,
    settings: Settings,
    *,
    concurrency: int = 1,
    wait: bool = True,
    name: str = "glucoshare-worker",
    install_signal_handlers: bool = True,
) -> None:
    """Run jobs until stopped (SIGINT/SIGTERM let running jobs finish), or until the queue is empty.

    ``wait=False`` stops once no job is waiting (tests, cron-style runs).
    """
    app = worker_app(engine)

    connector = procrastinate.PsycopgConnector(
        conninfo=conninfo(engine), min_size=1, max_size=concurrency + 2
    )

    async def work() -> None:
        async with app.open_async():
            await app.run_worker_async(
                concurrency=concurrency,
                wait=wait,
                name=name,
                fetch_job_polling_interval=FETCH_POLL_S,
                additional_context={"engine": engine, "settings": settings},
                install_signal_handlers=install_signal_handlers,
            )

    # The app is shared by the process; each run brings its own connection pool.
    with app.replace_connector(connector):
        asyncio.run(work())
