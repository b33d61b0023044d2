"""``INSERT ... ON CONFLICT`` for either engine: SQLite and PostgreSQL spell it alike, each in its dialect."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session


def upsert_into(session: Session, entity: Any) -> PostgresInsert | SqliteInsert:  # noqa: ANN401 - a mapped class or table
    """An ``INSERT`` into ``entity`` in the dialect of the session's engine.

    Both dialects' inserts have ``on_conflict_do_nothing`` and ``on_conflict_do_update`` (with
    ``excluded``).
    """
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert(entity)
    return sqlite_insert(entity)
