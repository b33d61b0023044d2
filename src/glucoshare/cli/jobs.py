"""``glucoshare worker`` and ``glucoshare jobs status``: the background jobs on PostgreSQL."""

from __future__ import annotations

import logging.config
from typing import Annotated

import typer

from glucoshare.cli.runtime import (
    JsonOption,
    engine,
    handle_errors,
    print_json,
    settings,
    stderr,
    stdout,
    unit_of_work,
)
from glucoshare.jobs.service import queue_counts
from glucoshare.jobs.worker import run_worker, worker_app
from glucoshare.web.logging import log_config

app = typer.Typer(help="See the background job queue (PostgreSQL).", no_args_is_help=True)


@handle_errors
def worker_command(
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="Jobs run at once in this process (threads).")
    ] = 2,
    once: Annotated[bool, typer.Option("--once", help="Stop when no job is waiting.")] = False,
) -> None:
    """Run background jobs (summary refreshes, e-mail, maintenance) until stopped with Ctrl-C or SIGTERM.

    Needs PostgreSQL. Run one or more on any machine that reaches the database; each job runs once.
    """
    db = engine()
    worker_app(db)  # refuses SQLite with a clear message before anything starts
    logging.config.dictConfig(log_config())  # tracebacks as types and places: no data in the log
    stderr.print(f"Glucoshare worker running {concurrency} job(s) at a time", markup=False)
    run_worker(db, settings(), concurrency=concurrency, wait=not once)


@app.command("status")
@handle_errors
def status(as_json: JsonOption = False) -> None:
    """Count the jobs by task and state (todo, doing, succeeded, failed, ...)."""
    with unit_of_work() as session:
        counts = queue_counts(session)
    if as_json:
        print_json({"jobs": counts})
        return
    if not counts:
        stdout.print("no jobs", markup=False)
    for row in counts:
        stdout.print(f"{row.task:<24} {row.status:<10} {row.count:>8}", markup=False)
