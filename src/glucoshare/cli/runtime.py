"""What every command shares: settings, the database, output in text or JSON, and exit codes.

CONTRACT.md: exit code 0 on success; 2 for bad input or a request that cannot be carried out, with
one line on stderr; 1 for an internal error. ``--json`` prints exactly one JSON document on stdout.
"""

from __future__ import annotations

import functools
import getpass
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn, ParamSpec, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from glucoshare.config import Settings, get_settings
from glucoshare.db.errors import DatabaseFaultError, database_fault
from glucoshare.db.migrate import upgrade
from glucoshare.db.session import create_db_engine, session_scope
from glucoshare.errors import GlucoshareError, InternalError
from glucoshare.jobs.service import refresh_summaries_later
from glucoshare.vault.keyfile import load_or_create

P = ParamSpec("P")
R = TypeVar("R")

PatientOption = Annotated[str, typer.Option("--patient", help="The patient's e-mail address or id.")]
FromOption = Annotated[str | None, typer.Option("--from", help="First local date, YYYY-MM-DD (inclusive).")]
ToOption = Annotated[str | None, typer.Option("--to", help="Last local date, YYYY-MM-DD (inclusive).")]
DaysOption = Annotated[
    int | None, typer.Option(help="The N local days ending with the day of the latest reading (default 14).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]

stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)


def settings() -> Settings:
    """The settings in force (read from the environment on first use)."""
    return get_settings()


@functools.cache
def engine() -> Engine:
    """The database engine (with its master key), the schema brought up to date."""
    config = settings()
    # psycopg warns on stderr when it cannot tidy up after a lost connection; the command reports
    # the loss itself, in its one line.
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    db = create_db_engine(
        config.effective_database_url, keyring=load_or_create(config.effective_secret_key_file)
    )
    upgrade(db, data_dir=config.data_dir)
    return db


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """One transaction: everything the command does is stored, or nothing."""
    with session_scope(engine()) as session:
        yield session


def refresh_summaries(patient_ids: list[str] | None = None) -> None:
    """Bring the daily aggregates up to date after data landed, in a transaction of its own.

    The data is already stored; should this fail, the aggregates stay in the backlog and are
    refreshed before the next population read, so only a warning is shown.
    """
    try:
        with unit_of_work() as session:
            refresh_summaries_later(session, patient_ids)
    except (SQLAlchemyError, DatabaseFaultError):
        stderr.print("warning: the daily summaries will be brought up to date later", markup=False)


def actor() -> str:
    """Who runs the command, for the audit trail."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _jsonable(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def print_json(document: object) -> None:
    """Print exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(_jsonable(document), ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def fail(error: GlucoshareError) -> NoReturn:
    """Print one line on stderr and exit with the error's code."""
    stderr.print(f"error: {error.message}", markup=False, soft_wrap=True)
    raise typer.Exit(error.exit_code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn Glucoshare errors into exit code 2 (or 1) with one line on stderr; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except GlucoshareError as exc:
            fail(exc)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - last line of defence: exit 1, no data in the message
            fail(
                database_fault(exc)
                or InternalError(f"internal error ({type(exc).__name__}); nothing was stored")
            )

    return wrapper
