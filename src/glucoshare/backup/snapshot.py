"""A read-only session that sees one consistent snapshot of the whole database while others write.

PostgreSQL: one ``REPEATABLE READ READ ONLY`` transaction; its snapshot is taken at its first
statement and holds for every later one, whatever commits meanwhile. SQLite: one read transaction
(an explicit ``BEGIN``; Python's sqlite3 module would otherwise run each ``SELECT`` outside any
transaction, each seeing the database of its own moment). In WAL mode the server keeps writing
while the snapshot is read. The transaction always ends with a rollback: nothing is written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Engine
from sqlalchemy.orm import Session


@contextlib.contextmanager
def snapshot_session(engine: Engine) -> Iterator[Session]:
    """A session on ``engine`` whose every query sees the database as of its first query."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        transaction = connection.begin()
        try:
            if connection.dialect.name == "sqlite":
                connection.exec_driver_sql("BEGIN")
            with Session(bind=connection, expire_on_commit=False) as session:
                yield session
        finally:
            transaction.rollback()
